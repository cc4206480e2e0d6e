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

__all__ = ["DEFAULT_BATCH_SIZE", "Method", "check_batch_size", "check_seeds", "row_seeds"]


@dataclass(frozen=True)
class Method:
    """A method: frozen settings and one verb, ``method(model, inputs, target)``.

    Subclasses set ``name`` through ``@register``. Class-level facts (not settings):

    - ``signed``: whether maps keep a sign (negative = lowers the target);
    - ``depends_on_target``: whether the map changes with the target. A method that reads
      only the activations (EigenCAM) gives the same map for every class and for ``value`` and
      ``-value``, so callers draw it once instead of contrasting it with itself;
    - ``uses_background``: whether it draws baselines from data (``background`` below), so a
      run prepares that set once;
    - ``draws_at_random``: whether it draws anything at random (noise, baselines, masks), so
      its result depends on the seed;
    - ``for_trees``: whether it explains tabular tree models (``tree-shap``), not torch ones.

    ``batch_size`` is not a setting but a call argument: the largest batch that ANY forward
    pass of the call sends to the model (the batch itself is split into chunks of that size;
    methods with many forwards per sample, e.g. Score-CAM, send them that many at a time).

    ``seeds`` (a call argument too) gives one integer per row: a method that draws anything at
    random (noise, baselines, masks) draws row ``i``'s from a generator seeded with
    ``seeds[i]`` alone, so a row's result does not depend on the batch it came in, and a
    resumed run equals an uninterrupted one. ``None``: row ``i`` of the call uses ``i``.
    :func:`row_seeds` derives them from a run's seed and the sample ids.

    ``background`` (a call argument): the rows baselines are drawn from by methods that take
    them from data (expected gradients); the same set for every batch of a run, so a sample's
    result does not depend on its batch. ``None``: the method's own default (zeros).

    Targets are resolved once, on the clean batch's output (``Target.resolve``): a method that
    runs the model on perturbed inputs reads there the columns decided on the clean one.
    """

    name: ClassVar[str] = "method"
    signed: ClassVar[bool] = False
    depends_on_target: ClassVar[bool] = True
    uses_background: ClassVar[bool] = False
    draws_at_random: ClassVar[bool] = False
    for_trees: ClassVar[bool] = False
    """Whether the method explains tabular tree models (``tree-shap``) instead of torch ones."""

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
        seeds: Sequence[int] | None = None,
        background: Inputs | Tensor | None = None,
    ) -> Explanation:
        """Explain ``inputs`` (already preprocessed, any device) for ``target``."""
        m = Model.of(model)
        return self.run_many(
            [self],
            m,
            m.to_input(inputs),
            m.target(target),
            batch_size=batch_size,
            seeds=seeds,
            background=None if background is None else m.to_input(background),
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
        seeds: Sequence[int] | None = None,
        background: Inputs | None = None,
    ) -> list[Explanation]:
        """Run several methods of this family on one batch (on the model's device and dtype),
        sharing what they can; no forward sends the model more than ``batch_size`` rows."""
        raise NotImplementedError


def row_seeds(seed: int, ids: Sequence[str]) -> list[int]:
    """One seed per sample from a run's ``seed`` and the sample ids (stable across runs,
    machines and Python's hash randomisation): ``crc32`` of ``"<seed>:<id>"``."""
    import zlib

    return [zlib.crc32(f"{int(seed)}:{i}".encode()) for i in ids]


def check_seeds(seeds: Sequence[int] | None, rows: int) -> list[int]:
    """``seeds`` as a list of ``rows`` ints (``None``: ``0 .. rows-1``)."""
    from seewhy.core.errors import UsageError

    if seeds is None:
        return list(range(rows))
    out = [int(v) for v in seeds]
    if len(out) != rows:
        raise UsageError(
            f"seeds has {len(out)} values for a batch of {rows} rows; give one per row"
        )
    return out
