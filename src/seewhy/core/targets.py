"""Targets: what output an explanation explains (SPEC section 4).

A target is a callable ``output -> Tensor[B]``: the scalar per sample whose gradient (or whose
change under perturbation) the method reads: one output column per sample (``columns``), read
with a sign (``signs``), explaining a class in label space (``indices``). ``parse_target``
turns the CLI's ``--target`` strings into targets, in this one place.

Targets are resolved ONCE, on the clean output (:meth:`Target.resolve`): ``pred`` becomes the
classes picked on the unperturbed input, fixed as a :class:`ResolvedTarget` (indices, columns,
signs and the clean values). Methods that run the model on other inputs (masked, occluded,
interpolated, deleted) read those fixed columns there: the explanation explains the class
picked on the clean input, never one re-decided on a perturbed one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import ModelOutputError, TargetError, did_you_mean

if TYPE_CHECKING:
    from torch import Tensor

TASKS = ("classification", "multilabel", "regression")


def output_tensor(output: Any, select: str | int | None = None) -> Tensor:
    """The model's output as a ``[B, C]`` tensor.

    Accepts a tensor (``[B]`` becomes ``[B, 1]``), an object with ``.logits`` (Hugging Face
    ``ModelOutput``), a dict with ``logits``/``output``, or a tuple/list whose first tensor is
    the output. ``select`` (the card's ``output``) picks an item instead: a name (a dict key or
    a ``ModelOutput`` field) or an index (of a tuple/list).
    """
    import torch

    out = output
    if isinstance(out, torch.Tensor) and select is not None and _as_index(select) is None:
        raise ModelOutputError(
            f"output '{select}': the model returns one tensor, which has no named outputs or "
            "heads; drop output from the card (or the HEAD: of --target)"
        )
    if select is not None and not isinstance(out, torch.Tensor):
        out = _select_output(out, select)
    elif hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, dict):
        for key in ("logits", "output", "outputs", "pred"):
            if key in out:
                out = out[key]
                break
        else:
            raise ModelOutputError(
                f"the model returned a dict with keys {sorted(out)}; expected a tensor or a "
                "'logits' key: name the output (or head) in the card, e.g. output = "
                f'"{sorted(out)[0]}", or --target HEAD:LABEL'
            )
    elif isinstance(out, (tuple, list)) and out:
        out = next((v for v in out if isinstance(v, torch.Tensor)), out[0])
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(
            f"the model returned {type(output).__name__}; expected a tensor of shape [B, C]"
        )
    if out.ndim == 1:
        out = out[:, None]
    elif out.ndim > 2:
        out = out.flatten(1)
    return out


def _select_output(out: Any, select: str | int) -> Any:
    """Item ``select`` of a tuple/list/dict/ModelOutput, or a one-line error naming the items."""
    from seewhy.core.errors import did_you_mean

    if isinstance(out, (tuple, list)):
        index = _as_index(select)
        if index is None or not -len(out) <= index < len(out):
            raise ModelOutputError(
                f"output {select!r}: the model returns a {type(out).__name__} of {len(out)} "
                f"items; give output = 0 ... {len(out) - 1} in the card"
            )
        return out[index]
    keys = list(out.keys()) if hasattr(out, "keys") else []
    if str(select) in keys:
        return out[str(select)]
    index = _as_index(select)
    if index is not None and hasattr(out, "to_tuple"):
        items = out.to_tuple()
        if -len(items) <= index < len(items):
            return items[index]
    names = ", ".join(map(str, keys)) or "none"
    raise ModelOutputError(
        f"output '{select}' is not among the model's outputs ({names})"
        f"{did_you_mean(str(select), [str(k) for k in keys])} Fix output in the card."
    )


def _as_index(select: str | int) -> int | None:
    if isinstance(select, int) and not isinstance(select, bool):
        return select
    try:
        return int(str(select))
    except ValueError:
        return None


def is_binary(output: Tensor, multilabel: bool = False) -> bool:
    """Whether ``output`` (``[B, C]``) is a single-logit binary classifier's: one column, and
    not a multilabel model (whose single column is one label, scored by its own sigmoid)."""
    return not multilabel and output.shape[1] == 1


class Target:
    """Base class: what one explanation explains, per sample.

    A target reads, for each sample, one output column with a sign:
    ``target(output) = signs(output) * output[:, columns(output)]``, and names the class (or
    output) that this explains in :meth:`indices`. For a multi-class model, a multilabel model
    and a regressor the column is the index and the sign is ``self.sign``; a single-logit binary
    classifier has two classes in one column: class 1 (positive) reads the logit, class 0
    (negative) its negation (SPEC 3). Binary is decided from the output at call time, so a plain
    ``nn.Module`` with one output is binary unless the target was made for ``multilabel``.
    """

    name: str = "target"
    sign: int = 1

    def __call__(self, output: Any) -> Tensor:
        out = output_tensor(output)
        columns = self.columns(out).to(out.device)
        signs = self.signs(out).to(device=out.device, dtype=out.dtype)
        return signs * out.gather(1, columns[:, None]).squeeze(1)

    def indices(self, output: Any) -> Tensor:
        """The class explained for each sample ``[B]`` (long), in label space: a binary
        classifier's are 0 (negative) and 1 (positive); otherwise the output column."""
        raise NotImplementedError

    def columns(self, output: Any) -> Tensor:
        """The output column read for each sample ``[B]`` (long); a binary classifier's is 0."""
        return self.indices(output)

    def signs(self, output: Any) -> Tensor:
        """The sign the column is read with, per sample ``[B]`` (float32, +1 or -1)."""
        import torch

        out = output_tensor(output)
        return torch.full((out.shape[0],), float(self.sign), device=out.device)

    def rows(self, index: slice) -> Target:
        """This target for the rows ``index`` of the batch (the same for shared targets)."""
        return self

    def resolve(self, output: Any) -> ResolvedTarget:
        """This target fixed on ``output``, the model's output on the CLEAN batch: the columns,
        signs and classes decided there are kept for any other input of the same samples."""
        out = output_tensor(output).detach()
        columns = self.columns(out).detach()
        signs = self.signs(out).detach().float()
        values = signs * out.float().gather(1, columns[:, None]).squeeze(1)
        return ResolvedTarget(
            name=self.name,
            source=self,
            class_indices=self.indices(out).detach(),
            output_columns=columns,
            output_signs=signs,
            values=values,
        )


class _ClassTarget(Target):
    """Classes in label space: on a single-logit binary classifier, class ``c`` reads column 0
    with sign ``+1`` (``c = 1``) or ``-1`` (``c = 0``)."""

    multilabel: bool = False

    def columns(self, output: Any) -> Tensor:
        out = output_tensor(output)
        if is_binary(out, self.multilabel):
            import torch

            return torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
        return self.indices(out)

    def signs(self, output: Any) -> Tensor:
        out = output_tensor(output)
        if is_binary(out, self.multilabel):
            return self.indices(out).float() * 2 - 1
        return super().signs(out)

    def _num_classes(self, out: Tensor) -> int:
        """Classes in label space: 2 for a binary classifier, else the number of columns."""
        return 2 if is_binary(out, self.multilabel) else int(out.shape[1])

    def _check_range(self, classes: Sequence[int], out: Tensor, what: str) -> None:
        n = self._num_classes(out)
        bad = [c for c in classes if not 0 <= c < n]
        if not bad:
            return
        if is_binary(out, self.multilabel):
            shape = (
                "the model is a binary classifier (one output): classes 0 (negative) and "
                "1 (positive)"
            )
        else:
            shape = f"the model has {n} outputs (0..{n - 1})"
        raise TargetError(f"{what} {bad[0]} is out of range: {shape}")


@dataclass(frozen=True)
class PredictedClass(_ClassTarget):
    """The predicted class, per sample (``pred`` for classifiers): the highest logit; for a
    single-logit binary classifier, class 1 where the logit is > 0 (sigmoid > 0.5), else class
    0 (explaining the negated logit). Multilabel: the top-scoring label (the highest logit is
    the highest sigmoid), read with sign ``+``."""

    name: str = "pred"
    multilabel: bool = False

    def indices(self, output: Any) -> Tensor:
        out = output_tensor(output)
        if is_binary(out, self.multilabel):
            return (out[:, 0] > 0).long()
        return out.argmax(dim=1)


@dataclass(frozen=True)
class ClassTarget(_ClassTarget):
    """One fixed class (a class index, or a label resolved to its index)."""

    index: int
    label: str | None = None
    multilabel: bool = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label if self.label is not None else str(self.index)

    def indices(self, output: Any) -> Tensor:
        import torch

        out = output_tensor(output)
        self._check_range([self.index], out, "target class")
        return torch.full((out.shape[0],), self.index, dtype=torch.long, device=out.device)


@dataclass(frozen=True)
class SampleClasses(_ClassTarget):
    """A class per sample, e.g. the true label from a manifest (``true``)."""

    per_sample: tuple[int, ...]
    name: str = "true"
    multilabel: bool = False

    def indices(self, output: Any) -> Tensor:
        import torch

        out = output_tensor(output)
        if len(self.per_sample) != out.shape[0]:
            raise TargetError(
                f"'true' target has {len(self.per_sample)} labels for a batch of {out.shape[0]}"
            )
        self._check_range(self.per_sample, out, "true class")
        return torch.tensor(self.per_sample, dtype=torch.long, device=out.device)

    def rows(self, index: slice) -> SampleClasses:
        return dataclasses.replace(self, per_sample=self.per_sample[index])


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

    def opposite(self) -> RegressionTarget:
        """The same output with the other sign (``value`` <-> ``-value``)."""
        return RegressionTarget(output=self.output, sign=-self.sign, output_name=self.output_name)

    def indices(self, output: Any) -> Tensor:
        import torch

        out = output_tensor(output)
        if not 0 <= self.output < out.shape[1]:
            raise TargetError(
                f"output {self.output} is out of range: the model has {out.shape[1]} outputs"
            )
        return torch.full((out.shape[0],), self.output, dtype=torch.long, device=out.device)


@dataclass(frozen=True, eq=False, kw_only=True)
class ResolvedTarget(Target):
    """A target fixed on the clean output of one batch (:meth:`Target.resolve`).

    Applied to any output of the same samples (a masked, occluded or interpolated input), it
    reads the columns and signs decided on the clean one: ``pred`` stays the class picked on the
    clean input. Per-sample tensors are ``[B]``; :meth:`rows` and :meth:`repeat` follow the
    batch when it is chunked or expanded (IG steps, RISE masks).

    Attributes:
        name: the target's name (``pred``, a label, ``value``, ``-value`` ...).
        source: the target it was resolved from.
        class_indices: ``[B]`` the class explained, in label space.
        output_columns: ``[B]`` the output column read.
        output_signs: ``[B]`` float32, the sign it is read with.
        values: ``[B]`` float32, the signed target on the clean output.
    """

    name: str
    source: Target
    class_indices: Tensor
    output_columns: Tensor
    output_signs: Tensor
    values: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.output_columns.shape[0])

    @property
    def regression(self) -> bool:
        return isinstance(self.source, RegressionTarget)

    def _fit(self, output: Any) -> Tensor:
        out = output_tensor(output)
        if out.shape[0] != self.batch_size:
            raise TargetError(
                f"target '{self.name}' was resolved for {self.batch_size} samples, applied to an "
                f"output of {out.shape[0]}; use .rows() or .repeat() to follow the batch"
            )
        return out

    def indices(self, output: Any) -> Tensor:
        out = self._fit(output)
        return self.class_indices.to(out.device)

    def columns(self, output: Any) -> Tensor:
        out = self._fit(output)
        return self.output_columns.to(out.device)

    def signs(self, output: Any) -> Tensor:
        out = self._fit(output)
        return self.output_signs.to(out.device)

    def resolve(self, output: Any) -> ResolvedTarget:
        """Already resolved: itself (the batch size is checked)."""
        self._fit(output)
        return self

    @staticmethod
    def cat(parts: Sequence[ResolvedTarget]) -> ResolvedTarget:
        """The targets resolved on consecutive chunks of one batch, joined."""
        import torch

        if len(parts) == 1:
            return parts[0]
        return dataclasses.replace(
            parts[0],
            class_indices=torch.cat([t.class_indices for t in parts]),
            output_columns=torch.cat([t.output_columns for t in parts]),
            output_signs=torch.cat([t.output_signs for t in parts]),
            values=torch.cat([t.values for t in parts]),
        )

    def rows(self, index: slice | Tensor) -> ResolvedTarget:
        return self._map(lambda t: t[index])

    def repeat(self, times: int) -> ResolvedTarget:
        """Each sample's target ``times`` times in a row, as ``Inputs.repeat`` lays out rows."""
        return self._map(lambda t: t.repeat_interleave(times, dim=0))

    def opposite(self) -> ResolvedTarget:
        """The target of the other sign: the same columns read with the signs flipped
        (regression: ``value`` <-> ``-value``; a class: its negated score ``-<name>``)."""
        if isinstance(self.source, RegressionTarget):
            source: Target = self.source.opposite()
            name = source.name
        else:
            source, name = (
                self.source,
                (self.name[1:] if self.name.startswith("-") else f"-{self.name}"),
            )
        return dataclasses.replace(
            self,
            name=name,
            source=source,
            output_signs=-self.output_signs,
            values=-self.values,
        )

    def _map(self, fn: Any) -> ResolvedTarget:
        return dataclasses.replace(
            self,
            class_indices=fn(self.class_indices),
            output_columns=fn(self.output_columns),
            output_signs=fn(self.output_signs),
            values=fn(self.values),
        )


def parse_target(
    spec: str | int | Target,
    *,
    task: str = "classification",
    labels: Sequence[str] | None = None,
    num_outputs: int | None = None,
    true_labels: Sequence[int] | None = None,
) -> list[Target]:
    """Turn a ``--target`` value into targets (``all`` gives one per class or output).

    Classes are in label space: a single-logit binary classifier (``classification`` with one
    output) has the classes 0 (negative) and 1 (positive), its ``labels`` are
    ``[negative, positive]`` (one label ``[L]`` stands for ``["not L", L]``), and ``all`` gives
    both. Whether a model is binary is read from its output when the target is applied, so
    ``pred`` and class targets work on plain modules; ``task="multilabel"`` makes targets that
    never treat one output as binary.

    Args:
        spec: ``pred``, a class index or label, ``all``, ``true``, ``value``, ``-value``, an
            output index or name (regression), or a ready :class:`Target` (a class target is
            made multilabel when ``task`` is).
        task: ``classification``, ``multilabel`` or ``regression``.
        labels: class names (classification) or output names (regression).
        num_outputs: number of model outputs (needed for ``all``).
        true_labels: per-sample class indices (needed for ``true``).
    """
    if task not in TASKS:
        raise TargetError(f"unknown task '{task}'; expected one of {', '.join(TASKS)}")
    if isinstance(spec, _ClassTarget) and task == "multilabel" and not spec.multilabel:
        return [dataclasses.replace(spec, multilabel=True)]  # type: ignore[type-var]
    if isinstance(spec, Target):
        return [spec]
    names = list(labels or [])
    regression = task == "regression"
    multilabel = task == "multilabel"
    if task == "classification" and len(names) == 1:
        names = [f"not {names[0]}", names[0]]  # one positive label: a binary classifier

    def cls(i: int, label: str | None) -> ClassTarget:
        return ClassTarget(i, label, multilabel=multilabel)

    if isinstance(spec, int):
        if regression:
            return [RegressionTarget(output=spec, output_name=_at(names, spec))]
        return [cls(spec, _at(names, spec))]
    text = str(spec).strip()
    key = text.lower()
    if key == "all":
        n = num_outputs or len(names)
        if not n:
            raise TargetError("target 'all' needs the number of outputs; pass labels/num_classes")
        if regression:
            return [RegressionTarget(output=i, output_name=_at(names, i)) for i in range(n)]
        if task == "classification" and n == 1:
            n = 2  # a single-logit binary classifier: the negative and the positive class
        return [cls(i, _at(names, i)) for i in range(n)]
    if key == "true":
        if true_labels is None:
            raise TargetError(
                "target 'true' needs the true labels: give a manifest with --target-col"
            )
        return [SampleClasses(tuple(int(v) for v in true_labels), multilabel=multilabel)]
    if regression:
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-").strip()
        if key in ("pred", "value", "+value", "-value"):
            # On a multi-output regressor these mean output 0; names or indices pick others.
            return [RegressionTarget(output=0, sign=sign, output_name=_at(names, 0))]
        if body in names:  # a name wins over an index: names that are numbers mean themselves
            return [RegressionTarget(output=names.index(body), sign=sign, output_name=body)]
        if body.isdigit():
            i = _index(body, names, "output names", typed=text)
            return [RegressionTarget(output=i, sign=sign, output_name=_at(names, i))]
        raise TargetError(
            f"unknown regression target '{text}'{did_you_mean(body, ['value', *names])} "
            "Use value, -value, an output index or an output name."
        )
    if key == "pred":
        return [PredictedClass(multilabel=multilabel)]
    if key in ("value", "-value", "+value"):
        raise TargetError(
            f"target '{text}' is for regression models; this model's task is {task}. "
            "Use pred, a class index or a label."
        )
    if text in names:  # a label wins over an index: labels that are numbers mean themselves
        return [cls(names.index(text), text)]
    if text.isdigit():
        i = _index(text, names, "labels")
        return [cls(i, _at(names, i))]
    raise TargetError(
        f"unknown target '{text}'{did_you_mean(text, ['pred', 'all', 'true', *names])} "
        "Use pred, all, true, a class index or one of the model's labels."
    )


def numbered(labels: Sequence[str] | None) -> list[str]:
    """The labels that are whole numbers written out (grades ``1`` .. ``5``): with any, a
    number names a label, never a class index."""
    return [n for n in labels or () if n.strip().lstrip("+-").isdigit()]


def label_index(text: str, labels: Sequence[str] | None) -> int | None:
    """The index of the label ``text`` names: the label itself, else (the labels being
    numbers) the label of the same value (``2.0``, as a Parquet column with a null holds
    integers, names ``2``); None when it names none."""
    labels = list(labels or ())
    text = text.strip()
    if text in labels:
        return labels.index(text)
    if numbered(labels):
        try:
            value = float(text)
        except ValueError:
            return None
        for i, name in enumerate(labels):
            if name.strip().lstrip("+-").isdigit() and float(name) == value:
                return i
    return None


def true_index(text: str, labels: Sequence[str] | None) -> int | None:
    """The class a true label (a manifest cell, a class folder) names: one of the labels
    (:func:`label_index`), else, unless the labels are numbers, a class index written as an
    integer (``2``, or ``2.0``: a Parquet column of indices with a null is read as floats).
    None when it names neither (the caller says so, adding :func:`numbers_hint`)."""
    named = label_index(text, labels)
    if named is not None or numbered(labels):
        return named
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def numbers_hint(labels: Sequence[str] | None) -> str:
    """What to add when a number named no class because the labels are numbers."""
    if not numbered(labels):
        return ""
    return "; they are numbers, so a number names one of them, not an index"


def _index(text: str, names: Sequence[str], what: str, typed: str | None = None) -> int:
    """``text`` (digits, not one of ``names``) as an output index; refused when some of the
    names are numbers themselves: ``--target 0`` with grades 1..5 would otherwise silently
    explain grade 1. ``typed``: what the user wrote (``-1``), for the message."""
    numbers = numbered(names)
    if numbers:
        raise TargetError(
            f"target '{typed or text}' is not one of the {what} ({', '.join(names)})"
            f"{numbers_hint(names)}: use one of {', '.join(numbers)}"
        )
    return int(text)


def _at(names: Sequence[str], i: int) -> str | None:
    return names[i] if 0 <= i < len(names) else None
