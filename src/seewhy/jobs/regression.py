"""Regression pairs: what raises an output beside what lowers it, from one pass.

A regression target's figure shows both signs: the map of the explained target and the map of
its opposite (``value`` and ``-value``), which every target-dependent CAM returns from the same
pass (``extras["opposite"]``). Methods that do not depend on the target draw one map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from seewhy.core.explanation import Explanation
    from seewhy.core.model import Model


def is_regression(model: Model) -> bool:
    return model.task == "regression"


def depends_on_target(method: str) -> bool:
    """Whether a method's map changes with the target (EigenCAM's does not)."""
    from seewhy.methods.registry import method_class

    return bool(method_class(method).depends_on_target)


def _single(model: Model, target: Any) -> Any:
    from seewhy.core.targets import Target, parse_target

    if isinstance(target, Target):
        return target
    (t,) = parse_target(target, task=model.task, labels=model.labels, num_outputs=model.num_outputs)
    return t


def is_lowering(model: Model, target: Any) -> bool:
    """Whether the target explains what lowers a regression output (``-value``)."""
    from seewhy.core.targets import RegressionTarget

    t = _single(model, target)
    return isinstance(t, RegressionTarget) and t.sign < 0


def opposites(exps: Sequence[Explanation]) -> list[Tensor | None]:
    """Each method's map of the opposite sign (regression targets: every target-dependent CAM
    computes it in the same pass, ``extras["opposite"]``), so figures show what raises and what
    lowers the output apart; ``None`` for classifiers, signed methods and methods that do not
    depend on the target (their two maps would be the same)."""
    return [
        e.extras.get("opposite") if depends_on_target(e.method) and not e.signed else None
        for e in exps
    ]


def raises_and_lowers(
    heat: np.ndarray, other: np.ndarray | None, flipped: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The (raises, lowers) maps of a figure from the explained map and its opposite: for a
    ``-value`` target the explained map is what lowers the output."""
    if flipped and other is not None:
        return other, heat
    return heat, other


def one_map_note(model: Model, method: str) -> str | None:
    """The figure's note for a method drawn once on a regressor (it ignores the target)."""
    if is_regression(model) and not depends_on_target(method):
        return f"{method} does not depend on the target: one map for any output"
    return None
