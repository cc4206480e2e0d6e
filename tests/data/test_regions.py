"""Region label maps: framing, validation and how a map's attribution falls on the classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy.core.errors import UsageError
from seewhy.core.preprocess import Preprocess
from seewhy.data.regions import load_regions, region_sums


@pytest.mark.parametrize(
    ("size", "mode", "pct"),
    [((32, 32), "center", 0.875), ((32, 32), "border", 1.0), ((30, 40), "squash", 1.0)],
)
@pytest.mark.parametrize("shape", [(50, 70), (70, 50), (32, 32), (20, 90)])
def test_framed_labels_lie_where_framed_masks_do(size, mode, pct, shape) -> None:
    p = Preprocess(size=size, crop_mode=mode, crop_pct=pct)
    labels = np.random.default_rng(0).integers(0, 4, size=shape)
    framed = p.frame_labels(labels)
    assert framed.shape == size
    for k in range(4):
        mask = p.frame_mask(Image.fromarray((labels == k).astype(np.uint8) * 255))
        assert (mask == (framed == k)).all()
    if mode == "border" and shape != (32, 32):
        assert (framed == -1).any()  # the padding has no class


def test_region_sums_golden() -> None:
    labels = np.array([[0, 0, 1], [1, 2, -1]])
    heat = np.array([[1.0, -2.0, 3.0], [0.5, -1.0, 9.0]])  # the -1 pixel (padding) is ignored
    s = region_sums(heat, labels, 3)
    assert s.raises.tolist() == [1.0, 3.5, 0.0]
    assert s.lowers.tolist() == [2.0, 0.0, 1.0]
    assert s.pixels.tolist() == [2.0, 2.0, 1.0]
    up, down, area = s.shares()
    assert up == pytest.approx([1 / 4.5, 3.5 / 4.5, 0.0])
    assert down == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert area == pytest.approx([0.4, 0.4, 0.2])


def test_an_unsigned_map_takes_its_lowers_from_the_opposite_map() -> None:
    labels = np.array([[0, 1]])
    s = region_sums(np.array([[2.0, 0.0]]), labels, 2, lowers=np.array([[0.0, 5.0]]))
    assert s.raises.tolist() == [2.0, 0.0] and s.lowers.tolist() == [0.0, 5.0]
    assert region_sums(np.zeros((1, 2)), labels, 2).shares()[0] is None  # nothing raises


def test_load_regions_frames_and_refuses_unknown_ids(tmp_path: Path) -> None:
    p = Preprocess(size=(8, 8), crop_pct=1.0)
    ids = np.zeros((16, 16), dtype=np.uint8)
    ids[:, 8:] = 2
    Image.fromarray(ids).save(tmp_path / "ok.png")
    got = load_regions(tmp_path / "ok.png", p, ["a", "b", "c"], image_size=(16, 16))
    assert got[:, :4].tolist() == [[0] * 4] * 8 and got[:, 4:].tolist() == [[2] * 4] * 8
    ids[0, 0] = 7
    Image.fromarray(ids).save(tmp_path / "bad.png")
    with pytest.raises(UsageError, match=r"bad.png has class id 7.*names 3 classes"):
        load_regions(tmp_path / "bad.png", p, ["a", "b", "c"])
    with pytest.raises(UsageError, match="is 16x16 but its image is 10x10"):
        load_regions(tmp_path / "ok.png", p, ["a", "b", "c"], image_size=(10, 10))
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(UsageError, match="RGB image; give one class id per pixel"):
        load_regions(tmp_path / "rgb.png", p, ["a"])
