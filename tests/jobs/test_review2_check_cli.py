"""A second outside review of ``seewhy check`` from the shell: one test per defect found. Each
failed on the code as reviewed and passes once the defect is fixed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import invoke

from seewhy.checks.flags import input_independence

FAST = ("--steps", "5", "--quiet", "--no-report")

REGRESSORS = """

def price_a(num_classes=1):
    torch.manual_seed(3)
    return Net(1, 8)


def price_b(num_classes=1):
    torch.manual_seed(4)
    return Net(1, 8)
"""


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _card(path: Path, name: str, arch: str, task: str, labels: str) -> Path:
    path.write_text(
        f'name = "{name}"\narch = "{arch}"\ntask = "{task}"\nlabels = [{labels}]\n'
        "[preprocess]\nsize = 32\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n"
    )
    return path


def test_two_regressors_get_a_model_agreement(project: Path) -> None:
    """SPEC 6: model_agreement {other model: mean rank correlation}; a regressor predicts no
    class, so `seewhy.check([reg_a, reg_b], ...)` compares the two on every sample (api.py:
    "None for a regressor: models are then compared on every sample"). `seewhy check -m
    a.toml -m b.toml --target value` on the same two regressors writes agreement[] entries
    (rank correlations about 0.0) but never a model_agreement: explain sets same_prediction
    False for every regression pair (no 'label' in the prediction), so the check skips them
    all, and two regressors whose maps are unrelated pass without a model_disagreement warning."""
    with (project / "models.py").open("a") as f:
        f.write(REGRESSORS)
    _card(project / "a.toml", "a", "models.py:price_a", "regression", '"price"')
    _card(project / "b.toml", "b", "models.py:price_b", "regression", '"price"')
    code, output = invoke(
        project,
        "check",
        "img0.png",
        "img1.png",
        "-m",
        "a.toml",
        "-m",
        "b.toml",
        "--method",
        "saliency",
        "--target",
        "value",
        "--randomization",
        "none",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    s = _summary(project / "out")
    pairs = [a for a in s["agreement"] if a["method"] == "saliency"]
    assert len(pairs) == 2
    mean = sum(a["rank_correlation"] for a in pairs) / len(pairs)
    by_model = {c["model"]: c for c in s["checks"]}
    for name, other in (("a", "b"), ("b", "a")):
        agreement = by_model[name].get("model_agreement") or {}
        assert agreement.get(other) == pytest.approx(mean, abs=1e-3), (name, agreement)


def test_a_box_with_a_blank_corner_fails_its_sample(project: Path) -> None:
    """jobs/check.py: "A sample whose mask or box cannot be read is checked without it and
    recorded in errors.jsonl (exit code 1)"; a non-numeric or empty box does exactly that. A
    box with one corner left blank (x0, y0, x1 given, y1 empty) cannot be read either, but it
    is silently dropped: exit 0, no errors.jsonl, mask_samples 1, and nothing tells the user
    that half their annotations were ignored. A row whose four cells are all blank has no box
    (that is fine, and not an error)."""
    with (project / "boxes.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path", "bx0", "by0", "bx1", "by1"])
        w.writerow(["a", "img0.png", 10, 10, 25, 20])
        w.writerow(["b", "img1.png", 20, 10, 35, ""])  # y1 missing
        w.writerow(["c", "img0.png", "", "", "", ""])  # no box at all
    code, output = invoke(
        project,
        "check",
        "boxes.csv",
        "-m",
        "small.toml",
        "--method",
        "saliency",
        "--box-cols",
        "bx0,by0,bx1,by1",
        "--randomization",
        "none",
        "--out",
        "out",
        *FAST,
    )
    assert code == 1, output
    errors_path = project / "out" / "errors.jsonl"
    assert errors_path.is_file(), "the half-filled box of sample b was silently ignored"
    errors = [json.loads(x) for x in errors_path.read_text().splitlines()]
    assert [e["id"] for e in errors] == ["b"]
    assert "by1" in errors[0]["reason"] or "box" in errors[0]["reason"]
    c = _summary(project / "out")["checks"][0]
    assert c["samples"] == 3 and c["mask_samples"] == 1


def test_explain_with_other_settings_leaves_no_stale_check(project: Path) -> None:
    """SPEC 7: checks[] holds each model x method's figures and verdict, and the report shows
    them beside the saved maps. After `seewhy check --method 'occlusion(window=4,stride=4)'`,
    `seewhy explain --method 'occlusion(window=16,stride=8)'` into the same folder recomputes
    and replaces the occlusion maps (another request), but keeps the check's entry as it was:
    its input_independence (-0.11) and border_share still describe the replaced maps (the
    saved maps now give 0.31), under a verdict nobody computed for them. The entry must be
    dropped (or recomputed) when explain replaces its maps."""
    args = ("img0.png", "img1.png", "-m", "small.toml", "--out", "out", "--quiet", "--no-report")
    code, output = invoke(
        project,
        "check",
        *args,
        "--method",
        "occlusion(window=4,stride=4)",
        "--steps",
        "5",
        "--randomization",
        "none",
    )
    assert code == 0, output
    code, output = invoke(project, "explain", *args, "--method", "occlusion(window=16,stride=8)")
    assert code == 0, output
    s = _summary(project / "out")
    maps = torch.tensor(
        np.stack(
            [
                np.load(project / "out" / "maps" / i / "small__occlusion.npy")
                for i in ("img0", "img1")
            ]
        )
    )
    stale = [c for c in s.get("checks", []) if (c["model"], c["method"]) == ("small", "occlusion")]
    for c in stale:  # kept: then it must describe the maps in the folder
        assert c.get("input_independence") == pytest.approx(input_independence(maps), abs=1e-6), (
            "checks[] still judges the occlusion maps that explain replaced"
        )
