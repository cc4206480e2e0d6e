"""`seewhy explain` at the edges users hit on day one: method aliases, one-logit classifiers,
target-independent maps of a regressor, models no CAM can read, TorchScript, batching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_runner import invoke

from seewhy import explain, load_model
from seewhy.data.samples import from_paths
from seewhy.data.summary import validate_summary
from seewhy.jobs.explain import ExplainOptions, run_explain


def summary_of(out: Path) -> dict[str, Any]:
    data = json.loads((out / "summary.json").read_text())
    assert validate_summary(data) == []
    return data


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seewhy: error:"), output
    return lines[0]


def test_method_aliases_and_capitals_are_one_method_for_agreement_and_resume(
    project: Path,
) -> None:
    args = ["explain", "img0.png", "-m", "small.toml", "-m", "wide.toml", "--out", "out"]
    args += ["--method", "GradCAM,gradcampp,gradcam", "--quiet"]
    code, output = invoke(project, *args)
    assert code == 0, output
    summary = summary_of(project / "out")
    for r in summary["results"]:
        assert [a["method"] for a in r["attributions"]] == ["gradcam", "gradcam++"]
    assert sorted(a["method"] for a in summary["agreement"]) == ["gradcam", "gradcam++"]
    stamps = {p: p.stat().st_mtime_ns for p in (project / "out" / "maps").rglob("*.npy")}
    code, output = invoke(project, *args)
    assert code == 0, output
    again = summary_of(project / "out")
    assert len(again["results"]) == 2 and len(again["agreement"]) == 2
    for r in again["results"]:
        assert [a["method"] for a in r["attributions"]] == ["gradcam", "gradcam++"]
    # Nothing was recomputed: every map is the file the first run wrote.
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def _binary_card(project: Path, labels: str) -> Path:
    card = project / "binary.toml"
    card.write_text(
        'name = "binary"\narch = "models.py:small"\nnum_classes = 1\n'
        f'task = "classification"\nlabels = {labels}\nlayer = "features"\n\n'
        "[preprocess]\nsize = 32\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n"
    )
    return card


def test_a_one_logit_classifier_is_scored_by_sigmoid_and_predicted_by_threshold(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    card = _binary_card(project, '["normal", "fracture"]')
    model = load_model(card, device="cpu")
    opts = ExplainOptions(out=project / "out", progress=False, report=False)
    outcome = run_explain(from_paths(["img0.png", "img1.png"]), [str(card)], opts)
    assert outcome.exit_code == 0
    from PIL import Image

    for r in outcome.summary["results"]:
        img = Image.open(project / f"{r['sample']}.png").convert("RGB")
        x = model.preprocess([img])
        with torch.no_grad():
            logit = float(model.module(x)[0, 0])
        positive = 1 / (1 + np.exp(-logit))
        want = "fracture" if logit > 0 else "normal"
        pred = r["prediction"]
        assert pred["label"] == want and pred["index"] == int(logit > 0)
        assert pred["score"] == pytest.approx(max(positive, 1 - positive), abs=1e-5)
        assert pred["score"] < 0.999  # not the softmax of one column
        assert r["explained"] == want
        # The negative class explains the negated logit: its map is gradcam of -logit.
        (e,) = explain(model, x, ["gradcam"], target=want)
        saved = np.load(project / "out" / r["attributions"][0]["map"])
        np.testing.assert_allclose(saved, e.map[0].numpy(), rtol=1e-4, atol=1e-6)


def test_one_positive_label_names_both_classes(project: Path) -> None:
    card = _binary_card(project, '["fracture"]')
    opts = ExplainOptions(out=project / "out", progress=False, report=False)
    outcome = run_explain(from_paths([project / "img0.png"]), [str(card)], opts)
    assert outcome.exit_code == 0
    (r,) = outcome.summary["results"]
    (m,) = outcome.summary["models"]
    assert m["labels"] == ["not fracture", "fracture"]
    assert r["prediction"]["label"] in ("fracture", "not fracture")
    assert r["prediction"]["score"] < 0.999


def _price_card(project: Path) -> Path:
    card = project / "price.toml"
    card.write_text(
        'name = "price"\narch = "models.py:small"\nnum_classes = 1\n'
        'task = "regression"\nlabels = ["price"]\nlayer = "features"\n'
    )
    return card


def test_a_target_independent_map_of_a_regressor_is_drawn_once_not_as_a_blank_difference(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import seewhy.render.figures as figures

    drawn: list[dict[str, Any]] = []
    real = figures.explanation_figure

    def spy(path: Any, **kwargs: Any) -> Any:
        drawn.append(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(figures, "explanation_figure", spy)
    card = _price_card(project)
    opts = ExplainOptions(
        out=project / "out", methods=["eigencam", "gradcam"], progress=False, report=False
    )
    outcome = run_explain(from_paths([project / "img0.png"]), [str(card)], opts)
    assert outcome.exit_code == 0
    eigen, grad = drawn
    assert eigen["lowers"] is None
    assert float(np.abs(eigen["heatmap"]).max()) > 0
    assert any("does not depend on the target" in line for line in eigen["details"])
    assert grad["lowers"] is not None


def test_regression_raises_and_lowers_cost_one_forward_and_one_backward(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = _price_card(project)
    grads: list[int] = []
    real = torch.autograd.grad

    def counting(*args: Any, **kwargs: Any) -> Any:
        grads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    opts = ExplainOptions(
        out=project / "out", methods=["gradcam", "layercam"], progress=False, report=False
    )
    outcome = run_explain(from_paths([project / "img0.png"]), [str(card)], opts)
    assert outcome.exit_code == 0
    assert len(grads) == 1


def test_a_cam_on_a_model_without_a_spatial_layer_is_exit_2_before_any_work(
    project: Path,
) -> None:
    (project / "mlp.py").write_text(
        "from torch import nn\n\n"
        "def mlp(num_classes=2):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(),"
        " nn.Linear(16, num_classes))\n"
    )
    (project / "mlp.toml").write_text(
        'arch = "mlp.py:mlp"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 32\n'
    )
    code, output = invoke(
        project, "explain", "img0.png", "img1.png", "-m", "mlp.toml", "--out", "out", "--quiet"
    )
    assert code == 2
    line = one_line_error(output)
    assert "mlp" in line and "gradcam" in line
    assert not (project / "out").exists()


def test_cams_on_torchscript_are_refused_up_front(project: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("m_ts", project / "models.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.jit.script(mod.small()).save(str(project / "net.pt"))
    code, output = invoke(
        project, "explain", "img0.png", "-m", "torchscript:net.pt", "--out", "out", "--quiet"
    )
    assert code == 2
    line = one_line_error(output)
    assert "TorchScript" in line and "hook" in line
    assert not (project / "out").exists()
    # In a real shell too: torch's deprecation warnings would make stderr more than one line.
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "seewhy.cli", "explain", "img0.png", "-m", "torchscript:net.pt"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and one_line_error(run.stderr) == line


def test_images_are_grouped_up_to_the_batch_size_and_maps_do_not_change(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    for i in range(2, 5):
        Image.open(project / "img0.png").rotate(90 * i).save(project / f"img{i}.png")
    paths = [project / f"img{i}.png" for i in range(5)]
    seen: list[int] = []
    import seewhy.models.loader as loader

    real_load = loader.load_model

    def load(*args: Any, **kwargs: Any) -> Any:
        model = real_load(*args, **kwargs)
        model.module.register_forward_pre_hook(lambda m, a: seen.append(int(a[0].shape[0])))
        return model

    monkeypatch.setattr(loader, "load_model", load)
    maps = {}
    for size in (1, 2, 8):
        seen.clear()
        opts = ExplainOptions(
            out=project / f"out{size}",
            methods=["gradcam", "scorecam"],
            batch_size=size,
            progress=False,
            report=False,
        )
        outcome = run_explain(from_paths(paths), [str(project / "small.toml")], opts)
        assert outcome.exit_code == 0
        assert max(seen) <= size
        if size == 2:
            assert seen.count(2) >= 2  # images really share a forward pass
        if size == 8:
            assert 5 in seen  # all five images in one layer pass
        maps[size] = {
            r["sample"]: np.load(project / f"out{size}" / r["attributions"][1]["map"])
            for r in outcome.summary["results"]
        }
    for sid, want in maps[1].items():
        for size in (2, 8):
            np.testing.assert_allclose(maps[size][sid], want, rtol=1e-4, atol=1e-6)


def test_a_bad_image_in_a_batch_fails_alone(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    (project / "broken.png").write_bytes(b"not an image")
    opts = ExplainOptions(out=project / "out", batch_size=8, progress=False, report=False)
    samples = from_paths(["img0.png", "broken.png", "img1.png"])
    outcome = run_explain(samples, [str(project / "small.toml")], opts)
    assert outcome.exit_code == 1
    errors = [
        json.loads(line) for line in (project / "out" / "errors.jsonl").read_text().splitlines()
    ]
    assert [e["id"] for e in errors] == ["broken"]
    assert sorted(r["sample"] for r in outcome.summary["results"]) == ["img0", "img1"]


def test_models_that_crop_differently_are_compared_where_both_see_the_image() -> None:
    from PIL import Image

    from seewhy.checks.agreement import rank_correlation
    from seewhy.jobs.compare import _place
    from seewhy.models.model import Preprocess

    # One pattern in the original image's frame, seen through two models' frames.
    w, h = 120, 90
    yy, xx = np.mgrid[0:h, 0:w]
    pattern = (np.sin(xx / 9.0) + np.cos(yy / 7.0) + 2) * 60
    image = Image.fromarray(pattern.astype(np.uint8)).convert("RGB")
    whole = Preprocess(size=(64, 64), crop_pct=1.0, crop_mode="squash")
    cropped = Preprocess(size=(48, 48), crop_pct=0.6, crop_mode="center")
    left, top, right, bottom = cropped.box(w, h)
    assert (left, right) == pytest.approx((w / 2 - 0.6 * h / 2, w / 2 + 0.6 * h / 2), abs=1.5)
    assert (top, bottom) == pytest.approx((h * 0.2, h * 0.8), abs=1.5)
    placed = {}
    for name, pre in (("whole", whole), ("cropped", cropped)):
        heat = np.asarray(pre.frame(image))[..., 0].astype(np.float32)
        placed[name] = _place(heat, pre.box(w, h), (w, h), (w, h))
    (a, ca), (b, cb) = placed["whole"], placed["cropped"]
    assert ca.all() and 0.2 < cb.mean() < 0.5
    both = ca & cb
    assert rank_correlation(torch.from_numpy(a[both]), torch.from_numpy(b[both])) > 0.97
    # Read in their own frames instead, the two maps would not line up.
    naive = np.asarray(whole.frame(image))[..., 0].astype(np.float32)
    other = np.asarray(cropped.frame(image).resize((64, 64)))[..., 0].astype(np.float32)
    assert rank_correlation(torch.from_numpy(naive), torch.from_numpy(other)) < 0.9
