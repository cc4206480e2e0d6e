"""Agreement between maps: top-k IoU is honest about ties and constant (sparse) maps."""

from __future__ import annotations

import math

import pytest
import torch

from seewhy.checks.agreement import rank_correlation, top_iou


def reference_top_iou(a: torch.Tensor, b: torch.Tensor, fraction: float) -> float:
    """Loop-based oracle: a map's top set is every pixel >= its k-th largest value and strictly
    above its minimum; IoU of the two sets; 0 when both are empty."""

    def top(values: list[float]) -> set[int]:
        k = min(len(values), max(1, math.ceil(round(fraction * len(values), 9))))
        threshold = sorted(values, reverse=True)[k - 1]
        lowest = min(values)
        return {i for i, v in enumerate(values) if v >= threshold and v > lowest}

    ta, tb = top(a.flatten().tolist()), top(b.flatten().tolist())
    union = ta | tb
    return len(ta & tb) / len(union) if union else 0.0


def spot(row: int, col: int, size: int = 20, width: int = 2) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[row : row + width, col : col + width] = 1.0
    return m


def test_two_constant_maps_share_no_top_region() -> None:
    zeros = torch.zeros(16, 16)
    assert top_iou(zeros, zeros) == 0.0
    assert top_iou(torch.full((8, 8), 3.0), torch.full((8, 8), 3.0)) == 0.0
    assert rank_correlation(zeros, zeros) == 0.0  # the same convention


def test_disjoint_sparse_spots_do_not_agree() -> None:
    # 4 of 400 pixels each (1% < the top 10%): the zeros around them are not a shared "top".
    centre, corner = spot(9, 9), spot(0, 0)
    assert top_iou(centre, corner) == 0.0
    assert top_iou(centre, centre) == 1.0


def test_identical_non_constant_maps_agree_fully() -> None:
    m = torch.rand(12, 12, generator=torch.Generator().manual_seed(0))
    assert top_iou(m, m) == 1.0
    assert top_iou(m, m.clone(), fraction=0.37) == 1.0


def test_hand_computed_partial_overlap_with_ties_at_the_threshold() -> None:
    # 100 pixels, top 10% -> k = 10. a: pixels 0..11 at 1 (12 tied at rank 10: all are top).
    # b: pixels 6..15 at 2, pixel 16 at 1, rest 0 -> top = 6..15 (the 10th largest is 2).
    a, b = torch.zeros(100), torch.zeros(100)
    a[:12] = 1.0
    b[6:16] = 2.0
    b[16] = 1.0
    # intersection 6..11 = 6 pixels; union 0..15 = 16 pixels
    assert top_iou(a.view(10, 10), b.view(10, 10)) == pytest.approx(6 / 16)
    # a constant map against a spot: no top region on one side, so nothing shared
    assert top_iou(torch.zeros(10, 10), b.view(10, 10)) == 0.0


def test_seven_percent_of_100_pixels_is_7_not_8() -> None:
    # float: 0.07 * 100 == 7.000000000000001, whose ceil would take an 8th pixel.
    a = torch.arange(100.0)
    b = a.clone()
    b[92] = -1.0  # a's 8th largest drops out of b's top; the top 7 are the same
    assert top_iou(a.view(10, 10), b.view(10, 10), fraction=0.07) == 1.0
    assert top_iou(a.view(10, 10), b.view(10, 10), fraction=0.08) == pytest.approx(7 / 9)


def test_matches_the_loop_reference_on_maps_with_many_ties() -> None:
    g = torch.Generator().manual_seed(3)
    for trial in range(60):
        h, w = (int(v) for v in torch.randint(2, 9, (2,), generator=g))
        levels = int(torch.randint(1, 5, (1,), generator=g))
        a = torch.randint(0, levels, (h, w), generator=g).float()
        b = torch.randint(0, levels, (h, w), generator=g).float()
        if trial % 5 == 0:
            b = a.clone()
        fraction = [0.01, 0.1, 0.25, 0.5, 1.0][trial % 5]
        want = reference_top_iou(a, b, fraction)
        assert top_iou(a, b, fraction) == pytest.approx(want, abs=1e-12), (trial, a, b)
