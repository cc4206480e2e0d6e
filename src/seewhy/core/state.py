"""Leave the user's model as we found it (STYLE rule 3).

``explaining(module)`` puts the model in eval mode with frozen parameters for the duration of a
method and restores every training flag and ``requires_grad`` afterwards, even on error.
Methods never write ``.grad``: they take ``torch.autograd.grad`` w.r.t. activations or inputs.
It also runs float32 as float32 on a GPU (:func:`exact_float32`), restoring the user's TF32
settings after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


TF32_SWITCHES = ("cuda.matmul", "cudnn.conv", "cudnn.rnn")
"""The ``torch.backends`` precision switches :func:`exact_float32` sets to ``"ieee"``."""


@contextmanager
def exact_float32(active: bool = True) -> Iterator[None]:
    """float32 matmuls and convolutions computed in float32 inside the block; the previous
    settings after it.

    On Ampere and newer GPUs torch runs float32 convolutions in TF32 by default (10-bit
    mantissa; ``torch.backends.cudnn.conv.fp32_precision == "tf32"``), and matmuls too after
    ``torch.set_float32_matmul_precision("high")``: maps and check figures would then differ
    from the CPU's by about 1e-3 of their scale, and ``precision="float32"`` promises exact
    figures, the same on every machine. The fast path on a GPU is ``precision="auto"`` /
    ``bfloat16``, which autocast decides and this leaves alone. ``active=False`` (a model on
    the CPU, where the switches mean nothing): nothing is touched, so a forward that reads
    torch's legacy ``allow_tf32`` flags does not meet the new API's settings."""
    import torch

    if not active:
        yield
        return
    switches = []
    for name in TF32_SWITCHES:
        group, _, leaf = name.partition(".")
        owner = getattr(getattr(torch.backends, group, None), leaf, None)
        if owner is not None and hasattr(owner, "fp32_precision"):
            switches.append((owner, owner.fp32_precision))
    try:
        for owner, _ in switches:
            owner.fp32_precision = "ieee"
        yield
    finally:
        for owner, before in switches:
            owner.fp32_precision = before


@contextmanager
def explaining(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters inside the block; the original state after it.

    Explanations are taken in eval mode (dropout off, batch-norm running statistics), whatever
    mode the model was handed over in, with float32 computed exactly on a GPU
    (:func:`exact_float32`).
    """
    training = [(m, m.training) for m in module.modules()]
    requires = [(p, p.requires_grad) for p in module.parameters()]
    try:
        module.eval()
        for p, _ in requires:
            p.requires_grad_(False)
        on_cuda = any(p.device.type == "cuda" for p, _ in requires)
        with exact_float32(on_cuda):
            yield module
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in requires:
            p.requires_grad_(flag)
