"""Red flags: signs that a map reflects an artefact rather than the model's evidence
(SPEC section 6).

Attribution piled in the image's border band or peaking in a corner (padding, rulers, scanner
edges, watermarks), maps that are flat or broken, maps that are the same whatever the input, and
maps that disagree between models or methods. Every function takes maps ``[B, H, W]`` (float,
signed or not) and copes with NaN or infinite maps: their figures are NaN, or ``flat`` is True.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from seewhy.checks.agreement import rank_correlation, rankdata
from seewhy.checks.localization import check_maps
from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor


def _half_up(x: float) -> int:
    """``x`` rounded half up (``round`` rounds 22.5 to 22), after forgiving float noise."""
    return math.floor(round(x, 9) + 0.5)


def _band(size: tuple[int, int], frame: float) -> tuple[int, int]:
    """The border band's width in rows (top and bottom) and in columns (left and right)."""
    if not 0 <= frame <= 0.5:
        raise UsageError(
            f"frame={frame!r}: expected a share of each side between 0 and 0.5 "
            "(0.1 = the outer 10% of the height and of the width)"
        )
    height, width = _size(size)
    return _half_up(frame * height), _half_up(frame * width)


def _size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(n) != n or n < 1 for n in size):
        raise UsageError(f"size={size!r}: expected (height, width), two positive integers")
    return int(size[0]), int(size[1])


def border_area(size: tuple[int, int], frame: float = 0.1) -> float:
    """The share of the pixels that lie in the outer ``frame`` band: the chance level of
    :func:`border_share`.

    The band is ``round(frame * H)`` rows at the top and at the bottom and ``round(frame * W)``
    columns at the left and at the right, rounded half up (``frame`` of each side's length on
    each side). For 224 x 224 at 0.1 that is 22 pixels: ``1 - 180 * 180 / (224 * 224)``.

    Args:
        size: ``(H, W)``.
        frame: the band's share of each side, between 0 and 0.5.

    Raises:
        UsageError: a ``frame`` outside ``[0, 0.5]`` or a size that is not two positive
            integers.
    """
    band_h, band_w = _band(size, frame)
    height, width = _size(size)
    inner = max(height - 2 * band_h, 0) * max(width - 2 * band_w, 0)
    return 1.0 - inner / (height * width)


def border_mask(size: tuple[int, int], frame: float = 0.1) -> Tensor:
    """The outer ``frame`` band as a bool tensor ``[H, W]`` (True in the band; see
    :func:`border_area` for its width).

    Raises:
        UsageError: as :func:`border_area`.
    """
    import torch

    band_h, band_w = _band(size, frame)
    height, width = _size(size)
    mask = torch.ones(height, width, dtype=torch.bool)
    mask[band_h : height - band_h, band_w : width - band_w] = False
    return mask


def border_share(maps: Tensor, frame: float = 0.1) -> Tensor:
    """The share of each map's positive attribution in the outer ``frame`` band (compare with
    :func:`border_area`).

    Negative values are left out (``relu``), so signed maps count their evidence for the
    target; unsigned maps, having none, are counted as they are.

    Args:
        maps: ``[B, H, W]``.
        frame: the band's share of each side, between 0 and 0.5.

    Returns:
        float64 ``[B]`` in ``[0, 1]``; NaN where a map has no positive attribution or has a
        NaN or infinite value.

    Raises:
        UsageError: maps that are not ``[B, H, W]``, or a bad ``frame``.
    """
    import torch

    check_maps(maps)
    band = border_mask((maps.shape[-2], maps.shape[-1]), frame).flatten().to(maps.device)
    flat_maps = maps.flatten(1).double()
    finite = torch.isfinite(flat_maps).all(dim=1)
    positive = torch.where(finite[:, None], flat_maps.clamp(min=0), torch.zeros_like(flat_maps))
    total = positive.sum(dim=1)
    share = (positive * band).sum(dim=1) / total.clamp(min=torch.finfo(total.dtype).tiny)
    return torch.where(finite & (total > 0), share, torch.full_like(share, float("nan")))


def flat(maps: Tensor, tol: float = 1e-6) -> Tensor:
    """Whether each map says nothing: it has a NaN or infinite value, or its range is within
    ``tol`` of its largest magnitude (``max - min <= tol * max(|map|)``; all zeros included).

    The tolerance is relative, so a map of tiny but varied values (small gradients) is not
    flat, while float noise on a constant map is.

    Args:
        maps: ``[B, H, W]``.
        tol: the range, relative to the largest magnitude, below which a map is flat.

    Returns:
        bool ``[B]``.

    Raises:
        UsageError: maps that are not ``[B, H, W]``.
    """
    import torch

    check_maps(maps)
    values = maps.flatten(1).double()
    finite = torch.isfinite(values).all(dim=1)
    safe = torch.where(finite[:, None], values, torch.zeros_like(values))
    spread = safe.amax(dim=1) - safe.amin(dim=1)
    return ~finite | (spread <= tol * safe.abs().amax(dim=1))


def _corners(size: tuple[int, int], corner: float) -> list[Tensor]:
    """The four corner squares (top-left, top-right, bottom-left, bottom-right) as bool masks
    ``[H, W]``: each ``round(corner * H)`` rows by ``round(corner * W)`` columns, rounded half
    up, at least 1."""
    import torch

    if not 0 < corner <= 0.5:
        raise UsageError(
            f"corner={corner!r}: expected a share of each side above 0 and at most 0.5 "
            "(0.1 = squares of 10% of the height by 10% of the width)"
        )
    height, width = _size(size)
    ch, cw = max(1, _half_up(corner * height)), max(1, _half_up(corner * width))
    masks = []
    for rows in (slice(0, ch), slice(height - ch, height)):
        for cols in (slice(0, cw), slice(width - cw, width)):
            m = torch.zeros(height, width, dtype=torch.bool)
            m[rows, cols] = True
            masks.append(m)
    return masks


def _peaks(maps: Tensor) -> Tensor:
    """Bool ``[B, H, W]``: the pixels holding each map's maximum; none for flat maps."""
    import torch

    values = maps.double()
    usable = ~flat(maps)
    safe = torch.where(usable[:, None, None], values, torch.zeros_like(values))
    peak = safe.flatten(1).amax(dim=1)
    return (safe == peak[:, None, None]) & usable[:, None, None]


def corner_peak(maps: Tensor, corner: float = 0.1) -> Tensor:
    """Whether each map's maximum lies in one of the four corner squares (``corner * H`` by
    ``corner * W`` pixels, rounded half up, at least one pixel).

    Ties are resolved in the map's favour (as :func:`~seewhy.checks.localization.pointing_game`
    does): the flag is raised only when EVERY pixel holding the maximum lies in a corner
    square. Flat maps (see :func:`flat`) have no peak and are not flagged here.

    Args:
        maps: ``[B, H, W]``.
        corner: each square's share of the height and of the width, above 0 and at most 0.5.

    Returns:
        bool ``[B]``.

    Raises:
        UsageError: maps that are not ``[B, H, W]``, or a bad ``corner``.
    """
    import torch

    check_maps(maps)
    squares = _corners((maps.shape[-2], maps.shape[-1]), corner)
    in_corner = torch.stack(squares).any(dim=0).to(maps.device)
    peaks = _peaks(maps)
    outside = (peaks & ~in_corner).flatten(1).any(dim=1)
    return peaks.flatten(1).any(dim=1) & ~outside


def input_independence(maps: Tensor) -> float:
    """How much the maps ignore their inputs: the mean Spearman rank correlation over every
    pair of samples' maps.

    1.0 means the same map for every sample (the map ignores the input, an edge detector or a
    fixed prior at best); near 0, maps that vary with their input. Ranks come from
    :func:`seewhy.checks.agreement.rankdata` (ties averaged), so each pair's figure is
    :func:`seewhy.checks.agreement.rank_correlation`; the maps are ranked once each rather than
    once per pair. Flat maps (see :func:`flat`: constant, NaN or infinite) have no ranking and
    are left out; they are flagged by :func:`flat` instead.

    Args:
        maps: ``[B, H, W]``, one per sample.

    Returns:
        The mean over pairs in ``[-1, 1]``; NaN with fewer than two maps that are not flat.

    Raises:
        UsageError: maps that are not ``[B, H, W]``.
    """
    import torch

    check_maps(maps)
    usable = maps[~flat(maps)].flatten(1).double()
    n = usable.shape[0]
    if n < 2:
        return float("nan")
    ranks = torch.stack([rankdata(m) for m in usable])
    ranks = ranks - ranks.mean(dim=1, keepdim=True)
    ranks = ranks / ranks.square().sum(dim=1, keepdim=True).sqrt()
    gram = ranks @ ranks.T
    pairs = torch.triu_indices(n, n, offset=1, device=gram.device)
    return float(gram[pairs[0], pairs[1]].mean())


def disagreement(maps_a: Tensor, maps_b: Tensor) -> Tensor:
    """Per sample, the Spearman rank correlation between two sets of maps of the same samples
    (two models, or two methods): low values are disagreement.

    Each figure is :func:`seewhy.checks.agreement.rank_correlation`, which compares maps of
    different sizes at the smaller one's resolution, and gives 0 where either map is constant.

    Args:
        maps_a: ``[B, Ha, Wa]``.
        maps_b: ``[B, Hb, Wb]``, the same samples in the same order.

    Returns:
        float64 ``[B]`` in ``[-1, 1]``; NaN where either map has a NaN or infinite value.

    Raises:
        UsageError: maps that are not ``[B, H, W]``, or different numbers of samples.
    """
    import torch

    check_maps(maps_a, "maps_a")
    check_maps(maps_b, "maps_b")
    if maps_a.shape[0] != maps_b.shape[0]:
        raise UsageError(
            f"maps_a has {maps_a.shape[0]} maps and maps_b {maps_b.shape[0]}; pass one map "
            "per sample in each, the same samples in the same order"
        )
    values = [
        rank_correlation(a, b)
        if bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())
        else float("nan")
        for a, b in zip(maps_a, maps_b, strict=True)
    ]
    return torch.tensor(values, dtype=torch.float64)
