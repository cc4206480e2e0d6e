"""Similarity between two batches of maps, sample by sample: SSIM and Spearman's rho.

Both take maps ``[B, H, W]`` of the same shape and return one figure per sample ``[B]``
(float64, on the maps' device). A sample whose map holds a NaN or an infinite value in either
batch gets NaN: a broken map has no similarity, and a mean over samples can skip it
(``torch.nanmean``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor

WINDOW = 11
"""SSIM's Gaussian window, in pixels per side (Wang et al. 2004)."""
SIGMA = 1.5
"""The window's standard deviation, in pixels."""
K1, K2 = 0.01, 0.03
"""SSIM's stabilising constants, for a data range of 1: ``C1 = K1**2``, ``C2 = K2**2``."""


def _pair(a: Tensor, b: Tensor, what: str) -> tuple[Tensor, Tensor, Tensor]:
    """Both batches as float64 ``[B, H, W]`` with non-finite values zeroed, and the rows that
    held one (``[B]`` bool)."""
    import torch

    if a.ndim != 3 or a.shape != b.shape:
        raise UsageError(
            f"{what} compares two batches of maps [B, H, W] of one shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}; pass maps of the same batch at one resolution"
        )
    x, y = a.detach().double(), b.detach().to(a.device).double()
    bad = ~(torch.isfinite(x).flatten(1).all(1) & torch.isfinite(y).flatten(1).all(1))
    return x.nan_to_num(0.0, 0.0, 0.0), y.nan_to_num(0.0, 0.0, 0.0), bad


def _unit(x: Tensor) -> Tensor:
    """Each map min-max normalised to ``[0, 1]``; a constant map becomes all zeros."""
    import torch

    lo = x.amin(dim=(1, 2), keepdim=True)
    span = x.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, 1.0), 0.0)


def _taps(n: int) -> list[float]:
    """The 1-D Gaussian taps for an axis of ``n`` pixels: 11 taps (radius 5), or the central
    ``2 * ((n - 1) // 2) + 1`` when the axis is shorter, renormalised to sum 1."""
    radius = min(WINDOW // 2, (n - 1) // 2)
    w = [math.exp(-0.5 / SIGMA**2 * x**2) for x in range(-radius, radius + 1)]
    return [v / sum(w) for v in w]


def _filter(x: Tensor, dim: int) -> Tensor:
    """``x`` correlated with the Gaussian taps along ``dim``, where the window fits (no
    padding): a sum of shifted slices, exact in float64 and fast on any device."""
    taps = _taps(x.shape[dim])
    size = x.shape[dim] - len(taps) + 1
    out = x.narrow(dim, 0, size) * taps[0]
    for k, w in enumerate(taps[1:], 1):
        out.add_(x.narrow(dim, k, size), alpha=w)
    return out


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """SSIM per sample between two batches of maps (Wang et al. 2004, "Image quality
    assessment: from error visibility to structural similarity").

    Each map is first min-max normalised to ``[0, 1]`` (a constant map becomes all zeros), so
    the data range is 1: ``C1 = 0.01**2``, ``C2 = 0.03**2``. Local means, variances and the
    covariance are weighted by an 11 x 11 Gaussian window of sigma 1.5 (population variances,
    as the paper), and the SSIM map is averaged over the positions where the whole window fits
    in the map (no padding). This is ``skimage.metrics.structural_similarity(x, y,
    data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` on the
    normalised maps. Deviation: skimage refuses maps smaller than the window; here an axis
    shorter than 11 pixels uses the central ``2 * ((n - 1) // 2) + 1`` taps of the Gaussian,
    renormalised (down to a single pixel).

    Args:
        a: maps ``[B, H, W]``.
        b: maps ``[B, H, W]``, the same shape.

    Returns:
        ``[B]`` float64, 1.0 for identical maps; NaN where either map is not finite.
    """
    import torch

    x, y, bad = _pair(a, b, "ssim")
    x, y = _unit(x), _unit(y)
    stack = torch.stack([x, y, x * x, y * y, x * y])
    ux, uy, uxx, uyy, uxy = _filter(_filter(stack, 2), 3)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = K1**2, K2**2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux**2 + uy**2 + c1) * (vx + vy + c2)
    out = (num / den).mean(dim=(1, 2))
    return out.masked_fill(bad, math.nan)


def _ranks(x: Tensor) -> Tensor:
    """Ranks from 1 along each row of ``[B, N]``, ties sharing their average rank: row by row
    the same as :func:`seewhy.checks.agreement.rankdata` (and ``scipy.stats.rankdata``)."""
    import torch

    s, order = x.sort(dim=1)
    n = s.shape[1]
    at = torch.arange(n, device=s.device).expand_as(s)
    starts = torch.ones_like(s, dtype=torch.bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]  # a tie group starts here
    ends = starts.roll(-1, dims=1)
    ends[:, -1] = True
    first = torch.where(starts, at, 0).cummax(dim=1).values
    last = torch.where(ends, at, n - 1).flip(1).cummin(dim=1).values.flip(1)
    average = (first + last + 2).double() / 2  # ranks from 1: first + 1 .. last + 1
    return torch.empty_like(average).scatter_(1, order, average)


def rank_correlations(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rho per sample between two batches of maps (Spearman 1904).

    Vectorised :func:`seewhy.checks.agreement.rank_correlation`, with its conventions: ties
    share their average rank, and a constant map gives 0 (no ordering to agree with).

    Args:
        a: maps ``[B, H, W]``.
        b: maps ``[B, H, W]``, the same shape.

    Returns:
        ``[B]`` float64 in ``[-1, 1]``, 1.0 for identical non-constant maps; NaN where either
        map is not finite.
    """
    import torch

    x, y, bad = _pair(a, b, "rank_correlations")
    rx, ry = _ranks(x.flatten(1)), _ranks(y.flatten(1))
    rx, ry = rx - rx.mean(dim=1, keepdim=True), ry - ry.mean(dim=1, keepdim=True)
    denom = (rx.square().sum(dim=1) * ry.square().sum(dim=1)).sqrt()
    rho = torch.where(denom > 0, (rx * ry).sum(dim=1) / torch.where(denom > 0, denom, 1.0), 0.0)
    return rho.masked_fill(bad, math.nan)


class Reference:
    """One batch of reference maps compared with many others (a randomization cascade compares
    the trained model's maps with every randomized copy's): the reference's centred ranks and
    its SSIM statistics (local mean and second moment) are computed once, so each comparison
    ranks and filters only the other maps. The figures equal :func:`rank_correlations` and
    :func:`ssim` of the same pairs.

    Args:
        reference: maps ``[B, H, W]``.
    """

    def __init__(self, reference: Tensor) -> None:
        import torch

        x = reference.detach().double()
        self._shape = tuple(x.shape)
        if x.ndim != 3:
            raise UsageError(
                f"a reference is a batch of maps [B, H, W], got {self._shape}; pass the maps "
                "of one batch at one resolution"
            )
        self._bad = ~torch.isfinite(x).flatten(1).all(1)
        x = x.nan_to_num(0.0, 0.0, 0.0)
        rx = _ranks(x.flatten(1))
        self._rx = rx - rx.mean(dim=1, keepdim=True)
        self._rx_norm = self._rx.square().sum(dim=1)
        self._unit = _unit(x)
        ux, uxx = _filter(_filter(torch.stack([self._unit, self._unit * self._unit]), 2), 3)
        self._ux, self._vx = ux, uxx - ux * ux

    def _other(self, b: Tensor, what: str) -> tuple[Tensor, Tensor]:
        import torch

        if tuple(b.shape) != self._shape:
            raise UsageError(
                f"{what} compares two batches of maps [B, H, W] of one shape, got "
                f"{self._shape} and {tuple(b.shape)}; pass maps of the same batch at one "
                "resolution"
            )
        y = b.detach().to(self._rx.device).double()
        bad = self._bad | ~torch.isfinite(y).flatten(1).all(1)
        return y.nan_to_num(0.0, 0.0, 0.0), bad

    def rank_correlations(self, b: Tensor) -> Tensor:
        """:func:`rank_correlations` of the reference and ``b``."""
        import torch

        y, bad = self._other(b, "rank_correlations")
        ry = _ranks(y.flatten(1))
        ry = ry - ry.mean(dim=1, keepdim=True)
        denom = (self._rx_norm * ry.square().sum(dim=1)).sqrt()
        safe = torch.where(denom > 0, denom, 1.0)
        rho = torch.where(denom > 0, (self._rx * ry).sum(dim=1) / safe, 0.0)
        return rho.masked_fill(bad, math.nan)

    def ssim(self, b: Tensor) -> Tensor:
        """:func:`ssim` of the reference and ``b``."""
        import torch

        y, bad = self._other(b, "ssim")
        y = _unit(y)
        uy, uyy, uxy = _filter(_filter(torch.stack([y, y * y, self._unit * y]), 2), 3)
        ux, vx = self._ux, self._vx
        vy, vxy = uyy - uy * uy, uxy - ux * uy
        c1, c2 = K1**2, K2**2
        num = (2 * ux * uy + c1) * (2 * vxy + c2)
        den = (ux**2 + uy**2 + c1) * (vx + vy + c2)
        out = (num / den).mean(dim=(1, 2))
        return out.masked_fill(bad, math.nan)
