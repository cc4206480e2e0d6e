"""`seewhy dataset` on generated satellite tiles with ground truth (dataset_fixtures.py): a price
regressor trained in the tests, whose price rises with water and vegetation and falls with
roads, run through the CLI and read back from summary.json and predictions.csv.

What is checked against numbers computed here, independently of seewhy: the region shares of
the top and bottom deciles (the ground truth of the tiles), cohort membership, every row's
prediction (the model run directly), the metrics, and the same predictions from two joined
manifests and from a Parquet manifest.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import invoke
from dataset_fixtures import (
    REGION_NAMES,
    Tiles,
    TilesModel,
    r2_score,
    write_parquet,
)
from PIL import Image

from seewhy.data.summary import validate_summary

COHORT_SIZE = 8  # below the decile (12 of 120 rows): top/bottom hold the 8 most extreme
REGIONS = ("--regions-col", "regions", "--region-names", ",".join(REGION_NAMES))


def _dataset(
    cwd: Path, out: Path, *manifests: str, card: Path, extra: tuple[str, ...] = ()
) -> dict:
    code, output = invoke(
        cwd,
        "dataset",
        *manifests,
        "-m",
        str(card),
        "--target-col",
        "price",
        "--target",
        "value",
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-figures",
        "--no-report",
        "--quiet",
        *extra,
    )
    assert code == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert validate_summary(summary) == []
    return summary


def _predictions(out: Path) -> dict[str, dict[str, str]]:
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a row twice in predictions.csv"
    return {r["id"]: r for r in rows}


@pytest.fixture(scope="session")
def tiles_run(tiles: Tiles, tiles_model: TilesModel, tmp_path_factory: pytest.TempPathFactory):
    """One run over the 120 tiles: Grad-CAM and IG (signed), target value, with the label maps;
    cohorts of 8."""
    out = tmp_path_factory.mktemp("tiles_run") / "out"
    summary = _dataset(
        tiles.folder,
        out,
        "all.csv",
        card=tiles_model.card,
        extra=(
            "--method",
            "gradcam,ig(steps=16)",
            "--cohort-size",
            str(COHORT_SIZE),
            "--batch-size",
            "16",
            *REGIONS,
        ),
    )
    return out, summary


def _cohort(summary: dict, name: str, method: str) -> dict[str, Any]:
    (c,) = [c for c in summary["cohorts"] if c["name"] == name and c["method"] == method]
    return c


# -- the ground truth ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["gradcam", "ig"])
def test_top_and_bottom_deciles_find_water_and_vegetation_raising_roads_lowering(
    tiles_run: tuple[Path, dict], tiles: Tiles, method: str
) -> None:
    """By construction every pixel's contribution to the price has the sign of its class:
    water and vegetation > 0, soil ~ 0, road < 0 (dataset_fixtures: the model's head has no
    bias, bare soil costs the fixed BASE). So, in every tile:

    - of what RAISES the price (region_share), water and vegetation take more than their
      area and roads less (they raise nothing);
    - of what LOWERS it (region_share_lower), roads take more than their area and water and
      vegetation less.

    The top decile (much water and greenery) shows the first: water and vegetation above
    their area share, roads below. "The reverse" for the bottom decile (many roads, little
    water) is the second: roads above their area share of what lowers the price, water and
    vegetation below. The bottom decile's raising side is NOT reversed, and cannot be: the
    few ponds of a cheap tile still raise its price. Both sides are checked on both deciles.

    Grad-CAM's raising map is max(c, 0) and its lowering map max(-c, 0) (the -value map of
    the same pass); IG's one signed map gives both (its zero baseline is bare soil: the card's
    mean is soil's colour). Margins: a share above 1.5x / below 0.5x its area share (measured:
    2x-4x and 0.0x-0.15x).
    """
    _, summary = tiles_run
    water, vegetation, road = "water", "vegetation", "road"
    for name in ("top", "bottom"):
        c = _cohort(summary, name, method)
        area, up, down = c["region_area"], c["region_share"], c["region_share_lower"]
        # the area shares are the members' own (from the label maps written by the fixture)
        expected_area = np.mean([tiles.area[i] for i in c["sample_ids"]], axis=0)
        assert [area[n] for n in REGION_NAMES] == pytest.approx(list(expected_area), abs=1e-9)
        assert sum(up.values()) == pytest.approx(1.0, abs=1e-9)
        assert sum(down.values()) == pytest.approx(1.0, abs=1e-9)
        for cls in (water, vegetation):
            assert up[cls] > 1.5 * area[cls], (name, method, cls, up, area)
            assert down[cls] < 0.5 * area[cls], (name, method, cls, down, area)
        assert up[road] < 0.5 * area[road], (name, method, up, area)
        assert down[road] > 1.5 * area[road], (name, method, down, area)
    top, bottom = _cohort(summary, "top", method), _cohort(summary, "bottom", method)
    # the deciles differ as the prices say: the top has more water and greenery, fewer roads
    assert top["region_area"][water] > bottom["region_area"][water]
    assert top["region_area"][vegetation] > bottom["region_area"][vegetation]
    assert top["region_area"][road] < bottom["region_area"][road]
    assert "road lowers price" in bottom["description"]
    assert top["signed"] is (method == "ig")


def _shares(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    sums = np.bincount(labels.ravel(), weights=values.ravel().astype(np.float64), minlength=4)
    return sums / sums.sum()


def test_region_shares_are_the_mean_of_the_members_shares_of_their_maps(
    tiles_run: tuple[Path, dict], tiles: Tiles
) -> None:
    """region_share / region_share_lower recomputed here from the saved maps (float32, the
    model-input frame, which is the tile's: 64x64) and the label maps: per member, the share
    of the positive (negative) part per class; the cohort's figure is the mean over members."""
    out, summary = tiles_run
    for c in summary["cohorts"]:
        ups, downs = [], []
        for m in c["members"]:
            heat = np.load(out / m["map"])
            assert heat.dtype == np.float32 and heat.shape == (64, 64)
            labels = np.asarray(Image.open(tiles.folder / "labels" / f"{m['id']}.png"))
            ups.append(_shares(np.clip(heat, 0, None), labels))
            if c["method"] == "ig":
                downs.append(_shares(np.clip(-heat, 0, None), labels))
        got = [c["region_share"][n] for n in REGION_NAMES]
        assert got == pytest.approx(list(np.mean(ups, axis=0)), abs=1e-6), c["name"]
        if downs:
            got = [c["region_share_lower"][n] for n in REGION_NAMES]
            assert got == pytest.approx(list(np.mean(downs, axis=0)), abs=1e-6), c["name"]
        # the mean map is the members' mean
        mean = np.mean([np.load(out / m["map"]).astype(np.float64) for m in c["members"]], axis=0)
        assert np.abs(np.load(out / c["mean_map"]) - mean).max() <= 1e-6


# -- membership, predictions, metrics -----------------------------------------------------------
def _extreme(values: dict[str, float], n: int, highest: bool) -> list[str]:
    """The n ids with the highest (lowest) value, most extreme first, ties by id."""
    sign = -1.0 if highest else 1.0
    return sorted(values, key=lambda i: (sign * values[i], i))[:n]


def test_cohort_membership_matches_one_computed_here(
    tiles_run: tuple[Path, dict], tiles: Tiles
) -> None:
    """top/bottom: the 8 rows of highest/lowest true price (the decile holds 12); the error
    cohorts: the 8 rows of largest/smallest |prediction - truth|; most extreme first, ties by
    id. Each cohort is listed per method with the same members; predictions.csv's cohorts
    column says the same."""
    out, summary = tiles_run
    preds = _predictions(out)
    truth = tiles.truth
    error = {i: abs(float(preds[i]["prediction"]) - truth[i]) for i in tiles.ids}
    expected = {
        "top": _extreme(truth, COHORT_SIZE, highest=True),
        "bottom": _extreme(truth, COHORT_SIZE, highest=False),
        "highest_error": _extreme(error, COHORT_SIZE, highest=True),
        "lowest_error": _extreme(error, COHORT_SIZE, highest=False),
    }
    got = {(c["name"], c["method"]): c["sample_ids"] for c in summary["cohorts"]}
    assert set(got) == {(n, m) for n in expected for m in ("gradcam", "ig")}
    for (name, method), ids in got.items():
        assert ids == expected[name], (name, method)
        c = _cohort(summary, name, method)
        assert [m["id"] for m in c["members"]] == ids
        assert c["model"] == "tiles" and c["explained"] == COHORT_SIZE
        for m in c["members"]:
            assert m["target"] == pytest.approx(truth[m["id"]], abs=1e-12)
            assert m["prediction"] == pytest.approx(float(preds[m["id"]]["prediction"]), abs=1e-12)
            assert m["residual"] == pytest.approx(m["prediction"] - m["target"], abs=1e-12)
    member_of: dict[str, list[str]] = {i: [] for i in tiles.ids}
    for name, ids in expected.items():
        for i in ids:
            member_of[i].append(name)
    assert {
        i: sorted(r["cohorts"].split(";")) if r["cohorts"] else [] for i, r in preds.items()
    } == {i: sorted(names) for i, names in member_of.items()}
    # only the cohorts' members were explained
    members = {i for ids in expected.values() for i in ids}
    assert {r["sample"] for r in summary["results"]} == members
    assert summary["dataset"]["explained"] == len(members)


def test_predictions_are_the_models_own(
    tiles_run: tuple[Path, dict], tiles: Tiles, tiles_model: TilesModel
) -> None:
    """Every row's prediction equals the model's output run directly here (torch, the tiles
    normalised with the card's mean and std, no seewhy) within 1e-4 ($100 on prices of about
    $0.3M); truth, residual (prediction - truth) and abs_error columns agree."""
    out, summary = tiles_run
    preds = _predictions(out)
    assert sorted(preds) == tiles.ids
    direct = dict(zip(tiles.ids, tiles_model.predict(tiles.rgb()), strict=True))
    for i, r in preds.items():
        p, t = float(r["prediction"]), float(r["truth"])
        assert r["model"] == "tiles"
        assert p == pytest.approx(direct[i], abs=1e-4), i
        assert t == pytest.approx(tiles.truth[i], abs=1e-12)
        assert float(r["residual"]) == pytest.approx(p - t, abs=1e-12)
        assert float(r["abs_error"]) == pytest.approx(abs(p - t), abs=1e-12)
    d = summary["dataset"]
    assert (d["rows"], d["predicted"], d["failed"]) == (120, 120, 0)
    assert d["region_names"] == list(REGION_NAMES)
    assert d["target_col"] == "price" and d["id_col"] == "id"


def test_metrics_are_computed_from_predictions_csv(
    tiles_run: tuple[Path, dict], tiles: Tiles, tiles_model: TilesModel
) -> None:
    """r2, mae, rmse recomputed here from predictions.csv; the run's R² is the fixture's
    (held-out tiles) within 0.02."""
    out, summary = tiles_run
    preds = _predictions(out)
    y = np.array([tiles.truth[i] for i in tiles.ids])
    p = np.array([float(preds[i]["prediction"]) for i in tiles.ids])
    m = summary["metrics"]["tiles"]
    assert m["rows"] == 120
    assert m["r2"] == pytest.approx(r2_score(y, p), abs=1e-9)
    assert m["mae"] == pytest.approx(float(np.mean(np.abs(p - y))), abs=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(float(np.mean((p - y) ** 2))), abs=1e-12)
    assert m["r2"] == pytest.approx(tiles_model.r2, abs=0.02)
    assert m["r2"] > 0.95


# -- manifests ----------------------------------------------------------------------------------
def _same_predictions(out: Path, reference: Path, tiles: Tiles) -> None:
    one, other = _predictions(reference), _predictions(out)
    assert sorted(other) == tiles.ids
    for i in tiles.ids:
        got, want = float(other[i]["prediction"]), float(one[i]["prediction"])
        assert got == pytest.approx(want, abs=1e-6), i
        assert float(other[i]["truth"]) == pytest.approx(tiles.truth[i], abs=1e-12), i


def test_two_joined_manifests_give_the_same_predictions(
    tiles_run: tuple[Path, dict], tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    """prices.csv (id, price; rows in reverse order) joined on --id-col with images.csv (id,
    image_path, regions) predicts what all.csv does. This run keeps the default cohort size
    (32): top/bottom then hold the whole decile, ceil(120 / 10) = 12 rows; the error cohorts
    32."""
    joined = _dataset(
        tiles.folder,
        tmp_path / "joined",
        "prices.csv",
        "images.csv",
        card=tiles_model.card,
        extra=("--id-col", "id", "--method", "gradcam"),
    )
    _same_predictions(tmp_path / "joined", tiles_run[0], tiles)
    assert joined["dataset"]["manifests"] == ["prices.csv", "images.csv"]
    assert _cohort(joined, "top", "gradcam")["sample_ids"] == _extreme(tiles.truth, 12, True)
    assert _cohort(joined, "bottom", "gradcam")["sample_ids"] == _extreme(tiles.truth, 12, False)
    mine = _predictions(tmp_path / "joined")
    errors = {i: abs(float(mine[i]["prediction"]) - tiles.truth[i]) for i in tiles.ids}
    assert _cohort(joined, "highest_error", "gradcam")["sample_ids"] == _extreme(errors, 32, True)
    assert _cohort(joined, "lowest_error", "gradcam")["sample_ids"] == _extreme(errors, 32, False)


def test_a_parquet_manifest_gives_the_same_predictions(
    tiles_run: tuple[Path, dict], tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    """all.csv as Parquet, in another folder (its relative paths are relative to it)."""
    parquet = write_parquet(tiles.folder / "all.csv", tmp_path / "all.parquet")
    for sub in ("tiles", "labels"):
        (tmp_path / sub).symlink_to(tiles.folder / sub)
    _dataset(
        tmp_path,
        tmp_path / "parquet",
        parquet.name,
        card=tiles_model.card,
        extra=("--method", "gradcam", "--cohort-size", "1"),
    )
    _same_predictions(tmp_path / "parquet", tiles_run[0], tiles)


# -- ties, no true value --------------------------------------------------------------------------
def _beside(tiles: Tiles, folder: Path) -> Path:
    """``folder`` with the tiles' images and label maps linked in (for manifests written
    there: their relative paths are relative to their own folder)."""
    for sub in ("tiles", "labels"):
        (folder / sub).symlink_to(tiles.folder / sub)
    return folder


def test_ties_are_broken_by_id(tiles: Tiles, tiles_model: TilesModel, tmp_path: Path) -> None:
    """Prices rounded to $10k: about ten distinct values over 120 rows, so the deciles cut
    through runs of equal prices; each cohort lists the equal ones by id."""
    rounded = {i: round(tiles.truth[i], 2) for i in tiles.ids}
    with (_beside(tiles, tmp_path) / "rounded.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path", "price"])
        w.writerows((i, f"tiles/{i}.png", rounded[i]) for i in reversed(tiles.ids))
    summary = _dataset(
        tmp_path,
        tmp_path / "out",
        "rounded.csv",
        card=tiles_model.card,
        extra=("--method", "gradcam", "--cohort-size", str(COHORT_SIZE)),
    )
    for name, highest in (("top", True), ("bottom", False)):
        ids = _cohort(summary, name, "gradcam")["sample_ids"]
        assert ids == _extreme(rounded, COHORT_SIZE, highest), name
        values = [rounded[i] for i in ids]
        assert len(set(values)) < len(values), f"no tie in {name}: the test tests nothing"
        # the rows equal to the last member's price that did not make it have larger ids
        cut = [i for i in tiles.ids if rounded[i] == values[-1] and i not in ids]
        assert cut and min(cut) > max(i for i in ids if rounded[i] == values[-1])


def test_without_a_target_column_the_deciles_are_of_the_prediction(
    tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    """No --target-col: top/bottom by the prediction, no error cohorts, no truth in
    predictions.csv, metrics count no row."""
    code, output = invoke(
        tiles.folder,
        "dataset",
        "all.csv",
        "-m",
        str(tiles_model.card),
        "--target",
        "value",
        "--method",
        "gradcam",
        "--cohort-size",
        "3",
        "--workers",
        "0",
        "--no-figures",
        "--no-report",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    preds = _predictions(tmp_path / "out")
    predicted = {i: float(r["prediction"]) for i, r in preds.items()}
    direct = dict(zip(tiles.ids, tiles_model.predict(tiles.rgb()), strict=True))
    assert predicted == pytest.approx(direct, abs=1e-4)
    assert [(c["name"], c["sample_ids"]) for c in summary["cohorts"]] == [
        ("top", _extreme(predicted, 3, highest=True)),
        ("bottom", _extreme(predicted, 3, highest=False)),
    ]
    assert all(r["truth"] == r["residual"] == "" for r in preds.values())
    assert summary["metrics"]["tiles"] == {"rows": 0}


def test_cohort_titles_without_a_target_column_read_as_words(
    tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    code, output = invoke(
        tiles.folder,
        "dataset",
        "head.csv",
        "-m",
        str(tiles_model.card),
        "--target",
        "value",
        "--cohort-size",
        "1",
        "--workers",
        "0",
        "--no-figures",
        "--no-report",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    titles = [c["title"] for c in summary["cohorts"]]
    # the card's labels = ["price"] name the output (it read "predicted the output")
    assert titles == ["top decile of predicted price", "bottom decile of predicted price"]


def test_the_words_stay_true_when_explaining_minus_value(
    tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    """Explaining -value (what lowers the price) must not turn the ground truth round in
    words: roads lower the price of these tiles, water raises it, whatever the target."""
    summary = _dataset(
        tiles.folder,
        tmp_path / "out",
        "head.csv",
        card=tiles_model.card,
        extra=("--target=-value", "--method", "gradcam", "--cohort-size", "4", *REGIONS),
    )
    for name in ("top", "bottom"):
        words = _cohort(summary, name, "gradcam")["description"]
        assert "road raises price" not in words and "water lowers price" not in words, words
        assert "road lowers price" in words, words
