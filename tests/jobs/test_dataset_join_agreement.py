"""A dataset run over joined manifests that do not list the same rows, and two models
compared on the rows both explained (from an outsider's findings on the first version)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_runner import invoke
from dataset_fixtures import Tiles, TilesModel, tiles_folder, trained_model


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Tiles:
    return tiles_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def tiles_model(tmp_path_factory: pytest.TempPathFactory) -> TilesModel:
    return trained_model(tmp_path_factory)


def test_rows_another_manifest_lacks_are_reported_not_dropped(
    tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    ids = tiles.ids[:40]
    with (tmp_path / "prices.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "price"])
        w.writerows((i, tiles.truth[i]) for i in ids)
    with (tmp_path / "images.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path"])
        w.writerows((i, tiles.folder / "tiles" / f"{i}.png") for i in ids[:30])
    code, output = invoke(
        tmp_path,
        "dataset", "prices.csv", "images.csv", "-m", str(tiles_model.card),
        "--target-col", "price", "--target", "value", "--workers", "0",
        "--no-figures", "--no-report", "--quiet", "--out", "out",
    )  # fmt: skip
    assert code == 1, output
    errors = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ids[30:]
    assert all("has no row in manifest images.csv" in e["reason"] for e in errors)
    with (tmp_path / "out" / "predictions.csv").open() as f:
        assert [r["id"] for r in csv.DictReader(f)] == ids[:30]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["dataset"]["rows"], summary["dataset"]["failed"]) == (40, 10)


def test_two_models_explain_the_same_rows_and_are_compared(
    tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    card = str(tiles_model.card)
    code, output = invoke(
        tiles.folder,
        "dataset", "head.csv", "-m", card, "-m", card, "--method", "gradcam,ig(steps=8)",
        "--target-col", "price", "--target", "value", "--cohort-size", "3", "--workers", "0",
        "--no-figures", "--no-report", "--quiet", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    names = [m["name"] for m in summary["models"]]
    assert names == ["tiles", "tiles-2"]
    explained = {n: {r["sample"] for r in summary["results"] if r["model"] == n} for n in names}
    members = {i for c in summary["cohorts"] for i in c["sample_ids"]}
    assert explained["tiles"] == explained["tiles-2"] == members
    pairs = {(a["sample"], a["method"]): a for a in summary["agreement"]}
    assert set(pairs) == {(i, m) for i in members for m in ("gradcam", "ig")}
    for a in pairs.values():  # the same model twice: the same maps
        assert a["models"] == ["tiles", "tiles-2"]
        assert a["rank_correlation"] == pytest.approx(1.0)
        assert a["top_iou"] == pytest.approx(1.0)
