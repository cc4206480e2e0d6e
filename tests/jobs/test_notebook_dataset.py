"""``seewhy.dataset`` from a notebook: a DataFrame manifest and a loaded image+tabular model;
the cohorts' mean feature attributions against seewhy.explain run directly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import seewhy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from multimodal_models import image_tabular_model


@pytest.fixture
def houses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
            tmp_path / f"h{i}.png"
        )
        rows.append(
            {
                "id": f"h{i}",
                "image_path": f"h{i}.png",
                "sqft": 500 + 150 * i,
                "grade": 3 + i % 5,
                "water": i % 2,
                "price": 1000.0 * i,
            }
        )
    monkeypatch.chdir(tmp_path)  # a DataFrame's relative paths: from the current folder
    return pd.DataFrame(rows)


def test_fusion_model_from_a_dataframe(houses: pd.DataFrame, tmp_path: Path) -> None:
    model = image_tabular_model()
    result = seewhy.dataset(
        houses, model, "ig(steps=16)", target="value", target_col="price",
        cohort_size=2, out=tmp_path / "out",
    )  # fmt: skip
    assert result.failed == 0
    table = result.predictions
    assert list(table["id"]) == list(houses["id"])
    batch = {
        "image": [tmp_path / p for p in houses["image_path"]],
        "tabular": houses[["sqft", "grade", "water"]].to_dict(orient="records"),
    }
    with torch.no_grad():
        direct = model.forward(seewhy.api.as_inputs(model, batch))[:, 0].numpy()
    np.testing.assert_allclose(table["prediction"], direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(table["residual"], direct - houses["price"], rtol=1e-5, atol=1e-3)

    cohorts = result.cohorts
    assert set(cohorts["name"]) == {"top", "bottom", "highest_error", "lowest_error"}
    top = result.summary["cohorts"][0]
    assert top["name"] == "top" and top["sample_ids"] == ["h9"]  # ceil(10/10) = 1 row
    members = [i for i in top["sample_ids"]]
    rows = houses.set_index("id").loc[members]
    exp = seewhy.explain(
        model,
        {
            "image": [tmp_path / p for p in rows["image_path"]],
            "tabular": rows[["sqft", "grade", "water"]].to_dict(orient="records"),
        },
        ["ig(steps=16)"],
        target="value",
    )[0]
    want = exp.attributions["tabular"].mean(0).numpy()
    got = {f["name"]: f["score"] for f in top["features"]}
    np.testing.assert_allclose([got[c] for c in ("sqft", "grade", "water")], want, rtol=1e-4)

    html = result.cohort("top")._repr_html_()
    assert html.count("<img") == 2  # the mean map and the one member's figure
    assert result.cohort("top").mean_map.shape == (224, 224)
    assert result.report().is_file()
    with pytest.raises(seewhy.SeewhyError, match="no cohort 'middle'"):
        result.cohort("middle")
