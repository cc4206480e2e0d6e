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
    """IoU of the two maps' top ``fraction`` of pixels."""
    import torch

    x, y = _common(a, b)
    k = max(1, math.ceil(fraction * x.numel()))
    ta = torch.zeros_like(x, dtype=torch.bool)
    tb = torch.zeros_like(y, dtype=torch.bool)
    ta[x.topk(k).indices] = True
    tb[y.topk(k).indices] = True
    return float((ta & tb).sum()) / float((ta | tb).sum())
