"""Defects a third outside review (a new user's trials) found. Each test asserts the behaviour
a user should get; each failed (as a strict xfail) before its fix.
"""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_runner import invoke, runner
from PIL import Image

from seewhy.cli import app

QUIET = ("--quiet", "--no-report")
DATASET_QUIET = ("--workers", "0", "--no-figures", "--no-report", "--quiet")

NETS_PY = textwrap.dedent(
    '''
    import torch
    from torch import nn

    SEED = 1


    class Net(nn.Module):
        def __init__(self, num_classes=2, in_chans=3):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            )
            self.fc = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.fc(self.features(x).mean(dim=(2, 3)))


    def build(num_classes=2):
        torch.manual_seed(SEED)
        return Net(num_classes)


    def gray(num_classes=2):
        """A one-channel X-ray model, as many are."""
        torch.manual_seed(1)
        return Net(num_classes, in_chans=1)
    '''
)


def summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def errors_of(out: Path) -> list[dict[str, Any]]:
    path = out / "errors.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seewhy: error:"), output
    return lines[0]


def first_map(out: Path) -> np.ndarray:
    (result,) = summary_of(out)["results"]
    return np.load(out / result["attributions"][0]["map"])


@pytest.fixture
def nets(tmp_path: Path) -> Path:
    """tmp_path with nets.py (a tiny CNN factory, a one-channel one) and two RGB images."""
    (tmp_path / "nets.py").write_text(NETS_PY)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(
            tmp_path / f"img{i}.png"
        )
    return tmp_path


def _trace(path: Path, seed: int) -> None:
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()  # fmt: skip
    with torch.no_grad():
        torch.jit.trace(net, torch.randn(1, 3, 32, 32)).save(str(path))


# -- stale results on rerun ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_torchscript_model_re_exported_to_the_same_file_is_recomputed(nets: Path) -> None:
    args = ["explain", "img0.png", "-m", "torchscript:ts.pt", "--labels", "a,b"]
    args += ["--method", "saliency", *QUIET]
    _trace(nets / "ts.pt", seed=0)
    assert invoke(nets, *args, "--out", "o")[0] == 0
    before = first_map(nets / "o")
    _trace(nets / "ts.pt", seed=7)  # the user re-exports a retrained model
    assert invoke(nets, *args, "--out", "o")[0] == 0
    assert invoke(nets, *args, "--out", "fresh")[0] == 0
    fresh = first_map(nets / "fresh")
    assert not np.allclose(before, fresh)  # the two models do differ
    np.testing.assert_allclose(first_map(nets / "o"), fresh, rtol=1e-5, atol=1e-8)


def test_editing_the_model_file_of_a_card_without_checkpoint_recomputes(nets: Path) -> None:
    (nets / "card.toml").write_text(
        'arch = "nets.py:build"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 32\n'
    )
    args = ["explain", "img0.png", "-m", "card.toml", "--method", "saliency", *QUIET]
    assert invoke(nets, *args, "--out", "o")[0] == 0
    before = first_map(nets / "o")
    source = (nets / "nets.py").read_text()
    (nets / "nets.py").write_text(source.replace("SEED = 1\n", "SEED = 12345\n"))
    assert invoke(nets, *args, "--out", "o")[0] == 0
    assert invoke(nets, *args, "--out", "fresh")[0] == 0
    fresh = first_map(nets / "fresh")
    assert not np.allclose(before, fresh)
    np.testing.assert_allclose(first_map(nets / "o"), fresh, rtol=1e-5, atol=1e-8)


# -- crashes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("explain", "img0.png", "-m", "nets.py:gray", "--labels", "a,b", "--out", "o"),
        ("layers", "nets.py:gray"),
    ],
    ids=["explain", "layers"],
)
def test_a_one_channel_model_without_a_card_is_not_a_traceback(
    nets: Path, args: tuple[str, ...]
) -> None:
    import os

    old = os.getcwd()
    os.chdir(nets)
    try:
        result = runner.invoke(app, [*args, *(QUIET if args[0] == "explain" else ())])
    finally:
        os.chdir(old)
    # either it runs (one channel read from the first conv) or it is a usage error that
    # names the fix (a card whose [preprocess] mean/std has one value)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        one_line_error(result.output)


def test_layers_lists_the_layers_when_the_auto_choice_is_not_spatial(tmp_path: Path) -> None:
    (tmp_path / "r32.toml").write_text(
        'arch = "timm:test_resnet"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 32\n'
    )
    code, output = invoke(tmp_path, "layers", "r32.toml")
    assert code == 0, output
    assert "layer3" in output  # the last layer with a 2x2 map, the one the user can pick


# -- wrong numbers -----------------------------------------------------------------------------


def test_a_float_image_with_a_nan_pixel_is_not_explained_as_a_blank_image(
    nets: Path,
) -> None:
    rng = np.random.default_rng(3)
    pixels = (rng.random((40, 40)) * 3000).astype(np.float32)
    Image.fromarray(pixels).save(nets / "ok.tif")
    pixels[0, 0] = np.nan
    Image.fromarray(pixels).save(nets / "nan.tif")
    Image.fromarray(np.zeros((40, 40), np.float32)).save(nets / "blank.tif")
    (nets / "card.toml").write_text(
        'arch = "nets.py:build"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 32\n'
    )
    args = ["explain", "ok.tif", "nan.tif", "blank.tif", "-m", "card.toml", "--method", "saliency"]
    invoke(nets, *args, "--out", "o", *QUIET)
    failed = {e["id"]: e["reason"] for e in errors_of(nets / "o")}
    if "nan" in failed:  # failing the sample, saying why, is right
        assert "nan" in failed["nan"].lower()
        return
    scores = {r["sample"]: r["prediction"]["score"] for r in summary_of(nets / "o")["results"]}
    # else the NaN pixel may be dropped, but the other 1599 pixels must still be read: the
    # image is then (nearly) the same as the clean one, and unlike the blank one
    assert abs(scores["nan"] - scores["ok"]) < abs(scores["nan"] - scores["blank"])


def test_highest_and_lowest_error_cohorts_do_not_share_rows(nets: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(nets / f"t{i}.png")
        rows.append([f"r{i}", f"t{i}.png", f"{rng.random():.4f}"])
    with (nets / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["id", "image_path", "price"], *rows])
    (nets / "price.toml").write_text(
        'arch = "nets.py:build"\nnum_classes = 1\ntask = "regression"\nlabels = ["price"]\n'
        "\n[preprocess]\nsize = 32\n"
    )
    code, output = invoke(
        nets, "dataset", "m.csv", "-m", "price.toml", "--target-col", "price", "--target",
        "value", "--out", "o", *DATASET_QUIET,
    )  # fmt: skip
    assert code == 0, output
    cohorts = {c["name"]: c["sample_ids"] for c in summary_of(nets / "o")["cohorts"]}
    high, low = cohorts["highest_error"], cohorts["lowest_error"]
    assert high and low
    assert not set(high) & set(low), (high, low)


# -- misleading usage --------------------------------------------------------------------------


def test_text_for_a_model_that_takes_no_text_is_a_usage_error(nets: Path) -> None:
    (nets / "card.toml").write_text(
        'arch = "nets.py:build"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 32\n'
    )
    code, output = invoke(
        nets, "explain", "img0.png", "-m", "card.toml", "--text", "fracture of the radius",
        "--out", "o", *QUIET,
    )  # fmt: skip
    assert code == 2
    assert "--text" in one_line_error(output)


# -- targets -----------------------------------------------------------------------------------


def _labelled_card(folder: Path, labels: list[str]) -> None:
    quoted = ", ".join(f'"{x}"' for x in labels)
    (folder / "digits.toml").write_text(
        f'arch = "nets.py:build"\nnum_classes = {len(labels)}\nlabels = [{quoted}]\n\n'
        "[preprocess]\nsize = 32\n"
    )


def test_a_target_that_is_one_of_the_labels_explains_that_label(nets: Path) -> None:
    _labelled_card(nets, ["3", "7"])
    code, output = invoke(
        nets, "explain", "img0.png", "-m", "digits.toml", "--target", "7", "--out", "o", *QUIET
    )
    assert code == 0, output
    assert summary_of(nets / "o")["results"][0]["explained"] == "7"


def test_a_digit_target_is_not_silently_another_label(nets: Path) -> None:
    _labelled_card(nets, ["1", "2", "3"])
    code, output = invoke(
        nets, "explain", "img0.png", "-m", "digits.toml", "--target", "1", "--out", "o", *QUIET
    )
    if code == 2:  # refusing the ambiguity, naming it, is right too
        one_line_error(output)
        return
    assert code == 0, output
    assert summary_of(nets / "o")["results"][0]["explained"] == "1"


def test_a_setting_given_twice_is_a_usage_error(nets: Path) -> None:
    (nets / "card.toml").write_text(
        'arch = "nets.py:build"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 32\n'
    )
    code, output = invoke(
        nets, "explain", "img0.png", "-m", "card.toml", "--method",
        "occlusion(window=8,window=16)", "--out", "o", *QUIET,
    )  # fmt: skip
    assert code == 2
    assert "window" in one_line_error(output)
    assert not (nets / "o" / "summary.json").exists()
