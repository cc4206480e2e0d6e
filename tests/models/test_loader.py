"""load_model: cards, arch strings, factories, torchscript, num_classes inference, mismatches,
and where preprocessing comes from."""

from __future__ import annotations

import copy
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
from seewhy.models import user_code
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
    # tensors each (2 convs x 1 + 2 BNs x 5) -> 96 keys the checkpoint lacks, none it adds; of
    # them torch fills in the 16 num_batches_tracked itself, so 80 are missing
    assert msg.startswith("checkpoint ") and "r18.pth does not fit timm:resnet34" in msg
    assert "80 missing keys (layer1.2.conv1.weight" in msg and "... 75 more" in msg
    assert "num_batches_tracked" not in msg
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
    with pytest.raises(ModelLoadError, match=r"'hf:some/dir'.*is not a folder.*save_pretrained"):
        load_model("hf:some/dir", device="cpu")
    with pytest.raises(CheckpointError, match=r"checkpoint best\.pth does not exist"):
        load_model("best.pth", device="cpu")  # a checkpoint is a model when it names its arch
    (tmp_path / "card.toml").write_text('arch = "best.pth"\n')
    with pytest.raises(ModelLoadError, match=r"arch 'best\.pth' is a checkpoint.*checkpoint = "):
        load_model(tmp_path / "card.toml", device="cpu")
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


# --- checkpoints torch itself accepts -------------------------------------------------------


def _bn_stats(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics, so a checkpoint that lost them would show."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(123)
    return model.eval()


@pytest.mark.parametrize("arch", ["torchvision:resnet18", "timm:test_resnet"])
def test_checkpoints_without_num_batches_tracked_load_as_torch_loads_them(
    tmp_path: Path, arch: str
) -> None:
    torch.manual_seed(8)
    kind, _, name = arch.partition(":")
    if kind == "timm":
        ref = _bn_stats(timm.create_model(name, pretrained=False, num_classes=3))
    else:
        ref = _bn_stats(torchvision.models.get_model(name, weights=None, num_classes=3))
    sd = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    dropped = len(ref.state_dict()) - len(sd)
    assert dropped >= 10  # every batch-norm lost its counter
    # the oracle: torch loads it strictly (BatchNorm fills the counters in)
    copy.deepcopy(ref).load_state_dict(sd, strict=True)
    torch.save({"state_dict": sd}, tmp_path / "w.pth")
    m = load_model(arch, checkpoint=tmp_path / "w.pth", device="cpu")
    assert m.num_outputs == 3 and outputs_equal(m.module, ref)
    got = m.module.state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    # a real weight removed is still refused, by name, and only it
    del sd["layer1.0.conv1.weight"]
    torch.save(sd, tmp_path / "holed.pth")
    with pytest.raises(CheckpointError) as e:
        load_model(arch, checkpoint=tmp_path / "holed.pth", device="cpu")
    msg = str(e.value)
    assert f"does not fit {arch}: 1 missing keys (layer1.0.conv1.weight)." in msg
    assert "num_batches_tracked" not in msg and "\n" not in msg


# --- a model from FILE.py:FACTORY pickles across processes ----------------------------------

NET_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=2):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    def build(num_classes=2):
        torch.manual_seed(0)
        return Net(num_classes)
""")


def test_a_model_built_from_a_file_unpickles_in_another_process(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "my-net.v2.py").write_text(NET_FILE)  # a stem that is no identifier
    arch = f"{tmp_path / 'my-net.v2.py'}:build"
    pkl = tmp_path / "model.pkl"
    first = textwrap.dedent(f"""
        import pickle, torch
        from seewhy import load_model
        m = load_model({arch!r}, num_classes=3, device="cpu")
        torch.manual_seed(1)
        for p in m.module.parameters():
            p.data.normal_()
        x = torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)
        with open({str(pkl)!r}, "wb") as f:
            pickle.dump((m.module, m.module(x).detach()), f)
    """)
    second = textwrap.dedent(f"""
        import pickle, torch
        from seewhy import load_model
        load_model({arch!r}, device="cpu")  # a worker that loads the model itself: still fine
        with open({str(pkl)!r}, "rb") as f:
            module, y = pickle.load(f)
        x = torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)
        assert type(module).__name__ == "Net", type(module)
        assert torch.equal(module(x), y)
        print("unpickled", y.shape[1])
    """)
    for code, seed in ((first, "1"), (second, "2")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "unpickled 3"


HELPER_FILE = "SCALE = 2.0\n"

MODELS_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    from helpers import SCALE  # a neighbour of this file

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x) * SCALE

    def factory():
        torch.manual_seed(0)
        return Net()
""")


def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "user code"  # a space, too
    folder.mkdir()
    (folder / "helpers.py").write_text(HELPER_FILE)
    (folder / "models.py").write_text(MODELS_FILE)
    return folder


def test_a_fresh_process_unpickles_a_file_model_without_load_model(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    folder = _user_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"  # neither process runs in the model's folder
    elsewhere.mkdir()
    pkl = tmp_path / "m.pkl"
    first = textwrap.dedent(f"""
        import pickle, torch
        import seewhy
        m = seewhy.load_model({str(folder / "models.py") + ":factory"!r}, device="cpu")
        x = torch.linspace(-1, 1, 8).view(2, 4)
        with torch.no_grad():
            y = m.module(x)
        with open({str(pkl)!r}, "wb") as f:
            pickle.dump((m.module, y), f)
    """)
    second = textwrap.dedent(f"""
        import pickle, sys, torch
        with open({str(pkl)!r}, "rb") as f:
            m, y = pickle.load(f)
        x = torch.linspace(-1, 1, 8).view(2, 4)
        with torch.no_grad():
            assert torch.equal(m(x), y), (m(x), y)
        assert "seewhy.models.loader" not in sys.modules  # load_model was never called
        print(type(m).__name__, tuple(y.shape))
    """)
    for code, seed in ((first, "1"), (second, "2")):
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Net (2, 3)"


def test_a_spawned_pool_worker_receives_a_file_model(tmp_path: Path) -> None:
    import multiprocessing
    import operator

    folder = _user_folder(tmp_path)
    module = load_model(f"{folder / 'models.py'}:factory", device="cpu").module
    # an importable name that says which file it is
    name = type(module).__module__
    assert name.startswith("seewhy.models.user_code.m_") and name.isascii()
    assert user_code.file_of(name) == (folder / "models.py").resolve()
    module.requires_grad_(False)  # its output goes back through a pickle
    x = torch.linspace(-1, 1, 8).view(2, 4)
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a lost task would hang: timeout
        got = pool.apply_async(operator.call, (module, x)).get(timeout=60)
    assert torch.equal(got, module(x))


# --- a checkpoint that names its architecture is a model ------------------------------------


def test_a_checkpoint_that_names_its_arch_is_a_model(tmp_path: Path) -> None:
    torch.manual_seed(4)
    ref = timm.create_model("convnextv2_atto", pretrained=False, num_classes=3).eval()
    path = tmp_path / "best.pth"
    torch.save(
        {
            "model_state_dict": ref.state_dict(),
            "model_name": "convnextv2_atto",
            "class_names": ["normal", "simple", "comminuted"],
            "test_accuracy": 0.91,
            "epoch": 7,
        },
        path,
    )
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for spec in (path, str(path)):
        m = load_model(spec, device="cpu")
        assert m.arch == "timm:convnextv2_atto" and m.checkpoint == str(path)
        assert m.labels == ["normal", "simple", "comminuted"] and m.num_outputs == 3
        assert m.metadata["test_accuracy"] == 0.91 and m.metadata["epoch"] == 7
        assert m.name == "best"
        with torch.no_grad():
            torch.testing.assert_close(m.module(x), ref(x), rtol=0, atol=0)
    # .safetensors with the arch in its header
    save_file(
        ref.state_dict(),
        str(tmp_path / "w.safetensors"),
        metadata={"arch": "timm:convnextv2_atto", "class_names": '["a", "b", "c"]'},
    )
    s = load_model(tmp_path / "w.safetensors", device="cpu")
    assert s.arch == "timm:convnextv2_atto" and s.labels == ["a", "b", "c"]
    with torch.no_grad():
        torch.testing.assert_close(s.module(x), ref(x), rtol=0, atol=0)
    # the checkpoint is the model: a second checkpoint is a mistake, said so
    with pytest.raises(ModelLoadError, match=r"best\.pth is a checkpoint.*not both"):
        load_model(path, checkpoint=tmp_path / "w.safetensors", device="cpu")


def test_a_checkpoint_names_a_timm_model_with_its_pretrained_tag(tmp_path: Path) -> None:
    torch.manual_seed(5)
    ref = timm.create_model("resnet18", pretrained=False, num_classes=2).eval()
    for tag, crop, interpolation in (
        ("tv_in1k", 0.875, "bilinear"),  # a known tag: its own data config
        ("my_finetune", 0.95, "bicubic"),  # a tag timm does not know: the model's default
    ):
        torch.save(
            {"state_dict": ref.state_dict(), "model_name": f"resnet18.{tag}"}, tmp_path / "t.pt"
        )
        m = load_model(tmp_path / "t.pt", device="cpu")
        assert m.arch == f"timm:resnet18.{tag}" and m.num_outputs == 2 and m.labels is None
        assert (m.preprocess.crop_pct, m.preprocess.interpolation) == (crop, interpolation)
        assert outputs_equal(m.module, ref)
    torch.save(
        {"state_dict": ref.state_dict(), "model_name": "resnet81.a1_in1k"}, tmp_path / "u.pt"
    )
    with pytest.raises(ModelLoadError, match=r"'resnet81\.a1_in1k', which neither timm"):
        load_model(tmp_path / "u.pt", device="cpu")


def test_a_checkpoint_without_an_arch_says_how_to_name_it(tmp_path: Path) -> None:
    torch.save({"model_state_dict": tiny_timm(2).state_dict(), "acc": 0.5}, tmp_path / "anon.pth")
    with pytest.raises(ModelLoadError) as e:
        load_model(tmp_path / "anon.pth", device="cpu")
    msg = str(e.value)
    assert "anon.pth" in msg and "names no architecture" in msg and "\n" not in msg
    assert "-m timm:NAME --checkpoint" in msg and "model_name" in msg


def test_cli_explains_with_a_checkpoint_as_the_model(tmp_path: Path) -> None:
    import json

    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from seewhy.cli import app

    torch.manual_seed(6)
    ref = tiny_timm(2)
    torch.save(
        {
            "model_state_dict": ref.state_dict(),
            "model_name": "test_resnet",
            "class_names": ["normal", "fracture"],
            "test_accuracy": 0.8,
        },
        tmp_path / "best.pth",
    )
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    result = CliRunner().invoke(
        app,
        [
            "explain",
            str(tmp_path / "x.png"),
            "-m",
            str(tmp_path / "best.pth"),
            "--method",
            "gradcam",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--quiet",
            "--no-report",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (entry,) = summary["models"]
    assert entry["arch"] == "timm:test_resnet" and entry["labels"] == ["normal", "fracture"]
    assert entry["metadata"]["test_accuracy"] == 0.8


# --- binary classifiers with a single output ------------------------------------------------

BINARY_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 1))

    def build_n(num_classes=1):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, num_classes))
""")


def test_single_output_classifiers_are_binary(tmp_path: Path) -> None:
    (tmp_path / "binary.py").write_text(BINARY_FILE)
    arch = f"{tmp_path / 'binary.py'}:build"
    m = load_model(arch, labels=["normal", "fracture"], device="cpu")
    assert m.labels == ["normal", "fracture"] and m.num_outputs == 1
    one = load_model(arch, labels=["fracture"], device="cpu")
    assert one.labels == ["not fracture", "fracture"] and one.num_outputs == 1
    plain = load_model(arch, device="cpu")
    assert plain.labels is None and plain.num_outputs == 1
    # other mismatches are still refused, as are two names for one multilabel/regression output
    with pytest.raises(ModelLoadError, match=r"3 labels given but .*build has 1 outputs"):
        load_model(arch, labels=["a", "b", "c"], device="cpu")
    for task in ("multilabel", "regression"):
        with pytest.raises(ModelLoadError, match=r"2 labels given but .*build has 1 outputs"):
            load_model(arch, labels=["normal", "fracture"], task=task, device="cpu")


def test_binary_class_names_from_a_checkpoint_with_a_single_output_head(tmp_path: Path) -> None:
    (tmp_path / "binary.py").write_text(BINARY_FILE)
    torch.manual_seed(9)
    ref = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)
    ).eval()
    torch.save(
        {"model_state_dict": ref.state_dict(), "class_names": ["normal", "fracture"]},
        tmp_path / "w.pth",
    )
    for factory in ("build", "build_n"):  # build_n would be given num_classes=2 by the names
        m = load_model(
            f"{tmp_path / 'binary.py'}:{factory}", checkpoint=tmp_path / "w.pth", device="cpu"
        )
        assert m.labels == ["normal", "fracture"] and m.num_outputs == 1
        assert outputs_equal(m.module, ref)
    timm_ref = tiny_timm(1)
    torch.save(
        {"state_dict": timm_ref.state_dict(), "class_names": ["neg", "pos"]}, tmp_path / "t.pth"
    )
    t = load_model("timm:test_resnet", checkpoint=tmp_path / "t.pth", device="cpu")
    assert t.labels == ["neg", "pos"] and t.num_outputs == 1 and outputs_equal(t.module, timm_ref)
    # an explicit num_classes=2 is the output width: a 1-output checkpoint does not fit it
    with pytest.raises(CheckpointError, match=r"shape conflicts"):
        load_model("timm:test_resnet", checkpoint=tmp_path / "t.pth", num_classes=2, device="cpu")


def test_a_missing_hugging_face_folder_is_one_line_naming_save_pretrained() -> None:
    """hf:PATH loads a saved transformers model (tests/jobs/test_hf_models.py); a wrong path says
    what the folder must hold, in one line, never torchscript's advice."""
    with pytest.raises(ModelLoadError) as e:
        load_model("hf:some/dir", device="cpu")
    msg = str(e.value)
    assert "save_pretrained" in msg and "torchscript" not in msg.lower()
    assert "jit" not in msg and "\n" not in msg
