"""The one result type every method returns (STYLE rule 5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from torch import Tensor


@dataclass(frozen=True)
class Explanation:
    """Attributions for a batch, with what produced them.

    Attributes:
        method: the registered method name (``gradcam``, ``gradcam++``, ...).
        attributions: input name -> detached float32 tensor. Image maps are ``[B, H, W]`` at
            the input resolution (``"image"``); other inputs are keyed by their name.
        target: the target's name (``pred``, ``value``, ``-value``, a label ...).
        params: the method's settings, as they go to summary.json.
        layer: the layer a CAM read, or ``None``.
        output: the model's output for the batch ``[B, C]`` (detached float32).
        target_indices: the class explained per sample ``[B]``, in label space: a single-logit
            binary classifier's are 0 (negative) and 1 (positive), read from its one output
            column (``Target.columns``); otherwise the output column explained.
        signed: whether the image map keeps a sign (negative = lowers the target).
        extras: optional batch outputs: tensors ``[B, ...]`` (joined by :meth:`concat`) or
            values shared by the batch. CAMs, for a regression target: ``opposite``
            (``[B, H, W]``, like the map: the map of the opposite sign, e.g. what lowers the
            output when ``value`` is explained) and ``opposite_target`` (its target name,
            ``-value``), absent for methods that do not depend on the target
            (``Method.depends_on_target``, e.g. EigenCAM).
        raw: input name -> the attribution as the method computed it, before it was made a
            displayed map: a CAM's map on the layer's grid ``[B, h, w]``; a gradient method's
            ``[B, C, H, W]``. Inputs without a raw form are absent.
        input_signed: input name -> whether that input's attribution keeps a sign (a token
            attribution can be signed beside an unsigned image map); ``signed`` is the image's.
        per_sample: name -> one value per sample (a list of length ``B``), for ragged results
            such as token lists; :meth:`concat` joins them in order.
        image: the image the model saw, to draw the maps over: uint8 ``[B, H, W, 3]`` on the
            CPU, in the model's input frame (the normalised input mapped back through the
            preprocess mean and std; one channel repeated to three). ``seewhy.explain`` keeps
            it; ``None`` for inputs without an image and for methods called directly.
        predictions: what the model predicted for each sample, in words (``cat (0.93)``,
            ``value 3.2``), as ``seewhy.explain`` writes it; ``None`` when not known.

    In a notebook an explanation shows itself (:meth:`_repr_html_`: the overlays) and
    :meth:`plot` draws the 4-panel figure.
    """

    method: str
    attributions: Mapping[str, Tensor]
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)
    layer: str | None = None
    output: Tensor | None = None
    target_indices: Tensor | None = None
    signed: bool = False
    extras: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Tensor] = field(default_factory=dict)
    input_signed: Mapping[str, bool] = field(default_factory=dict)
    per_sample: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    image: Tensor | None = field(default=None, repr=False)
    predictions: Sequence[str] | None = None

    def is_signed(self, name: str = "image") -> bool:
        """Whether input ``name``'s attribution keeps a sign."""
        return bool(self.input_signed.get(name, self.signed))

    def modality_share(self) -> dict[str, Tensor]:
        """Each attributed input's share of the total ``|attribution|`` per sample (``[B]``
        each, summing to 1), from :attr:`raw` (else :attr:`attributions`): how much of the
        decision the image, the text and the tabular features carry. Inputs with no
        attribution are absent; a sample with no attribution at all gets 0 everywhere."""
        import torch

        source = self.raw if self.raw else self.attributions
        totals = {k: v.detach().float().abs().flatten(1).sum(dim=1) for k, v in source.items()}
        if not totals:
            return {}
        whole = torch.stack(list(totals.values())).sum(dim=0)
        return {
            k: torch.where(whole > 0, v / whole.clamp_min(1e-30), 0.0) for k, v in totals.items()
        }

    @property
    def map(self) -> Tensor:
        """The image attribution map ``[B, H, W]``."""
        if "image" not in self.attributions:
            from seewhy.core.errors import UsageError

            raise UsageError(
                f"this {self.method} explanation has no image map (it attributes "
                f"{', '.join(self.attributions)}); read e.attributions[name]"
            )
        return self.attributions["image"]

    def __len__(self) -> int:
        return int(next(iter(self.attributions.values())).shape[0])

    def normalized(self, name: str = "image") -> Tensor:
        """Per-sample scaled maps: ``[0, 1]`` by min-max, or ``[-1, 1]`` by max-abs if signed."""
        m = self.attributions[name]
        flat = m.flatten(1)
        shape = (-1,) + (1,) * (m.ndim - 1)
        if self.is_signed(name):
            scale = flat.abs().amax(dim=1).clamp_min(1e-12).view(shape)
            return m / scale
        lo = flat.amin(dim=1).view(shape)
        hi = flat.amax(dim=1).view(shape)
        return (m - lo) / (hi - lo).clamp_min(1e-12)

    def _repr_html_(self) -> str:
        """Jupyter's view: per sample (the first 8, then ``and N more``) the map over the image
        (the map alone without an image) as an inline PNG, captioned with the method, target
        and prediction. Signed maps are red where they raise the target and blue where they
        lower it; unsigned ones a heat colormap from 0 to their maximum."""
        from seewhy.core.display import explanation_html

        return explanation_html(self)

    def plot(self, index: int = 0, ax: Axes | Sequence[Axes] | None = None) -> Any:
        """Draw sample ``index`` with matplotlib (no pyplot state is touched).

        Args:
            index: the sample (negative counts from the end).
            ax: ``None``: a new figure with the 4 panels (image, heatmap with its colour bar,
                overlay, details: method, target, layer, prediction); one ``Axes``: the
                overlay drawn on it; 4 ``Axes`` (a list or an array): the 4 panels drawn on
                them.

        Returns:
            The new ``matplotlib.figure.Figure``, the given ``Axes``, or the list of 4 axes.

        Raises:
            UsageError: no image map, an index out of range, or ``ax`` neither one nor 4 axes.
        """
        from seewhy.core.display import plot

        return plot(self, index, ax)

    @staticmethod
    def concat(parts: Sequence[Explanation]) -> Explanation:
        """Join explanations of consecutive chunks of one batch (same method, target, layer)."""
        import torch

        if len(parts) == 1:
            return parts[0]
        first = parts[0]

        def cat(values: list[Any]) -> Any:
            if all(isinstance(v, torch.Tensor) for v in values):
                return torch.cat(values)
            return values[0]

        extras = {
            k: cat([p.extras[k] for p in parts])
            for k in first.extras
            if all(k in p.extras for p in parts)
        }
        raw = {
            k: torch.cat([p.raw[k] for p in parts])
            for k in first.raw
            if all(k in p.raw for p in parts)
        }
        per_sample = {
            k: [v for p in parts for v in p.per_sample[k]]
            for k in first.per_sample
            if all(k in p.per_sample for p in parts)
        }
        return Explanation(
            method=first.method,
            attributions={
                k: torch.cat([p.attributions[k] for p in parts]) for k in first.attributions
            },
            target=first.target,
            params=first.params,
            layer=first.layer,
            output=None if first.output is None else torch.cat([p.output for p in parts]),  # type: ignore[misc]
            target_indices=None
            if first.target_indices is None
            else torch.cat([p.target_indices for p in parts]),  # type: ignore[misc]
            signed=first.signed,
            extras=extras,
            raw=raw,
            input_signed=first.input_signed,
            per_sample=per_sample,
            image=torch.cat([p.image for p in parts])  # type: ignore[misc]
            if all(p.image is not None for p in parts)
            else None,
            predictions=[s for p in parts for s in p.predictions]  # type: ignore[union-attr]
            if all(p.predictions is not None for p in parts)
            else None,
        )
