"""Agreement between two maps: Spearman rank correlation and top-k IoU (SPEC section 6)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def _common(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Both maps at the smaller one's resolution (bilinear), flattened, float64."""
    import torch.nn.functional as F

    if a.shape != b.shape:
        size = min(a.shape, b.shape, key=lambda s: s[-1] * s[-2])[-2:]
        a, b = (
            F.interpolate(
                m.float()[None, None], size=tuple(size), mode="bilinear", align_corners=False
            )[0, 0]
            if m.shape[-2:] != size
            else m
            for m in (a, b)
        )
    return a.flatten().double(), b.flatten().double()


def rankdata(x: Tensor) -> Tensor:
    """Ranks from 1, ties sharing their average rank (as scipy.stats.rankdata)."""
    import torch

    _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return ((ends - counts + 1 + ends) / 2)[inverse]


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman's rho between two maps (ties averaged); 0 when either map is constant."""
    x, y = _common(a, b)
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float((rx.square().sum() * ry.square().sum()).sqrt())
    return float((rx * ry).sum()) / denom if denom > 0 else 0.0


def top_iou(a: Tensor, b: Tensor, fraction: float = 0.1) -> float:
    """IoU of the two maps' top ``fraction`` of pixels, honest about ties.

    A map's top set is every pixel whose value is >= its k-th largest value
    (``k = ceil(fraction * pixels)``, between 1 and all pixels), so pixels tied at the threshold
    are all in or all out (never split by their index), and strictly above the map's minimum, so
    the flat background of a sparse map is never "top". A constant map therefore has no top
    region; when neither map has one the result is 0.0, as :func:`rank_correlation` gives 0 for
    constant maps.
    """
    x, y = _common(a, b)
    n = x.numel()
    k = min(n, max(1, math.ceil(round(fraction * n, 9))))  # 0.07 * 100 is 7.000000000000001
    ta, tb = (m.ge(m.topk(k).values[-1]) & m.gt(m.min()) for m in (x, y))
    union = int((ta | tb).sum())
    return int((ta & tb).sum()) / union if union else 0.0
