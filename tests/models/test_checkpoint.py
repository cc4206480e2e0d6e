"""Every checkpoint form round-trips; unsafe pickles are refused before they run."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from seewhy.core.errors import CheckpointError, UnsafeCheckpointError
from seewhy.models.checkpoint import load_checkpoint


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model_state_dict": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"model": sd},
        lambda sd: {"ema": sd},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"_orig_mod.module.{k}": v for k, v in sd.items()},
        lambda sd: {"model": {f"module._orig_mod.{k}": v for k, v in sd.items()}},
    ],
    ids=[
        "plain",
        "state_dict",
        "model_state_dict",
        "model",
        "ema",
        "module.",
        "compiled+ddp",
        "nested prefixes",
    ],
)
def test_pickle_forms_round_trip(tmp_path: Path, wrap: object) -> None:
    sd = net().state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(sd), path)  # type: ignore[operator]
    weights, _ = load_checkpoint(path)
    assert same(weights, sd)


def test_metadata_beside_the_weights(tmp_path: Path) -> None:
    sd = net().state_dict()
    torch.save(
        {
            "state_dict": sd,
            "model_name": "resnet18",
            "num_classes": 2,
            "class_names": ("a", "b"),
            "best_acc": torch.tensor(0.91),
            "epoch": 7,
            "optimizer": {"state": {}},
        },
        tmp_path / "m.pt",
    )
    _, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["model_name"] == "resnet18" and meta["num_classes"] == 2
    assert meta["class_names"] == ["a", "b"] and meta["epoch"] == 7
    assert meta["best_acc"] == pytest.approx(0.91)
    assert "optimizer" not in meta


def test_safetensors_with_metadata(tmp_path: Path) -> None:
    sd = net().state_dict()
    save_file(
        sd,
        str(tmp_path / "m.safetensors"),
        metadata={"accuracy": "0.93", "class_names": '["x", "y"]', "note": "hello"},
    )
    weights, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert same(weights, sd)
    assert meta == {"accuracy": 0.93, "class_names": ["x", "y"], "note": "hello"}


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (self.target,))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"state_dict": net().state_dict(), "payload": Payload(marker)}, tmp_path / "x.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"trust_checkpoint=True.*--trust-checkpoint"):
        load_checkpoint(tmp_path / "x.pth")
    assert not marker.exists()


def test_trusted_full_pickle_loads_a_whole_module(tmp_path: Path) -> None:
    model = net()
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(tmp_path / "whole.pt")
    weights, _ = load_checkpoint(tmp_path / "whole.pt", trust_checkpoint=True)
    assert same(weights, model.state_dict())


def test_broken_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pth does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pth"):
        load_checkpoint(tmp_path / "bad.pth")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown extension"):
        load_checkpoint(tmp_path / "w.onnx")
    good = tmp_path / "good.pth"
    torch.save(net().state_dict(), good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"cut\.pth"):
        load_checkpoint(tmp_path / "cut.pth")
