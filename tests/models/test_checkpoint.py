"""Every checkpoint form round-trips; unsafe pickles are refused before they run."""

from __future__ import annotations

import pathlib
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from seewhy.core.errors import CheckpointError, UnsafeCheckpointError
from seewhy.models.checkpoint import WEIGHT_KEYS, load_checkpoint, strip_prefixes


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def prefixed(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in sd.items()}


FORMS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "optimizer": {"lr": 0.1}},
    "model": lambda sd: {"model": sd},
    "ema": lambda sd: {"ema": sd},
    "state_dict_ema": lambda sd: {"state_dict_ema": sd},
    "model_ema": lambda sd: {"model_ema": sd, "arch": "x"},
    "deepspeed module": lambda sd: {"model": {"module": sd}},
    "module.": lambda sd: {"state_dict": prefixed(sd, "module.")},
    "_orig_mod.": lambda sd: prefixed(sd, "_orig_mod."),
    "compiled+ddp": lambda sd: prefixed(sd, "_orig_mod.module."),
    "ddp+compiled nested": lambda sd: {"model": prefixed(sd, "module._orig_mod.module.")},
}


@pytest.mark.parametrize("form", list(FORMS))
def test_pickle_forms_round_trip(tmp_path: Path, form: str) -> None:
    sd = net().state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save(FORMS[form](sd), path)
    weights, _ = load_checkpoint(path)
    assert same(weights, sd)


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".PTH"])
def test_every_pickle_suffix(tmp_path: Path, suffix: str) -> None:
    sd = net().state_dict()
    torch.save(sd, tmp_path / f"w{suffix}")
    assert same(load_checkpoint(tmp_path / f"w{suffix}")[0], sd)


def test_weight_keys_are_taken_in_the_documented_order(tmp_path: Path) -> None:
    # Raw weights win over an EMA copy saved beside them; each key wins over the ones after it.
    variants = {key: net(seed=i).state_dict() for i, key in enumerate(WEIGHT_KEYS)}
    for i, key in enumerate(WEIGHT_KEYS):
        ckpt = {k: variants[k] for k in WEIGHT_KEYS[i:]}
        torch.save(ckpt, tmp_path / "w.pth")
        weights, _ = load_checkpoint(tmp_path / "w.pth")
        assert same(weights, variants[key]), key


def test_strip_prefixes_in_any_combination() -> None:
    t = torch.zeros(1)
    keys = ["module._orig_mod.a.b", "_orig_mod.module.module.c", "d.module.e", "module.f"]
    assert list(strip_prefixes(dict.fromkeys(keys, t))) == ["a.b", "c", "d.module.e", "f"]


def test_metadata_beside_the_weights(tmp_path: Path) -> None:
    sd = net().state_dict()
    torch.save(
        {
            "state_dict": sd,
            "model_name": "resnet18",
            "arch": "timm:resnet18",
            "num_classes": 2,
            "class_names": ("a", "b"),
            "best_acc": torch.tensor(0.91),
            "val_f1": 0.875,
            "epoch": 7,
            "converged": True,
            "optimizer": {"state": {}},
            "history": [{"loss": 1.0}],
            "ema": net(seed=1).state_dict(),
        },
        tmp_path / "m.pt",
    )
    weights, meta = load_checkpoint(tmp_path / "m.pt")
    assert same(weights, sd)
    assert meta == {
        "model_name": "resnet18",
        "arch": "timm:resnet18",
        "num_classes": 2,
        "class_names": ["a", "b"],
        "best_acc": pytest.approx(0.91),
        "val_f1": 0.875,
        "epoch": 7,
        "converged": True,
    }


def test_tensors_mixed_with_metadata_at_the_top_level(tmp_path: Path) -> None:
    sd = net().state_dict()
    torch.save({**sd, "epoch": 4}, tmp_path / "w.pth")
    weights, meta = load_checkpoint(tmp_path / "w.pth")
    assert same(weights, sd) and meta == {"epoch": 4}


def test_safetensors_with_metadata(tmp_path: Path) -> None:
    sd = net().state_dict()
    save_file(
        prefixed(sd, "module."),
        str(tmp_path / "m.safetensors"),
        metadata={
            "accuracy": "0.93",
            "num_classes": "2",
            "class_names": '["x", "y"]',
            "note": "hello",
        },
    )
    weights, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert same(weights, sd)
    assert meta == {"accuracy": 0.93, "num_classes": 2, "class_names": ["x", "y"], "note": "hello"}


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (self.target,))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    sd = net().state_dict()
    torch.save({"state_dict": sd, "payload": Payload(marker)}, tmp_path / "x.pth")
    with pytest.raises(
        UnsafeCheckpointError, match=r"trust_checkpoint=True.*--trust-checkpoint"
    ) as e:
        load_checkpoint(tmp_path / "x.pth")
    assert "x.pth" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()
    # The payload is real: trusting the file runs it (so the refusal above is what saved us).
    weights, _ = load_checkpoint(tmp_path / "x.pth", trust_checkpoint=True)
    assert marker.exists() and same(weights, sd)


def test_trusted_full_pickle_loads_a_whole_module(tmp_path: Path) -> None:
    model = net()
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"whole\.pt .*needs torch\.nn\.modules"):
        load_checkpoint(tmp_path / "whole.pt")
    weights, _ = load_checkpoint(tmp_path / "whole.pt", trust_checkpoint=True)
    assert same(weights, model.state_dict())
    torch.save({"model": model, "epoch": 2}, tmp_path / "in_dict.pt")
    weights, meta = load_checkpoint(tmp_path / "in_dict.pt", trust_checkpoint=True)
    assert same(weights, model.state_dict()) and meta == {"epoch": 2}


def test_broken_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pth does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"w\.onnx has an unknown extension"):
        load_checkpoint(tmp_path / "w.onnx")
    good = tmp_path / "good.pth"
    torch.save(net().state_dict(), good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:100])
    (tmp_path / "cut_end.pth").write_bytes(good.read_bytes()[:-40])
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    for name, pattern in [
        ("cut.pth", r"cut\.pth is not a readable PyTorch file"),
        ("cut_end.pth", r"cut_end\.pth is not a readable PyTorch file"),
        ("bad.pth", r"bad\.pth is not a PyTorch checkpoint"),
    ]:
        with pytest.raises(CheckpointError, match=pattern) as e:
            load_checkpoint(tmp_path / name)
        # Corrupt is not "unsafe": trusting the file would not help, so do not suggest it.
        assert type(e.value) is CheckpointError, name
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(CheckpointError, match=r"bad\.safetensors is not a readable safetensors"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_checkpoints_without_weights(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointError, match=r"opt\.pth has no weights.*epoch, optimizer"):
        load_checkpoint(tmp_path / "opt.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth holds a list, not a state_dict"):
        load_checkpoint(tmp_path / "list.pth")


def test_plain_pickle_of_plain_data_is_refused_as_unsafe(tmp_path: Path) -> None:
    # pickle protocol 4 frames are outside what the weights-only unpickler reads.
    with open(tmp_path / "p.pkl.pth", "wb") as f:
        pickle.dump({"w": [1.0, 2.0]}, f, protocol=4)
    with pytest.warns(UserWarning), pytest.raises(UnsafeCheckpointError, match="trust"):
        load_checkpoint(tmp_path / "p.pkl.pth")


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_malicious_pickle_through_load_model_creates_nothing(tmp_path: Path, zipped: bool) -> None:
    from seewhy import load_model
    from seewhy.core.errors import SeewhyError

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.bin"
    torch.save(
        {"model": {"payload": Payload(marker)}, "epoch": 1},
        ckpt,
        _use_new_zipfile_serialization=zipped,
    )
    made = sorted(tmp_path.iterdir())
    with pytest.raises(UnsafeCheckpointError) as e:
        load_model("timm:test_resnet", checkpoint=ckpt, device="cpu")
    msg = str(e.value)
    assert isinstance(e.value, SeewhyError) and "\n" not in msg
    assert "evil.bin" in msg and re.search(r"it needs [\w.]+\)", msg)  # the global it wanted
    assert "trust_checkpoint=True" in msg and "--trust-checkpoint" in msg
    assert not marker.exists() and sorted(tmp_path.iterdir()) == made


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".safetensors"])
def test_nested_prefixed_checkpoints_round_trip_through_load_model(
    tmp_path: Path, suffix: str
) -> None:
    import timm

    from seewhy import load_model

    torch.manual_seed(3)
    ref = timm.create_model("test_resnet", pretrained=False, num_classes=2).eval()
    sd = prefixed(ref.state_dict(), "_orig_mod.module.")
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(sd, str(path), metadata={"num_classes": "2", "val_acc": "0.9"})
    else:
        torch.save({"model_state_dict": sd, "num_classes": 2, "val_acc": 0.9}, path)
    m = load_model("timm:test_resnet", checkpoint=path, device="cpu")
    assert m.num_outputs == 2 and m.metadata["val_acc"] == pytest.approx(0.9)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(m.module(x), ref(x))
    assert same(m.module.state_dict(), ref.state_dict())
