"""Robust decoding: each image mode to the expected pixels; each failure to an ImageError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy.core.errors import ImageError
from seewhy.data.images import decode_image


def test_sixteen_bit_ramp_is_stretched_to_eight_bits(tmp_path: Path) -> None:
    ramp = np.linspace(1000, 4000, 16 * 16).reshape(16, 16).astype(np.uint16)  # 12-bit data
    Image.fromarray(ramp).save(tmp_path / "r.png")
    d = decode_image(tmp_path / "r.png")
    px = np.asarray(d.image)
    assert d.grayscale and d.mode.startswith("I")
    assert px[0, 0, 0] == 0 and px[-1, -1, 0] == 255
    assert abs(int(px[8, 0, 0]) - 128) <= 2 and (px[..., 0] == px[..., 2]).all()


def test_grayscale_and_rgb_with_equal_channels_are_grayscale(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(tmp_path / "g.png")
    d = decode_image(tmp_path / "g.png")
    assert d.grayscale and d.mode == "L" and np.asarray(d.image)[0, 0].tolist() == [77, 77, 77]
    Image.fromarray(np.full((4, 4, 3), 77, np.uint8)).save(tmp_path / "rgb.png")
    assert decode_image(tmp_path / "rgb.png").grayscale
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "c.png")
    assert not decode_image(tmp_path / "c.png").grayscale


def test_rgba_is_composed_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red
    rgba[0, 1] = [0, 0, 0, 0]  # fully transparent
    rgba[1, 0] = [0, 0, 255, 128]  # half-transparent blue
    Image.fromarray(rgba).save(tmp_path / "a.png")
    px = np.asarray(decode_image(tmp_path / "a.png").image).astype(int)
    assert px[0, 0].tolist() == [255, 0, 0]
    assert px[0, 1].tolist() == [255, 255, 255]
    assert abs(px[1, 0, 0] - 127) <= 2 and px[1, 0, 2] == 255


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 255, 0] + [10, 10, 10] * 255)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 1
    img.save(tmp_path / "p.png", transparency=1)
    px = np.asarray(decode_image(tmp_path / "p.png").image)
    assert px[0, 0].tolist() == [0, 255, 0] and px[0, 1].tolist() == [255, 255, 255]


def test_cmyk_jpeg_decodes_to_the_right_colour(tmp_path: Path) -> None:
    Image.new("RGB", (16, 16), (200, 30, 30)).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    d = decode_image(tmp_path / "c.jpg")
    assert d.mode == "CMYK"
    r, g, b = np.asarray(d.image).reshape(-1, 3).mean(0)
    assert r > 170 and g < 70 and b < 70


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    a = np.zeros((20, 40, 3), np.uint8)  # landscape, bright left edge
    a[:, :5] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(a).save(tmp_path / "e.jpg", exif=exif, quality=95)
    px = np.asarray(decode_image(tmp_path / "e.jpg").image)
    assert px.shape[:2] == (40, 20)  # portrait now
    assert px[:5].mean() > 200 and px[-5:].mean() < 50  # the bright edge is at the top


def test_failures_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageError, match=r"missing.png does not exist"):
        decode_image(tmp_path / "missing.png")
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(ImageError, match=r"t.txt is not an image"):
        decode_image(tmp_path / "t.txt")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut.png is corrupt or truncated"):
        decode_image(tmp_path / "cut.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"ok.png is too large"):
        decode_image(tmp_path / "ok.png")  # 4096 px > 1000: PIL's warning becomes an error
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match=r"ok.png is too large"):
        decode_image(tmp_path / "ok.png")  # > 2x the limit: PIL's own error
