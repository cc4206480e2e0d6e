"""Localization: pointing game, energy in the mask and mask area on hand-computed 4x4 maps."""

from __future__ import annotations

import math

import pytest
import torch

from seewhy.checks.localization import energy_in_mask, mask_area, pointing_game
from seewhy.core.errors import UsageError

# positive values: 1 + 2 + 5 + 3 + 2 + 1 + 1 = 15; the peak 5 sits at (1, 1)
MAP = torch.tensor(
    [
        [0.0, 1.0, 2.0, 0.0],
        [-1.0, 5.0, 3.0, 0.0],
        [0.0, 2.0, -4.0, 1.0],
        [0.0, 0.0, 1.0, 0.0],
    ]
)


def box(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    m = torch.zeros(4, 4, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m


TOP = box(0, 2, 1, 3)  # holds 1, 2, 5, 3 -> 11 of 15, and the peak
BOTTOM_RIGHT = box(2, 4, 2, 4)  # holds -4, 1, 1, 0 -> 2 of 15, not the peak
EMPTY = box(0, 0, 0, 0)


def nan_equal(got: torch.Tensor, want: list[float]) -> None:
    assert got.dtype == torch.float64
    assert len(got) == len(want)
    for g, w in zip(got.tolist(), want, strict=True):
        assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w, abs=1e-12), (g, w)


def test_golden_values_by_hand() -> None:
    maps = torch.stack([MAP, MAP, MAP, torch.zeros(4, 4)])
    masks = torch.stack([TOP, BOTTOM_RIGHT, EMPTY, TOP])
    nan_equal(pointing_game(maps, masks), [1.0, 0.0, math.nan, math.nan])
    nan_equal(energy_in_mask(maps, masks), [11 / 15, 2 / 15, math.nan, math.nan])
    nan_equal(mask_area(masks), [4 / 16, 4 / 16, math.nan, 4 / 16])


def test_ties_hit_when_any_peak_pixel_is_in_the_mask() -> None:
    tied = MAP.clone()
    tied[3, 3] = 5.0  # a second peak, in BOTTOM_RIGHT
    maps = torch.stack([tied, tied, MAP])
    masks = torch.stack([TOP, BOTTOM_RIGHT, BOTTOM_RIGHT])
    nan_equal(pointing_game(maps, masks), [1.0, 1.0, 0.0])


def test_signed_maps_count_only_positive_energy() -> None:
    negated = -MAP  # positive: 1 + 4 = 5; in BOTTOM_RIGHT: 4 -> 4/5; in TOP: 0
    maps = torch.stack([negated, negated, -torch.ones(4, 4)])
    masks = torch.stack([BOTTOM_RIGHT, TOP, TOP])
    nan_equal(energy_in_mask(maps, masks), [4 / 5, 0.0, math.nan])
    # the peak of -MAP is 4 at (2, 2), inside BOTTOM_RIGHT; -1 everywhere is constant
    nan_equal(pointing_game(maps, masks), [1.0, 0.0, math.nan])


def test_nan_and_inf_maps_are_nan_not_a_crash() -> None:
    broken = MAP.clone()
    broken[0, 0] = float("nan")
    infinite = MAP.clone()
    infinite[3, 3] = float("inf")
    maps = torch.stack([broken, infinite])
    masks = torch.stack([TOP, TOP])
    nan_equal(pointing_game(maps, masks), [math.nan, math.nan])
    nan_equal(energy_in_mask(maps, masks), [math.nan, math.nan])


def test_non_bool_masks_are_read_as_nonzero() -> None:
    masks = torch.stack([TOP.float() * 7, BOTTOM_RIGHT.to(torch.uint8)])
    maps = torch.stack([MAP, MAP])
    nan_equal(energy_in_mask(maps, masks), [11 / 15, 2 / 15])
    nan_equal(mask_area(masks), [0.25, 0.25])


def test_shape_errors_say_what_to_do() -> None:
    with pytest.raises(UsageError, match=r"maps has shape \(4, 4\); expected \[B, H, W\]"):
        pointing_game(MAP, TOP)
    with pytest.raises(UsageError, match=r"differ in shape; bring the masks"):
        energy_in_mask(MAP[None], torch.ones(1, 4, 5, dtype=torch.bool))
    with pytest.raises(UsageError, match=r"masks has shape \(16,\)"):
        mask_area(TOP.flatten())
