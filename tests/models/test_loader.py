"""load_model: cards, arch strings, factories, torchscript, num_classes inference, mismatches."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from seewhy import load_model
from seewhy.core.errors import CheckpointError, ModelLoadError

X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def outputs_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    with torch.no_grad():
        return torch.allclose(a.eval()(X), b.eval()(X), atol=1e-6)


def trained_resnet18(n: int = 3) -> torch.nn.Module:
    torch.manual_seed(5)
    return timm.create_model("resnet18", pretrained=False, num_classes=n)


def test_timm_arch_and_checkpoint(tmp_path: Path) -> None:
    ref = trained_resnet18()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "w.pth")
    m = load_model("timm:resnet18", checkpoint=tmp_path / "w.pth", device="cpu")
    assert m.num_outputs == 3 and m.name == "resnet18" and m.arch == "timm:resnet18"
    assert outputs_equal(m.module, ref) and not m.module.training


def test_metadata_names_arch_labels_and_accuracy(tmp_path: Path) -> None:
    ref = trained_resnet18(2)
    torch.save(
        {
            "model": ref.state_dict(),
            "model_name": "resnet18",
            "class_names": ["cat", "dog"],
            "accuracy": 0.88,
        },
        tmp_path / "w.pth",
    )
    (tmp_path / "card.toml").write_text('checkpoint = "w.pth"\n')
    m = load_model(tmp_path / "card.toml", device="cpu")
    assert m.arch == "timm:resnet18" and m.labels == ["cat", "dog"] and m.name == "card"
    assert m.metadata["accuracy"] == 0.88
    assert outputs_equal(m.module, ref)


def test_num_classes_from_the_head_shape(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None, num_classes=7)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    m = load_model("torchvision:resnet18", checkpoint=tmp_path / "w.pth", device="cpu")
    assert m.num_outputs == 7 and outputs_equal(m.module, ref)


def test_card_relative_paths_overrides_and_preprocess(tmp_path: Path) -> None:
    sub = tmp_path / "cards"
    sub.mkdir()
    ref = trained_resnet18(2)
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    (sub / "m.toml").write_text(
        textwrap.dedent("""
        name = "mine"
        arch = "timm:resnet18"
        checkpoint = "../w.safetensors"
        labels = ["a", "b"]
        layer = "layer3"
        [preprocess]
        size = [96, 128]
        mean = [0.5, 0.5, 0.5]
    """)
    )
    m = load_model(sub / "m.toml", layer="layer4", device="cpu")
    assert (m.name, m.layer, m.labels) == ("mine", "layer4", ["a", "b"])
    assert m.preprocess.size == (96, 128) and m.preprocess.mean == (0.5, 0.5, 0.5)
    assert (
        m.preprocess.std == pytest.approx((0.229, 0.224, 0.225)) and m.preprocess.source == "card"
    )
    assert outputs_equal(m.module, ref)


def test_preprocess_defaults_from_timm_and_torchvision() -> None:
    eff = load_model("timm:tf_efficientnetv2_s", device="cpu")
    assert eff.preprocess.source == "timm" and eff.preprocess.size == (300, 300)
    assert eff.preprocess.mean == (0.5, 0.5, 0.5)
    tv = load_model("torchvision:resnet18", device="cpu")
    assert tv.preprocess.source == "torchvision" and tv.preprocess.size == (224, 224)
    assert tv.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))


def test_file_and_package_factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = textwrap.dedent("""
        import torch
        from torch import nn

        def build(num_classes=2):
            torch.manual_seed(3)
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, num_classes))

        def not_a_model():
            return 42
    """)
    (tmp_path / "mymodels.py").write_text(code)
    a = load_model(f"{tmp_path / 'mymodels.py'}:build", num_classes=5, device="cpu")
    assert a.num_outputs == 5 and a.module(X).shape == (1, 5)
    monkeypatch.syspath_prepend(str(tmp_path))
    b = load_model("mymodels:build", device="cpu")
    assert b.module(X).shape == (1, 2)
    with pytest.raises(ModelLoadError, match=r"not a torch nn\.Module"):
        load_model("mymodels:not_a_model", device="cpu")
    with pytest.raises(ModelLoadError, match="did you mean 'build'"):
        load_model("mymodels:biuld", device="cpu")


def test_torchscript_round_trip(tmp_path: Path) -> None:
    ref = trained_resnet18(2).eval()
    torch.jit.trace(ref, X).save(str(tmp_path / "m.ts"))
    m = load_model(f"torchscript:{tmp_path / 'm.ts'}", device="cpu")
    assert outputs_equal(m.module, ref)


def test_mismatches_list_keys_and_shapes(tmp_path: Path) -> None:
    torch.save(trained_resnet18(2).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(
        CheckpointError,
        match=r"does not fit timm:resnet34: 96 missing keys \(layer1\.2\.conv1\.weight",
    ):
        load_model("timm:resnet34", checkpoint=tmp_path / "r18.pth", device="cpu")
    with pytest.raises(CheckpointError, match=r"fc.weight \[2, 512\] vs \[4, 512\]"):
        load_model("timm:resnet18", checkpoint=tmp_path / "r18.pth", num_classes=4, device="cpu")


def test_bad_specs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="did you mean 'resnet18'"):
        load_model("timm:resnet81", device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope.toml")
    (tmp_path / "typo.toml").write_text('arch = "timm:resnet18"\ncheckpiont = "x.pth"\n')
    with pytest.raises(ModelLoadError, match="did you mean 'checkpoint'"):
        load_model(tmp_path / "typo.toml")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        if torch.cuda.is_available():
            raise ModelLoadError("CUDA is not available (skipped: this machine has CUDA)")
        load_model("timm:resnet18", device="cuda")
