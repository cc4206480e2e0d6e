"""Every hook seewhy registers lives here, and only inside ``with`` (STYLE rule 2).

Hooks are removed in ``finally``, so none is left on the user's model after success or after an
exception. A test greps ``src/`` and fails if a hook is registered anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import LayerError

if TYPE_CHECKING:
    from torch import Tensor, nn


@dataclass
class Captured:
    """What a capture saw: the layer's last output (``value``) and how often it ran."""

    name: str
    value: Tensor | None = None
    calls: int = 0

    def get(self) -> Tensor:
        """The captured output; a clear error if the layer never ran."""
        if self.value is None:
            raise LayerError(
                f"layer '{self.name}' did not run during the forward pass; pick a layer on the "
                "path from input to output (see seewhy.layers(model))"
            )
        return self.value


def _first_tensor(output: Any, name: str) -> Tensor:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise LayerError(
        f"layer '{name}' returns {type(output).__name__}, not a tensor; choose a layer whose "
        "output is a feature map"
    )


@contextmanager
def capture_output(
    layer: nn.Module, name: str = "layer", *, leaf: bool = True
) -> Iterator[Captured]:
    """Capture ``layer``'s output during the forward passes run inside the block.

    With ``leaf=True`` the output is replaced by a fresh leaf tensor that requires grad (and a
    clone of it flows on, so in-place ops downstream stay legal). The graph then starts at the
    layer: ``torch.autograd.grad(score, captured.value)`` costs a backward down to the layer
    only, and no parameter receives a gradient.
    """
    cap = Captured(name)

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        tensor = _first_tensor(output, name)
        cap.calls += 1
        if not leaf:
            cap.value = tensor.detach()
            return None
        act = tensor.detach().requires_grad_(True)
        cap.value = act
        flowing = act.clone()
        if isinstance(output, (tuple, list)):
            return type(output)([flowing, *output[1:]])
        return flowing

    handle = layer.register_forward_hook(hook)
    try:
        yield cap
    finally:
        handle.remove()


@dataclass
class ShapeRecord:
    """Output shapes of named modules in the order their forward calls finished."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


@contextmanager
def record_output_shapes(modules: Iterable[tuple[str, nn.Module]]) -> Iterator[ShapeRecord]:
    """Record each module's output shape (first tensor of its output) during the block."""
    import torch

    record = ShapeRecord()
    handles = []

    def make(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = output
            if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
                out = out[0]
            if isinstance(out, torch.Tensor):
                record.shapes[name] = tuple(out.shape)
                if name in record.order:
                    record.order.remove(name)
                record.order.append(name)

        return hook

    try:
        for name, module in modules:
            handles.append(module.register_forward_hook(make(name)))
        yield record
    finally:
        for h in handles:
            h.remove()
