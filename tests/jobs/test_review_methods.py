"""Defects an outside review of the gradient and perturbation methods found in
``seewhy explain``; each test failed before its fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from cli_runner import invoke

EG = "expected-gradients(samples=4)"


def result(out: Path, sample: str) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    return next(r for r in summary["results"] if r["sample"] == sample)


def saved(out: Path, sample: str, method: str) -> np.ndarray:
    entry = next(a for a in result(out, sample)["attributions"] if a["method"] == method)
    return np.load(out / entry["map"])


def test_a_resumed_run_with_more_samples_equals_an_uninterrupted_one(project: Path) -> None:
    shutil.copy(project / "img0.png", project / "img2.png")
    base = ["-m", "small.toml", "--method", EG, "--quiet", "--no-report"]
    assert invoke(project, "explain", "img0.png", "img1.png", *base, "--out", "d")[0] == 0
    three = ["img0.png", "img1.png", "img2.png"]
    assert invoke(project, "explain", *three, *base, "--out", "d")[0] == 0
    assert invoke(project, "explain", *three, *base, "--out", "fresh")[0] == 0
    for sid in ("img0", "img1", "img2"):
        np.testing.assert_allclose(
            saved(project / "d", sid, "expected-gradients"),
            saved(project / "fresh", sid, "expected-gradients"),
            rtol=1e-5,
            atol=1e-9,
        )
    assert len(result(project / "d", "img0")["request"]["background"]) == 3


def test_a_rerun_with_another_seed_recomputes_the_random_methods(project: Path) -> None:
    base = ["explain", "img0.png", "-m", "small.toml", "--method", "rise(masks=8)", "--quiet"]
    assert invoke(project, *base, "--out", "d")[0] == 0
    first = saved(project / "d", "img0", "rise")
    assert invoke(project, *base, "--out", "d", "--seed", "5")[0] == 0
    assert invoke(project, *base, "--out", "fresh", "--seed", "5")[0] == 0
    again = saved(project / "d", "img0", "rise")
    np.testing.assert_allclose(again, saved(project / "fresh", "img0", "rise"), rtol=1e-6)
    assert float(np.abs(again - first).max()) > 0


def test_n_background_below_two_falls_back_and_says_so_negative_is_exit_2(project: Path) -> None:
    base = ["explain", "img0.png", "img1.png", "-m", "small.toml", "--method", EG, "--quiet"]
    assert invoke(project, *base, "--n-background", "0", "--out", "zero")[0] == 0
    (entry,) = result(project / "zero", "img0")["attributions"]
    assert any("zero baseline" in n for n in entry["notes"])
    code, output = invoke(project, *base, "--n-background", "-1", "--out", "neg")
    assert code == 2 and "--n-background must be >= 0" in output
    assert not (project / "neg").exists()


def test_one_image_tells_that_the_zero_baseline_was_used(project: Path) -> None:
    args = ["explain", "img0.png", "-m", "small.toml", "--method", f"{EG},gradcam", "--quiet"]
    assert invoke(project, *args, "--out", "one")[0] == 0
    notes = {a["method"]: a.get("notes") for a in result(project / "one", "img0")["attributions"]}
    assert notes["gradcam"] is None
    assert notes["expected-gradients"] and "zero baseline" in notes["expected-gradients"][0]
