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
    """What a capture saw.

    A layer may run more than once in one forward pass (the same module called twice, weights
    shared across steps or blocks). seewhy explains its LAST call: ``value`` is the last call's
    output, and with ``leaf=True`` the gradient w.r.t. ``value`` flows through that call only.
    ``calls`` counts the forward calls, so that methods can report a layer that ran more than
    once. A recomputation during the backward pass (activation checkpointing) is not a call: it
    neither counts nor replaces ``value``.

    Attributes:
        name: the layer's name, for messages.
        value: the last call's output: a private copy (``leaf=False``), or the fresh leaf that
            stands for it in the graph (``leaf=True``). ``None`` until the layer runs.
        calls: how many times the layer ran in the forward passes of the block.
        leaf: whether the capture made the output a leaf to take gradients w.r.t.
        grad_enabled: whether autograd was on during the last call (off inside
            ``torch.no_grad()`` or reentrant activation checkpointing: no gradient reaches it).
    """

    name: str
    value: Tensor | None = None
    calls: int = 0
    leaf: bool = False
    grad_enabled: bool = True

    def get(self) -> Tensor:
        """The captured output; a clear error if the layer never ran, or if it ran where no
        gradient can reach it and the capture was made for gradients."""
        if self.value is None:
            raise LayerError(
                f"layer '{self.name}' did not run during the forward pass; pick a layer on the "
                "path from input to output (see seewhy.layers(model))"
            )
        if self.leaf and not self.grad_enabled:
            raise LayerError(
                f"layer '{self.name}' runs with gradients off (inside torch.no_grad() or "
                "reentrant activation checkpointing), so no gradient can reach it; pick a layer "
                "outside that block, checkpoint with use_reentrant=False, or use a gradient-free "
                "CAM (eigencam, scorecam)"
            )
        return self.value


def _in_backward() -> bool:
    """Whether the autograd engine is running a backward pass on this thread (as when
    activation checkpointing recomputes a segment)."""
    import torch

    probe = getattr(torch._C, "_current_graph_task_id", None)
    return probe is not None and int(probe()) != -1


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
    clone of it flows on, so in-place ops downstream stay legal and cannot touch the leaf). The
    graph then starts at the layer: ``torch.autograd.grad(score, captured.value)`` costs a
    backward down to the layer only, and no parameter receives a gradient.

    With ``leaf=False`` the model runs untouched and ``value`` is a detached copy of the output,
    so an in-place op after the layer (``F.relu(x, inplace=True)``, ``nn.ReLU(inplace=True)``)
    cannot change what was captured.

    A layer that runs more than once is read at its LAST call (see :class:`Captured`).
    """
    cap = Captured(name, leaf=leaf)

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        import torch

        tensor = _first_tensor(output, name)
        recompute = _in_backward()  # checkpointing re-running the layer: not a new call
        if not leaf:
            if not recompute:
                cap.calls += 1
                cap.value = tensor.detach().clone()
            return None
        act = tensor.detach().requires_grad_(True)
        if not recompute:
            cap.calls += 1
            cap.value = act
            cap.grad_enabled = torch.is_grad_enabled()
        # The same substitution on a recomputation, so that it rebuilds the graph it replaces.
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
    """Output shapes of named modules in the order their forward calls finished.

    ``shapes`` holds each module's LAST output shape (first tensor of its output) and ``calls``
    how many times it ran, whether or not its output was a tensor.
    """

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)


@contextmanager
def record_output_shapes(modules: Iterable[tuple[str, nn.Module]]) -> Iterator[ShapeRecord]:
    """Record each module's output shape (first tensor of its output) and its number of calls
    during the block; a recomputation in the backward pass (checkpointing) is not a call."""
    import torch

    record = ShapeRecord()
    handles = []

    def make(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if _in_backward():
                return
            record.calls[name] = record.calls.get(name, 0) + 1
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


@contextmanager
def replace_output(layer: nn.Module, name: str, value: Tensor) -> Iterator[None]:
    """While inside, ``layer`` returns ``value`` instead of its output (text attribution: the
    embedding layer gives the point's token embeddings). The model's forward and weights are
    untouched; the hook is removed on exit, also on error. ``value``'s shape must match."""
    from seewhy.core.errors import UsageError

    def hook(_m: nn.Module, _args: Any, out: Any) -> Any:
        if not hasattr(out, "shape") or tuple(out.shape) != tuple(value.shape):
            got = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
            raise UsageError(
                f"embedding layer '{name}' gave {got} here, not {tuple(value.shape)}; name the "
                "layer whose output is the token embeddings [B, T, D] in [inputs] text embedding"
            )
        # a clone flows on, so an in-place op after the layer cannot touch ``value`` (a leaf
        # that requires grad); the gradient still reaches ``value`` through it
        return value.to(out.dtype) if value.dtype != out.dtype else value.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
