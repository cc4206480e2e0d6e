"""``Model``: the one type methods receive — module, task, labels, layer, preprocessing.

``seewhy.api`` turns whatever a user gives (a ``Model``, a plain ``nn.Module``, a card path, an
arch string) into one ``Model`` at the front door; ``seewhy.models`` builds it from cards, arch
strings and checkpoints. Below the door nothing probes a model with ``getattr``: the device and
dtype a batch must have, the module's call with named inputs, and the parsing of a target
against the model's task and labels are all here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import ModelOutputError, UsageError
from seewhy.core.hooks import capture_output, replace_output
from seewhy.core.inputs import IMAGE, Inputs
from seewhy.core.modalities import TEXT, Modalities, TabularSpec, TextSpec
from seewhy.core.preprocess import Preprocess

if TYPE_CHECKING:
    from torch import Tensor, nn

    from seewhy.core.targets import Target


@dataclass
class Model:
    """A ready-to-explain model, as ``seewhy.load_model`` returns it.

    Attributes:
        module: the ``nn.Module`` (in eval mode after loading).
        name: short name for files and figures (card ``name``, else the card's stem / arch).
        arch: the arch string it was built from (``timm:convnext_tiny`` ...).
        task: ``classification``, ``multilabel`` or ``regression``.
        labels: class names (or output names for a regressor), if known. A classifier with a
            single output is binary: its labels are ``[negative, positive]``.
        num_outputs: width of the output (1 for a binary classifier).
        layer: the CAM layer (``auto`` or a module name).
        checkpoint: the checkpoint path, if any.
        metadata: what the checkpoint recorded beside its weights (accuracy, epoch ...).
        preprocess: image -> tensor in the model's frame (the default: the whole image resized
            to 224 x 224, ImageNet mean and std).
        inputs: the card's ``[inputs]`` table for multimodal models (forward's argument names
            for the image, text and tabular inputs); empty for image-only models. Parsed into
            :attr:`modalities` (:class:`~seewhy.core.modalities.Modalities`).
        output: which output of a tuple / dict / ``ModelOutput`` is explained (the card's
            ``output``: an index or a name); ``None``: the first tensor, or ``logits``.
    """

    module: nn.Module
    name: str = "model"
    arch: str = "module"
    task: str = "classification"
    labels: list[str] | None = None
    num_outputs: int | None = None
    layer: str = "auto"
    checkpoint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    preprocess: Preprocess = field(default_factory=Preprocess)
    inputs: dict[str, Any] = field(default_factory=dict)
    output: str | int | None = None
    modalities: Modalities = field(init=False, repr=False, compare=False)
    _embedding: str | None = field(default=None, init=False, repr=False, compare=False)
    _positional: dict[int, list[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.modalities = Modalities.parse(self.inputs, f"model '{self.name}'")

    @property
    def text(self) -> TextSpec | None:
        """How the model takes text, if it does."""
        return self.modalities.text

    @property
    def tabular(self) -> TabularSpec | None:
        """How the model takes tabular features, if it does."""
        return self.modalities.tabular

    @classmethod
    def of(cls, model: Model | nn.Module) -> Model:
        """``model`` itself, or a plain ``nn.Module`` wrapped (classification, layer ``auto``)."""
        from torch import nn

        if isinstance(model, Model):
            return model
        if isinstance(model, nn.Module):
            return cls(module=model, name=type(model).__name__, arch="module")
        raise UsageError(
            f"expected a torch nn.Module or a seewhy Model, got {type(model).__name__}; "
            "load a card or arch string with seewhy.load_model"
        )

    # -- where a batch must go --------------------------------------------------------------
    @property
    def device(self) -> Any:
        """The device of the module's first parameter (CPU for a parameterless module)."""
        import torch

        p = next(iter(self.module.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> Any:
        """The floating dtype of the module's parameters (float32 when it has none)."""
        import torch

        p = next((q for q in self.module.parameters() if q.is_floating_point()), None)
        return p.dtype if p is not None else torch.float32

    def to_input(self, inputs: Inputs | Tensor) -> Inputs:
        """The batch on the model's device, floating entries in its dtype (fp16/bf16 models)."""
        batch = Inputs.of(inputs)
        if next(iter(self.module.parameters()), None) is None:
            return batch
        return batch.to(self.device, self.dtype)

    # -- the call ---------------------------------------------------------------------------
    def argument(self, name: str) -> str:
        """The forward argument an input is passed as (the card's ``[inputs]`` table)."""
        return self.modalities.argument(name)

    def call(self, inputs: Inputs, module: nn.Module | None = None) -> Any:
        """The module's raw output on ``inputs`` (as it is: no device move, no checks).

        A one-entry batch of an image model is passed positionally (``module(x)``); several
        entries by keyword, each under its forward argument name. A ``text`` entry (token
        embeddings ``[B, T, D]``) is not an argument: the text embedding layer returns it
        instead of its own output for this call (a temporary hook). ``module`` replaces
        :attr:`module` (the forward engine's private copy, whose module names are the same).
        """
        run = self.module if module is None else module
        embeds = inputs.get(TEXT) if TEXT in inputs else None
        args = {k: v for k, v in inputs.items() if k != TEXT}
        if len(args) == 1 and embeds is None and not self.modalities.multimodal:
            return run(next(iter(args.values())))
        named = {self.argument(k): v for k, v in args.items()}
        first = [named.pop(n) for n in self._positional_only(run) if n in named]
        if embeds is not None:
            name = self.embedding_name()
            with replace_output(run.get_submodule(name), name, embeds):
                return run(*first, **named)
        return run(*first, **named)

    def _positional_only(self, module: nn.Module) -> list[str]:
        """The positional-only parameters of ``module.forward`` (``def forward(self, x, /,
        ...)``), which must be passed by position; none when the signature cannot be read.
        Read once per module (every forward of a method asks)."""
        import inspect

        key = id(module)
        if key not in self._positional:
            try:
                params = inspect.signature(module.forward).parameters.values()
                found = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY]
            except (TypeError, ValueError):
                found = []
            self._positional[key] = found
        return self._positional[key]

    # -- text -------------------------------------------------------------------------------
    def embedding_name(self) -> str:
        """The text embedding layer's module name (found once, then kept)."""
        if self.text is None:
            raise UsageError(f"model '{self.name}' takes no text ([inputs] text in its card)")
        if self._embedding is None:
            self._embedding = self.text.embedding_name(self.module)
        return self._embedding

    def embed(self, inputs: Inputs) -> Tensor:
        """The text embedding layer's output ``[B, T, D]`` on the batch's token ids (detached):
        an ``nn.Embedding`` is called on them; another layer is read during a forward."""
        import torch
        from torch import nn as tnn

        name = self.embedding_name()
        layer = self.module.get_submodule(name)
        ids = inputs["input_ids"]
        with torch.no_grad():
            if isinstance(layer, tnn.Embedding):
                out = layer(ids).detach()
            else:
                plain = Inputs({k: v for k, v in inputs.items() if k != TEXT})
                with capture_output(layer, name, leaf=False) as seen:
                    self.call(plain)
                out = seen.get()
        if out.ndim != 3 or tuple(out.shape[:2]) != tuple(ids.shape):
            raise UsageError(
                f"text embedding layer '{name}' gives {tuple(out.shape)}, not one vector per "
                f"token [B, T, D] with [B, T] = {tuple(ids.shape)}; name the layer that embeds "
                "each token in [inputs] text embedding"
            )
        return out

    def with_text_embedding(self, inputs: Inputs) -> Inputs:
        """The batch with its ``text`` entry (the token embeddings), if the model takes text
        and the batch has token ids; else the batch as it is."""
        if self.text is None or "input_ids" not in inputs or TEXT in inputs:
            return inputs
        return inputs.replace(**{TEXT: self.embed(inputs)})

    def text_baseline(self, inputs: Inputs) -> Tensor:
        """The text baseline ``[B, T, D]``: the [PAD] embedding at each sample's own non-special
        positions, the sample's own embedding at special tokens and padding (which so get no
        attribution)."""

        if self.text is None:
            raise UsageError(f"model '{self.name}' takes no text ([inputs] text in its card)")
        ids = inputs["input_ids"]
        special = self.text.special_mask(ids, inputs.get("attention_mask"))
        padded = self.text.padded(ids, ~special)
        return self.embed(
            Inputs({**{k: v for k, v in inputs.items() if k != TEXT}, "input_ids": padded})
        )

    def dry_run(self, inputs: Inputs) -> tuple[Tensor, Callable[[], Any]]:
        """``(image, run)`` for a layer lookup's dry run on ``inputs`` (first row only): the image
        sets the layer's grid size, ``run`` calls the module with every input."""
        first = self.to_input(inputs[:1])
        return first.image, lambda: self.call(first)

    def forward(
        self, inputs: Inputs | Tensor, module: nn.Module | None = None, *, finite: bool = True
    ) -> Tensor:
        """The output ``[B, C]`` on ``inputs`` (already on the model's device), checked finite
        (``finite=False``: NaN/inf rows are returned as they are, for callers that score
        perturbed copies and make such rows undefined, not fatal)."""
        from seewhy.core.targets import output_tensor

        out = output_tensor(self.call(Inputs.of(inputs), module), self.output)
        if finite:
            check_output(out)
        if self.labels and out.shape[1] > len(self.labels):
            # wider than the labels the user gave: another output (features?) is being read
            raise ModelOutputError(
                f"model '{self.name}' gave {out.shape[1]} outputs, but its card has "
                f"{len(self.labels)} labels; if forward returns a tuple or dict, name the output "
                'to explain (output = 1, or output = "logits")'
            )
        return out

    # -- targets ----------------------------------------------------------------------------
    def targets(
        self,
        spec: str | int | Target,
        *,
        num_outputs: int | None = None,
        true_labels: Sequence[int] | None = None,
    ) -> list[Target]:
        """``spec`` parsed against this model's task and labels (``all`` gives several)."""
        from seewhy.core.targets import parse_target

        return parse_target(
            spec,
            task=self.task,
            labels=self.labels,
            num_outputs=num_outputs or self.num_outputs,
            true_labels=true_labels,
        )

    def for_target(self, spec: str | int | Target) -> tuple[Model, str | int | Target]:
        """``(model, target)`` for a multi-task ``HEAD:LABEL`` target: this model with its
        output set to the head ``HEAD`` (its labels kept only when that head is the card's
        ``output``; another head's classes are indices), and ``LABEL``. Any other target (a
        label of this model included, even one with a colon) is returned as it is."""
        import dataclasses

        if not isinstance(spec, str) or ":" not in spec or spec in (self.labels or []):
            return self, spec
        head, _, rest = spec.strip().partition(":")
        if not head or not rest:
            return self, spec
        same = str(self.output) == head
        model = dataclasses.replace(
            self,
            output=head,
            labels=self.labels if same else None,
            num_outputs=self.num_outputs if same else None,
        )
        return model, rest

    def target(self, spec: str | int | Target) -> Target:
        """One target (``all`` is refused: a method explains one target at a time)."""
        targets = self.targets(spec)
        if len(targets) != 1:
            raise UsageError(
                "a method explains one target at a time; use seewhy.explain(..., target='all') "
                "to explain every output"
            )
        return targets[0]

    # -- words ------------------------------------------------------------------------------
    def label(self, index: int) -> str:
        """The name of output ``index`` (its number when there are no labels)."""
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)

    def describe(self) -> dict[str, Any]:
        """The ``models[]`` entry of summary.json."""
        return {
            "name": self.name,
            "arch": self.arch,
            "checkpoint": self.checkpoint,
            "task": self.task,
            "labels": self.labels,
            "layer": self.layer,
            "preprocess": self.preprocess.describe(),
        }


def nonfinite_rows(out: Tensor) -> Tensor:
    """Which rows of ``out`` ``[N, ...]`` hold a NaN or infinite value: bool ``[N]``, on
    ``out``'s device (nothing is read back to the host)."""
    import torch

    return (~torch.isfinite(out)).flatten(1).any(dim=1)


def check_rows(bad: Tensor, where: str = "", samples: Tensor | None = None) -> None:
    """Raise :class:`ModelOutputError` naming the rows flagged in ``bad`` (bool or counts
    ``[N]``), if any: ONE read back to the host, so a loop over many forwards collects its flags
    on the device (:func:`nonfinite_rows`) and checks them once, instead of stopping the host
    after every chunk. ``where``: what the outputs were of (``" at the method's points"``).
    ``samples``: the batch row each of the ``N`` rows came from (perturbed copies of a sample),
    so the message names the user's rows, not the copies. At most 10 rows are listed."""
    if bool(bad.any()):
        found = bad.nonzero().flatten()
        if samples is not None:
            found = samples.to(found.device)[found].unique()
        rows = found.tolist()
        more = f", ... ({len(rows)} rows)" if len(rows) > 10 else ""
        shown = f"[{', '.join(map(str, rows[:10]))}{more}]"
        raise ModelOutputError(
            f"the model's output is NaN or infinite{where} for batch rows {shown}; check the "
            "checkpoint and the input preprocessing (mean/std, value range)"
        )


def check_output(out: Tensor) -> None:
    """Refuse NaN/inf outputs: an explanation of them would be noise."""
    check_rows(nonfinite_rows(out))


__all__ = [
    "IMAGE",
    "Inputs",
    "Model",
    "Preprocess",
    "check_output",
    "check_rows",
    "nonfinite_rows",
]
