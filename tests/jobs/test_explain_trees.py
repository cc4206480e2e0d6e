"""`seewhy explain --data` with a tree model beside the image model (issue 13): one manifest
(merged.csv: the tile, its price and its features, tree_fixtures.write_merged), 6 rows drawn by
the seed, Grad-CAM for the tile regressor and tree-shap for the LightGBM regressor.

The oracle is shap's TreeExplainer and the booster's predict, called here on the cells read
back from the manifest; the sampled rows are recomputed with the same seeded draw as
data.samples (sorted(random.Random(seed).sample(range(rows), n))).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import invoke
from dataset_fixtures import Tiles, TilesModel
from tree_fixtures import (
    FEATURES,
    TreeModels,
    lgb_direct,
    read_features,
    set_cell,
    tree_project,
    write_merged,
)

pytest.importorskip("shap")
pytest.importorskip("lightgbm")

SAMPLE = 6


def _explain(folder: Path, tiles_model: TilesModel) -> tuple[int, str]:
    return invoke(
        folder,
        "explain",
        "--data",
        "merged.csv",
        "-m",
        str(tiles_model.card),
        "-m",
        "prices.toml",
        "--method",
        "gradcam,tree-shap",
        "--target",
        "value",
        "--sample",
        str(SAMPLE),
        "--out",
        "out",
        "--no-report",
        "--quiet",
    )


def _summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "out" / "summary.json").read_text())


def _results(summary: dict[str, Any], model: str) -> dict[str, dict[str, Any]]:
    return {r["sample"]: r for r in summary["results"] if r["model"] == model}


@pytest.fixture(scope="module")
def explained(
    tiles: Tiles,
    tiles_model: TilesModel,
    trees: TreeModels,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A project folder (cards, models, merged.csv) after one explain run into ``out``."""
    folder = tree_project(tmp_path_factory.mktemp("explain_trees"), tiles, trees)
    write_merged(folder, tiles, trees)
    code, output = _explain(folder, tiles_model)
    assert code == 0, output
    return folder


def _sampled(tiles: Tiles) -> list[str]:
    """The rows --sample 6 --seed 0 draws (data.samples: a seeded draw kept in file order)."""
    return [tiles.ids[k] for k in sorted(random.Random(0).sample(range(len(tiles.ids)), SAMPLE))]


def _oracle(folder: Path, ids: list[str]) -> tuple[np.ndarray, Any]:
    features = read_features(folder / "merged.csv")
    x = np.stack([features[i] for i in ids])
    return x, lgb_direct(folder / "prices.txt", x)


def test_each_sampled_row_has_tree_shap_values_equal_to_tree_explainer(
    explained: Path, tiles: Tiles
) -> None:
    """Both models explain the same 6 drawn rows; the tree model's features are each row's
    cells and TreeExplainer's values on them, adding up to the booster's predict, which is the
    row's prediction; each row's feature figure is a PNG that decodes."""
    from PIL import Image

    s = _summary(explained)
    ids = _sampled(tiles)
    trees, images = _results(s, "prices"), _results(s, "tiles")
    assert sorted(trees) == sorted(images) == ids
    assert [m["name"] for m in s["models"]] == ["tiles", "prices"]
    assert s["models"][1]["kind"] == "tree" and s["models"][1]["columns"] == list(FEATURES)
    x, direct = _oracle(explained, ids)
    for k, i in enumerate(ids):
        r = trees[i]
        (a,) = r["attributions"]
        assert (a["method"], r["explained"]) == ("tree-shap", "price")
        assert (a["algorithm"], a["background"]) == ("tree_path_dependent", 0)
        assert [f["name"] for f in a["features"]] == list(FEATURES)
        np.testing.assert_array_equal([f["value"] for f in a["features"]], x[k])
        scores = np.array([f["score"] for f in a["features"]])
        np.testing.assert_allclose(scores, direct.values[k], rtol=1e-6, atol=1e-9)
        assert a["expected_value"] == pytest.approx(direct.expected_value, abs=1e-9)
        assert a["expected_value"] + scores.sum() == pytest.approx(direct.predict[k], abs=1e-4)
        assert r["prediction"]["value"] == pytest.approx(float(direct.predict[k]), abs=1e-12)
        with Image.open(explained / "out" / a["features_figure"]) as img:
            img.load()
            assert img.format == "PNG" and min(img.size) > 50
    # the image model's result of the same rows is there too, with its map
    assert all(images[i]["attributions"][0]["method"] == "gradcam" for i in ids)
    assert all((explained / "out" / images[i]["attributions"][0]["map"]).is_file() for i in ids)


def test_importance_is_the_mean_shap_over_the_sampled_rows(explained: Path, tiles: Tiles) -> None:
    """importance[]: one entry for the tree model over the 6 rows, the mean signed and mean
    |SHAP| per feature recomputed from TreeExplainer, largest mean |SHAP| first; its figure
    decodes."""
    from PIL import Image

    s = _summary(explained)
    (entry,) = s["importance"]
    assert (entry["model"], entry["method"], entry["rows"]) == ("prices", "tree-shap", SAMPLE)
    _, direct = _oracle(explained, _sampled(tiles))
    want = {
        c: (float(direct.values[:, j].mean()), float(np.abs(direct.values[:, j]).mean()))
        for j, c in enumerate(FEATURES)
    }
    assert sorted(f["name"] for f in entry["features"]) == sorted(FEATURES)
    for f in entry["features"]:
        assert f["score"] == pytest.approx(want[f["name"]][0], abs=1e-9)
        assert f["abs_score"] == pytest.approx(want[f["name"]][1], abs=1e-9)
    order = [f["abs_score"] for f in entry["features"]]
    assert order == sorted(order, reverse=True)
    with Image.open(explained / "out" / entry["figure"]) as img:
        img.load()
        assert img.format == "PNG"


def test_a_rerun_is_the_same_and_a_bad_cell_fails_its_tree_row_alone(
    explained: Path, tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    """The same command again (on a copy of the finished folder) gives the same summary.json.
    Then one drawn row's water_share reads 'abc': exit 1, errors.jsonl holds that row alone
    with a reason naming the column; the tree model's result of that row is gone (not left
    from the earlier run) while the image model's is still there, unchanged, and the other
    rows' tree results and the importance over the 5 rows left are TreeExplainer's."""
    folder = tmp_path / "copy"
    shutil.copytree(explained, folder, symlinks=True)
    first = _summary(folder)
    code, output = _explain(folder, tiles_model)
    assert code == 0, output
    assert _summary(folder) == first

    ids = _sampled(tiles)
    bad = ids[2]
    set_cell(folder / "merged.csv", bad, "water_share", "abc")
    code, output = _explain(folder, tiles_model)
    assert code == 1, output
    errors = [
        json.loads(line)
        for line in (folder / "out" / "errors.jsonl").read_text().split("\n")
        if line
    ]
    assert [e["id"] for e in errors] == [bad]
    assert "water_share" in errors[0]["reason"] and "'abc'" in errors[0]["reason"]
    assert "prices" in errors[0]["reason"]
    s = _summary(folder)
    trees, images = _results(s, "prices"), _results(s, "tiles")
    assert sorted(images) == ids and images[bad] == _results(first, "tiles")[bad]
    good = [i for i in ids if i != bad]
    assert sorted(trees) == good
    _, direct = _oracle(folder, good)
    for k, i in enumerate(good):
        scores = [f["score"] for f in trees[i]["attributions"][0]["features"]]
        np.testing.assert_allclose(scores, direct.values[k], rtol=1e-6, atol=1e-9)
    (entry,) = s["importance"]
    assert entry["rows"] == SAMPLE - 1
    means = {c: float(np.abs(direct.values[:, j]).mean()) for j, c in enumerate(FEATURES)}
    for f in entry["features"]:
        assert f["abs_score"] == pytest.approx(means[f["name"]], abs=1e-9)
