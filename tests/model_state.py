"""The user's model as we found it (STYLE rule 3): a snapshot, and an exact comparison."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Weights and buffers, train/eval flags, ``requires_grad`` and ``.grad``, copied."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two snapshots are bit for bit the same."""
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    for x, y in zip(a["grad"], b["grad"], strict=True):
        assert (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
