"""Masks and boxes in the model-input frame: the same geometry as the framed image, exact
pixel counts, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seewhy.core.errors import ImageError, UsageError
from seewhy.core.preprocess import Preprocess
from seewhy.data.masks import box_mask, load_mask, parse_box

EXIF_ORIENTATION = 0x0112
# (x0, y0, x1, y1), x1 and y1 exclusive, on a 120 x 80 image: one inside, one on the left edge
MARKERS = [(31, 21, 69, 49), (0, 60, 10, 80)]


def marked(size: tuple[int, int] = (120, 80)) -> tuple[Image.Image, Image.Image]:
    """A grey RGB image with red markers, and a mask ("L", 0/255) of the same shapes."""
    width, height = size
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    for x0, y0, x1, y1 in MARKERS:
        image[y0:y1, x0:x1] = (255, 0, 0)
        mask[y0:y1, x0:x1] = 255
    return Image.fromarray(image), Image.fromarray(mask)


@pytest.mark.parametrize(
    "pre",
    [
        Preprocess(size=(32, 32), crop_mode="squash"),
        Preprocess(size=(32, 32), crop_mode="center", crop_pct=0.875),
        Preprocess(size=(24, 40), crop_mode="center", crop_pct=0.875),
        Preprocess(size=(32, 32), crop_mode="border"),
    ],
    ids=["squash", "center", "center-24x40", "border"],
)
def test_mask_lands_where_the_framed_images_marker_lands(pre: Preprocess) -> None:
    image, mask = marked()
    pre = Preprocess(**{**pre.describe(), "size": pre.size, "interpolation": "nearest"})
    framed = np.asarray(pre.frame(image)).astype(int)
    marker = (framed[..., 0] == 255) & (framed[..., 1] == 0)
    got = pre.frame_mask(mask)
    assert got.dtype == np.bool_
    assert got.shape == pre.size
    assert marker.sum() > 0
    np.testing.assert_array_equal(got, marker)


def test_border_padding_is_outside_the_mask() -> None:
    # 120 x 80 -> the longer side to 32: 32 x 21 (80 / 3.75 = 21.33), padded 5 rows on top and
    # 6 below; a full mask covers exactly the 21 image rows
    full = Image.new("L", (120, 80), 255)
    got = Preprocess(size=(32, 32), crop_mode="border").frame_mask(full)
    assert int(got.sum()) == 21 * 32
    assert not got[:5].any() and not got[26:].any() and got[5:26].all()


def test_center_crop_cuts_the_edge_marker() -> None:
    # center at crop_pct 0.875: scale floor(32 / 0.875) = 36, so 120 x 80 -> 54 x 36 (the short
    # side to 36, the long one int(36 * 120 / 80)); NEAREST samples column c at (c + 0.5) * 120/54
    # and row r at (r + 0.5) * 80/36; the crop starts at column round(22 / 2) = 11, row 2.
    # Inside marker x 31..69: c = 14..30 (14.5 * 2.22 = 32.2, 31.5 * 2.22 = 70) -> columns 3..19;
    # y 21..49: r = 9..21 (9.5 * 2.22 = 21.1, 22.5 * 2.22 = 50) -> rows 7..19: 17 x 13 pixels.
    # The edge marker (x < 10: c <= 3) lies left of the crop.
    _, mask = marked()
    got = Preprocess(size=(32, 32), crop_mode="center", crop_pct=0.875).frame_mask(mask)
    rows, cols = np.nonzero(got)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (7, 19, 3, 19)
    assert int(got.sum()) == 17 * 13


def identity(mask: Image.Image) -> np.ndarray:
    """``frame_mask`` at the mask's own size: no resize, no crop, only the non-zero rule."""
    width, height = mask.size
    return Preprocess(size=(height, width)).frame_mask(mask)


def test_nonzero_rule_for_each_mode() -> None:
    region = np.zeros((6, 8), dtype=bool)
    region[1:4, 2:7] = True
    for array, mode in [
        (region, "1"),
        (region.astype(np.uint8) * 3, "L"),
        (region.astype(np.uint16) * 1000, "I;16"),
        (region.astype(np.int32) * -7, "I"),
        (region.astype(np.float32) * 0.25, "F"),
    ]:
        img = Image.fromarray(array)
        assert img.mode == mode
        np.testing.assert_array_equal(identity(img), region, err_msg=mode)
    blue = np.zeros((6, 8, 3), dtype=np.uint8)
    blue[region] = (0, 0, 1)
    np.testing.assert_array_equal(identity(Image.fromarray(blue)), region)
    palette = Image.fromarray(region.astype(np.uint8) * 2, mode="L").convert("P")
    np.testing.assert_array_equal(identity(palette), region)
    # 16-bit values all non-zero: the whole frame, not an empty stretched image
    assert identity(Image.fromarray(np.full((6, 8), 5, dtype=np.uint16))).all()


def test_alpha_masks() -> None:
    region = np.zeros((6, 8), dtype=bool)
    region[1:4, 2:7] = True
    # transparent background, a black opaque stroke: the opaque part is the mask
    stroke = np.zeros((6, 8, 4), dtype=np.uint8)
    stroke[region] = (0, 0, 0, 255)
    np.testing.assert_array_equal(identity(Image.fromarray(stroke, mode="RGBA")), region)
    # fully opaque: the colour decides
    opaque = np.zeros((6, 8, 4), dtype=np.uint8)
    opaque[..., 3] = 255
    opaque[region] = (255, 255, 255, 255)
    np.testing.assert_array_equal(identity(Image.fromarray(opaque, mode="RGBA")), region)


def test_load_mask_frames_the_file(tmp_path: Path) -> None:
    _, mask = marked()
    mask16 = Image.fromarray((np.asarray(mask) > 0).astype(np.uint16))  # values 0 and 1
    mask16.save(tmp_path / "m16.png")
    pre = Preprocess(size=(32, 32), crop_mode="center", crop_pct=0.875)
    got = load_mask(tmp_path / "m16.png", pre, image_size=(120, 80))
    assert got.dtype == torch.bool
    np.testing.assert_array_equal(got.numpy(), pre.frame_mask(mask))
    assert int(got.sum()) == 17 * 13  # as test_center_crop_cuts_the_edge_marker


def test_load_mask_applies_exif_orientation(tmp_path: Path) -> None:
    a = np.zeros((30, 40), dtype=np.uint8)  # 40 wide, 30 high as stored
    a[0, 0] = 255
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shown rotated 90 degrees clockwise: 30 wide, 40 high
    Image.fromarray(a).save(tmp_path / "e.png", exif=exif)
    got = load_mask(tmp_path / "e.png", Preprocess(size=(40, 30)), image_size=(30, 40))
    assert got.shape == (40, 30)
    assert got.nonzero().tolist() == [[0, 29]]  # the stored top-left is now the top-right
    with pytest.raises(UsageError, match="is 30x40 but its image is 40x30"):
        load_mask(tmp_path / "e.png", Preprocess(size=(40, 30)), image_size=(40, 30))


def test_load_mask_errors_name_the_file(tmp_path: Path) -> None:
    pre = Preprocess(size=(32, 32))
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageError) as info:
        load_mask(missing, pre)
    assert str(info.value) == f"mask {missing} does not exist; check the path"
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match=r"mask .*notes\.png is not an image PIL can read"):
        load_mask(text, pre)
    Image.new("L", (40, 30)).save(tmp_path / "small.png")
    with pytest.raises(UsageError) as info2:
        load_mask(tmp_path / "small.png", pre, image_size=(50, 30))
    assert str(info2.value) == (
        f"mask {tmp_path / 'small.png'} is 40x30 but its image is 50x30; "
        "give a mask of the image's size"
    )
    assert "\n" not in str(info.value) + str(info2.value)


def test_box_mask_area_on_a_squashed_frame() -> None:
    # box x 20..60, y 10..40 on 100 x 50, squashed to 32 x 32 with NEAREST (a frame pixel c
    # samples the image at (c + 0.5) * 100 / 32, a row r at (r + 0.5) * 50 / 32):
    # columns with 20 <= (c + 0.5) * 3.125 < 60 -> c = 6..18 (13 columns);
    # rows with 10 <= (r + 0.5) * 1.5625 < 40 -> r = 6..25 (20 rows): 260 of 1024 pixels.
    pre = Preprocess(size=(32, 32), crop_mode="squash")
    got = box_mask((20, 10, 60, 40), (100, 50), pre)
    assert got.dtype == torch.bool and got.shape == (32, 32)
    assert float(got.double().mean()) == 260 / 1024
    rows, cols = got.nonzero(as_tuple=True)
    assert (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) == (6, 25, 6, 18)
    # the same as a mask file of that box
    drawn = np.zeros((50, 100), dtype=np.uint8)
    drawn[10:40, 20:60] = 255
    np.testing.assert_array_equal(got.numpy(), pre.frame_mask(Image.fromarray(drawn)))


def test_box_rasterised_by_pixel_centres_and_clipped() -> None:
    pre = Preprocess(size=(10, 20))  # the image's own size: no resize
    got = box_mask("19.6, 2, 20.5, 3", (20, 10), pre)  # holds no pixel centre: 19.5 < 19.6
    assert int(got.sum()) == 0
    got = box_mask((-10, -10, 5, 5), (20, 10), pre)  # clipped to the image: 5 x 5
    assert int(got.sum()) == 25 and got[:5, :5].all()
    got = box_mask([2.4, 0, 4.6, 1], (20, 10), pre)  # centres 2.5, 3.5 in; 4.5 in; 5.5 out
    assert got[0].nonzero().flatten().tolist() == [2, 3, 4]


def test_parse_box() -> None:
    assert parse_box("10, 20, 30, 40") == (10.0, 20.0, 30.0, 40.0)
    assert parse_box("[10 20 30.5 40]") == (10.0, 20.0, 30.5, 40.0)
    assert parse_box((1, 2, 3, 4)) == (1.0, 2.0, 3.0, 4.0)
    for bad, why in [
        ("1,2,3", "is not four numbers"),
        ("a,b,c,d", "is not four numbers"),
        ((1, 2, 3, True), "is not four numbers"),
        (5, "is not four numbers"),
        ("1,2,nan,4", "has a non-finite number"),
        ("10,20,10,40", "is empty"),
        ("10,40,30,20", "is empty"),
    ]:
        with pytest.raises(UsageError, match=why) as info:
            parse_box(bad)  # type: ignore[arg-type]
        assert "give x0,y0,x1,y1 in the original image's pixels" in str(info.value)


def test_box_outside_the_image_is_refused() -> None:
    with pytest.raises(UsageError, match=r"box \(120, 0, 130, 10\) lies outside the 100x50 image"):
        box_mask((120, 0, 130, 10), (100, 50), Preprocess(size=(32, 32)))
