"""What every method shares: the base class and the plumbing from a model to a batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from seewhy.core.errors import ModelOutputError, UsageError
from seewhy.core.targets import Target, parse_target

if TYPE_CHECKING:
    from torch import Tensor, nn

    from seewhy.core.explanation import Explanation


def module_of(model: Any) -> nn.Module:
    """The ``nn.Module`` behind a seewhy ``Model`` or a plain module."""
    from torch import nn

    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise UsageError(
            f"expected a torch nn.Module or a seewhy Model, got {type(model).__name__}"
        )
    return module


def default_layer(model: Any) -> str:
    """The model card's layer (``auto`` for plain modules)."""
    return str(getattr(model, "layer", None) or "auto")


def as_targets(
    model: Any, target: str | int | Target, num_outputs: int | None = None
) -> list[Target]:
    """Parse a target against the model's task and labels."""
    return parse_target(
        target,
        task=getattr(model, "task", "classification"),
        labels=getattr(model, "labels", None),
        num_outputs=num_outputs,
    )


def single_target(model: Any, target: str | int | Target) -> Target:
    targets = as_targets(model, target)
    if len(targets) != 1:
        raise UsageError(
            "a method explains one target at a time; use seewhy.explain(..., target='all') "
            "to explain every output"
        )
    return targets[0]


def to_model_input(module: nn.Module, inputs: Tensor) -> Tensor:
    """Move a batch to the model's device and floating dtype (fp16/bf16 models included)."""
    p = next(iter(module.parameters()), None)
    if p is None:
        return inputs
    dtype = p.dtype if p.is_floating_point() and inputs.is_floating_point() else inputs.dtype
    return inputs.to(device=p.device, dtype=dtype)


def check_output(out: Tensor) -> None:
    """Refuse NaN/inf outputs: an explanation of them would be noise."""
    import torch

    bad = (~torch.isfinite(out)).flatten(1).any(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ModelOutputError(
            f"the model's output is NaN or infinite for batch rows {rows}; check the checkpoint "
            "and the input preprocessing (mean/std, value range)"
        )


DEFAULT_BATCH_SIZE = 32


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` as an int >= 1, or a :class:`UsageError` that says so."""
    import operator

    try:
        n = operator.index(batch_size)
    except TypeError:
        n = 0
    if isinstance(batch_size, bool) or n < 1:
        raise UsageError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return n


@dataclass(frozen=True)
class Method:
    """A method: frozen settings and one verb, ``method(model, inputs, target)``.

    Subclasses set ``name`` through ``@register``. Class-level facts (not settings):

    - ``signed``: whether maps keep a sign (negative = lowers the target);
    - ``depends_on_target``: whether the map changes with the target. A method that reads
      only the activations (EigenCAM) gives the same map for every class and for ``value`` and
      ``-value``, so callers draw it once instead of contrasting it with itself.

    ``batch_size`` is not a setting but a call argument: the largest batch that ANY forward
    pass of the call sends to the model (the batch itself is split into chunks of that size;
    methods with many forwards per sample, e.g. Score-CAM, send them that many at a time).
    """

    name: ClassVar[str] = "method"
    signed: ClassVar[bool] = False
    depends_on_target: ClassVar[bool] = True

    def params(self) -> dict[str, Any]:
        """The settings as they go to summary.json."""
        return dataclasses.asdict(self)

    def check_applicable(self, module: nn.Module) -> None:
        """Raise :class:`MethodNotApplicableError` if this method cannot explain ``module``,
        before any work is done (default: every module)."""

    def __call__(
        self,
        model: Any,
        inputs: Tensor,
        target: str | int | Target = "pred",
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Explanation:
        return self.run_many(
            [self], model, inputs, single_target(model, target), batch_size=batch_size
        )[0]

    @classmethod
    def run_many(
        cls,
        methods: Sequence[Method],
        model: Any,
        inputs: Tensor,
        target: Target,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[Explanation]:
        """Run several methods of this family on one batch, sharing what they can; no forward
        sends the model more than ``batch_size`` rows."""
        raise NotImplementedError
