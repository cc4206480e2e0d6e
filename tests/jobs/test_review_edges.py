"""Defects an outside review found at the edges of `seewhy explain`, each pinned by a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_runner import invoke
from PIL import Image

import seewhy
from seewhy.data.samples import from_inputs
from seewhy.data.summary import validate_summary


def summary_of(out: Path) -> dict[str, Any]:
    data = json.loads((out / "summary.json").read_text())
    assert validate_summary(data) == []
    return data


def errors_of(out: Path) -> list[dict[str, Any]]:
    path = out / "errors.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seewhy: error:"), output
    return lines[0]


def _price_card(project: Path) -> Path:
    card = project / "price.toml"
    card.write_text(
        'name = "price"\narch = "models.py:wide"\nnum_classes = 1\n'
        'task = "regression"\nlabels = ["price"]\nlayer = "features"\n\n'
        "[preprocess]\nsize = 32\n"
    )
    return card


def test_a_classifier_beside_a_regressor_is_compared(project: Path) -> None:
    _price_card(project)
    code, output = invoke(
        project, "explain", "img0.png", "-m", "small.toml", "-m", "price.toml", "--out", "o",
        "--quiet",
    )  # fmt: skip
    assert code == 0, output
    summary = summary_of(project / "o")
    assert len(summary["results"]) == 2 and len(summary["agreement"]) == 1
    assert summary["agreement"][0]["same_prediction"] is False


def test_a_changed_preprocessing_recomputes_on_rerun(project: Path) -> None:
    args = ["explain", "img0.png", "-m", "small.toml", "--out", "o", "--quiet"]
    assert invoke(project, *args)[0] == 0
    first = np.load(
        project / "o" / summary_of(project / "o")["results"][0]["attributions"][0]["map"]
    )
    card = project / "small.toml"
    card.write_text(card.read_text().replace("size = 32", "size = 48"))
    assert invoke(project, *args)[0] == 0
    (r,) = summary_of(project / "o")["results"]
    again = np.load(project / "o" / r["attributions"][0]["map"])
    assert first.shape == (32, 32) and again.shape == (48, 48)


def test_a_sample_that_fails_on_a_rerun_loses_its_old_result(project: Path) -> None:
    args = ["explain", "img0.png", "img1.png", "-m", "small.toml", "-m", "wide.toml"]
    args += ["--out", "o", "--quiet"]
    assert invoke(project, *args)[0] == 0
    (project / "img1.png").write_bytes(b"broken now")
    code, _ = invoke(project, *args)
    assert code == 1
    summary = summary_of(project / "o")
    assert {r["sample"] for r in summary["results"]} == {"img0"}
    assert {a["sample"] for a in summary["agreement"]} == {"img0"}
    assert [e["id"] for e in errors_of(project / "o")] == ["img1"]


def test_an_output_folder_inside_the_input_folder_is_not_read_as_samples(
    project: Path,
) -> None:
    folder = project / "scans"
    folder.mkdir()
    for name in ("img0.png", "img1.png"):
        (folder / name).write_bytes((project / name).read_bytes())
    args = ["explain", "scans", "-m", "small.toml", "--out", "scans/out", "--quiet"]
    assert invoke(project, *args)[0] == 0
    assert invoke(project, *args)[0] == 0
    ids = [s["id"] for s in summary_of(folder / "out")["samples"]]
    assert ids == ["img0", "img1"]
    assert [s.id for s in from_inputs([folder])] == ["img0", "img1"]


@pytest.mark.parametrize(
    ("target", "needle"),
    [("7", "has 2 classes"), ("2", "has 2 classes")],
)
def test_a_class_the_model_lacks_is_exit_2_before_work(
    project: Path, target: str, needle: str
) -> None:
    code, output = invoke(
        project, "explain", "img0.png", "-m", "small.toml", "--target", target, "--out", "o",
        "--quiet",
    )  # fmt: skip
    assert code == 2 and needle in one_line_error(output)
    assert not (project / "o").exists()


def test_true_labels_the_model_lacks_are_exit_2_before_work(project: Path) -> None:
    for cls in ("normal", "broken"):  # 'broken' is not one of the card's labels
        (project / "data" / cls).mkdir(parents=True)
        (project / "data" / cls / "a.png").write_bytes((project / "img0.png").read_bytes())
    code, output = invoke(
        project, "explain", "data", "-m", "small.toml", "--target", "true", "--out", "o",
        "--quiet",
    )  # fmt: skip
    assert code == 2
    line = one_line_error(output)
    assert "'broken'" in line and "normal, fracture" in line
    assert not (project / "o").exists()
    _price_card(project)
    code, output = invoke(
        project, "explain", "data", "-m", "price.toml", "--target", "true", "--out", "o",
        "--quiet",
    )  # fmt: skip
    assert code == 2 and "regressor" in one_line_error(output)


def test_the_python_front_door_computes_a_method_named_twice_once(
    small_cnn: torch.nn.Module, images: torch.Tensor
) -> None:
    exps = seewhy.explain(small_cnn, images, ["GradCAM", "gradcampp", "gradcam"])
    assert [e.method for e in exps] == ["gradcam", "gradcam++"]


def test_out_that_is_a_file_is_exit_2(project: Path) -> None:
    (project / "afile").write_text("x")
    code, output = invoke(project, "explain", "img0.png", "-m", "small.toml", "--out", "afile")
    assert code == 2 and "--out" in one_line_error(output)


def test_a_model_failing_on_an_image_does_not_keep_the_other_model_from_it(
    project: Path, card_writer: Any
) -> None:
    card_writer(project / "bomb.toml", "bomb", "nan_on_bright", None)
    Image.fromarray(np.full((30, 30, 3), 255, np.uint8)).save(project / "white.png")
    for order in (("bomb.toml", "small.toml"), ("small.toml", "bomb.toml")):
        out = f"o-{order[0]}"
        args = ["explain", "white.png", "img0.png", "-m", order[0], "-m", order[1]]
        code, _ = invoke(project, *args, "--out", out, "--quiet")
        assert code == 1
        summary = summary_of(project / out)
        done = {(r["sample"], r["model"]) for r in summary["results"]}
        assert done == {("white", "small"), ("img0", "small"), ("img0", "bomb")}
        (err,) = errors_of(project / out)
        assert err["id"] == "white" and err["reason"].startswith("model bomb: ")
