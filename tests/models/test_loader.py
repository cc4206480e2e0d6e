"""load_model: cards, arch strings, factories, torchscript, num_classes inference, mismatches,
and where preprocessing comes from."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from seewhy import load_model
from seewhy.core.errors import CheckpointError, ModelLoadError
from seewhy.models.model import IMAGENET_MEAN, IMAGENET_STD
from seewhy.models.preprocess import resolve_preprocess

X = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))

FACTORIES = textwrap.dedent("""
    import torch
    from torch import nn

    def build(num_classes=2):
        torch.manual_seed(3)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    def fixed():
        return build(3)

    def flexible(**kwargs):
        return build(**kwargs)

    def not_a_model():
        return 42

    def broken(num_classes=2):
        raise RuntimeError("no GPU for you")
""")


def outputs_equal(a: nn.Module, b: nn.Module) -> bool:
    with torch.no_grad():
        return torch.allclose(a.eval()(X), b.eval()(X), atol=1e-6)


def tiny_timm(n: int = 3, seed: int = 5) -> nn.Module:
    """timm's own tiny test ResNet (0.4M parameters): fast, and a real timm model."""
    torch.manual_seed(seed)
    return timm.create_model("test_resnet", pretrained=False, num_classes=n)


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    (tmp_path / "mymodels.py").write_text(FACTORIES)
    return tmp_path / "mymodels.py"


def test_timm_arch_and_checkpoint_num_classes_from_the_head(tmp_path: Path) -> None:
    ref = tiny_timm(3)
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "w.pth")
    # no num_classes, labels or metadata: the head's weight shape [3, 96] says 3
    m = load_model("timm:test_resnet", checkpoint=tmp_path / "w.pth", device="cpu")
    assert m.num_outputs == 3 and m.name == "test_resnet" and m.arch == "timm:test_resnet"
    assert m.checkpoint == str(tmp_path / "w.pth") and m.labels is None and m.layer == "auto"
    assert m.task == "classification" and m.device == torch.device("cpu")
    assert outputs_equal(m.module, ref) and not m.module.training


def test_torchvision_num_classes_from_the_last_linear(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None, num_classes=7)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    m = load_model("torchvision:resnet18", checkpoint=tmp_path / "w.pth", device="cpu")
    assert m.num_outputs == 7 and m.name == "resnet18" and outputs_equal(m.module, ref)


def test_metadata_names_arch_labels_and_accuracy(tmp_path: Path) -> None:
    ref = tiny_timm(2)
    torch.save(
        {
            "model": ref.state_dict(),
            "model_name": "test_resnet",
            "num_classes": 2,
            "class_names": ["cat", "dog"],
            "accuracy": 0.88,
        },
        tmp_path / "w.pth",
    )
    (tmp_path / "card.toml").write_text('checkpoint = "w.pth"\n')
    m = load_model(tmp_path / "card.toml", device="cpu")
    assert m.arch == "timm:test_resnet" and m.labels == ["cat", "dog"] and m.name == "card"
    assert m.metadata["accuracy"] == 0.88 and m.num_outputs == 2
    assert outputs_equal(m.module, ref)
    # explicit labels beat the checkpoint's class names
    assert load_model(tmp_path / "card.toml", labels=["c", "d"], device="cpu").labels == ["c", "d"]


def test_metadata_bare_torchvision_name_and_safetensors_header(tmp_path: Path) -> None:
    torch.manual_seed(2)
    ref = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=4)
    save_file(
        ref.state_dict(),
        str(tmp_path / "w.safetensors"),
        metadata={"arch": "mobilenet_v3_small", "class_names": '["a", "b", "c", "d"]'},
    )
    (tmp_path / "card.toml").write_text('checkpoint = "w.safetensors"\nname = "mob"\n')
    m = load_model(tmp_path / "card.toml", device="cpu")
    assert m.arch == "torchvision:mobilenet_v3_small" and m.labels == ["a", "b", "c", "d"]
    assert m.name == "mob" and outputs_equal(m.module, ref)


def test_card_relative_paths_overrides_and_preprocess(tmp_path: Path) -> None:
    sub = tmp_path / "cards"
    sub.mkdir()
    ref = tiny_timm(2)
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    (sub / "m.toml").write_text(
        textwrap.dedent("""
        name = "mine"
        arch = "timm:test_resnet"
        checkpoint = "../w.safetensors"
        task = "multilabel"
        labels = ["a", "b"]
        layer = "layer3"
        [preprocess]
        size = [96, 128]
        mean = [0.4, 0.4, 0.4]
    """)
    )
    m = load_model(sub / "m.toml", layer="layer4", name="yours", device="cpu")
    assert (m.name, m.layer, m.labels, m.task) == ("yours", "layer4", ["a", "b"], "multilabel")
    assert m.checkpoint == str(sub / "../w.safetensors")
    p = m.preprocess
    assert p.size == (96, 128) and p.mean == (0.4, 0.4, 0.4) and p.source == "card"
    # keys the card leaves out keep timm's values for this model (test_resnet: 160, 0.5, 0.5)
    assert p.std == (0.5, 0.5, 0.5) and p.interpolation == "bilinear"
    assert outputs_equal(m.module, ref)
    # keyword arguments override the card, key by key
    m2 = load_model(sub / "m.toml", preprocess={"size": 64}, task="regression", device="cpu")
    assert m2.preprocess.size == (64, 64) and m2.preprocess.mean == (0.4, 0.4, 0.4)
    assert m2.task == "regression" and m2.name == "mine" and m2.layer == "layer3"


def test_name_defaults_to_the_card_stem_then_the_arch_name(tmp_path: Path, factories: Path) -> None:
    (tmp_path / "plain.toml").write_text('arch = "timm:test_resnet"\nnum_classes = 2\n')
    assert load_model(tmp_path / "plain.toml", device="cpu").name == "plain"
    assert load_model(f"{factories}:build", device="cpu").name == "build"
    torch.jit.script(nn.Linear(2, 2)).save(str(tmp_path / "lin.ts"))
    assert load_model(f"torchscript:{tmp_path / 'lin.ts'}", device="cpu").name == "lin"


def test_num_classes_order(tmp_path: Path) -> None:
    torch.save({"state_dict": tiny_timm(5).state_dict(), "num_classes": 5}, tmp_path / "w.pth")
    (tmp_path / "c.toml").write_text('arch = "timm:test_resnet"\nnum_classes = 4\n')
    assert load_model(tmp_path / "c.toml", num_classes=6, device="cpu").num_outputs == 6
    assert load_model(tmp_path / "c.toml", device="cpu").num_outputs == 4
    (tmp_path / "l.toml").write_text('arch = "timm:test_resnet"\nlabels = ["x", "y", "z"]\n')
    assert load_model(tmp_path / "l.toml", device="cpu").num_outputs == 3
    assert (
        load_model("timm:test_resnet", checkpoint=tmp_path / "w.pth", device="cpu").num_outputs == 5
    )
    assert load_model("timm:test_resnet", device="cpu").num_outputs == 1000  # arch default


def test_preprocess_defaults_from_timm_torchvision_and_imagenet() -> None:
    with torch.device("meta"):  # timm's data config needs the model, not its weights
        eff = timm.create_model("tf_efficientnetv2_s", pretrained=False)
    p = resolve_preprocess(eff, "timm:tf_efficientnetv2_s", None)
    assert (p.source, p.size, p.interpolation) == ("timm", (300, 300), "bicubic")
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.5, 0.5, 0.5)
    tv = resolve_preprocess(nn.Identity(), "torchvision:resnet50", None)
    assert (tv.source, tv.size, tv.interpolation) == ("torchvision", (224, 224), "bilinear")
    assert tv.mean == pytest.approx(IMAGENET_MEAN) and tv.std == pytest.approx(IMAGENET_STD)
    inc = resolve_preprocess(nn.Identity(), "torchvision:inception_v3", None)
    assert inc.size == (299, 299)
    swin = resolve_preprocess(nn.Identity(), "torchvision:swin_t", None)
    assert swin.interpolation == "bicubic"
    plain = resolve_preprocess(nn.Identity(), "mymodels.py:build", None)
    assert (plain.source, plain.size, plain.mean) == ("imagenet", (224, 224), IMAGENET_MEAN)
    # through load_model too: timm's test_resnet is configured for 160x160
    assert load_model("timm:test_resnet", device="cpu").preprocess.size == (160, 160)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"size": 0}, r"size = 0: expected a positive integer or \[height, width\]"),
        ({"size": [1, 2, 3]}, r"size = \[1, 2, 3\]"),
        ({"mean": [0.5, 0.5]}, r"mean = \[0.5, 0.5\]: expected a list of 3 numbers"),
        ({"std": [0.5, 0.0, 0.5]}, r"std = .*none zero"),
        ({"mean": "0.5"}, r"mean = '0.5'"),
        ({"mean": [0.5]}, r"mean has 1 values but std has 3"),
        ({"interpolation": "cubic"}, r"interpolation = 'cubic': expected one of bilinear"),
        ({"crop": 0.9}, r"unknown \[preprocess\] key\(s\) crop"),
    ],
)
def test_bad_preprocess_values(overrides: dict[str, object], pattern: str) -> None:
    with pytest.raises(ModelLoadError, match=pattern):
        resolve_preprocess(nn.Identity(), "x.py:f", overrides)


def test_single_channel_preprocess_from_the_card() -> None:
    p = resolve_preprocess(nn.Identity(), "x.py:f", {"mean": [0.5], "std": [0.25], "size": 8})
    assert p.mean == (0.5,) and p.size == (8, 8)


def test_file_and_package_factories(
    tmp_path: Path, factories: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = load_model(f"{factories}:build", num_classes=5, device="cpu")
    assert a.num_outputs == 5 and a.module(X).shape == (2, 5)
    assert a.module[-1].out_features == 5
    # the factory gets num_classes only when it takes it (or **kwargs)
    assert load_model(f"{factories}:flexible", num_classes=6, device="cpu").num_outputs == 6
    assert load_model(f"{factories}:fixed", num_classes=3, device="cpu").num_outputs == 3
    monkeypatch.syspath_prepend(str(tmp_path))
    b = load_model("mymodels:build", device="cpu")
    assert b.module(X).shape == (2, 2) and b.arch == "mymodels:build"
    with pytest.raises(ModelLoadError, match=r"not a torch nn\.Module"):
        load_model("mymodels:not_a_model", device="cpu")
    with pytest.raises(ModelLoadError, match="did you mean 'build'"):
        load_model("mymodels:biuld", device="cpu")
    with pytest.raises(ModelLoadError, match=r"calling broken\(\).*RuntimeError: no GPU for you"):
        load_model("mymodels:broken", device="cpu")
    with pytest.raises(ModelLoadError, match="cannot import 'nomodule_xyz'"):
        load_model("nomodule_xyz:build", device="cpu")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    with pytest.raises(ModelLoadError, match=r"importing .*syntax\.py .* failed: SyntaxError"):
        load_model(f"{tmp_path / 'syntax.py'}:f", device="cpu")
    with pytest.raises(ModelLoadError, match=r"gone\.py does not exist"):
        load_model(f"{tmp_path / 'gone.py'}:f", device="cpu")


def test_factory_card_with_checkpoint_and_relative_file(tmp_path: Path, factories: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("ref_models", factories)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(11)
    ref = mod.build(3)
    for p in ref.parameters():
        p.data.normal_()
    torch.save({"model_state_dict": ref.state_dict()}, tmp_path / "w.pt")
    (tmp_path / "f.toml").write_text(
        'arch = "mymodels.py:build"\ncheckpoint = "w.pt"\nlabels = ["a", "b", "c"]\n'
    )
    m = load_model(tmp_path / "f.toml", device="cpu")
    assert m.num_outputs == 3 and outputs_equal(m.module, ref)


def test_torchscript_round_trip(tmp_path: Path, factories: Path) -> None:
    ref = load_model(f"{factories}:build", device="cpu").module
    torch.jit.trace(ref, X).save(str(tmp_path / "m.pt"))
    m = load_model(f"torchscript:{tmp_path / 'm.pt'}", device="cpu")
    assert m.name == "m" and outputs_equal(m.module, ref)
    # a TorchScript module also takes a state_dict checkpoint
    torch.manual_seed(4)
    for p in ref.parameters():
        p.data.normal_()
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    m2 = load_model(f"torchscript:{tmp_path / 'm.pt'}", checkpoint=tmp_path / "w.pth", device="cpu")
    assert outputs_equal(m2.module, ref) and not outputs_equal(m.module, ref)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match=r"junk\.pt is not a TorchScript file"):
        load_model(f"torchscript:{tmp_path / 'junk.pt'}", device="cpu")


def test_mismatches_list_keys_and_shapes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18", num_classes=2).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError) as e:
        load_model("timm:resnet34", checkpoint=tmp_path / "r18.pth", device="cpu")
    msg = str(e.value)
    # resnet34 has 3+4+6+3 blocks, resnet18 2+2+2+2: 8 extra blocks, 12 extra downsample-free
    # tensors each (2 convs x 1 + 2 BNs x 5) -> 96 keys the checkpoint lacks, none it adds
    assert msg.startswith("checkpoint ") and "r18.pth does not fit timm:resnet34" in msg
    assert "96 missing keys (layer1.2.conv1.weight" in msg and "... 91 more" in msg
    assert "unexpected" not in msg and "--model" in msg and "\n" not in msg
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "lin.pth")
    with pytest.raises(
        CheckpointError, match=r"fit torchscript:.*: 1 unexpected keys \(weight\)\."
    ):
        load_model(
            f"torchscript:{_scripted(tmp_path)}", checkpoint=tmp_path / "lin.pth", device="cpu"
        )
    with pytest.raises(
        CheckpointError,
        match=r"2 shape conflicts \(checkpoint vs model\) \(fc\.weight \[2, 512\] vs \[4, 512\], "
        r"fc\.bias \[2\] vs \[4\]\)",
    ):
        load_model("timm:resnet18", checkpoint=tmp_path / "r18.pth", num_classes=4, device="cpu")


def _scripted(tmp_path: Path) -> Path:
    class OnlyBias(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.bias

    torch.jit.script(OnlyBias()).save(str(tmp_path / "b.pt"))
    return tmp_path / "b.pt"


def test_bad_specs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(
        ModelLoadError, match="timm has no model 'resnet81'; did you mean 'resnet18'"
    ):
        load_model("timm:resnet81", device="cpu")
    with pytest.raises(ModelLoadError, match=r"torchvision has no model 'resnet_18'.*'resnet18'"):
        load_model("torchvision:resnet_18", device="cpu")
    with pytest.raises(ModelLoadError, match=r"'hf:some/dir'.*not supported yet"):
        load_model("hf:some/dir", device="cpu")
    with pytest.raises(ModelLoadError, match=r"'best\.pth' looks like a checkpoint.*--checkpoint"):
        load_model("best.pth", device="cpu")
    with pytest.raises(ModelLoadError, match="cannot read the arch 'resnet18': use timm:NAME"):
        load_model("resnet18", device="cpu")
    with pytest.raises(ModelLoadError, match=r"nope\.toml does not exist"):
        load_model(tmp_path / "nope.toml")
    with pytest.raises(ModelLoadError, match="unknown task 'segmentation'; expected one of"):
        load_model("timm:test_resnet", task="segmentation", device="cpu")
    with pytest.raises(ModelLoadError, match="num_classes=0: expected a positive integer"):
        load_model("timm:test_resnet", num_classes=0, device="cpu")
    with pytest.raises(ModelLoadError, match="3 labels given but timm:test_resnet has 2 outputs"):
        load_model("timm:test_resnet", num_classes=2, labels=["a", "b", "c"], device="cpu")
    with pytest.raises(CheckpointError, match=r"missing\.pth does not exist"):
        load_model("timm:test_resnet", checkpoint=tmp_path / "missing.pth", device="cpu")


@pytest.mark.parametrize(
    ("card", "pattern"),
    [
        ('arch = "timm:test_resnet"\ncheckpiont = "x.pth"\n', "did you mean 'checkpoint'"),
        ('arch = "timm:test_resnet"\nlabels = "a,b"\n', "labels = 'a,b' should be a list"),
        ('arch = "timm:test_resnet"\nnum_classes = "2"\n', "num_classes = '2' should be a posi"),
        ('arch = "timm:test_resnet"\ntask = "detection"\n', r"card\.toml: unknown task 'detec"),
        ("arch = 3\n", "arch = 3 should be a string"),
        ('arch = "timm:test_resnet"\npreprocess = 224\n', r"'preprocess' should be a table"),
        ("arch = [\n", "is not valid TOML"),
        ('name = "x"\n', "has no 'arch' and it names no checkpoint"),
    ],
)
def test_bad_cards(tmp_path: Path, card: str, pattern: str) -> None:
    (tmp_path / "card.toml").write_text(card)
    with pytest.raises(ModelLoadError, match=pattern) as e:
        load_model(tmp_path / "card.toml", device="cpu")
    assert "\n" not in str(e.value) and "card.toml" in str(e.value)


def test_devices() -> None:
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        with pytest.raises(ModelLoadError, match=f"has {n} CUDA device"):
            load_model("timm:test_resnet", device=f"cuda:{n}")
        m = load_model("timm:test_resnet", device="cuda")
        assert m.device.type == "cuda"
    else:
        with pytest.raises(ModelLoadError, match="--device cuda: CUDA is not available here"):
            load_model("timm:test_resnet", device="cuda")
        assert load_model("timm:test_resnet").device == torch.device("cpu")  # the default
    with pytest.raises(ModelLoadError, match="--device gpu: expected cpu, cuda, cuda:N or mps"):
        load_model("timm:test_resnet", device="gpu")


def test_card_inputs_table_reaches_the_model(tmp_path: Path) -> None:
    (tmp_path / "mm.toml").write_text(
        'arch = "timm:test_resnet"\n[inputs]\nimage = "pixel_values"\n'
        'tabular = { arg = "features", columns = ["sqft", "grade"] }\n'
    )
    m = load_model(tmp_path / "mm.toml", device="cpu")
    assert m.inputs == {
        "image": "pixel_values",
        "tabular": {"arg": "features", "columns": ["sqft", "grade"]},
    }
