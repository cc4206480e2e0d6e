"""Deletion and insertion curves: how fast the explained score falls (rises) as the pixels a map
ranks highest are removed (put back) (SPEC section 6).

Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
Models", BMVC 2018, section 4.1. Deletion starts from the image and replaces its pixels, in the
map's order (highest first), by those of a blurred copy; insertion starts from the blurred copy
and puts the image's pixels back in the same order. A faithful map makes the deletion curve
fall fast (a low ``deletion_auc``) and the insertion curve rise fast (a high
``insertion_auc``); the same curves for a seeded random order of blobs (:func:`random_order`)
give the baseline a map must beat (``deletion_auc_random``, ``insertion_auc_random``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from seewhy.core.engine import ForwardEngine, check_precision
from seewhy.core.errors import UsageError
from seewhy.core.inputs import IMAGE, Inputs, check_batch_size
from seewhy.core.model import Model
from seewhy.core.targets import ResolvedTarget
from seewhy.methods.base import check_seeds

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "BLUR_FRACTION",
    "Curves",
    "auc",
    "blurred",
    "deletion_insertion",
    "forwards_per_sample",
    "random_order",
]

BLUR_FRACTION = 1 / 16
"""The default blur's sigma as a fraction of the image's longer side (14 px at 224 px)."""

UNDEFINED = 1e-12
"""A regression target whose image and blurred copy differ by at most this has no normalised
curve (NaN)."""

_CURVES = ("deletion", "insertion", "deletion_random", "insertion_random")


@dataclass(frozen=True)
class Curves:
    """The four curves of a batch: ``[B, steps + 1]`` float32 tensors, on the CPU.

    Point ``t`` (of ``0 .. steps``) is the score with the top ``round(t * H * W / steps)``
    pixels removed (deletion) or put back (insertion). A row is NaN where the sample's map has
    a NaN, or where a regression target's normalisation is undefined
    (:func:`deletion_insertion`).

    Attributes:
        deletion: the image, its pixels replaced by the blurred copy's in the map's order.
        insertion: the blurred copy, the image's pixels put back in the map's order.
        deletion_random: deletion in the sample's seeded random pixel order.
        insertion_random: insertion in the sample's seeded random pixel order.
    """

    deletion: Tensor
    insertion: Tensor
    deletion_random: Tensor
    insertion_random: Tensor

    def aucs(self) -> dict[str, Tensor]:
        """``deletion_auc``, ``insertion_auc``, ``deletion_auc_random`` and
        ``insertion_auc_random``: each curve's :func:`auc`, ``[B]`` float32 (NaN where the
        curve is undefined)."""
        return {
            "deletion_auc": auc(self.deletion),
            "insertion_auc": auc(self.insertion),
            "deletion_auc_random": auc(self.deletion_random),
            "insertion_auc_random": auc(self.insertion_random),
        }


def auc(curve: Tensor) -> Tensor:
    """The area under curves ``[B, n]`` of ``n >= 2`` evenly spaced points over ``[0, 1]``, by
    the trapezoid rule, ``[B]`` in the curve's dtype (summed in float64). NaN points give NaN.
    """
    import torch

    if curve.ndim != 2 or curve.shape[1] < 2:
        raise UsageError(
            f"auc needs curves [B, n] with n >= 2 points, got shape {tuple(curve.shape)}; "
            "pass a batch of curves (curve[None] for one)"
        )
    n = int(curve.shape[1])
    return torch.trapezoid(curve.double(), dx=1.0 / (n - 1), dim=1).to(curve.dtype)


def _kernel(sigma: float, radius: int) -> Tensor:
    """The normalised 1-d Gaussian ``exp(-x^2 / (2 sigma^2))``, ``x = -radius .. radius``."""
    import torch

    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def blurred(images: Tensor, sigma: float | None = None) -> Tensor:
    """A Gaussian blur of ``images`` ``[B, C, H, W]`` (each channel on its own), in their dtype.

    The kernel is ``exp(-x^2 / (2 sigma^2))`` over ``x = -r .. r``, ``r = ceil(3 sigma)``
    (clamped to ``H - 1`` and ``W - 1`` on their axes), normalised to sum 1, applied as two 1-d
    convolutions (rows, then columns; computed in float32) with reflect padding, so a constant
    image stays constant. The same as ``torchvision``'s ``gaussian_blur`` with kernel size
    ``2r + 1``, and as ``scipy.ndimage.gaussian_filter(mode="mirror", truncate=3)`` where
    ``3 sigma`` is a whole number.

    Args:
        images: the image batch (normalised: the blur acts in the model's input space).
        sigma: the Gaussian's standard deviation in pixels; ``None``: ``max(H, W) / 16``
            (:data:`BLUR_FRACTION`; 14 px at 224 px). The RISE paper's code blurs with an
            11-tap kernel of sigma 5 at 224 px, a light blur under which a CNN often still sees
            the class, so that insertion starts from a copy that still holds the evidence; this
            default blurs more, by the same share of the image at every resolution.
    """
    import torch
    import torch.nn.functional as F

    if images.ndim != 4:
        raise UsageError(
            f"blurred needs an image batch [B, C, H, W], got shape {tuple(images.shape)}"
        )
    b, c, h, w = (int(v) for v in images.shape)
    if sigma is None:
        sigma = max(h, w) * BLUR_FRACTION
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
        raise UsageError(
            f"blur_sigma must be a positive number of pixels, got {sigma!r}; "
            "leave it None for max(H, W) / 16"
        )
    radius = math.ceil(3 * float(sigma))
    x = images.detach().float().reshape(b * c, 1, h, w)
    ry, rx = min(radius, h - 1), min(radius, w - 1)
    with torch.no_grad():
        if rx > 0:
            kx = _kernel(float(sigma), rx).to(x.device).view(1, 1, 1, -1)
            x = F.conv2d(F.pad(x, (rx, rx, 0, 0), mode="reflect"), kx)
        if ry > 0:
            ky = _kernel(float(sigma), ry).to(x.device).view(1, 1, -1, 1)
            x = F.conv2d(F.pad(x, (0, 0, ry, ry), mode="reflect"), ky)
    return x.reshape(b, c, h, w).to(images.dtype)


RANDOM_GRID = 16
"""The random order's grid: uniform values on ``16 x 16`` cells, bilinearly upsampled."""


def random_order(h: int, w: int, seed: int) -> Tensor:
    """A seeded random order of an ``h x w`` image's pixels (flat indices, first removed
    first), the baseline a map's order must beat.

    A deviation from RISE, which compares with no random order, and from a pixel-level
    permutation: the order is that of a random smooth map (uniform values on a
    :data:`RANDOM_GRID` grid from a CPU generator seeded with ``seed``, bilinearly upsampled,
    highest first), so it removes contiguous regions as a map's order does. A random
    permutation of single pixels scatters speckle over the whole image from the first step; a
    CNN reads that as texture, and its score falls faster than under any map's order
    (deletion) or rises slower (insertion), whatever the map: the comparison would favour the
    random order for reasons that have nothing to do with where the evidence lies.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(int(seed))
    gh, gw = min(RANDOM_GRID, h), min(RANDOM_GRID, w)
    field = torch.rand((1, 1, gh, gw), generator=gen, dtype=torch.float64)
    smooth = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False).flatten()
    return torch.sort(smooth, descending=True, stable=True).indices


def forwards_per_sample(steps: int) -> int:
    """The forwards :func:`deletion_insertion` runs per sample: ``4 * steps - 2``.

    One of the image and one of the blurred copy (the ends of all four curves), and one per
    inner point (``t = 1 .. steps - 1``) of each of the four curves: 198 at 50 steps.
    """
    return 4 * int(steps) - 2


def _score_kind(model: Model, target: ResolvedTarget) -> str:
    """``value`` (regression), ``sigmoid`` (multilabel) or ``probability`` (a classifier:
    the sigmoid for one output, else the softmax, decided on the output's width)."""
    if target.regression:
        return "value"
    if model.task == "multilabel" or bool(getattr(target.source, "multilabel", False)):
        return "sigmoid"
    return "probability"


def _scores(out: Tensor, columns: Tensor, signs: Tensor, kind: str) -> Tensor:
    """The explained score per row ``[n]`` from outputs ``[n, C]``: the signed value, the
    sigmoid of the signed logit (multilabel, one-logit binary), or the softmax probability
    (``1 - p`` for a negated class)."""
    import torch

    logit = out.gather(1, columns[:, None])[:, 0]
    if kind == "value":
        return signs * logit
    if kind == "sigmoid" or out.shape[1] == 1:
        return torch.sigmoid(signs * logit)
    prob = torch.softmax(out, dim=1).gather(1, columns[:, None])[:, 0]
    return torch.where(signs < 0, 1 - prob, prob)


def _ranks(order: Tensor) -> Tensor:
    """Each pixel's place in ``order`` ``[N]`` (a permutation): its inverse."""
    import torch

    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device, dtype=order.dtype)
    return ranks


def _check(inputs: Inputs, maps: Any, target: Any, steps: Any) -> tuple[int, int, int]:
    """``(B, H, W)`` of a valid call, or a :class:`UsageError` naming the argument."""
    import torch

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be an integer >= 1, got {steps!r}; the paper's curves use 50")
    if IMAGE not in inputs or inputs[IMAGE].ndim != 4:
        have = ", ".join(f"{k} {tuple(v.shape)}" for k, v in inputs.items())
        raise UsageError(
            f"deletion/insertion needs an image input 'image' [B, C, H, W]; the inputs have {have}"
        )
    b, _, h, w = (int(v) for v in inputs[IMAGE].shape)
    if not isinstance(maps, torch.Tensor) or tuple(maps.shape) != (b, h, w):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise UsageError(
            f"maps must be [B, H, W] = {(b, h, w)}, one per image at the image's resolution, "
            f"got {shape}; resize the maps to the model input"
        )
    if not isinstance(target, ResolvedTarget) or target.batch_size != b:
        got = target.batch_size if isinstance(target, ResolvedTarget) else type(target).__name__
        raise UsageError(
            f"target must be a ResolvedTarget for the batch's {b} samples, got {got}; "
            "resolve it with model.target(spec).resolve(model.forward(inputs))"
        )
    return b, h, w


def deletion_insertion(
    model: Model,
    inputs: Inputs,
    maps: Tensor,
    target: ResolvedTarget,
    *,
    steps: int = 50,
    batch_size: int = 8,
    seeds: Sequence[int] | None = None,
    blur_sigma: float | None = None,
    precision: str = "float32",
    engine: ForwardEngine | None = None,
) -> Curves:
    """The deletion and insertion curves of each sample's map, and of a random pixel order.

    Petsiuk et al., RISE (BMVC 2018), section 4.1. Point ``t`` of ``0 .. steps`` of a curve has
    the top ``k_t = round(t * H * W / steps)`` pixels (rounded half to even, exactly) removed:
    replaced by the blurred copy's (:func:`blurred`, every channel of a pixel alike) for
    deletion, or put back from the image into the blurred copy for insertion. Pixels are taken
    by the map's value, highest first (a signed map: the pixel that raises the target most
    first), ties in row-major order (a stable sort); the random curves take one random order
    per sample (:func:`random_order`, seeded with the sample's seed alone, so a sample's curves
    do not depend on its batch): a random order of blobs, as a map's order is, not of single
    pixels.

    The score is the explained class's probability, read at the columns and signs of the
    target resolved on the clean input: the softmax over the outputs (a negated class:
    ``1 - p``) for a multi-class classifier, the sigmoid of the signed logit for a multilabel
    model and a one-logit binary classifier (its class 0: ``1 - sigmoid(logit)``). A regressor
    (a deviation: the paper has probabilities only) gives the signed target ``f`` (``value``,
    or ``-value``: the output negated) normalised as ``(f(x_t) - f(b)) / |f(x) - f(b)|``,
    ``x`` the image and ``b`` its blurred copy: deletion runs from 1 to 0 and insertion from 0
    to 1 where the image scores above its blurred copy (``f(x) > f(b)``), from -1 to 0 and 0 to
    -1 where it scores below. Dividing by the absolute difference keeps the curve rising with
    ``f``, as a probability does, so removing the pixels that raise the target lowers the
    curve and a faithful map has a lower deletion (higher insertion) AUC than a random order
    whichever the sign (dividing by the signed difference would flip that where
    ``f(x) < f(b)``). Where ``|f(x) - f(b)| <= 1e-12`` the normalisation is undefined and the
    sample's four curves are NaN. A map with a NaN gives NaN curves for its sample (no
    forwards are run for it); the other samples are unaffected.

    Forwards: :func:`forwards_per_sample` (``4 * steps - 2``, 198 at 50 steps) per sample with
    a finite map, through the forward engine, at most ``batch_size`` rows each and built chunk
    by chunk (never all in memory): the image and the blurred copy once each (every curve's
    ends are one or the other), and each inner point of the four curves. A new engine may run
    the batch once more to check its folded copy (:class:`ForwardEngine`).

    Args:
        model: the model (never changed: the forwards run on the engine's private copy).
        inputs: the batch; its ``image`` entry ``[B, C, H, W]`` (in the model's normalised
            input space) is perturbed, any other entries (token ids, tabular features) go with
            each row unchanged.
        maps: ``[B, H, W]`` attribution maps at the image's resolution, signed or not.
        target: the target resolved on the model's clean output on ``inputs``
            (``model.target("pred").resolve(model.forward(inputs))``).
        steps: a curve has ``steps + 1`` points (the paper's code: 224 steps of 224 pixels
            at 224 x 224; 50 keeps a check to 198 forwards per sample).
        batch_size: the largest number of rows any forward gets.
        seeds: one seed per sample for its random order (``seewhy.methods.base.row_seeds``);
            ``None``: ``0 .. B - 1``.
        blur_sigma: the blur's sigma in pixels; ``None``: ``max(H, W) / 16`` (:func:`blurred`).
        precision: the engine's precision, ``float32`` (exact) or ``auto`` (bfloat16 forwards
            where the hardware runs them natively).
        engine: a forward engine already made for this model and batch (its ``batch_size``
            and precision then apply instead of ``batch_size`` and ``precision``).

    Returns:
        The four curves, ``[B, steps + 1]`` float32 on the CPU.

    Raises:
        UsageError: ``steps < 1``, no 4-d ``image`` entry, maps not ``[B, H, W]``, a target
            for another batch, a bad ``batch_size``, ``precision``, ``seeds`` or ``blur_sigma``.
    """
    import torch

    model = Model.of(model)
    x = model.to_input(Inputs.of(inputs))
    b, h, w = _check(x, maps, target, steps)
    step = check_batch_size(batch_size)
    check_precision(precision)
    row_seeds = check_seeds(seeds, b)
    image = x.image
    device = image.device
    blur = blurred(image, blur_sigma)
    hw = h * w
    inner = steps - 1
    per = forwards_per_sample(steps)
    maps = maps.detach().to(device).reshape(b, hw)
    if not maps.is_floating_point():
        maps = maps.float()
    finite = ~maps.isnan().any(dim=1)
    valid = finite.nonzero().flatten()  # samples whose curves are computed
    nv = int(valid.numel())
    curves = torch.full((b, 4, steps + 1), math.nan, dtype=torch.float64)
    if nv == 0:
        return _curves(curves)
    # ranks[s, 0]: each pixel's place in the map's order; ranks[s, 1]: in the random order.
    by_map = torch.sort(maps[valid], dim=1, descending=True, stable=True).indices
    randoms = [random_order(h, w, row_seeds[s]).to(device) for s in valid.tolist()]
    ranks = torch.stack(
        [torch.stack([_ranks(m), _ranks(r)]) for m, r in zip(by_map, randoms, strict=True)]
    )  # [nv, 2, H*W]
    counts = [round(Fraction(t * hw, steps)) for t in range(steps + 1)]
    # Row j of a sample: 0 the image, 1 the blurred copy (deletion with k = 0 and k = H*W),
    # then curve c = (j - 2) // inner at point t = (j - 2) % inner + 1.
    j = torch.arange(per, device=device)
    inner_j = (j - 2).clamp_min(0)
    curve_of = torch.where(j < 2, 0, inner_j // max(inner, 1))
    k_of = torch.tensor([counts[t] for t in range(steps + 1)], device=device)[
        (inner_j % max(inner, 1)) + 1
    ]
    k_of = torch.where(j == 0, 0, torch.where(j == 1, hw, k_of))
    columns = target.output_columns.to(device)
    signs = target.output_signs.to(device=device, dtype=torch.float32)

    def build(start: int, stop: int) -> Inputs:
        rows = torch.arange(start, stop, device=device)
        sample, jj = rows // per, rows % per
        c = curve_of[jj]
        removed = ranks[sample, c // 2] < k_of[jj][:, None]  # [n, H*W]
        # deletion keeps the image where not removed; insertion puts it back where removed
        from_image = (removed == (c % 2 == 1)[:, None]).view(-1, 1, h, w)
        who = valid[sample]
        return x.take(who).replace(**{IMAGE: torch.where(from_image, image[who], blur[who])})

    # a perturbed copy scored NaN/inf makes its sample's curves NaN; it does not stop the batch
    run = engine or ForwardEngine(model, x, batch_size=step, precision=precision, finite=False)
    kind = _score_kind(model, target)

    def read(out: Tensor, start: int, stop: int) -> Tensor:
        who = valid[torch.arange(start, stop, device=device) // per]
        return _scores(out, columns[who], signs[who], kind)

    scores = run.map(nv * per, build, read).double().cpu().view(nv, per)
    fx, fb = scores[:, 0], scores[:, 1]
    mids = scores[:, 2:].reshape(nv, 4, inner)
    ends = {0: (fx, fb), 1: (fb, fx)}  # deletion runs from the image, insertion from the blur
    rows = torch.stack(
        [
            torch.cat([ends[c % 2][0][:, None], mids[:, c], ends[c % 2][1][:, None]], dim=1)
            for c in range(4)
        ],
        dim=1,
    )  # [nv, 4, steps + 1]
    if kind == "value":
        span = fx - fb
        rows = (rows - fb[:, None, None]) / span.abs()[:, None, None]
        rows[span.abs() <= UNDEFINED] = math.nan
    curves[valid.cpu()] = rows
    return _curves(curves)


def _curves(curves: Tensor) -> Curves:
    """:class:`Curves` from ``[B, 4, steps + 1]`` (float64)."""
    parts = curves.float().unbind(1)
    return Curves(**{name: part.contiguous() for name, part in zip(_CURVES, parts, strict=True)})
