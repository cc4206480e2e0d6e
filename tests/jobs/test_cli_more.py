"""More of the CLI as users meet it: manifests, --target true, regression, layers, report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from seewhy.cli import app
from seewhy.data.summary import validate_summary

runner = CliRunner()


def invoke(cwd: Path, *args: str) -> Any:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, list(args))
    finally:
        os.chdir(old)


def test_manifest_sample_and_true_target(project: Path) -> None:
    (project / "imgs").mkdir()
    lines = ["case,file,label"]
    for i in range(5):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(project / "imgs" / f"{i}.png")
        lines.append(f"c{i},imgs/{i}.png,{['normal', 'fracture'][i % 2]}")
    (project / "cases.csv").write_text("\n".join(lines) + "\n")
    r = invoke(
        project,
        "explain",
        "--data",
        "cases.csv",
        "--id-col",
        "case",
        "--image-col",
        "file",
        "--target-col",
        "label",
        "--target",
        "true",
        "--sample",
        "3",
        "--seed",
        "1",
        "-m",
        "small.toml",
        "--out",
        "out",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((project / "out" / "summary.json").read_text())
    assert validate_summary(summary) == []
    ids = [s["id"] for s in summary["samples"]]
    assert len(ids) == 3 and set(ids) <= {f"c{i}" for i in range(5)}
    for res in summary["results"]:
        truth = next(s["target"] for s in summary["samples"] if s["id"] == res["sample"])
        assert res["explained"].startswith(truth)
    r2 = invoke(project, "explain", "img0.png", "-m", "small.toml", "--target", "true", "--quiet")
    assert r2.exit_code == 2 and "--target-col" in r2.output


def test_regression_model_shows_raises_and_lowers(project: Path) -> None:
    card = project / "price.toml"
    card.write_text(
        'name = "price"\narch = "models.py:small"\nnum_classes = 1\n'
        'task = "regression"\nlabels = ["price"]\nlayer = "features"\n'
    )
    r = invoke(project, "explain", "img0.png", "-m", "price.toml", "--out", "out", "--quiet")
    assert r.exit_code == 0, r.output
    summary = json.loads((project / "out" / "summary.json").read_text())
    (res,) = summary["results"]
    assert set(res["prediction"]) == {"value"} and res["explained"] == "price"
    assert (project / "out" / res["attributions"][0]["figure"]).is_file()
    r2 = invoke(
        project,
        "explain",
        "img0.png",
        "-m",
        "price.toml",
        "--target",
        "-value",
        "--out",
        "out2",
        "--quiet",
    )
    assert r2.exit_code == 0, r2.output
    (res2,) = json.loads((project / "out2" / "summary.json").read_text())["results"]
    assert res2["explained"] == "-price"
    up = np.load(project / "out" / res["attributions"][0]["map"])
    down = np.load(project / "out2" / res2["attributions"][0]["map"])
    assert not np.allclose(up, down)  # the saved map is the explained target's
    r3 = invoke(project, "explain", "img0.png", "-m", "small.toml", "--target", "all", "--quiet")
    assert r3.exit_code == 2 and "one target per run" in r3.output


def test_layers_marks_the_auto_choice(project: Path) -> None:
    r = invoke(project, "layers", "small.toml")
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.output.splitlines() if line.strip()}
    assert "<- auto" in rows["features"] and "[1, 16, 16, 16]" in rows["features"]
    assert "fc" not in rows


def test_report_rerenders_and_explains_a_missing_summary(project: Path) -> None:
    assert (
        invoke(
            project,
            "explain",
            "img0.png",
            "-m",
            "small.toml",
            "--out",
            "out",
            "--quiet",
            "--no-report",
        ).exit_code
        == 0
    )
    assert not (project / "out" / "report.html").exists()
    r = invoke(project, "report", "out")
    assert r.exit_code == 0 and (project / "out" / "report.html").is_file()
    r = invoke(project, "report", "nowhere")
    assert r.exit_code == 2 and "has no summary.json" in r.output
