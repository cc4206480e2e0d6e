"""Robust image decoding: EXIF orientation, grayscale, alpha, palette, 16-bit, CMYK.

Every failure is an :class:`~seewhy.core.errors.ImageError` naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import ImageError, UsageError

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for a model and for display.

    Attributes:
        image: RGB, upright (EXIF orientation applied), 8 bits per channel.
        grayscale: the source had one channel (or three equal ones): show it in gray.
        mode: the source's PIL mode (``L``, ``I;16``, ``RGBA``, ``CMYK`` ...).
        path: the source path, if it was a file.
    """

    image: Image
    grayscale: bool
    mode: str
    path: str | None = None


BIT_DEPTHS = ("minmax", "full")


def decode_image(source: str | Path | bytes | Image, bit_depth: str = "minmax") -> DecodedImage:
    """Decode a file path, bytes or PIL image into an upright 8-bit RGB image.

    EXIF orientation is applied. Transparent images (RGBA, LA, palette with transparency) are
    composed over white, the background most scans and screenshots assume. CMYK is converted to
    RGB. One-channel sources, and RGB ones whose three channels are equal, are flagged
    ``grayscale``.

    16-bit, 32-bit and float images become 8-bit as ``bit_depth`` says (a model card's
    ``[preprocess] bit_depth``):

    - ``"minmax"`` (default): stretched from the image's own min..max to 0..255 (X-rays often
      use 12 of 16 bits; each image gets full contrast, but brightness is not comparable
      between images);
    - ``"full"``: divided by the type's full range, so one value is one grey level in every
      image: 16-bit by 65535; 32-bit integers by 65535 when they lie in 0..65535 (16-bit data
      PIL reads as mode ``I``), else min..max, since they have no usable full range; floats as
      0..1 when they lie in it, else min..max.

    Non-finite pixels of a float image (NaN, often "no data") do not set the scale: min..max
    and the ``full`` test are taken over the finite pixels, then NaN and -inf become black and
    +inf white. An image with no finite pixel is refused.

    8-bit images are the same either way.

    The whole file is decoded here (not lazily), so a truncated file fails now, with its name.
    PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is respected, not changed:
    an image above it (PIL's warning) or far above it (PIL's error) is refused.

    Raises:
        ImageError: a missing file, a folder, an unreadable file, not an image, a corrupt or
            truncated image, an image above the size limit, an unsupported pixel mode, or a
            float image whose every pixel is NaN or inf.
        UsageError: an unknown ``bit_depth``.
    """

    if bit_depth not in BIT_DEPTHS:
        raise UsageError(
            f"bit_depth={bit_depth!r}: expected 'minmax' (stretch each image min..max) or "
            "'full' (divide 16-bit values by 65535); in a model card: [preprocess] bit_depth"
        )
    img, name, path = open_image(source)
    mode = img.mode
    try:
        rgb, gray = _to_rgb(img, bit_depth, name)
    except ValueError as exc:  # e.g. a mode PIL cannot convert to RGB
        raise ImageError(
            f"image {name} has pixel mode {mode}, which cannot be turned into RGB ({exc}); "
            "re-export it as RGB or grayscale"
        ) from None
    return DecodedImage(image=rgb, grayscale=gray, mode=mode, path=path)


def open_image(
    source: str | Path | bytes | Image, what: str = "image"
) -> tuple[Image, str, str | None]:
    """The source opened, every pixel decoded, upright (EXIF orientation applied), in its stored
    pixel mode; with its name for messages and its path (``None`` for bytes or a PIL image).

    ``what`` names the file in the messages (``image``, ``mask``). PIL's decompression-bomb
    limit is respected, not changed.

    Raises:
        ImageError: a missing file, a folder, an unreadable file, not an image, a corrupt or
            truncated image, an image above the size limit.
    """
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    path: str | None = None
    if isinstance(source, PILImage.Image):
        name = str(getattr(source, "filename", "") or "<PIL image>")
    elif isinstance(source, bytes):
        name = "<bytes>"
    else:
        path = name = str(source)
        if Path(path).is_dir():
            file = "file" if what == "image" else f"{what} file"
            raise ImageError(f"{what} {path} is a folder, not an image file; pass the {file}")
        if not Path(path).is_file():
            raise ImageError(f"{what} {path} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            # Only inside this block: PIL's global limit and warning filters stay as they are.
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            if isinstance(source, PILImage.Image):
                img = source
            elif isinstance(source, bytes):
                img = PILImage.open(io.BytesIO(source))
            else:
                img = PILImage.open(name)
            img.load()  # decode every pixel now: a truncated file fails here
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{what} {name} is too large to decode safely ({exc}); downscale it first"
        ) from None
    except UnidentifiedImageError:
        named = name if what == "image" else f"{what} {name}"
        raise ImageError(
            f"{named} is not an image PIL can read; pass a PNG, JPEG, TIFF, BMP or WebP file"
        ) from None
    except PermissionError:
        raise ImageError(
            f"{what} {name} cannot be read (permission denied); check its permissions"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise ImageError(
            f"{what} {name} is corrupt or truncated ({reason}); re-export the file"
        ) from None
    stored = img.format
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, SyntaxError):
        # A broken EXIF block only loses the orientation: the pixels are kept as stored.
        img = ImageOps.exif_transpose(img) or img
    img.format = stored  # the file's format (PNG, JPEG ...), which a transposed copy loses
    return img, name, path


def _to_rgb(img: Any, bit_depth: str = "minmax", name: str = "<PIL image>") -> tuple[Image, bool]:
    import numpy as np
    from PIL import Image as PILImage

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(a)
        if not finite.any():
            raise ImageError(
                f"image {name} has no finite pixel (every value is NaN or inf), so there is "
                "nothing to explain; re-export it with its values"
            )
        lo, hi = float(a[finite].min()), float(a[finite].max())
        full = None
        if bit_depth == "full":
            if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
                full = 65535.0
            elif mode == "F" and lo >= 0 and hi <= 1:
                full = 1.0
        if full is not None:
            scaled = a / full * 255.0
        elif hi <= lo:
            scaled = np.where(finite, 0.0, a)
        else:
            scaled = (a - lo) / (hi - lo) * 255.0
        # Non-finite pixels (a float image's "no data"): NaN and -inf are black, +inf white;
        # the scale comes from the finite ones only.
        scaled = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0), 0.0, 255.0)
        gray = PILImage.fromarray(np.round(scaled).astype(np.uint8))
        return gray.convert("RGB"), True
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        composed = PILImage.alpha_composite(white, rgba).convert("RGB")
        return composed, mode in ("LA", "La") or _equal_channels(composed)
    if mode in ("L", "1"):
        return img.convert("RGB"), True
    rgb = img.convert("RGB")
    return rgb, _equal_channels(rgb)


def _equal_channels(rgb: Any) -> bool:
    import numpy as np

    a = np.asarray(rgb)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def load_image(source: str | Path | bytes | Image) -> Image:
    """The decoded, upright 8-bit RGB image (see :func:`decode_image`).

    Raises:
        ImageError: as :func:`decode_image`.
    """
    return decode_image(source).image
