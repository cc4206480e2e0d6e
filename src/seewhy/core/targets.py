"""Targets: what output an explanation explains (SPEC section 4).

A target is a callable ``output -> Tensor[B]``: the scalar per sample whose gradient (or whose
change under perturbation) the method reads. ``parse_target`` turns the CLI's ``--target``
strings into targets, in this one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import ModelOutputError, TargetError, did_you_mean

if TYPE_CHECKING:
    from torch import Tensor

TASKS = ("classification", "multilabel", "regression")


def output_tensor(output: Any) -> Tensor:
    """The model's output as a ``[B, C]`` tensor.

    Accepts a tensor (``[B]`` becomes ``[B, 1]``), an object with ``.logits`` (Hugging Face),
    a dict with ``logits``/``output``, or a tuple/list whose first item is the output.
    """
    import torch

    out = output
    if hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, dict):
        for key in ("logits", "output", "outputs", "pred"):
            if key in out:
                out = out[key]
                break
        else:
            raise ModelOutputError(
                f"the model returned a dict with keys {sorted(out)}; expected a tensor or a "
                "'logits' key. Wrap the model so that forward returns the output tensor."
            )
    elif isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(
            f"the model returned {type(output).__name__}; expected a tensor of shape [B, C]"
        )
    if out.ndim == 1:
        out = out[:, None]
    elif out.ndim > 2:
        out = out.flatten(1)
    return out


class Target:
    """Base class: ``__call__(output) -> Tensor[B]`` and ``indices(output) -> Tensor[B]``."""

    name: str = "target"
    sign: int = 1

    def __call__(self, output: Tensor) -> Tensor:
        out = output_tensor(output)
        idx = self.indices(out)
        return self.sign * out.gather(1, idx[:, None].to(out.device)).squeeze(1)

    def indices(self, output: Tensor) -> Tensor:
        """The output column explained for each sample."""
        raise NotImplementedError


@dataclass(frozen=True)
class PredictedClass(Target):
    """The class with the highest score, per sample (``pred`` for classifiers)."""

    name: str = "pred"

    def indices(self, output: Tensor) -> Tensor:
        return output_tensor(output).argmax(dim=1)


@dataclass(frozen=True)
class ClassTarget(Target):
    """One fixed output column (a class index, or a label resolved to its index)."""

    index: int
    label: str | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label if self.label is not None else str(self.index)

    def indices(self, output: Tensor) -> Tensor:
        import torch

        out = output_tensor(output)
        if not 0 <= self.index < out.shape[1]:
            raise TargetError(
                f"target class {self.index} is out of range: the model has {out.shape[1]} "
                f"outputs (0..{out.shape[1] - 1})"
            )
        return torch.full((out.shape[0],), self.index, dtype=torch.long, device=out.device)


@dataclass(frozen=True)
class SampleClasses(Target):
    """A class per sample, e.g. the true label from a manifest (``true``)."""

    per_sample: tuple[int, ...]
    name: str = "true"

    def indices(self, output: Tensor) -> Tensor:
        import torch

        out = output_tensor(output)
        if len(self.per_sample) != out.shape[0]:
            raise TargetError(
                f"'true' target has {len(self.per_sample)} labels for a batch of {out.shape[0]}"
            )
        return torch.tensor(self.per_sample, dtype=torch.long, device=out.device)


@dataclass(frozen=True)
class RegressionTarget(Target):
    """A regression output, signed: ``sign=+1`` explains what raises it, ``-1`` what lowers it."""

    output: int = 0
    sign: int = 1
    output_name: str | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        base = self.output_name or ("value" if self.output == 0 else str(self.output))
        return base if self.sign > 0 else f"-{base}"

    def indices(self, output: Tensor) -> Tensor:
        import torch

        out = output_tensor(output)
        if not 0 <= self.output < out.shape[1]:
            raise TargetError(
                f"output {self.output} is out of range: the model has {out.shape[1]} outputs"
            )
        return torch.full((out.shape[0],), self.output, dtype=torch.long, device=out.device)


def parse_target(
    spec: str | int | Target,
    *,
    task: str = "classification",
    labels: Sequence[str] | None = None,
    num_outputs: int | None = None,
    true_labels: Sequence[int] | None = None,
) -> list[Target]:
    """Turn a ``--target`` value into targets (``all`` gives one per output).

    Args:
        spec: ``pred``, a class index or label, ``all``, ``true``, ``value``, ``-value``, an
            output index or name (regression), or a ready :class:`Target`.
        task: ``classification``, ``multilabel`` or ``regression``.
        labels: class names (classification) or output names (regression).
        num_outputs: number of model outputs (needed for ``all``).
        true_labels: per-sample class indices (needed for ``true``).
    """
    if isinstance(spec, Target):
        return [spec]
    if task not in TASKS:
        raise TargetError(f"unknown task '{task}'; expected one of {', '.join(TASKS)}")
    names = list(labels or [])
    regression = task == "regression"
    if isinstance(spec, int):
        if regression:
            return [RegressionTarget(output=spec, output_name=_at(names, spec))]
        return [ClassTarget(spec, _at(names, spec))]
    text = str(spec).strip()
    key = text.lower()
    if key == "all":
        n = num_outputs or len(names)
        if not n:
            raise TargetError("target 'all' needs the number of outputs; pass labels/num_classes")
        if regression:
            return [RegressionTarget(output=i, output_name=_at(names, i)) for i in range(n)]
        return [ClassTarget(i, _at(names, i)) for i in range(n)]
    if key == "true":
        if true_labels is None:
            raise TargetError(
                "target 'true' needs the true labels: give a manifest with --target-col"
            )
        return [SampleClasses(tuple(int(v) for v in true_labels))]
    if regression:
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-").strip()
        if key in ("pred", "value", "+value", "-value"):
            # On a multi-output regressor these mean output 0; names or indices pick others.
            return [RegressionTarget(output=0, sign=sign, output_name=_at(names, 0))]
        if body.isdigit():
            i = int(body)
            return [RegressionTarget(output=i, sign=sign, output_name=_at(names, i))]
        if body in names:
            return [RegressionTarget(output=names.index(body), sign=sign, output_name=body)]
        raise TargetError(
            f"unknown regression target '{text}'{did_you_mean(body, ['value', *names])} "
            "Use value, -value, an output index or an output name."
        )
    if key == "pred":
        return [PredictedClass()]
    if key in ("value", "-value", "+value"):
        raise TargetError(
            f"target '{text}' is for regression models; this model's task is {task}. "
            "Use pred, a class index or a label."
        )
    if text.isdigit():
        i = int(text)
        return [ClassTarget(i, _at(names, i))]
    if text in names:
        return [ClassTarget(names.index(text), text)]
    raise TargetError(
        f"unknown target '{text}'{did_you_mean(text, ['pred', 'all', 'true', *names])} "
        "Use pred, all, true, a class index or one of the model's labels."
    )


def _at(names: Sequence[str], i: int) -> str | None:
    return names[i] if 0 <= i < len(names) else None
