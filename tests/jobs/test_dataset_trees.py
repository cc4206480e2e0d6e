"""`seewhy dataset` with tree models (issue 13): the tile regressor (dataset_fixtures) beside a
LightGBM regressor and an XGBoost classifier of the same tiles' features (tree_fixtures), run
through the CLI and read back from summary.json, predictions.csv and the streamed state.

The oracle is shap's TreeExplainer called here on the features read back from the CSV, and the
boosters' own predict; cohorts, means, agreement and metrics are recomputed here from those
numbers and from the tiles' true prices. The ground truth: water and vegetation raise the price,
roads lower it, ``noise`` does nothing (the price is made that way).
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import invoke
from dataset_fixtures import REGION_NAMES, Tiles, TilesModel
from tree_fixtures import (
    FEATURES,
    LABELS,
    TreeModels,
    lgb_direct,
    pricey,
    read_features,
    set_cell,
    tree_project,
    write_subset,
    xgb_direct,
)

from seewhy.data.summary import validate_summary

pytest.importorskip("shap")
pytest.importorskip("lightgbm")
pytest.importorskip("xgboost")

COHORT_SIZE = 8
REGIONS = ("--regions-col", "regions", "--region-names", ",".join(REGION_NAMES))
QUIET = ("--workers", "0", "--quiet")
FAST = (*QUIET, "--no-figures", "--no-report")
TREE_COHORTS = ("top", "bottom", "highest_error", "lowest_error")


def _run(cwd: Path, *args: str) -> tuple[int, str]:
    return invoke(cwd, "dataset", *args)


def _both(manifest: Path, tiles_model: TilesModel) -> tuple[str, ...]:
    """The image manifest joined with features.csv, the image card and the tree card, Grad-CAM
    for the image model and tree-shap for the tree model, with the label maps."""
    return (
        str(manifest),
        "features.csv",
        "-m",
        str(tiles_model.card),
        "-m",
        "prices.toml",
        "--method",
        "gradcam,tree-shap",
        "--target-col",
        "price",
        *REGIONS,
    )


def _summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def _predictions(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    """predictions.csv as (id, model) -> its row (each pair once)."""
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keyed = {(r["id"], r["model"]): r for r in rows}
    assert len(keyed) == len(rows), "a (row, model) twice in predictions.csv"
    return keyed


def _extreme(values: dict[str, float], n: int, highest: bool) -> list[str]:
    """The n ids with the highest (lowest) value, most extreme first, ties by id."""
    sign = -1.0 if highest else 1.0
    return sorted(values, key=lambda i: (sign * values[i], i))[:n]


def _cohort(summary: dict, model: str, name: str) -> dict[str, Any]:
    (c,) = [c for c in summary["cohorts"] if c["model"] == model and c["name"] == name]
    return c


def _by_name(features: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in features}


def _means(values: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per feature: (mean signed, mean absolute) of rows ``values`` [N, F]."""
    return {
        c: (float(values[:, j].mean()), float(np.abs(values[:, j]).mean()))
        for j, c in enumerate(FEATURES)
    }


def _assert_features(got: list[dict[str, Any]], values: np.ndarray, where: str) -> None:
    """``features`` entries equal the mean and mean |.| of ``values`` [N, F], largest mean |.|
    first."""
    want = _means(values)
    assert sorted(f["name"] for f in got) == sorted(FEATURES), where
    for f in got:
        assert f["score"] == pytest.approx(want[f["name"]][0], abs=1e-9), (where, f)
        assert f["abs_score"] == pytest.approx(want[f["name"]][1], abs=1e-9), (where, f)
    order = [f["abs_score"] for f in got]
    assert order == sorted(order, reverse=True), where


def _words(title: str, mean: dict[str, float]) -> str:
    """A tree cohort's words, built here from the mean SHAP values of the price itself: the
    feature that raises it most (when one raises it), the one that lowers it most (when one
    lowers it), each with its mean value."""
    up = max(mean, key=mean.__getitem__)
    down = min(mean, key=mean.__getitem__)
    parts = []
    if mean[up] > 0:
        parts.append(f"{up} raises price most (mean SHAP {mean[up]:+.3g})")
    if mean[down] < 0:
        parts.append(f"{down} lowers {'it' if parts else 'price'} most ({mean[down]:+.3g})")
    return f"{title}: " + "; ".join(parts)


# -- one run: the image model beside the LightGBM regressor ------------------------------------
class Run:
    """A finished run with what is needed to check it: its folder, summary, predictions, and
    the oracle on every row (SHAP values, base value and booster prediction)."""

    def __init__(self, folder: Path, out: Path, tiles: Tiles) -> None:
        self.folder, self.out = folder, out
        self.summary = _summary(out)
        self.predictions = _predictions(out)
        features = read_features(folder / "features.csv")
        self.ids = list(tiles.ids)
        self.x = np.stack([features[i] for i in self.ids])
        self.direct = lgb_direct(folder / "prices.txt", self.x)
        self.row = {i: k for k, i in enumerate(self.ids)}

    def shap(self, ids: list[str]) -> np.ndarray:
        return self.direct.values[[self.row[i] for i in ids]]

    def predicted(self) -> dict[str, float]:
        return {i: float(self.direct.predict[k]) for k, i in enumerate(self.ids)}


@pytest.fixture(scope="module")
def both_run(
    tiles: Tiles,
    tiles_model: TilesModel,
    trees: TreeModels,
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    """all.csv joined with features.csv on id; the tile CNN (Grad-CAM) and the LightGBM
    regressor (tree-shap, path-dependent); target value; cohorts of 8; the label maps."""
    folder = tree_project(tmp_path_factory.mktemp("trees_both"), tiles, trees)
    code, output = _run(
        folder,
        *_both(tiles.folder / "all.csv", tiles_model),
        "--target",
        "value",
        "--cohort-size",
        str(COHORT_SIZE),
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    return Run(folder, folder / "out", tiles)


def test_the_tree_model_is_listed_and_predicts_every_row_as_its_booster_does(
    both_run: Run, tiles: Tiles
) -> None:
    """models[] lists the tree model as a tree with its columns; predictions.csv holds a row
    per (id, model) for both models, the tree model's prediction being the booster's own
    predict on the row's cells; its metrics are recomputed from those."""
    s = both_run.summary
    tree = next(m for m in s["models"] if m["name"] == "prices")
    assert tree["kind"] == "tree" and tree["library"] == "lightgbm"
    assert tree["task"] == "regression" and tree["labels"] == ["price"]
    assert tree["columns"] == list(FEATURES)
    assert [m["name"] for m in s["models"]] == ["tiles", "prices"]
    preds = both_run.predictions
    assert set(preds) == {(i, m) for i in tiles.ids for m in ("tiles", "prices")}
    direct = both_run.predicted()
    for i in tiles.ids:
        r = preds[(i, "prices")]
        assert float(r["prediction"]) == pytest.approx(direct[i], abs=1e-12), i
        assert float(r["truth"]) == pytest.approx(tiles.truth[i], abs=1e-12), i
        assert float(r["residual"]) == pytest.approx(direct[i] - tiles.truth[i], abs=1e-12)
    y = np.array([tiles.truth[i] for i in tiles.ids])
    p = np.array([direct[i] for i in tiles.ids])
    m = s["metrics"]["prices"]
    assert m["rows"] == 120
    assert m["mae"] == pytest.approx(float(np.mean(np.abs(p - y))), abs=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(float(np.mean((p - y) ** 2))), abs=1e-12)
    r2 = 1.0 - float(np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))
    assert m["r2"] == pytest.approx(r2, abs=1e-9)
    assert m["r2"] > 0.9  # the trees learned the price from the shares
    d = s["dataset"]
    assert (d["rows"], d["predicted"], d["failed"]) == (120, 120, 0)


def test_every_tree_result_equals_tree_explainer_called_directly(both_run: Run) -> None:
    """Each explained row's features: its cells, and SHAP values equal to
    shap.TreeExplainer(lightgbm.Booster(model_file=...)).shap_values(X) on the same rows; the
    base value plus the values add up to the booster's predict (1e-4), which is also the
    row's prediction. The rows explained are the members of both models' cohorts."""
    s = both_run.summary
    results = [r for r in s["results"] if r["model"] == "prices"]
    members = {i for c in s["cohorts"] for i in c["sample_ids"]}
    assert {r["sample"] for r in results} == members
    assert {r["sample"] for r in s["results"] if r["model"] == "tiles"} == members
    assert len(results) == len(members) > 2 * COHORT_SIZE
    ids = [r["sample"] for r in results]
    want = both_run.shap(ids)
    x = both_run.x[[both_run.row[i] for i in ids]]
    direct = both_run.predicted()
    for k, r in enumerate(results):
        (a,) = r["attributions"]
        assert a["method"] == "tree-shap" and r["explained"] == "price"  # the card's label
        assert (a["algorithm"], a["background"]) == ("tree_path_dependent", 0)
        assert [f["name"] for f in a["features"]] == list(FEATURES)
        np.testing.assert_array_equal([f["value"] for f in a["features"]], x[k])
        scores = np.array([f["score"] for f in a["features"]])
        np.testing.assert_allclose(scores, want[k], rtol=1e-6, atol=1e-9)
        assert a["expected_value"] == pytest.approx(both_run.direct.expected_value, abs=1e-9)
        assert a["expected_value"] + scores.sum() == pytest.approx(direct[r["sample"]], abs=1e-4)
        assert r["prediction"]["value"] == pytest.approx(direct[r["sample"]], abs=1e-12)


def test_tree_cohorts_are_recomputed_with_their_mean_shap_and_the_ground_truth(
    both_run: Run, tiles: Tiles
) -> None:
    """The tree model's cohorts: top/bottom are the 8 rows of highest/lowest true price, the
    error cohorts the 8 of largest/smallest |booster predict - truth| (ties by id); features
    are the members' mean signed and mean |SHAP|. Ground truth: in the top cohort water and
    vegetation raise the price on average, in the bottom roads lower it."""
    s = both_run.summary
    direct = both_run.predicted()
    error = {i: abs(direct[i] - tiles.truth[i]) for i in tiles.ids}
    expected = {
        "top": _extreme(tiles.truth, COHORT_SIZE, highest=True),
        "bottom": _extreme(tiles.truth, COHORT_SIZE, highest=False),
        "highest_error": _extreme(error, COHORT_SIZE, highest=True),
        "lowest_error": _extreme(error, COHORT_SIZE, highest=False),
    }
    tree_cohorts = [c for c in s["cohorts"] if c["model"] == "prices"]
    assert [(c["name"], c["method"]) for c in tree_cohorts] == [
        (n, "tree-shap") for n in TREE_COHORTS
    ]
    for c in tree_cohorts:
        assert c["sample_ids"] == expected[c["name"]], c["name"]
        assert c["explained"] == COHORT_SIZE
        _assert_features(c["features"], both_run.shap(c["sample_ids"]), c["name"])
        for m in c["members"]:
            assert m["prediction"] == pytest.approx(direct[m["id"]], abs=1e-12)
            assert m["target"] == pytest.approx(tiles.truth[m["id"]], abs=1e-12)
        mean = {c: m for c, (m, _) in _means(both_run.shap(c["sample_ids"])).items()}
        assert c["description"] == _words(c["title"], mean), c["name"]
    # the image model's top and bottom are the same rows (the same true prices)
    assert _cohort(s, "tiles", "top")["sample_ids"] == expected["top"]
    assert _cohort(s, "tiles", "bottom")["sample_ids"] == expected["bottom"]
    top = _by_name(_cohort(s, "prices", "top")["features"])
    bottom = _by_name(_cohort(s, "prices", "bottom")["features"])
    assert top["water_share"]["score"] > 0 and top["vegetation_share"]["score"] > 0
    assert bottom["road_share"]["score"] < 0
    # predictions.csv says which cohorts each row of the tree model is in
    member_of: dict[str, list[str]] = {i: [] for i in tiles.ids}
    for name, ids in expected.items():
        for i in ids:
            member_of[i].append(name)
    got = {
        i: sorted(filter(None, both_run.predictions[(i, "prices")]["cohorts"].split(";")))
        for i in tiles.ids
    }
    assert got == {i: sorted(v) for i, v in member_of.items()}


def test_importance_is_the_whole_tables_mean_shap_and_noise_matters_least(
    both_run: Run,
) -> None:
    """importance[]: tree-shap over all 120 rows (fewer than the 2,000 cap), the mean signed
    and mean |SHAP| per feature recomputed from TreeExplainer; the seeded gaussian ``noise``
    has the smallest mean |SHAP|, under a tenth of each real feature's."""
    s = both_run.summary
    (entry,) = s["importance"]
    assert (entry["model"], entry["method"], entry["rows"]) == ("prices", "tree-shap", 120)
    assert entry["algorithm"] == "tree_path_dependent"
    _assert_features(entry["features"], both_run.direct.values, "importance")
    abs_score = {f["name"]: f["abs_score"] for f in entry["features"]}
    assert entry["features"][-1]["name"] == "noise"
    for c in ("water_share", "vegetation_share", "road_share"):
        assert abs_score["noise"] < 0.1 * abs_score[c], abs_score
    assert s["dataset"]["importance_rows"] == {"prices": 120}
    assert "figure" not in entry  # --no-figures


def test_side_by_side_puts_each_image_cohort_beside_the_tree_models_mean_shap(
    both_run: Run,
) -> None:
    """side_by_side[]: one entry per image cohort (Grad-CAM), in the cohorts' order: the
    image side is that cohort's region shares and words as cohorts[] has them; the tree side
    the mean SHAP over the same rows (TreeExplainer here); the agreement the mean |difference|
    and Pearson r of the two models' predictions on those rows, from predictions.csv."""
    s = both_run.summary
    image_cohorts = [c for c in s["cohorts"] if c["model"] == "tiles"]
    assert [c["method"] for c in image_cohorts] == ["gradcam"] * 4
    pairs = s["side_by_side"]
    assert [p["cohort"] for p in pairs] == [c["name"] for c in image_cohorts]
    preds = both_run.predictions
    for p, c in zip(pairs, image_cohorts, strict=True):
        ids = c["sample_ids"]
        assert p["rows"] == len(ids) == COHORT_SIZE and p["title"] == c["title"]
        keys = ("model", "method", "region_share", "region_share_lower", "region_area")
        assert p["image"] == {**{k: c[k] for k in keys}, "description": c["description"]}
        assert sum(p["image"]["region_share"].values()) == pytest.approx(1.0, abs=1e-9)
        tree = p["tree"]
        assert (tree["model"], tree["method"], tree["explained"]) == (
            "prices",
            "tree-shap",
            COHORT_SIZE,
        )
        _assert_features(tree["features"], both_run.shap(ids), p["cohort"])
        a = np.array([float(preds[(i, "tiles")]["prediction"]) for i in ids])
        b = np.array([float(preds[(i, "prices")]["prediction"]) for i in ids])
        agree = p["agreement"]
        assert agree["rows"] == COHORT_SIZE
        assert agree["mean_abs_difference"] == pytest.approx(
            float(np.mean(np.abs(a - b))), abs=1e-12
        )
        assert agree["correlation"] == pytest.approx(float(np.corrcoef(a, b)[0, 1]), abs=1e-9)


def test_prediction_agreement_over_every_row(both_run: Run, tiles: Tiles) -> None:
    """prediction_agreement[]: the two regressors over the 120 rows, from predictions.csv;
    they agree closely (both learned the same price)."""
    preds = both_run.predictions
    a = np.array([float(preds[(i, "tiles")]["prediction"]) for i in tiles.ids])
    b = np.array([float(preds[(i, "prices")]["prediction"]) for i in tiles.ids])
    (entry,) = both_run.summary["prediction_agreement"]
    assert entry["models"] == ["tiles", "prices"] and entry["rows"] == 120
    assert entry["mean_abs_difference"] == pytest.approx(float(np.mean(np.abs(a - b))), abs=1e-12)
    assert entry["correlation"] == pytest.approx(float(np.corrcoef(a, b)[0, 1]), abs=1e-9)
    assert entry["correlation"] > 0.95


# review defect (fixed): data.summary.validate_summary rejected the summary a tree run writes
# (models[] of a tree lack 'layer', tree attributions carry features, not 'map')
def test_a_tree_runs_summary_passes_the_schema_check(both_run: Run) -> None:
    assert validate_summary(both_run.summary) == []


# -- figures and the report ---------------------------------------------------------------------
def test_figures_and_the_report_show_the_tree_model_beside_the_image_model(
    tiles: Tiles, tiles_model: TilesModel, trees: TreeModels, tmp_path: Path
) -> None:
    """The first 20 tiles (figures cost: a subset keeps it fast), cohorts of 4, with figures
    and report.html: the whole table's beeswarm + bar figure and each tree cohort's figure are
    PNGs that decode; the report has the side-by-side section naming both models, every image
    cohort and the tree's features."""
    from PIL import Image

    folder = tree_project(tmp_path, tiles, trees)
    code, output = _run(
        folder,
        *_both(write_subset(folder, tiles, 20), tiles_model),
        "--target",
        "value",
        "--cohort-size",
        "4",
        "--out",
        "out",
        *QUIET,
    )
    assert code == 0, output
    out = folder / "out"
    s = _summary(out)
    assert s["importance"][0]["figure"] == "overview/prices__tree-shap.png"
    assert s["dataset"]["importance"] == {"prices": "overview/prices__tree-shap.png"}
    for name in TREE_COHORTS:
        png = f"cohorts/prices__tree-shap__{name}.png"
        assert _cohort(s, "prices", name)["figure"] == png
    for rel in ("overview/prices__tree-shap.png", "cohorts/prices__tree-shap__top.png"):
        with Image.open(out / rel) as img:
            img.load()
            assert img.format == "PNG" and min(img.size) > 100, rel
            assert np.asarray(img.convert("L")).std() > 1.0, rel  # not a blank canvas
    html = (out / "report.html").read_text()
    start = html.index("<h2 id='side-by-side'>")
    end = html.find("<h2", start + 1)
    section = html[start : end if end > 0 else len(html)]
    assert "tiles" in section and "prices" in section
    assert "road_share" in section and "water_share" in section
    for c in [c for c in s["cohorts"] if c["model"] == "tiles"]:
        assert c["title"] in section


# -- rerun, an edited cell, a bad cell ----------------------------------------------------------
def _stream(out: Path, name: str) -> list[dict[str, Any]]:
    path = out / "dataset" / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _last(records: list[dict[str, Any]], key: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest streamed record per (row, model)."""
    return {(r[key], r["model"]): r for r in records}


def test_a_rerun_redoes_only_the_row_whose_feature_cell_changed(
    tiles: Tiles, tiles_model: TilesModel, trees: TreeModels, tmp_path: Path
) -> None:
    """head.csv (40 rows) joined with features.csv, cohorts of 4. The same command twice gives
    the same summary.json. Then one row's cell is edited: the rerun redoes that row's tree
    prediction and record alone (its stamp names the new cell), every other streamed record
    stays as it was, and the row's values are TreeExplainer's on its new cells. Then a cell
    reads 'abc': that row fails alone (exit 1, errors.jsonl names the column), the image model
    still predicts and explains it, every other row is predicted by both models."""
    folder = tree_project(tmp_path, tiles, trees)
    ids = tiles.ids[:40]
    args = (
        *_both(tiles.folder / "head.csv", tiles_model),
        "--target",
        "value",
        "--cohort-size",
        "4",
        "--out",
        "out",
        *FAST,
    )
    out = folder / "out"
    assert _run(folder, *args)[0] == 0
    first = _summary(out)
    code, output = _run(folder, *args)
    assert code == 0, output
    assert _summary(out) == first
    preds0, records0 = _stream(out, "predictions.jsonl"), _stream(out, "records.jsonl")

    # one cell edited: a member of the top cohort (by true price: it stays a member)
    edited = _cohort(first, "prices", "top")["sample_ids"][0]
    set_cell(folder / "features.csv", edited, "water_share", "0.0")
    code, output = _run(folder, *args)
    assert code == 0, output
    preds1, records1 = _stream(out, "predictions.jsonl"), _stream(out, "records.jsonl")
    new_preds = preds1[len(preds0) :]
    assert [(p["id"], p["model"]) for p in new_preds] == [(edited, "prices")]
    assert new_preds[0]["stamp"][1][0] == "0.0"  # the cells as written
    before, after = _last(records0, "sample"), _last(records1, "sample")
    assert (edited, "prices") in before
    assert after[(edited, "prices")]["stamp"] != before[(edited, "prices")]["stamp"]
    for key, rec in before.items():
        if key != (edited, "prices"):
            assert after[key] == rec, key
    # no earlier record redone: the new lines are the edited row and new cohort members only
    for r in records1[len(records0) :]:
        assert (r["sample"], r["model"]) == (edited, "prices") or (
            r["sample"],
            r["model"],
        ) not in before, r["sample"]
    x = read_features(folder / "features.csv")[edited]
    assert x[0] == 0.0
    want = lgb_direct(folder / "prices.txt", x[None, :])
    second = _summary(out)
    (r,) = [r for r in second["results"] if (r["sample"], r["model"]) == (edited, "prices")]
    scores = [f["score"] for f in r["attributions"][0]["features"]]
    np.testing.assert_allclose(scores, want.values[0], rtol=1e-6, atol=1e-9)
    assert r["prediction"]["value"] == pytest.approx(float(want.predict[0]), abs=1e-12)
    old = {(r["sample"], r["model"]): r for r in first["results"]}
    for r in second["results"]:
        key = (r["sample"], r["model"])
        if key != (edited, "prices") and key in old:
            assert r == old[key], key

    # a cell that is not a number: its row fails alone, for the tree model
    bad = _cohort(first, "prices", "bottom")["sample_ids"][0]
    set_cell(folder / "features.csv", bad, "road_share", "abc")
    code, output = _run(folder, *args)
    assert code == 1, output
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == [bad]
    assert "road_share" in errors[0]["reason"] and "'abc'" in errors[0]["reason"]
    assert "prices" in errors[0]["reason"]
    third = _summary(out)
    assert third["dataset"]["failed"] == 1
    preds = _predictions(out)
    assert {i for i, m in preds if m == "tiles"} == set(ids)
    assert {i for i, m in preds if m == "prices"} == set(ids) - {bad}
    assert (bad, "tiles") in {(r["sample"], r["model"]) for r in third["results"]}
    assert bad not in _cohort(third, "prices", "bottom")["sample_ids"]
    assert bad in _cohort(third, "tiles", "bottom")["sample_ids"]


# -- -value -------------------------------------------------------------------------------------
def test_minus_value_negates_the_values_and_turns_the_words_round(
    tiles: Tiles, tiles_model: TilesModel, trees: TreeModels, tmp_path: Path
) -> None:
    """--target -value (what lowers the price): every tree value, base value and importance
    figure is TreeExplainer's negated, and the cohorts' words speak of the price itself as the
    image cohorts' do: on the 4 cheapest of head.csv's 40 rows, roads lower the price (the
    image model: "road lowers price"; the tree model: "road_share lowers ... most", with the
    mean SHAP of the price, not of its negation). head.csv, because on all.csv's 8 cheapest
    rows vegetation_share (-0.0112) edges out road_share (-0.0105) as what lowers most."""
    folder = tree_project(tmp_path, tiles, trees)
    code, output = _run(
        folder,
        *_both(tiles.folder / "head.csv", tiles_model),
        "--target=-value",
        "--cohort-size",
        "4",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    s = _summary(folder / "out")
    ids = tiles.ids[:40]
    features = read_features(folder / "features.csv")
    x = np.stack([features[i] for i in ids])
    direct = lgb_direct(folder / "prices.txt", x)
    row = {i: k for k, i in enumerate(ids)}
    results = [r for r in s["results"] if r["model"] == "prices"]
    assert results
    for r in results:
        a = r["attributions"][0]
        k = row[r["sample"]]
        assert r["explained"] == "-price"
        np.testing.assert_allclose(
            [f["score"] for f in a["features"]], -direct.values[k], rtol=1e-6, atol=1e-9
        )
        assert a["expected_value"] == pytest.approx(-direct.expected_value, abs=1e-9)
        total = a["expected_value"] + sum(f["score"] for f in a["features"])
        assert total == pytest.approx(-float(direct.predict[k]), abs=1e-4)
    _assert_features(s["importance"][0]["features"], -direct.values, "importance")

    truth = {i: tiles.truth[i] for i in ids}
    bottom = _cohort(s, "prices", "bottom")
    assert bottom["sample_ids"] == _extreme(truth, 4, highest=False)
    shap_of_price = direct.values[[row[i] for i in bottom["sample_ids"]]].mean(axis=0)
    mean = dict(zip(FEATURES, shap_of_price, strict=True))
    lowest = min(mean, key=mean.__getitem__)
    assert lowest == "road_share", f"roads do not lead the cheapest rows here: {mean}"
    assert bottom["description"] == _words(bottom["title"], mean)
    assert "road_share lowers" in bottom["description"]
    assert "road_share raises" not in bottom["description"]
    image = _cohort(s, "tiles", "bottom")
    assert "road lowers price" in image["description"] and "road raises" not in image["description"]


# -- interventional -----------------------------------------------------------------------------
def test_n_background_runs_interventional_on_the_rows_the_seed_draws(
    tiles: Tiles, trees: TreeModels, tmp_path: Path
) -> None:
    """--n-background 20: the tree model alone (no --method: tree-shap), interventional on
    20 background rows. The rows are those jobs/trees.background_rows draws:
    sorted(random.Random(seed).sample(range(readable rows), 20)), recomputed here with the same
    random.Random logic over the manifest's 120 rows (seed 0), and the state file lists the
    same ids. Every value equals TreeExplainer(booster, data=those rows,
    feature_perturbation="interventional"), and adds up to the booster's predict."""
    folder = tree_project(tmp_path, tiles, trees)
    code, output = _run(
        folder,
        str(tiles.folder / "all.csv"),
        "features.csv",
        "-m",
        "prices.toml",
        "--target-col",
        "price",
        "--target",
        "value",
        "--n-background",
        "20",
        "--cohort-size",
        "4",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    s = _summary(folder / "out")
    features = read_features(folder / "features.csv")
    x = np.stack([features[i] for i in tiles.ids])  # all.csv order: the run's row order
    pick = sorted(random.Random(0).sample(range(len(tiles.ids)), 20))
    state = json.loads((folder / "out" / "dataset" / "state.json").read_text())
    (drawn,) = state["records"]["trees"]["background"].values()
    # each entry is the row's id (or [id, its cells])
    assert [b if isinstance(b, str) else b[0] for b in drawn] == [tiles.ids[k] for k in pick]
    direct = lgb_direct(folder / "prices.txt", x, background=x[pick])
    plain = lgb_direct(folder / "prices.txt", x)
    row = {i: k for k, i in enumerate(tiles.ids)}
    results = [r for r in s["results"] if r["model"] == "prices"]
    assert len(results) == len({i for c in s["cohorts"] for i in c["sample_ids"]})
    for r in results:
        a = r["attributions"][0]
        k = row[r["sample"]]
        assert a["method"] == "tree-shap"
        assert (a["algorithm"], a["background"]) == ("interventional", 20)
        scores = np.array([f["score"] for f in a["features"]])
        np.testing.assert_allclose(scores, direct.values[k], rtol=1e-6, atol=1e-9)
        assert a["expected_value"] == pytest.approx(direct.expected_value, abs=1e-9)
        assert a["expected_value"] + scores.sum() == pytest.approx(direct.predict[k], abs=1e-4)
    # interventional differs from path-dependent here: the test would see a wrong algorithm
    assert np.abs(direct.values - plain.values).max() > 1e-4
    (entry,) = s["importance"]
    assert (entry["algorithm"], entry["rows"]) == ("interventional", 120)
    _assert_features(entry["features"], direct.values, "importance")


def test_a_rerun_after_a_background_rows_cell_changed_explains_against_the_new_background(
    tiles: Tiles, trees: TreeModels, tmp_path: Path
) -> None:
    """--n-background 20, then one cell of a background row (not a cohort member) edited and
    the run resumed: every explained row's values must be TreeExplainer's against the
    background as it now is (what a fresh run gives). At 80c39ca the resume key held the
    background's ids only, so the other rows kept values against the old background (t005's
    water_share: 0.00150 kept, 0.00033 due)."""
    folder = tree_project(tmp_path, tiles, trees)
    args = (
        str(tiles.folder / "all.csv"),
        "features.csv",
        "-m",
        "prices.toml",
        "--target-col",
        "price",
        "--target",
        "value",
        "--n-background",
        "20",
        "--cohort-size",
        "4",
        "--out",
        "out",
        *FAST,
    )
    assert _run(folder, *args)[0] == 0
    members = {i for c in _summary(folder / "out")["cohorts"] for i in c["sample_ids"]}
    pick = sorted(random.Random(0).sample(range(len(tiles.ids)), 20))
    edited = next(tiles.ids[k] for k in pick if tiles.ids[k] not in members)
    # the background row's water share becomes the table's largest: the background moves
    set_cell(folder / "features.csv", edited, "water_share", "0.5")
    assert _run(folder, *args)[0] == 0
    features = read_features(folder / "features.csv")
    x = np.stack([features[i] for i in tiles.ids])
    direct = lgb_direct(folder / "prices.txt", x, background=x[pick])
    row = {i: k for k, i in enumerate(tiles.ids)}
    resumed = _summary(folder / "out")
    results = [r for r in resumed["results"] if r["model"] == "prices"]
    assert {r["sample"] for r in results} == {
        i for c in resumed["cohorts"] for i in c["sample_ids"]
    }
    for r in results:
        got = [f["score"] for f in r["attributions"][0]["features"]]
        assert got == pytest.approx(list(direct.values[row[r["sample"]]]), abs=1e-9), r["sample"]


# -- a tree classifier --------------------------------------------------------------------------
def test_a_tree_classifier_alone_explains_each_rows_predicted_class(
    tiles: Tiles, trees: TreeModels, tmp_path: Path
) -> None:
    """The XGBoost classifier alone, no --method (tree-shap by default): cohorts misclassified
    and class:<label> recomputed from the booster's margin (P = sigmoid) (most confident first,
    ties by id); each row explains its predicted class: TreeExplainer's values of the one
    margin for ``pricey`` rows, negated for ``cheap`` rows, adding up to the margin (or its
    negation); accuracy and confusion recomputed."""
    folder = tree_project(tmp_path, tiles, trees)
    code, output = _run(
        folder,
        str(tiles.folder / "all.csv"),
        "features.csv",
        "-m",
        "clf.toml",
        "--target-col",
        "band",
        "--cohort-size",
        str(COHORT_SIZE),
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    s = _summary(folder / "out")
    features = read_features(folder / "features.csv")
    ids = list(tiles.ids)
    x = np.stack([features[i] for i in ids])
    direct = xgb_direct(folder / "clf.json", x)
    truth = pricey(tiles, trees)
    p = direct.predict
    label = {i: LABELS[int(p[k] > 0.5)] for k, i in enumerate(ids)}
    score = {i: float(p[k]) if p[k] > 0.5 else 1.0 - float(p[k]) for k, i in enumerate(ids)}
    row = {i: k for k, i in enumerate(ids)}

    def confident(members: list[str]) -> list[str]:
        return sorted(members, key=lambda i: (-score[i], i))[:COHORT_SIZE]

    wrong = [i for i in ids if label[i] != truth[i]]
    assert wrong, "no row misclassified: the cohort is not tested"
    expected = {"misclassified": confident(wrong)}
    for c in LABELS:
        expected[f"class:{c}"] = confident([i for i in ids if label[i] == c])
    assert {c["name"]: c["sample_ids"] for c in s["cohorts"]} == expected
    assert {c["method"] for c in s["cohorts"]} == {"tree-shap"}
    # the values explain each row's class: the words say so, not the label column's name
    for c in s["cohorts"]:
        assert "its class's score" in c["description"] or "no feature moves" in c["description"]
    m = s["metrics"]["clf"]
    assert m["rows"] == 120
    assert m["accuracy"] == pytest.approx(sum(truth[i] == label[i] for i in ids) / 120, abs=1e-12)
    matrix = [[sum(truth[i] == t and label[i] == q for i in ids) for q in LABELS] for t in LABELS]
    assert m["confusion"] == {"labels": list(LABELS), "matrix": matrix}

    results = s["results"]
    assert {r["sample"] for r in results} == {i for ids_ in expected.values() for i in ids_}
    assert {label[r["sample"]] for r in results} == set(LABELS)  # both signs are checked
    for r in results:
        i = r["sample"]
        k = row[i]
        sign = 1.0 if label[i] == "pricey" else -1.0
        assert r["prediction"]["label"] == label[i] == r["explained"]
        assert r["prediction"]["score"] == pytest.approx(score[i], abs=1e-6)  # float32 or float64
        a = r["attributions"][0]
        scores = np.array([f["score"] for f in a["features"]])
        np.testing.assert_allclose(scores, sign * direct.values[k], rtol=1e-6, atol=1e-6)
        assert a["expected_value"] == pytest.approx(sign * direct.expected_value, abs=1e-6)
        assert a["expected_value"] + scores.sum() == pytest.approx(sign * direct.raw[k], abs=1e-4)
    for c in s["cohorts"]:
        _assert_features(
            c["features"], _signed(direct.values, c["sample_ids"], row, label), c["name"]
        )
    preds = _predictions(folder / "out")
    assert {(i, "clf") for i in ids} == set(preds)
    assert all(preds[(i, "clf")]["prediction"] == label[i] for i in ids)


def _signed(
    values: np.ndarray, ids: list[str], row: dict[str, int], label: dict[str, str]
) -> np.ndarray:
    """The rows' values of the margin, negated where the predicted class is ``cheap``."""
    return np.stack([values[row[i]] * (1.0 if label[i] == "pricey" else -1.0) for i in ids])


# -- refusals -----------------------------------------------------------------------------------
REFUSALS = {
    "a torch method on a tree model alone": (
        ("-m", "prices.toml", "--method", "ig"),
        "ig needs a torch model's gradients or layers; explain it with tree-shap "
        "(--method tree-shap)",
    ),
    "tree-shap on an image model alone": (
        ("-m", "<tiles>", "--method", "tree-shap"),
        "tree-shap explains tree models, and model tiles is a torch model: add a method for "
        "it (--method gradcam,tree-shap",
    ),
    "a checkpoint in a tree card": (
        ("-m", "checkpointed.toml"),
        "checkpointed.toml: checkpoint is for torch models; a tree model is its file",
    ),
    "columns that are not the model's": (
        ("-m", "renamed.toml"),
        "the card lacks noise and adds rooms; fix the card's columns",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_what_cannot_apply_is_refused_before_any_work_with_the_fix(
    case: str, tiles: Tiles, tiles_model: TilesModel, trees: TreeModels, tmp_path: Path
) -> None:
    """Exit 2 with one line that names the fix, and no output folder."""
    folder = tree_project(tmp_path, tiles, trees)
    card = (folder / "prices.toml").read_text()
    (folder / "checkpointed.toml").write_text(card + 'checkpoint = "x.pt"\n')
    (folder / "renamed.toml").write_text(card.replace('"noise"', '"rooms"'))
    model_args, fix = REFUSALS[case]
    model_args = tuple(str(tiles_model.card) if a == "<tiles>" else a for a in model_args)
    code, output = _run(
        folder,
        str(tiles.folder / "all.csv"),
        "features.csv",
        *model_args,
        "--target-col",
        "price",
        "--target",
        "value",
        "--out",
        "out",
        *FAST,
    )
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1, output
    assert fix in output, output
    assert not (folder / "out").exists()


def test_check_refuses_a_tree_model_and_says_what_to_run(
    tiles: Tiles, trees: TreeModels, tmp_path: Path
) -> None:
    folder = tree_project(tmp_path, tiles, trees)
    code, output = invoke(
        folder,
        "check",
        str(tiles.folder / "tiles" / "t000.png"),
        "-m",
        "prices.toml",
        "--out",
        "out",
        "--quiet",
    )
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1, output
    assert "model prices is a lightgbm tree model: seewhy check judges image maps" in output
    assert "explain it with seewhy explain --data or seewhy dataset" in output
