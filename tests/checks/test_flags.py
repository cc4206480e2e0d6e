"""Red flags on hand-computed maps: border band, flat maps, corner peaks, input independence,
disagreement."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from seewhy.checks.agreement import rank_correlation
from seewhy.checks.flags import (
    border_area,
    border_mask,
    border_share,
    corner_peak,
    disagreement,
    flat,
    input_independence,
)
from seewhy.core.errors import UsageError


def nan_equal(got: torch.Tensor, want: list[float]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got.tolist(), want, strict=True):
        assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w, abs=1e-12), (g, w)


def test_border_area_by_hand() -> None:
    assert border_area((224, 224)) == pytest.approx(1 - (180 * 180) / (224 * 224), abs=1e-15)
    assert border_area((10, 10)) == pytest.approx(0.36, abs=1e-15)  # 1 - 8 * 8 / 100
    # 1.5 rows -> 2 and 2.5 columns -> 3 (half up): inner 11 x 19 of 15 x 25
    assert border_area((15, 25)) == pytest.approx(1 - 11 * 19 / 375, abs=1e-15)
    assert border_area((10, 10), frame=0.0) == 0.0
    assert border_area((10, 10), frame=0.5) == 1.0


def test_border_mask_matches_border_area() -> None:
    mask = border_mask((15, 25))
    assert mask.dtype == torch.bool
    assert int(mask.sum()) == 375 - 11 * 19
    assert not mask[2:13, 3:22].any()
    assert mask[1, 12] and mask[13, 12] and mask[7, 2] and mask[7, 22]
    assert float(border_mask((224, 224)).double().mean()) == pytest.approx(
        border_area((224, 224)), abs=1e-15
    )


def test_border_share_by_hand() -> None:
    in_band = torch.zeros(10, 10)
    in_band[0, :] = 1.0
    in_band[:, 9] = 2.0
    split = torch.zeros(10, 10)
    split[0, 0], split[5, 5], split[9, 9] = 1.0, 3.0, -10.0  # relu: 1 in the band of 4
    maps = torch.stack([in_band, split, -torch.ones(10, 10), torch.zeros(10, 10)])
    nan_equal(border_share(maps), [1.0, 0.25, math.nan, math.nan])
    broken = split.clone()
    broken[4, 4] = float("nan")
    nan_equal(border_share(broken[None]), [math.nan])


def test_flat() -> None:
    gen = torch.Generator().manual_seed(0)
    varied = torch.rand(8, 8, generator=gen)
    nan_map, inf_map = varied.clone(), varied.clone()
    nan_map[0, 0], inf_map[1, 1] = float("nan"), float("inf")
    maps = torch.stack(
        [
            torch.zeros(8, 8),
            torch.full((8, 8), 5.0),
            torch.full((8, 8), 5.0).double().add(1e-8 * varied.double()).float(),  # float noise
            varied * 1e-20,  # tiny but varied: not flat
            nan_map,
            inf_map,
            varied,
            -varied,
        ]
    )
    assert flat(maps).tolist() == [True, True, True, False, True, True, False, False]


@pytest.mark.parametrize(
    ("row", "col", "name"),
    [
        (0, 0, "top-left"),
        (1, 18, "top-right"),
        (19, 0, "bottom-left"),
        (18, 19, "bottom-right"),
        (10, 10, None),  # the centre
        (2, 2, None),  # just outside the 2 x 2 top-left square
        (0, 10, None),  # on the border, between corners
    ],
)
def test_corner_peak_each_corner_and_the_centre(row: int, col: int, name: str | None) -> None:
    m = torch.rand(20, 20, generator=torch.Generator().manual_seed(1))
    m[row, col] = 2.0
    assert corner_peak(m[None]).tolist() == [name is not None]


def test_corner_peak_ties_and_flat_maps() -> None:
    two_corners = torch.zeros(20, 20)
    two_corners[0, 0] = two_corners[19, 19] = 1.0
    corner_and_centre = two_corners.clone()
    corner_and_centre[10, 10] = 1.0
    nan_map = two_corners.clone()
    nan_map[5, 5] = float("nan")
    maps = torch.stack([two_corners, corner_and_centre, torch.zeros(20, 20), nan_map])
    assert corner_peak(maps).tolist() == [True, False, False, False]
    # a larger corner square: 0.25 of 20 -> 5 x 5, so (4, 4) is in the top-left one
    m = torch.zeros(20, 20)
    m[4, 4] = 1.0
    assert corner_peak(m[None], corner=0.25).tolist() == [True]
    assert corner_peak(m[None]).tolist() == [False]


def test_input_independence_identical_and_random() -> None:
    gen = torch.Generator().manual_seed(2)
    one = torch.rand(32, 32, generator=gen)
    assert input_independence(one.expand(8, 32, 32)) == pytest.approx(1.0, abs=1e-12)
    random = torch.rand(8, 32, 32, generator=gen)
    value = input_independence(random)
    assert abs(value) < 0.1
    pairs = [rank_correlation(a, b) for a, b in itertools.combinations(random, 2)]
    assert value == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)


def test_input_independence_by_hand_and_edge_cases() -> None:
    up = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    down = up.flip(0).flip(1)
    # pairs: (up, down) = -1, (up, up) = 1, (down, up) = -1 -> -1/3
    assert input_independence(torch.stack([up, down, up])) == pytest.approx(-1 / 3, abs=1e-12)
    nan_map = up.clone()
    nan_map[0, 0] = float("nan")
    # flat and broken maps are left out: only (up, down) remains
    maps = torch.stack([up, torch.zeros(2, 2), nan_map, down])
    assert input_independence(maps) == pytest.approx(-1.0, abs=1e-12)
    assert math.isnan(input_independence(up[None]))
    assert math.isnan(input_independence(torch.stack([up, nan_map])))


def test_disagreement_per_sample() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(4, 4, 4, generator=gen)
    b = a.clone()
    b[1] = -a[1]  # reversed ranking
    b[2] = torch.zeros(4, 4)  # constant: 0, as rank_correlation says
    b[3, 0, 0] = float("nan")
    nan_equal(disagreement(a, b), [1.0, -1.0, 0.0, math.nan])
    # different sizes: an 8x8 map made of 2x2 blocks of a 4x4 one agrees with it fully
    big = a.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    nan_equal(disagreement(big, a), [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(UsageError, match=r"maps_a has 4 maps and maps_b 3"):
        disagreement(a, a[:3])


def test_bad_settings_say_what_to_do() -> None:
    with pytest.raises(UsageError, match=r"frame=0.7: expected a share"):
        border_area((10, 10), frame=0.7)
    with pytest.raises(UsageError, match=r"corner=0: expected a share"):
        corner_peak(torch.zeros(1, 4, 4), corner=0)
    with pytest.raises(UsageError, match=r"size=\(0, 4\)"):
        border_mask((0, 4))
    with pytest.raises(UsageError, match=r"maps has shape \(4, 4\)"):
        border_share(torch.zeros(4, 4))
