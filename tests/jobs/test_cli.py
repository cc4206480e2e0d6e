"""`seewhy explain` end to end in a subprocess: the folder a colleague opens, read back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from seewhy import explain, load_model
from seewhy.data.summary import validate_summary

METHODS = ["gradcam", "eigencam", "scorecam"]


def seewhy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seewhy.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_models_two_images_three_methods(project: Path) -> None:
    run = seewhy(
        "explain",
        "img0.png",
        "img1.png",
        "-m",
        "small.toml",
        "-m",
        "wide.toml",
        "--method",
        ",".join(METHODS),
        "--out",
        "out",
        cwd=project,
    )
    assert run.returncode == 0, run.stderr
    out = project / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert validate_summary(summary) == []
    assert [m["name"] for m in summary["models"]] == ["small", "wide"]
    assert [s["id"] for s in summary["samples"]] == ["img0", "img1"]
    assert len(summary["results"]) == 4
    for model_name in ("small", "wide"):
        model = load_model(project / f"{model_name}.toml", device="cpu")
        for sid in ("img0", "img1"):
            (r,) = [
                x for x in summary["results"] if x["sample"] == sid and x["model"] == model_name
            ]
            assert [a["method"] for a in r["attributions"]] == METHODS
            exps = explain(model, [project / f"{sid}.png"], METHODS)
            probs = torch.softmax(exps[0].output[0], 0)  # type: ignore[index]
            assert r["prediction"]["index"] == int(probs.argmax())
            assert abs(r["prediction"]["score"] - float(probs.max())) < 1e-5
            assert r["prediction"]["label"] == ["normal", "fracture"][int(probs.argmax())]
            for a, e in zip(r["attributions"], exps, strict=True):
                saved = np.load(out / a["map"])
                assert saved.dtype == np.float32 and saved.shape == (32, 32)
                np.testing.assert_allclose(saved, e.map[0].numpy(), atol=1e-5)
                with Image.open(out / a["figure"]) as fig:
                    w, h = fig.size
                    assert w > 2.5 * h  # four panels side by side
    # agreement: one entry per sample and method, figures saved
    assert {(a["sample"], a["method"]) for a in summary["agreement"]} == {
        (s, m) for s in ("img0", "img1") for m in METHODS
    }
    for a in summary["agreement"]:
        assert -1.0 <= a["rank_correlation"] <= 1.0 and 0.0 <= a["top_iou"] <= 1.0
    for sid in ("img0", "img1"):
        with Image.open(out / "figures" / sid / "comparison.png") as fig:
            assert fig.size[1] > 0
    html = (out / "report.html").read_text()
    assert len(re.findall(r"data:image/(?:png|webp);base64,", html)) == 2 * 2 * 3 + 2
    assert "http://" not in html and "https://" not in html
    assert not (out / "errors.jsonl").exists()
    assert "agreement" in run.stdout.lower()


def test_rerun_skips_finished_and_adds_new_methods(project: Path) -> None:
    args = ["explain", "img0.png", "-m", "small.toml", "--out", "out", "--quiet"]
    assert seewhy(*args, "--method", "gradcam", cwd=project).returncode == 0
    first = project / "out" / "maps" / "img0" / "small__gradcam.npy"
    stamp = first.stat().st_mtime_ns
    run = seewhy(*args, "--method", "gradcam,hirescam", cwd=project)
    assert run.returncode == 0, run.stderr
    assert first.stat().st_mtime_ns == stamp  # not recomputed
    summary = json.loads((project / "out" / "summary.json").read_text())
    (r,) = summary["results"]
    assert [a["method"] for a in r["attributions"]] == ["gradcam", "hirescam"]
    assert (project / "out" / "maps" / "img0" / "small__hirescam.npy").is_file()


def test_help_is_fast_and_has_examples() -> None:
    code = "import sys, seewhy.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for cmd in ("explain", "layers", "report", "demo"):
        run = subprocess.run(
            [sys.executable, "-m", "seewhy.cli", cmd, "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "Example" in run.stdout, cmd
