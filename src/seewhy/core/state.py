"""Leave the user's model as we found it (STYLE rule 3).

``explaining(module)`` puts the model in eval mode with frozen parameters for the duration of a
method and restores every training flag and ``requires_grad`` afterwards, even on error.
Methods never write ``.grad``: they take ``torch.autograd.grad`` w.r.t. activations or inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@contextmanager
def explaining(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters inside the block; the original state after it.

    Explanations are taken in eval mode (dropout off, batch-norm running statistics), whatever
    mode the model was handed over in.
    """
    training = [(m, m.training) for m in module.modules()]
    requires = [(p, p.requires_grad) for p in module.parameters()]
    try:
        module.eval()
        for p, _ in requires:
            p.requires_grad_(False)
        yield module
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in requires:
            p.requires_grad_(flag)
