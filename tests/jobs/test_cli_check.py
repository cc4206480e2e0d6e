"""`seewhy check` from the shell, as a user runs it: masks, boxes, thresholds, two models, the
summary.json read back, bad input as one line, a bad mask failing its sample alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import invoke
from PIL import Image

from seewhy.data.summary import validate_summary

FAST = ("--steps", "5", "--quiet")


def _mask(path: Path, box: tuple[int, int, int, int], size: tuple[int, int] = (48, 40)) -> Path:
    arr = np.zeros((size[1], size[0]), dtype=np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def masked(project: Path) -> Path:
    """The project's two images (bright bars at x 10..25 / 20..35, y 10..20), each with a
    mask of its bar, and a manifest with the masks and the same regions as boxes."""
    _mask(project / "m0.png", (10, 10, 25, 20))
    _mask(project / "m1.png", (20, 10, 35, 20))
    with (project / "cases.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path", "mask", "x0", "y0", "x1", "y1"])
        w.writerow(["a", "img0.png", "m0.png", 10, 10, 25, 20])
        w.writerow(["b", "img1.png", "m1.png", 20, 10, 35, 20])
    return project


def _summary(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert validate_summary(summary) == []
    return summary


def test_check_two_images_with_masks(masked: Path) -> None:
    code, output = invoke(
        masked,
        "check",
        "img0.png",
        "img1.png",
        "--mask",
        "m0.png",
        "--mask",
        "m1.png",
        "-m",
        "small.toml",
        "--method",
        "gradcam,saliency",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    s = _summary(masked / "out")
    checks = {c["method"]: c for c in s["checks"]}
    assert set(checks) == {"gradcam", "saliency"}
    for c in checks.values():
        assert c["model"] == "small" and c["samples"] == 2
        assert c["verdict"] in ("pass", "warn", "fail") and c["reasons"]
        # the masks, squashed from 48x40 to 32x32: 15x10 px -> 10x8 of 1024 (nearest)
        assert c["mask_area"] == pytest.approx(80 / 1024, abs=12 / 1024)
        assert c["mask_samples"] == 2
        assert 0.0 <= c["energy_in_mask"] <= 1.0
        assert c["pointing_game"] in (0.0, 0.5, 1.0)
        assert c["border_area"] == pytest.approx(1 - (26 * 26) / (32 * 32))
        assert len(c["curves"]["deletion"]) == 6
        assert (masked / "out" / c["figure"]).is_file()
        assert set(c["method_agreement"]) == {"gradcam", "saliency"} - {c["method"]}
    html = (masked / "out" / "report.html").read_text()
    assert html.index("Can these maps be trusted?") < html.index("<h2 id='models'>")


def test_boxes_from_a_manifest_equal_the_masks(masked: Path) -> None:
    """Boxes x0,y0,x1,y1 (found by their names) mark the same pixels as the mask files."""
    args = ("-m", "small.toml", "--randomization", "none", *FAST)
    code, out1 = invoke(masked, "check", "cases.csv", "--mask-col", "mask", "--out", "a", *args)
    assert code == 0, out1
    code, out2 = invoke(masked, "check", "cases.csv", "--out", "b", *args)
    assert code == 0, out2
    a, b = (_summary(masked / d)["checks"][0] for d in ("a", "b"))
    for key in ("mask_area", "energy_in_mask", "pointing_game"):
        assert a[key] == pytest.approx(b[key]), key
    assert "randomization_similarity" not in a


def test_two_models_agree_or_disagree_in_numbers(masked: Path) -> None:
    code, output = invoke(
        masked,
        "check",
        "img0.png",
        "img1.png",
        "-m",
        "small.toml",
        "-m",
        "wide.toml",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    s = _summary(masked / "out")
    by_model = {c["model"]: c for c in s["checks"]}
    assert set(by_model) == {"small", "wide"}
    same = [a for a in s["agreement"] if a["same_prediction"]]
    if same:  # the mean of the run's agreement[] where the two predict the same class
        mean = sum(a["rank_correlation"] for a in same) / len(same)
        assert by_model["small"]["model_agreement"]["wide"] == pytest.approx(mean)


def test_thresholds_file_changes_the_verdict(masked: Path) -> None:
    (masked / "strict.toml").write_text("[thresholds]\nfaithfulness_margin = 5.0\n")
    code, output = invoke(
        masked, "check", "img0.png", "-m", "small.toml", "--thresholds", "strict.toml",
        "--randomization", "none", "--out", "out", *FAST,
    )  # fmt: skip
    assert code == 0, output
    c = _summary(masked / "out")["checks"][0]
    assert c["verdict"] in ("warn", "fail")
    assert "faithfulness" in c["flags"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--thresholds", "nope.toml"), "--thresholds nope.toml: no such file"),
        (("--thresholds", "typo.toml"), "unknown threshold 'randomisation_fail'"),
        (("--mask", "m0.png", "--mask", "m1.png"), "--mask: 2 masks for 1 images"),
        (("--steps", "1"), "--steps must be >= 2, got 1: with one step every pixel order"),
        (("--randomization", "all"), "--randomization all: use blocks, layers, none"),
        (("--precision", "bf16"), "--precision bf16: use float32 (exact) or auto"),
    ],
)
def test_bad_flags_are_one_line(masked: Path, args: tuple[str, ...], words: str) -> None:
    (masked / "typo.toml").write_text("randomisation_fail = 0.4\n")
    code, output = invoke(masked, "check", "img0.png", "-m", "small.toml", *args, "--quiet")
    assert code == 2
    assert words in output
    assert len(output.strip().splitlines()) == 1
    assert not (masked / "seewhy-out" / "summary.json").exists()


def test_a_bad_mask_fails_its_sample_alone(masked: Path) -> None:
    _mask(masked / "small_mask.png", (0, 0, 4, 4), size=(10, 10))  # not the image's size
    code, output = invoke(
        masked,
        "check",
        "img0.png",
        "img1.png",
        "--mask",
        "small_mask.png",
        "--mask",
        "m1.png",
        "-m",
        "small.toml",
        "--out",
        "out",
        *FAST,
    )
    assert code == 1, output
    errors = [json.loads(x) for x in (masked / "out" / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["img0"]
    assert "small_mask.png" in errors[0]["reason"] and "10x10" in errors[0]["reason"]
    c = _summary(masked / "out")["checks"][0]
    assert c["samples"] == 2 and c["mask_samples"] == 1  # checked, without its mask


def test_rerun_replaces_the_checks(masked: Path) -> None:
    args = ("check", "img0.png", "-m", "small.toml", "--out", "out", *FAST)
    assert invoke(masked, *args, "--method", "gradcam")[0] == 0
    assert invoke(masked, *args, "--method", "gradcam")[0] == 0
    s = _summary(masked / "out")
    assert [(c["model"], c["method"]) for c in s["checks"]] == [("small", "gradcam")]


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_runs_the_curves_in_bfloat16_where_native(
    masked: Path, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--precision auto: the deletion/insertion forwards in bfloat16 where the hardware computes
    it natively (patched either way here: the test machine may or may not), AUCs within 0.01 of
    float32's; summary.json says which ran. float32 (the default) is float32 everywhere."""
    import seewhy.core.engine as engine

    monkeypatch.setattr(engine, "bf16_native", lambda device: native)
    args = ("img0.png", "img1.png", "-m", "small.toml", "--randomization", "none", *FAST)
    code, output = invoke(masked, "check", *args, "--out", "exact")
    assert code == 0, output
    code, output = invoke(masked, "check", *args, "--precision", "auto", "--out", "fast")
    assert code == 0, output
    exact, fast = (_summary(masked / d)["checks"][0] for d in ("exact", "fast"))
    assert exact["faithfulness_dtype"] == "float32"
    assert fast["faithfulness_dtype"] == ("bfloat16" if native else "float32")
    for key in ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"):
        assert fast[key] == pytest.approx(exact[key], abs=0.01), key
        if not native:
            assert fast[key] == exact[key], key
