"""Robust decoding: each image mode to the expected pixels; each failure to an ImageError."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy.core.errors import ImageError
from seewhy.data.images import DecodedImage, decode_image, load_image

EXIF_ORIENTATION = 0x0112


def pixels(d: DecodedImage | Image.Image) -> np.ndarray:
    return np.asarray(d.image if isinstance(d, DecodedImage) else d).astype(int)


@pytest.mark.parametrize(
    ("mode", "dtype", "lo", "hi", "suffix"),
    [
        ("I;16", np.uint16, 1000, 4000, "png"),  # 12 bits used of 16, as X-rays often are
        ("I;16B", ">u2", 0, 65535, "tif"),  # big-endian 16-bit TIFF
        ("I", np.int32, -50_000, 150_000, "tif"),
        ("F", np.float32, -1.5, 0.5, "tif"),
    ],
)
def test_deep_images_are_stretched_min_max_to_eight_bits(
    tmp_path: Path, mode: str, dtype: str | type, lo: float, hi: float, suffix: str
) -> None:
    ramp = np.linspace(lo, hi, 16 * 16).reshape(16, 16).astype(dtype)
    if mode == "I;16B":
        img = Image.frombytes(mode, (16, 16), ramp.tobytes())
    else:
        img = Image.fromarray(ramp)
    assert img.mode == mode
    img.save(tmp_path / f"r.{suffix}")
    d = decode_image(tmp_path / f"r.{suffix}")
    assert d.mode == mode and d.grayscale and d.path == str(tmp_path / f"r.{suffix}")
    px = pixels(d)
    expected = np.round((ramp.astype(np.float64) - lo) / (hi - lo) * 255)
    assert np.abs(px[..., 0] - expected).max() <= 1
    assert px.min() == 0 and px.max() == 255
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()


def test_a_flat_deep_image_is_black_not_nan() -> None:
    d = decode_image(Image.fromarray(np.full((4, 4), 3000, np.uint16)))
    assert d.grayscale and pixels(d).max() == 0


def test_grayscale_and_rgb_with_equal_channels_are_grayscale(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(tmp_path / "g.png")
    d = decode_image(tmp_path / "g.png")
    assert d.grayscale and d.mode == "L" and pixels(d)[0, 0].tolist() == [77, 77, 77]
    Image.fromarray(np.full((4, 4, 3), 77, np.uint8)).save(tmp_path / "rgb.png")
    d = decode_image(tmp_path / "rgb.png")
    assert d.grayscale and d.mode == "RGB"
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "c.png")
    d = decode_image(tmp_path / "c.png")
    assert not d.grayscale and pixels(d)[0, 0].tolist() == [200, 0, 0]


def test_one_bit_images(tmp_path: Path) -> None:
    bits = np.zeros((4, 4), bool)
    bits[:, :2] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    d = decode_image(tmp_path / "b.png")
    assert d.mode == "1" and d.grayscale
    assert pixels(d)[0, 0].tolist() == [255] * 3 and pixels(d)[0, 3].tolist() == [0] * 3


def test_rgba_is_composed_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red
    rgba[0, 1] = [0, 0, 0, 0]  # fully transparent
    rgba[1, 0] = [0, 0, 255, 128]  # half-transparent blue
    rgba[1, 1] = [0, 200, 0, 64]  # mostly transparent green
    Image.fromarray(rgba).save(tmp_path / "a.png")
    d = decode_image(tmp_path / "a.png")
    px = pixels(d)
    assert d.mode == "RGBA" and not d.grayscale
    assert px[0, 0].tolist() == [255, 0, 0]
    assert px[0, 1].tolist() == [255, 255, 255]
    # out = a * colour + (1 - a) * 255
    for (y, x), colour, alpha in [((1, 0), [0, 0, 255], 128), ((1, 1), [0, 200, 0], 64)]:
        want = [a * alpha / 255 + 255 * (1 - alpha / 255) for a in colour]
        assert np.abs(px[y, x] - np.array(want)).max() <= 1.5


def test_gray_with_alpha_is_composed_and_grayscale(tmp_path: Path) -> None:
    la = np.zeros((1, 2, 2), np.uint8)
    la[0, 0] = [0, 255]  # opaque black
    la[0, 1] = [0, 0]  # transparent -> white
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    d = decode_image(tmp_path / "la.png")
    assert d.mode == "LA" and d.grayscale
    assert pixels(d)[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 255, 0] + [10, 20, 30] * 255)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "t.png", transparency=1)
    d = decode_image(tmp_path / "t.png")
    assert d.mode == "P" and not d.grayscale
    assert pixels(d)[0].tolist() == [[0, 255, 0], [255, 255, 255]]
    img.save(tmp_path / "o.png")
    assert pixels(decode_image(tmp_path / "o.png"))[0].tolist() == [[0, 255, 0], [10, 20, 30]]


def test_cmyk_jpeg_decodes_to_the_right_colour(tmp_path: Path) -> None:
    Image.new("RGB", (16, 16), (200, 30, 30)).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    d = decode_image(tmp_path / "c.jpg")
    assert d.mode == "CMYK" and not d.grayscale
    r, g, b = pixels(d).reshape(-1, 3).mean(0)
    assert abs(r - 200) < 12 and abs(g - 30) < 12 and abs(b - 30) < 12


def corner_image() -> np.ndarray:
    """4x6 (landscape) with distinct values everywhere: no rotation or flip maps it to itself."""
    a = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    return a


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (1, lambda a: a),
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # stored 90 degrees counter-clockwise: turn clockwise
        (8, lambda a: np.rot90(a, 1)),
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, upright: object) -> None:
    a = corner_image()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(a).save(tmp_path / "e.png", exif=exif)  # lossless, so pixels are exact
    px = pixels(decode_image(tmp_path / "e.png"))
    assert px.tolist() == upright(a).tolist()  # type: ignore[operator]


def test_exif_orientation_in_a_jpeg(tmp_path: Path) -> None:
    a = np.zeros((20, 40, 3), np.uint8)  # landscape with a bright top-left block
    a[:6, :6] = 255
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(a).save(tmp_path / "e.jpg", exif=exif, quality=95)
    px = pixels(decode_image(tmp_path / "e.jpg"))
    assert px.shape[:2] == (40, 20)  # portrait now
    assert px[:6, -6:].mean() > 200 and px[:6, :6].mean() < 50  # the block turned to top-right


def test_sources_bytes_pil_and_load_image(tmp_path: Path) -> None:
    a = np.zeros((3, 5, 3), np.uint8)
    a[1, 2] = [9, 8, 7]
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    d = decode_image(buf.getvalue())
    assert d.path is None and pixels(d).tolist() == a.tolist()
    assert pixels(decode_image(Image.fromarray(a))).tolist() == a.tolist()
    Image.fromarray(a).save(tmp_path / "x.png")
    img = load_image(str(tmp_path / "x.png"))
    assert img.mode == "RGB" and pixels(img).tolist() == a.tolist()
    with pytest.raises(ImageError, match=r"<bytes> is not an image"):
        decode_image(b"hello")


def test_failures_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"missing\.png does not exist"):
        decode_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match=r"is a folder, not an image file"):
        decode_image(tmp_path)
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(ImageError, match=r"t\.txt is not an image PIL can read"):
        decode_image(tmp_path / "t.txt")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "ok.png")
    Image.fromarray(noise).save(tmp_path / "ok.jpg", quality=90)
    for name in ("ok.png", "ok.jpg"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageError, match=rf"cut_{name} is corrupt or truncated") as e:
            decode_image(cut)
        assert "\n" not in str(e.value)
    # a PNG with a damaged pixel stream
    damaged = bytearray((tmp_path / "ok.png").read_bytes())
    start = damaged.index(b"IDAT") + 20
    damaged[start : start + 64] = b"\x00" * 64
    (tmp_path / "bad_crc.png").write_bytes(bytes(damaged))
    with pytest.raises(ImageError, match=r"bad_crc\.png is corrupt or truncated"):
        decode_image(tmp_path / "bad_crc.png")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (2, 2)).save(tmp_path / "locked.png")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)  # as a file without read permission does
    with pytest.raises(ImageError, match=r"locked\.png cannot be read \(permission denied\)"):
        decode_image(tmp_path / "locked.png")


def test_decompression_bombs_are_refused_without_changing_pil(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")  # 4096 pixels
    filters = list(warnings.filters)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4096)
    assert pixels(decode_image(tmp_path / "big.png")).shape == (64, 64, 3)  # at the limit: fine
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    with pytest.raises(ImageError, match=r"big\.png is too large to decode safely"):
        decode_image(tmp_path / "big.png")  # 3000 < 4096 < 6000: PIL only warns; we refuse
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match=r"big\.png is too large.*downscale it first"):
        decode_image(tmp_path / "big.png")  # > 2x the limit: PIL's own error
    assert Image.MAX_IMAGE_PIXELS == 100 and list(warnings.filters) == filters
    # outside decode_image, PIL's own behaviour is unchanged: only a warning
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(tmp_path / "big.png").load()


def test_a_mode_pil_cannot_turn_into_rgb() -> None:
    with pytest.raises(ImageError, match=r"pixel mode La, which cannot be turned into RGB"):
        decode_image(Image.new("La", (2, 2)))


def test_sixteen_bit_images_full_range_or_min_max(tmp_path: Path) -> None:
    ramp = np.linspace(1000, 3000, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "xray.png")
    stretched = pixels(decode_image(tmp_path / "xray.png"))  # "minmax", the default
    assert stretched.min() == 0 and stretched.max() == 255
    assert pixels(decode_image(tmp_path / "xray.png", bit_depth="minmax")).tolist() == (
        stretched.tolist()
    )
    full = decode_image(tmp_path / "xray.png", bit_depth="full")
    assert full.grayscale and full.mode == "I;16"
    px = pixels(full)
    expected = np.round(ramp.astype(np.float64) / 65535 * 255)  # 3.9 .. 11.7
    assert np.abs(px[..., 0] - expected).max() <= 1
    assert (px.min(), px.max()) == (4, 12)
    assert (px[..., 0] == px[..., 2]).all()


def test_full_range_of_32_bit_and_float_images() -> None:
    # 32-bit integers holding 16-bit values: /65535; beyond 0..65535 there is no full range
    small = np.array([[0, 65535], [32768, 1000]], np.int32)
    assert pixels(decode_image(Image.fromarray(small), bit_depth="full"))[..., 0].tolist() == [
        [0, 255],
        [128, 4],
    ]
    wide = np.array([[-50_000, 150_000], [50_000, 0]], np.int32)
    assert pixels(decode_image(Image.fromarray(wide), bit_depth="full"))[..., 0].tolist() == [
        [0, 255],
        [128, 64],
    ]
    # floats in 0..1 are the full range; others are stretched min..max
    unit = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    assert pixels(decode_image(Image.fromarray(unit), bit_depth="full"))[..., 0].tolist() == [
        [0, 255],
        [128, 64],
    ]
    # 8-bit images are unchanged by either
    grey = Image.fromarray(np.array([[3, 250]], np.uint8))
    assert pixels(decode_image(grey, bit_depth="full"))[..., 0].tolist() == [[3, 250]]


def test_unknown_bit_depth_is_refused() -> None:
    from seewhy.core.errors import SeewhyError

    with pytest.raises(SeewhyError, match=r"bit_depth='12': expected 'minmax' .* or 'full'") as e:
        decode_image(Image.new("L", (2, 2)), bit_depth="12")
    assert "\n" not in str(e.value)
