"""The verdict rules: figures in, verdict and reasons out, thresholds from TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from seewhy.checks.verdict import Thresholds, judge, judge_flags
from seewhy.core.errors import UsageError

GOOD = {
    "randomization_similarity": 0.12,
    "collapse_layer": "head",
    "deletion_auc": 0.20,
    "deletion_auc_random": 0.50,
    "insertion_auc": 0.80,
    "insertion_auc_random": 0.45,
    "faithfulness_samples": 6,
    "energy_in_mask": 0.40,
    "mask_area": 0.05,
    "pointing_game": 1.0,
    "border_share": 0.10,
    "border_area": 0.36,
    "corner_share": 0.0,
    "flat_share": 0.0,
    "input_independence": 0.2,
}


def test_good_figures_pass_and_say_what_passed() -> None:
    verdict, reasons = judge(GOOD)
    assert verdict == "pass"
    assert (
        reasons[0]
        == "randomization: rank correlation 0.12 with a randomized model, collapsing at 'head'"
    )
    assert reasons[1].startswith(
        "faithfulness: the map's order beats a random one by 0.30 in deletion AUC and 0.35 "
        "in insertion AUC on the 6 samples whose blurred copy changes the score (medians; "
        "margin 0.02) (over all samples: deletion AUC 0.20 vs 0.50"
    )
    assert reasons[2] == "localization: energy in mask 0.40 for a mask of 0.05 of the image"


@pytest.mark.parametrize(
    ("change", "verdict", "flag", "start"),
    [
        ({"randomization_similarity": 0.91}, "fail", "randomization",
         "fails randomization: rank correlation 0.91 with a randomized model, above 0.50"),
        ({"randomization_similarity": 0.4}, "warn", "randomization",
         "weak randomization: rank correlation 0.40 with a randomized model, above 0.30"),
        ({"deletion_auc": 0.49, "insertion_auc": 0.46}, "fail", "faithfulness",
         "fails faithfulness: no better than a random order (the map's order beats a "
         "random one by 0.01"),
        ({"insertion_auc": 0.46}, "warn", "faithfulness",
         "weak faithfulness: insertion no better than a random order"),
        ({"faithfulness_samples": 0}, "warn", "faithfulness",
         "faithfulness not shown: on every sample the blurred copy scores within 0.10"),
        ({"energy_in_mask": 0.05}, "fail", "localization",
         "fails localization: energy in mask 0.05 for a mask of 0.05 of the image"),
        ({"energy_in_mask": 0.07}, "warn", "localization",
         "weak localization: energy in mask 0.07 for a mask of 0.05 of the image, below 1.50x"),
        ({"pointing_game": 0.25}, "warn", "pointing",
         "pointing game 0.25: the peak lies outside the mask on 75% of the samples"),
        ({"border_share": 0.6}, "warn", "border",
         "attention on the border: 0.60 of the attribution lies in the outer 10% frame"),
        ({"corner_share": 0.5}, "warn", "corner", "peak in a corner on 50% of the samples"),
        ({"flat_share": 0.25}, "warn", "flat", "25% of the maps are flat or empty"),
        ({"flat_share": 1.0}, "fail", "flat", "every map is flat or empty"),
        ({"input_independence": 0.97}, "warn", "input_independent",
         "the same map for every sample: rank correlation 0.97"),
        ({"model_agreement": {"effnet": 0.05}}, "warn", "model_disagreement",
         "disagrees with model effnet that predicts the same class: rank correlation 0.05"),
        ({"method_agreement": {"ig": -0.3}}, "warn", "method_disagreement",
         "disagrees with method ig: rank correlation -0.30, below 0.00"),
    ],
)  # fmt: skip
def test_each_rule(change: dict, verdict: str, flag: str, start: str) -> None:
    got, reasons, flags = judge_flags({**GOOD, **change}, Thresholds())
    assert got == verdict
    assert flags == [flag]
    assert reasons[0].startswith(start), reasons


def test_fail_reasons_come_before_warnings() -> None:
    verdict, reasons = judge({**GOOD, "randomization_similarity": 0.9, "corner_share": 1.0})
    assert verdict == "fail"
    assert reasons[0].startswith("fails randomization") and reasons[1].startswith(
        "peak in a corner"
    )


def test_missing_and_nan_figures_are_skipped() -> None:
    verdict, reasons = judge({"randomization_similarity": float("nan"), "mask_area": 0.1})
    assert verdict == "warn"
    assert reasons == ["no check could be evaluated on these figures (nothing measured)"]
    assert judge({"randomization_similarity": 0.1})[0] == "pass"


def test_thresholds_override_from_toml(tmp_path: Path) -> None:
    flat = tmp_path / "flat.toml"
    flat.write_text("randomization_fail = 0.05\nrandomization_warn = 0.01\n")
    nested = tmp_path / "nested.toml"
    nested.write_text("[thresholds]\nborder_ratio_warn = 10\n")
    t = Thresholds.load(flat)
    assert (t.randomization_fail, t.randomization_warn) == (0.05, 0.01)
    assert t.faithfulness_margin == Thresholds().faithfulness_margin
    assert judge(GOOD, t)[0] == "fail"
    assert Thresholds.load(nested).border_ratio_warn == 10.0
    assert Thresholds.of({"pointing_warn": 1}).pointing_warn == 1.0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("randomisation_fail = 0.4\n",
         "unknown threshold 'randomisation_fail'; did you mean 'randomization_fail'"),
        ("pointing_warn = 'high'\n", "pointing_warn = 'high' must be a number"),
        ("pointing_warn = true\n", "pointing_warn = True must be a number"),
        ("pointing_warn = nan\n", "must be a finite number"),
        ("thresholds = 3\n", "[thresholds] must be a table of numbers"),
        ("= broken", "is not a readable TOML file"),
    ],
)  # fmt: skip
def test_bad_threshold_files_say_what_to_do(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        Thresholds.load(path)
    assert words in str(err.value)
    assert str(path) in str(err.value)


def test_contradictory_thresholds_are_refused() -> None:
    with pytest.raises(UsageError, match=r"randomization_warn = 0\.9 is above randomization_fail"):
        Thresholds.of({"randomization_warn": 0.9, "randomization_fail": 0.1})
    with pytest.raises(UsageError, match=r"unknown threshold 'extra'\. Known: randomization_fail"):
        Thresholds.of({"extra": 1})
