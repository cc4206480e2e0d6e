"""Bad input: a clear per-sample error or a one-line usage error; never a traceback, never a
half-written file; the other samples still finish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import invoke
from PIL import Image

from seewhy.data.summary import validate_summary


def _no_temp_files(out: Path) -> None:
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def make_bad_and_odd_images(d: Path) -> dict[str, bool]:
    """Files -> whether seewhy should explain them (True) or report them (False)."""
    rng = np.random.default_rng(0)
    rgb = (rng.random((30, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(d / "good.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    full = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(full[: len(full) // 2])
    (d / "notes.png").write_text("this is not an image")
    ramp = (np.arange(30 * 30, dtype=np.uint16).reshape(30, 30) * 70).astype(np.uint16)
    Image.fromarray(ramp).save(d / "sixteen.png")
    Image.fromarray(rgb[:, :, 0]).save(d / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((30, 30), 128, np.uint8)])).save(d / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.new("1", (12000, 8000)).save(d / "bomb.png")  # 96 Mpx > PIL's bomb limit
    return {
        "good.png": True,
        "corrupt.png": False,
        "truncated.png": False,
        "notes.png": False,
        "missing.png": False,
        "sixteen.png": True,
        "gray.png": True,
        "rgba.png": True,
        "cmyk.jpg": True,
        "bomb.png": False,
    }


def test_bad_images_are_reported_per_sample_and_the_rest_finish(project: Path) -> None:
    expected = make_bad_and_odd_images(project)
    code, output = invoke(
        project, "explain", *expected, "-m", "small.toml", "--out", "out", "--quiet"
    )
    assert code == 1, output
    out = project / "out"
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    failed = {Path(e["path"]).name for e in errors}
    assert failed == {name for name, ok in expected.items() if not ok}
    for e in errors:
        assert e["path"] in e["reason"] or Path(e["path"]).name in e["reason"]
        assert "\n" not in e["reason"] and "Traceback" not in e["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert validate_summary(summary) == []
    explained = {r["sample"] for r in summary["results"]}
    assert explained == {Path(n).stem for n, ok in expected.items() if ok}
    _no_temp_files(out)


def test_nan_output_is_a_per_sample_error(project: Path, card_writer: Any) -> None:
    card_writer(project / "broken.toml", "broken", "nan_on_bright", None)
    Image.fromarray(np.full((30, 30, 3), 255, np.uint8)).save(project / "white.png")
    code, _ = invoke(
        project,
        "explain",
        "img0.png",
        "white.png",
        "-m",
        "broken.toml",
        "--out",
        "out",
        "--quiet",
    )
    assert code == 1
    (err,) = [json.loads(x) for x in (project / "out" / "errors.jsonl").read_text().splitlines()]
    assert err["id"] == "white" and "NaN" in err["reason"]
    summary = json.loads((project / "out" / "summary.json").read_text())
    assert [r["sample"] for r in summary["results"]] == ["img0"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "gradcam,gradkam"], "did you mean 'gradcam'"),
        (["--layer", "featurs"], "closest: 'features'"),
        (["--target", "fractur"], "did you mean 'fracture'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(project: Path, args: list[str], needle: str) -> None:
    code, output = invoke(
        project, "explain", "img0.png", "-m", "small.toml", "--out", "out", "--quiet", *args
    )
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seewhy: error:"), output
    assert needle in lines[0]
    assert not (project / "out" / "summary.json").exists() or args[0] != "--method"


def test_checkpoint_for_another_architecture(project: Path, card_writer: Any) -> None:
    # wide.safetensors holds 12-channel weights; the small factory builds 8 channels
    card_writer(project / "mixed.toml", "mixed", "small", "wide.safetensors")
    code, output = invoke(project, "explain", "img0.png", "-m", "mixed.toml", "--quiet")
    assert code == 2
    (line,) = [x for x in output.splitlines() if x.strip()]
    assert "wide.safetensors" in line and "shape" in line


def test_wrong_num_classes(project: Path, card_writer: Any) -> None:
    card = project / "three.toml"
    card_writer(card, "three", "small", "small.safetensors")
    card.write_text(card.read_text().replace('["normal", "fracture"]', '["a", "b", "c"]'))
    code, output = invoke(project, "explain", "img0.png", "-m", "three.toml", "--quiet")
    assert code == 2
    (line,) = [x for x in output.splitlines() if x.strip()]
    assert "fc.weight" in line
