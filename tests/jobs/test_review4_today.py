"""Outside review of today's commits (hf:DIR, numeric labels, error cohorts, explain's resume,
NaN rows, TF32 switches): each test asserts the correct behaviour; each failed (as a strict
xfail) before its fix. Tiny models (random weights, 16-32 px), nothing downloaded."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import invoke
from PIL import Image
from torch import nn

import seewhy
from seewhy.api import auto_layer_name
from seewhy.core.errors import ModelOutputError, UsageError
from seewhy.jobs.cohorts import Row, pick_cohorts, true_value
from seewhy.models.hf import hf_preprocess
from seewhy.models.loader import load_model

QUIET = ("--quiet", "--no-report", "--device", "cpu")


def _image(path: Path, h: int = 32, w: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _vit(path: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    labels = ["cat", "dog", "fox"]
    transformers.ViTForImageClassification(
        transformers.ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=3,
            id2label=dict(enumerate(labels)),
            label2id={v: k for k, v in enumerate(labels)},
        )
    ).eval().save_pretrained(path)
    transformers.ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(path)
    return path


def _processor_pixels(folder: Path, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """(seewhy's pixel values, the saved processor's own) for ``image``."""
    transformers = pytest.importorskip("transformers")
    ours = hf_preprocess(nn.Identity(), folder)([image])
    theirs = transformers.AutoImageProcessor.from_pretrained(folder)(image, return_tensors="pt")
    return ours, theirs["pixel_values"]


# -- 1. hf:DIR ----------------------------------------------------------------------------------


def test_hf_swin_auto_layer_reads_the_image(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    transformers.SwinForImageClassification(
        transformers.SwinConfig(
            image_size=32,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1],
            num_heads=[1, 2],
            window_size=4,
            num_labels=3,
        )
    ).eval().save_pretrained(tmp_path / "swin")
    model = load_model(f"hf:{tmp_path / 'swin'}", device="cpu")
    name = auto_layer_name(model)
    assert "relative_position_bias" not in name
    # the layer a CAM reads must change with the image
    layer = dict(model.module.named_modules())[name]
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    with torch.no_grad():
        model.module(torch.zeros(1, 3, 32, 32))
        model.module(torch.randn(1, 3, 32, 32))
    handle.remove()
    assert not torch.allclose(seen[0], seen[-1])


@pytest.mark.parametrize("switch", ["do_normalize", "do_rescale"])
def test_hf_processor_switches_are_honoured(tmp_path: Path, switch: str) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.ViTImageProcessor(
        size={"height": 32, "width": 32},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        **{switch: False},
    ).save_pretrained(tmp_path)
    image = Image.open(_image(tmp_path / "img.png")).convert("RGB")
    ours, theirs = _processor_pixels(tmp_path, image)
    torch.testing.assert_close(ours, theirs, atol=1e-2, rtol=0)


def test_hf_convnext_384_processor_geometry(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.ConvNextImageProcessor(size={"shortest_edge": 384}).save_pretrained(tmp_path)
    image = Image.open(_image(tmp_path / "wide.png", h=30, w=60)).convert("RGB")
    ours, theirs = _processor_pixels(tmp_path, image)
    assert ours.shape == theirs.shape == (1, 3, 384, 384)
    # resampling rounding aside (a few grey levels), the same pixels
    assert float((ours - theirs).abs().mean()) < 0.02


def test_hf_deit_non_square_crop_geometry(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.DeiTImageProcessor(
        size={"height": 40, "width": 56},
        crop_size={"height": 32, "width": 48},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    ).save_pretrained(tmp_path)
    image = Image.open(_image(tmp_path / "wide.png", h=30, w=50)).convert("RGB")
    ours, theirs = _processor_pixels(tmp_path, image)
    assert ours.shape == theirs.shape == (1, 3, 32, 48)
    assert float((ours - theirs).abs().mean()) < 0.02


def test_hf_single_output_takes_negative_and_positive_labels(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    transformers.ResNetForImageClassification(
        transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=1
        )
    ).eval().save_pretrained(tmp_path / "rn1")
    card = tmp_path / "cards" / "rn1.toml"
    card.parent.mkdir()
    card.write_text('arch = "hf:../rn1"\nlabels = ["benign", "malignant"]\n')
    model = load_model(card, device="cpu")
    assert model.labels == ["benign", "malignant"] and model.num_outputs == 1


def test_hf_vit_card_size_mismatch_is_one_line(tmp_path: Path) -> None:
    _vit(tmp_path / "vit")
    _image(tmp_path / "img.png")
    (tmp_path / "vit16.toml").write_text('arch = "hf:vit"\n\n[preprocess]\nsize = 16\n')
    code, output = invoke(tmp_path, "explain", "img.png", "-m", "vit16.toml", "--out", "o", *QUIET)
    assert code == 2
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1
    assert "16" in output and "32" in output


# -- 2. numeric labels --------------------------------------------------------------------------

NET_PY = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, n=3):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4, n)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean((2, 3)))


    def make(num_classes=3):
        torch.manual_seed(0)
        return Net(num_classes or 3)
    """
)


@pytest.fixture
def numeric(tmp_path: Path) -> Path:
    (tmp_path / "net.py").write_text(NET_PY)
    (tmp_path / "grades.toml").write_text(
        'arch = "net.py:make"\nlabels = ["1", "2", "3"]\n\n[preprocess]\nsize = 16\n'
    )
    (tmp_path / "reg.toml").write_text(
        'arch = "net.py:make"\ntask = "regression"\nlabels = ["10", "20"]\n\n'
        "[preprocess]\nsize = 16\n"
    )
    _image(tmp_path / "img.png")
    _image(tmp_path / "wide.png", h=24, w=40, seed=1)
    (tmp_path / "m.csv").write_text("image_path,label\nimg.png,0\nwide.png,2\n")
    return tmp_path


def test_true_target_number_that_is_not_a_numeric_label(numeric: Path) -> None:
    code, output = invoke(
        numeric, "explain", "--data", "m.csv", "--target-col", "label", "-m", "grades.toml",
        "--target", "true", "--method", "saliency", "--out", "o", *QUIET,
    )  # fmt: skip
    # '0' is no grade: refused, as --target 0 is, before any work, as any true label the model
    # does not have is (the run read it as index 0, label '1', before)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, output
    assert "no class '0'" in lines[0] and "1, 2, 3" in lines[0], lines[0]
    assert not (numeric / "o").exists()


def test_dataset_truth_number_that_is_not_a_numeric_label() -> None:
    with pytest.raises(UsageError):
        true_value("0", "label", "classification", ["1", "2", "3"], 3)


def test_negative_number_target_message_quotes_what_was_typed(numeric: Path) -> None:
    code, output = invoke(
        numeric, "explain", "img.png", "-m", "reg.toml", "--target=-1", "--out", "o", *QUIET
    )
    assert code == 2
    assert "'-1'" in output


# -- 3. cohorts ---------------------------------------------------------------------------------


def test_error_cohorts_do_not_share_a_row_on_ties() -> None:
    rows = [Row(id="a", value=1.0, truth=0.0), Row(id="b", value=2.0, truth=1.0)]
    got = {c.name: c.ids for c in pick_cohorts(rows, "regression", size=32)}
    assert len(got["highest_error"]) == len(got["lowest_error"]) == 1
    assert not set(got["highest_error"]) & set(got["lowest_error"])


# -- 4. explain's resume ------------------------------------------------------------------------


def test_resume_notices_an_edited_hf_config(tmp_path: Path) -> None:
    _vit(tmp_path / "vit")
    _image(tmp_path / "img.png")
    args = ("explain", "img.png", "-m", "hf:vit", "--method", "saliency", *QUIET)
    assert invoke(tmp_path, *args, "--out", "o")[0] == 0
    config = tmp_path / "vit" / "config.json"
    cfg = json.loads(config.read_text())
    cfg["hidden_act"] = "relu"  # another forward, the same weights
    config.write_text(json.dumps(cfg))
    assert invoke(tmp_path, *args, "--out", "o")[0] == 0
    assert invoke(tmp_path, *args, "--out", "fresh")[0] == 0
    rerun = json.loads((tmp_path / "o" / "summary.json").read_text())["results"][0]
    fresh = json.loads((tmp_path / "fresh" / "summary.json").read_text())["results"][0]
    assert rerun["prediction"]["score"] == pytest.approx(fresh["prediction"]["score"], abs=1e-6)


def test_resume_notices_an_edited_package_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = f"review4pkg_{tmp_path.name.replace('-', '_')}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    source = tmp_path / pkg / "nets.py"
    source.write_text(NET_PY)
    _image(tmp_path / "img.png")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    args = ("explain", "img.png", "-m", f"{pkg}.nets:make", "--method", "saliency", *QUIET)

    def forget() -> None:
        for name in [n for n in sys.modules if n == pkg or n.startswith(pkg + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()

    try:
        assert invoke(tmp_path, *args, "--out", "o")[0] == 0
        source.write_text(NET_PY.replace("return self.head(", "return 3 * self.head("))
        forget()
        assert invoke(tmp_path, *args, "--out", "o")[0] == 0
        forget()
        assert invoke(tmp_path, *args, "--out", "fresh")[0] == 0
    finally:
        forget()
    rerun = json.loads((tmp_path / "o" / "summary.json").read_text())["results"][0]
    fresh = json.loads((tmp_path / "fresh" / "summary.json").read_text())["results"][0]
    assert rerun["prediction"]["score"] == pytest.approx(fresh["prediction"]["score"], abs=1e-6)


# -- 9. NaN rows and TF32 switches --------------------------------------------------------------


class _NaNWhenPerturbed(nn.Module):
    """NaN for an input whose mean lies in (1, 4.9): sample 1 (mean 5) is finite as given and
    NaN once occluded, masked or darkened; samples 0 and 2 (mean ~0) never are."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(torch.relu(self.conv(x)).mean((2, 3)))
        m = x.mean((1, 2, 3))
        bad = ((m > 1.0) & (m < 4.9))[:, None]
        return torch.where(bad, torch.full_like(out, float("nan")), out)


@pytest.mark.parametrize("method", ["occlusion(window=8,stride=8)", "rise", "scorecam"])
def test_nan_error_names_the_sample_rows(method: str) -> None:
    x = torch.randn(3, 3, 16, 16) * 0.3
    x[1] = 5.0
    with pytest.raises(ModelOutputError) as info:
        seewhy.explain(
            _NaNWhenPerturbed(), x, [method], target=0, sample_ids=["a", "b", "c"], batch_size=2
        )
    message = str(info.value)
    assert "rows [1]" in message or "'b'" in message, message
    assert len(message) < 400


def test_a_forward_reading_the_legacy_tf32_flag_still_explains_on_the_cpu() -> None:
    backends = torch.backends
    before = (backends.cudnn.conv.fp32_precision, backends.cudnn.rnn.fp32_precision)

    class Reads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = 2.0 if torch.backends.cudnn.allow_tf32 else 1.0
            return scale * self.head(self.conv(x).mean((2, 3)))

    try:
        backends.cudnn.conv.fp32_precision = "tf32"
        backends.cudnn.rnn.fp32_precision = "tf32"
        model = Reads()
        x = torch.randn(2, 3, 16, 16)
        model(x)  # fine outside seewhy
        (e,) = seewhy.explain(model, x, ["saliency"], target=0)
        assert e.attributions["image"].shape == (2, 16, 16)
    finally:
        backends.cudnn.conv.fp32_precision, backends.cudnn.rnn.fp32_precision = before
