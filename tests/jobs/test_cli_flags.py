"""The flags and run behaviours a new user leans on: --trust-checkpoint, --device,
--batch-size, resume after a changed request, crashes inside a user's model, usage errors on one
line, the progress bar, regression figures, checkpoint metadata in summary.json."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_runner import invoke
from rich.console import Console

from seewhy import explain, load_model
from seewhy.cli import main
from seewhy.data.samples import from_paths
from seewhy.data.summary import validate_summary
from seewhy.jobs.explain import ExplainOptions, run_explain


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seewhy: error:"), output
    return lines[0]


def same_map(got: Any, want: Any) -> bool:
    """Equal up to float noise, relative to the map's scale (CAM values can be ~1e-5)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = float(np.abs(want).max())
    assert scale > 0, "a map of zeros proves nothing"
    return got.shape == want.shape and float(np.abs(got - want).max()) <= 1e-4 * scale


def summary_of(out: Path) -> dict[str, Any]:
    data = json.loads((out / "summary.json").read_text())
    assert validate_summary(data) == []
    return data


def test_trust_checkpoint_with_an_arch_string(project: Path) -> None:
    # A training script's checkpoint: weights plus its argparse config (needs full unpickling).
    from safetensors.torch import load_file

    weights = load_file(str(project / "small.safetensors"))
    config = argparse.Namespace(lr=0.1, arch="small")
    torch.save({"state_dict": weights, "config": config, "val_acc": 0.91}, project / "run.pth")
    args = ["explain", "img0.png", "-m", "models.py:small", "--checkpoint", "run.pth"]
    args += ["--labels", "normal,fracture", "--out", "out", "--quiet"]
    code, output = invoke(project, *args)
    assert code == 2
    line = one_line_error(output)
    assert "run.pth" in line and "--trust-checkpoint" in line
    assert not (project / "out" / "summary.json").exists()

    code, output = invoke(project, *args, "--trust-checkpoint")
    assert code == 0, output
    (res,) = summary_of(project / "out")["results"]
    model = load_model(
        f"{project / 'models.py'}:small",
        checkpoint=project / "run.pth",
        labels=["normal", "fracture"],
        trust_checkpoint=True,
        device="cpu",
    )
    (e,) = explain(model, [project / "img0.png"], ["gradcam"])
    probs = torch.softmax(e.output[0], 0)  # type: ignore[index]
    assert res["prediction"]["label"] == ["normal", "fracture"][int(probs.argmax())]
    assert abs(res["prediction"]["score"] - float(probs.max())) < 1e-5
    assert same_map(np.load(project / "out" / res["attributions"][0]["map"]), e.map[0].numpy())
    (m,) = summary_of(project / "out")["models"]
    assert m["metadata"]["val_acc"] == 0.91  # recorded accuracy travels to the summary


def test_device_flag(project: Path) -> None:
    code, output = invoke(
        project, "explain", "img0.png", "-m", "small.toml", "--device", "cpu", "--quiet"
    )
    assert code == 0, output
    code, output = invoke(
        project, "explain", "img0.png", "-m", "small.toml", "--device", "gpu", "--quiet"
    )
    assert code == 2 and "--device gpu" in one_line_error(output)
    if not torch.cuda.is_available():
        code, output = invoke(
            project, "explain", "img0.png", "-m", "small.toml", "--device", "cuda", "--quiet"
        )
        assert code == 2 and "CUDA" in one_line_error(output)


def test_batch_size_does_not_change_the_maps_and_must_be_positive(project: Path) -> None:
    base = ["explain", "img0.png", "img1.png", "-m", "small.toml", "--method", "scorecam"]
    assert invoke(project, *base, "--batch-size", "1", "--out", "b1", "--quiet")[0] == 0
    assert invoke(project, *base, "--batch-size", "64", "--out", "b64", "--quiet")[0] == 0
    for sid in ("img0", "img1"):
        a = np.load(project / "b1" / "maps" / sid / "small__scorecam.npy")
        b = np.load(project / "b64" / "maps" / sid / "small__scorecam.npy")
        assert a.std() > 0
        assert same_map(a, b)
    code, output = invoke(project, *base, "--batch-size", "0", "--out", "b0", "--quiet")
    assert code == 2 and "--batch-size must be >= 1" in one_line_error(output)
    assert not (project / "b0").exists()


def test_rerun_with_another_target_recomputes(project: Path) -> None:
    base = ["explain", "img0.png", "-m", "small.toml", "--out", "out", "--quiet"]
    assert invoke(project, *base, "--target", "normal")[0] == 0
    code, output = invoke(project, *base, "--target", "fracture")
    assert code == 0, output
    (res,) = summary_of(project / "out")["results"]
    assert res["explained"].startswith("fracture")
    model = load_model(project / "small.toml", device="cpu")
    (want,) = explain(model, [project / "img0.png"], ["gradcam"], target="fracture")
    (other,) = explain(model, [project / "img0.png"], ["gradcam"], target="normal")
    saved = np.load(project / "out" / res["attributions"][0]["map"])
    assert same_map(saved, want.map[0].numpy())
    assert not same_map(saved, other.map[0].numpy())
    # the same request again is skipped: the map file is not rewritten
    stamp = (project / "out" / res["attributions"][0]["map"]).stat().st_mtime_ns
    assert invoke(project, *base, "--target", "fracture")[0] == 0
    assert (project / "out" / res["attributions"][0]["map"]).stat().st_mtime_ns == stamp


def test_rerun_after_the_image_changes_recomputes(project: Path) -> None:
    base = ["explain", "img0.png", "-m", "small.toml", "--out", "out", "--quiet"]
    assert invoke(project, *base)[0] == 0
    before = np.load(project / "out" / "maps" / "img0" / "small__gradcam.npy")
    (project / "img0.png").write_bytes((project / "img1.png").read_bytes())
    os.utime(project / "img0.png", ns=(1, 1))  # a different file, whatever the clock says
    assert invoke(project, *base)[0] == 0
    after = np.load(project / "out" / "maps" / "img0" / "small__gradcam.npy")
    model = load_model(project / "small.toml", device="cpu")
    (want,) = explain(model, [project / "img1.png"], ["gradcam"])
    assert same_map(after, want.map[0].numpy())
    assert not same_map(before, after)


def test_a_model_that_crashes_on_one_input_fails_only_that_sample(
    project: Path, card_writer: Any
) -> None:
    code = (project / "models.py").read_text() + (
        "\n\nclass Picky(Net):\n"
        "    def forward(self, x):\n"
        "        if (x.flatten(1).mean(1) > 1.0).any():\n"
        "            raise TypeError('picky model:\\n  bright input')\n"
        "        return super().forward(x)\n\n\n"
        "def picky(num_classes=2):\n"
        "    torch.manual_seed(1)\n"
        "    return Picky(num_classes, 8)\n"
    )
    (project / "models.py").write_text(code)
    card_writer(project / "picky.toml", "picky", "picky", None)
    from PIL import Image

    Image.fromarray(np.full((30, 30, 3), 255, np.uint8)).save(project / "white.png")
    code_, output = invoke(
        project, "explain", "img0.png", "white.png", "img1.png", "-m", "picky.toml", "--out",
        "out", "--quiet",
    )  # fmt: skip
    assert code_ == 1, output
    (err,) = [json.loads(x) for x in (project / "out" / "errors.jsonl").read_text().splitlines()]
    assert err["id"] == "white"
    assert err["reason"] == "TypeError: picky model: bright input"  # one line
    assert [r["sample"] for r in summary_of(project / "out")["results"]] == ["img0", "img1"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["explain", "--nope"], "No such option: --nope"),
        (["explain", "x.png", "--batch-size", "abc"], "'--batch-size'"),
        (["report"], "Missing argument"),
        (["explain", "x.png", "-m", "a.toml", "--sample", "0"], "--sample"),
        (["explain", "x.png", "-m", "a.toml", "--id-col", "case"], "--id-col reads a manifest"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_line_error(captured.err)
    assert needle in line and "Traceback" not in line


def test_no_arguments_shows_the_overview(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("explain", "layers", "report", "demo"))


def test_a_named_id_column_must_exist(project: Path) -> None:
    (project / "cases.csv").write_text("case,image_path\nc0,img0.png\n")
    code, output = invoke(
        project, "explain", "--data", "cases.csv", "--id-col", "caseid", "-m", "small.toml"
    )
    assert code == 2 and "no column 'caseid' (--id-col)" in one_line_error(output)
    code, output = invoke(
        project, "explain", "--data", "cases.csv", "--id-col", "case", "-m", "small.toml",
        "--out", "out", "--quiet",
    )  # fmt: skip
    assert code == 0, output
    assert [s["id"] for s in summary_of(project / "out")["samples"]] == ["c0"]


def test_progress_bar_on_multi_image_runs(project: Path) -> None:
    samples = from_paths([project / "img0.png", project / "img1.png"])
    for progress in (True, False):
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=True, width=100)
        opts = ExplainOptions(out=project / f"out-{progress}", progress=progress, report=False)
        outcome = run_explain(samples, [str(project / "small.toml")], opts, console=console)
        assert outcome.exit_code == 0
        text = buffer.getvalue()
        if progress:
            assert "explaining" in text and "2/2" in text and "100%" in text
        else:
            assert text == ""


def test_regression_figures_get_what_raises_and_what_lowers(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "price.toml").write_text(
        'name = "price"\narch = "models.py:small"\nnum_classes = 1\n'
        'task = "regression"\nlabels = ["price"]\nlayer = "features"\n'
    )
    import seewhy.render.figures as figures

    drawn: list[dict[str, Any]] = []
    real = figures.explanation_figure

    def spy(path: Any, **kwargs: Any) -> Any:
        drawn.append(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(figures, "explanation_figure", spy)
    model = load_model(project / "price.toml", device="cpu")
    (up,) = explain(model, [project / "img0.png"], ["gradcam"], target="value")
    (down,) = explain(model, [project / "img0.png"], ["gradcam"], target="-value")
    assert up.map.abs().sum() > 0 and down.map.abs().sum() > 0
    for target in ("value", "-value"):
        drawn.clear()
        opts = ExplainOptions(
            out=project / f"out{target}", target=target, progress=False, report=False
        )
        outcome = run_explain(
            from_paths([project / "img0.png"]), [str(project / "price.toml")], opts
        )
        assert outcome.exit_code == 0
        (kw,) = drawn
        # Whatever was explained, the figure shows what raises and what lowers the price apart.
        assert same_map(kw["heatmap"], up.map[0].numpy())
        assert same_map(kw["lowers"], down.map[0].numpy())
        (res,) = summary_of(project / f"out{target}")["results"]
        saved = np.load(project / f"out{target}" / res["attributions"][0]["map"])
        want = up if target == "value" else down  # the saved map is the explained target's
        assert same_map(saved, want.map[0].numpy())


def test_comparison_text_says_the_predictions_once_then_a_line_per_method(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import seewhy.render.figures as figures

    texts: list[str] = []
    real = figures.comparison_figure

    def spy(path: Any, **kwargs: Any) -> Any:
        texts.append(kwargs["agreement"])
        return real(path, **kwargs)

    monkeypatch.setattr(figures, "comparison_figure", spy)
    opts = ExplainOptions(
        out=project / "out", methods=["gradcam", "eigencam"], progress=False, report=False
    )
    cards = [str(project / "small.toml"), str(project / "wide.toml")]
    outcome = run_explain(from_paths([project / "img0.png"]), cards, opts)
    assert outcome.exit_code == 0
    (text,) = texts
    summary = summary_of(project / "out")
    small, wide = (r["prediction"]["label"] for r in summary["results"])
    head, *methods = text.split("\n")
    if small == wide:
        assert head == f"both models predict {small}"
    else:
        assert head == f"models disagree: small says {small}, wide says {wide}"
    by_method = {a["method"]: a for a in summary["agreement"]}
    assert methods == [
        f"{m}: rank correlation {by_method[m]['rank_correlation']:.2f}, "
        f"top-10% IoU {by_method[m]['top_iou']:.2f}"
        for m in ("gradcam", "eigencam")
    ]
