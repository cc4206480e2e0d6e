"""Cohorts, metrics and words of a dataset run, on hand-made predictions."""

from __future__ import annotations

import math

import pytest

from seewhy.jobs.cohorts import Row, decile_count, describe, mean_shares, metrics, pick_cohorts


def regression_rows() -> list[Row]:
    # truths 0..19, predictions truth + error; ids shuffled so ties are broken by id
    errors = [0.5, -3.0, 0.0, 2.0, -0.5, 1.0, 4.0, 0.0, -1.0, 0.25] * 2
    return [Row(id=f"r{k:02d}", value=float(k) + errors[k], truth=float(k)) for k in range(20)]


def by_name(cohorts):
    return {c.name: c.ids for c in cohorts}


def test_regression_cohorts_are_deciles_of_the_truth_and_extreme_errors() -> None:
    got = by_name(pick_cohorts(regression_rows(), "regression", size=32, what="price"))
    assert decile_count(20) == 2
    assert got["top"] == ["r19", "r18"]
    assert got["bottom"] == ["r00", "r01"]
    # |errors|: 4.0 (r06, r16), 3.0 (r01, r11), 2.0 (r03, r13) ...; ties by id
    assert got["highest_error"][:6] == ["r06", "r16", "r01", "r11", "r03", "r13"]
    # the zeros first (r02, r07, r12, r17), then the 0.25s (r09, r19)
    assert got["lowest_error"][:6] == ["r02", "r07", "r12", "r17", "r09", "r19"]


def test_cohort_size_caps_every_cohort() -> None:
    got = by_name(pick_cohorts(regression_rows(), "regression", size=1))
    assert {k: len(v) for k, v in got.items()} == {
        "top": 1,
        "bottom": 1,
        "highest_error": 1,
        "lowest_error": 1,
    }


def test_without_truth_the_deciles_are_of_the_prediction_and_no_error_cohorts() -> None:
    rows = [Row(id=f"r{k}", value=float(-k)) for k in range(10)]
    cohorts = pick_cohorts(rows, "regression", size=5, what="price")
    assert by_name(cohorts) == {"top": ["r0"], "bottom": ["r9"]}
    assert cohorts[0].title == "top decile of predicted price"


def test_ties_in_value_are_broken_by_id() -> None:
    rows = [Row(id=i, value=1.0, truth=1.0) for i in ("b", "c", "a")]
    got = by_name(pick_cohorts(rows, "regression", size=32))
    assert got["top"] == ["a"] and got["bottom"] == ["a"]


def test_classification_cohorts() -> None:
    rows = [
        Row(id="a", label="cat", score=0.9, truth="cat"),
        Row(id="b", label="dog", score=0.8, truth="cat"),
        Row(id="c", label="dog", score=0.95, truth="cat"),
        Row(id="d", label="cat", score=0.6, truth="dog"),
        Row(id="e", label="dog", score=0.7, truth="dog"),
    ]
    got = by_name(pick_cohorts(rows, "classification", size=32))
    assert got["misclassified"] == ["c", "b", "d"]  # the most confident mistakes first
    assert got["class:cat"] == ["a", "d"]
    assert got["class:dog"] == ["c", "b", "e"]


def test_regression_metrics_equal_the_formulas() -> None:
    rows = regression_rows()
    m = metrics(rows, "regression")
    truth = [r.truth for r in rows]
    pred = [r.value for r in rows]
    mean = sum(truth) / 20
    ss_res = sum((p - t) ** 2 for p, t in zip(pred, truth, strict=True))
    ss_tot = sum((t - mean) ** 2 for t in truth)
    assert m["rows"] == 20
    assert m["r2"] == pytest.approx(1 - ss_res / ss_tot)
    assert m["mae"] == pytest.approx(sum(abs(p - t) for p, t in zip(pred, truth, strict=True)) / 20)
    assert m["rmse"] == pytest.approx(math.sqrt(ss_res / 20))


def test_classification_metrics_confusion() -> None:
    rows = [
        Row(id="a", label="cat", truth="cat"),
        Row(id="b", label="dog", truth="cat"),
        Row(id="c", label="dog", truth="dog"),
        Row(id="d", label="dog", truth=None),  # no truth: not judged
    ]
    m = metrics(rows, "classification", labels=["cat", "dog"])
    assert m["rows"] == 3
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["confusion"] == {"labels": ["cat", "dog"], "matrix": [[1, 1], [0, 1]]}


def test_mean_shares_skip_rows_without_one() -> None:
    assert mean_shares([[0.2, 0.8], None, [0.4, 0.6]]) == pytest.approx([0.3, 0.7])
    assert mean_shares([None, None]) is None


def test_description_names_the_most_over_represented_class() -> None:
    line = describe(
        "top decile of true price",
        ["soil", "water", "road"],
        raises=[0.2, 0.6, 0.2],
        lowers=[0.1, 0.05, 0.85],
        area=[0.4, 0.23, 0.37],
        what="price",
    )
    assert line == (
        "top decile of true price: water raises price (0.60 of the raising attribution on 0.23 "
        "of the area); road lowers price (0.85 of the lowering attribution on 0.37 of the area)"
    )
    flat = describe("bottom", ["a", "b"], [0.5, 0.5], None, [0.5, 0.5], "price")
    assert flat == "bottom: no region takes more of the attribution than of the area"


def test_error_cohorts_hold_at_most_half_the_rows_each_and_never_share_one() -> None:
    """With the cohort size alone, a table of under 2 x size rows put its worst-predicted row
    among the lowest errors too (an outside review's defect)."""
    rows = [Row(id=f"r{k}", value=float(k), truth=float(k) + k * k / 10) for k in range(5)]
    got = by_name(pick_cohorts(rows, "regression", size=32))
    # |errors| 0, 0.1, 0.4, 0.9, 1.6 for r0..r4: two each (5 // 2)
    assert got["highest_error"] == ["r4", "r3"]
    assert got["lowest_error"] == ["r0", "r1"]
    one = by_name(pick_cohorts(rows[:1], "regression", size=32))
    assert one["highest_error"] == [] and one["lowest_error"] == []
