"""What every method shares: the base class, ``Method``.

Methods receive a :class:`~seewhy.core.model.Model` and an :class:`~seewhy.core.inputs.Inputs`
batch, converted once at the front door (``seewhy.api``); the device, dtype, forward and
target parsing they need are the model's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from seewhy.core.inputs import DEFAULT_BATCH_SIZE, Inputs, check_batch_size
from seewhy.core.model import Model

if TYPE_CHECKING:
    from torch import Tensor, nn

    from seewhy.core.explanation import Explanation
    from seewhy.core.targets import Target

__all__ = ["DEFAULT_BATCH_SIZE", "Method", "check_batch_size"]


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

    Targets are resolved once, on the clean batch's output (``Target.resolve``): a method that
    runs the model on perturbed inputs reads there the columns decided on the clean one.
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
        model: Model | nn.Module,
        inputs: Inputs | Tensor,
        target: str | int | Target = "pred",
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Explanation:
        """Explain ``inputs`` (already preprocessed, any device) for ``target``."""
        m = Model.of(model)
        return self.run_many(
            [self], m, m.to_input(inputs), m.target(target), batch_size=batch_size
        )[0]

    @classmethod
    def run_many(
        cls,
        methods: Sequence[Method],
        model: Model,
        inputs: Inputs,
        target: Target,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[Explanation]:
        """Run several methods of this family on one batch (on the model's device and dtype),
        sharing what they can; no forward sends the model more than ``batch_size`` rows."""
        raise NotImplementedError
