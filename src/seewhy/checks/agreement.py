"""Agreement between two maps: Spearman rank correlation and top-k IoU (SPEC section 6)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor


COMPARE_SIDE = 256
"""The longer side of the grid on which models that frame the image differently are compared."""


def place(
    heat: np.ndarray,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    grid: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """A map of a model's input frame placed on a ``grid`` (w, h) over the original image of
    ``size`` (w, h), where the frame covers ``box``: (map, covered), 0 where not covered."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    x0, y0, x1, y1 = box
    (width, height), (gw, gh) = size, grid
    nx = ((np.arange(gw) + 0.5) * width / gw - x0) / (x1 - x0) * 2 - 1
    ny = ((np.arange(gh) + 0.5) * height / gh - y0) / (y1 - y0) * 2 - 1
    gy, gx = np.meshgrid(ny, nx, indexing="ij")
    where = torch.from_numpy(np.stack([gx, gy], axis=-1)).float()[None]
    src = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    placed = F.grid_sample(src, where, mode="bilinear", padding_mode="zeros", align_corners=False)
    covered = (np.abs(gx) <= 1) & (np.abs(gy) <= 1)
    return placed[0, 0].numpy() * covered, covered


def framed_rank_correlation(
    a: Tensor,
    b: Tensor,
    box_a: tuple[float, float, float, float],
    box_b: tuple[float, float, float, float],
    size: tuple[int, int],
) -> float:
    """Spearman's rho of two models' maps of one image of ``size`` (w, h) whose input frames
    lie on it at ``box_a`` and ``box_b`` (:meth:`Preprocess.box`): both placed on a grid of
    :data:`COMPARE_SIDE` pixels along the image's longer side and compared where both frames
    cover it (as ``seewhy explain`` compares models that crop differently); 0 where they do
    not overlap."""
    import torch

    width, height = size
    scale = min(1.0, COMPARE_SIDE / max(width, height))
    grid = (max(1, round(width * scale)), max(1, round(height * scale)))
    pa, ca = place(a.detach().float().cpu().numpy(), box_a, size, grid)
    pb, cb = place(b.detach().float().cpu().numpy(), box_b, size, grid)
    both = ca & cb
    if not both.any():
        return 0.0
    return rank_correlation(torch.from_numpy(pa[both]), torch.from_numpy(pb[both]))


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
