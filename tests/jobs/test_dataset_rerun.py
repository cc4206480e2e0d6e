"""`seewhy dataset` rerun into the same --out after the manifest or an image changed: the
streamed state (OUT/dataset/) must not hand back what no longer holds (SPEC section 7: "a rerun
with the same --out skips finished samples"; README: explain "recomputes a result whose ...
image file changed since")."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from cli_runner import invoke
from dataset_fixtures import Tiles, TilesModel

ROWS = 20


@pytest.fixture
def small(tiles: Tiles, tmp_path: Path) -> Path:
    """The first 20 tiles copied (so a test may change one) with rows.csv (id, image_path,
    price)."""
    (tmp_path / "tiles").mkdir()
    for i in tiles.ids[:ROWS]:
        shutil.copy(tiles.folder / "tiles" / f"{i}.png", tmp_path / "tiles" / f"{i}.png")
    _manifest(tmp_path / "rows.csv", {i: tiles.truth[i] for i in tiles.ids[:ROWS]})
    return tmp_path


def _manifest(path: Path, prices: dict[str, float]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path", "price"])
        w.writerows((i, f"tiles/{i}.png", p) for i, p in prices.items())


def _run(folder: Path, card: Path, manifest: str = "rows.csv") -> dict:
    code, output = invoke(
        folder,
        "dataset",
        manifest,
        "-m",
        str(card),
        "--target-col",
        "price",
        "--target",
        "value",
        "--method",
        "gradcam",
        "--cohort-size",
        "2",
        "--workers",
        "0",
        "--no-figures",
        "--no-report",
        "--quiet",
        "--out",
        "out",
    )
    assert code == 0, output
    return json.loads((folder / "out" / "summary.json").read_text())


def _predictions(folder: Path) -> dict[str, dict[str, str]]:
    with (folder / "out" / "predictions.csv").open(newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_a_rerun_after_a_true_value_changed_uses_the_new_value(
    small: Path, tiles: Tiles, tiles_model: TilesModel
) -> None:
    """A price corrected in the manifest: predictions.csv, the metrics and the cohorts use the
    new one (they kept the first run's, from dataset/predictions.jsonl)."""
    _run(small, tiles_model.card)
    prices = {i: tiles.truth[i] for i in tiles.ids[:ROWS]}
    prices["t000"] = 9.99  # corrected in the manifest: now the top price by far
    _manifest(small / "rows.csv", prices)
    summary = _run(small, tiles_model.card)
    assert float(_predictions(small)["t000"]["truth"]) == 9.99
    top = next(c for c in summary["cohorts"] if c["name"] == "top")
    assert top["sample_ids"][0] == "t000"


def test_a_rerun_after_an_image_changed_predicts_the_new_image(
    small: Path, tiles: Tiles, tiles_model: TilesModel
) -> None:
    """An image file replaced (by another tile): the row is predicted again (it kept the old
    prediction and map)."""
    _run(small, tiles_model.card)
    before = float(_predictions(small)["t001"]["prediction"])
    shutil.copy(small / "tiles" / "t002.png", small / "tiles" / "t001.png")
    _run(small, tiles_model.card)
    now = _predictions(small)
    (direct,) = tiles_model.predict(tiles.rgb(["t002"]))
    assert float(now["t001"]["prediction"]) == pytest.approx(direct, abs=1e-4)
    assert float(now["t001"]["prediction"]) != pytest.approx(before, abs=1e-4)


def test_a_rerun_on_fewer_rows_counts_only_this_manifests_rows(
    small: Path, tiles: Tiles, tiles_model: TilesModel
) -> None:
    """A rerun on half the rows: the counts are this manifest's (dataset.predicted counted the
    earlier run's rows too: 20 of 10)."""
    _manifest(small / "half.csv", {i: tiles.truth[i] for i in tiles.ids[: ROWS // 2]})
    _run(small, tiles_model.card)
    summary = _run(small, tiles_model.card, "half.csv")
    d = summary["dataset"]
    assert len(_predictions(small)) == ROWS // 2
    assert summary["metrics"]["tiles"]["rows"] == ROWS // 2
    assert (d["rows"], d["predicted"], d["failed"]) == (ROWS // 2, ROWS // 2, 0)
    assert (
        d["explained"] == len(summary["samples"]) == len({r["sample"] for r in summary["results"]})
    )
