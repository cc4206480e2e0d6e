"""Ground-truth masks and boxes, brought into the model's input frame (SPEC section 6).

Maps live in the model-input frame (the image after resize and centre crop, see
:meth:`seewhy.core.preprocess.Preprocess.frame`); a mask or a box drawn on the original image is
given the same geometry by :meth:`~seewhy.core.preprocess.Preprocess.frame_mask`, so it lies
exactly over the maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import Tensor

    from seewhy.core.preprocess import Preprocess

BOX_FIX = "give x0,y0,x1,y1 in the original image's pixels, with x1 > x0 and y1 > y0"


def load_mask(
    path: str | Path, preprocess: Preprocess, image_size: tuple[int, int] | None = None
) -> Tensor:
    """A mask file in the model's input frame: a bool tensor of ``preprocess.size``.

    The file is opened as images are (EXIF orientation applied, PIL's decompression-bomb limit
    respected) but its values are kept as stored, not turned into 8-bit RGB: a pixel is in the
    mask when it is non-zero (see :meth:`~seewhy.core.preprocess.Preprocess.frame_mask` for
    colour, palette, 16-bit and transparent masks).

    Args:
        path: the mask image (PNG, TIFF, BMP ...), of the image's size.
        preprocess: the model's preprocessing; its geometry is applied with NEAREST resampling.
        image_size: the image's ``(width, height)`` (upright). When given, a mask of another
            size is refused rather than stretched over the image.

    Returns:
        A bool tensor ``[H, W]`` in the model-input frame.

    Raises:
        ImageError: a missing, unreadable, corrupt or oversized mask file.
        UsageError: the mask's size differs from ``image_size``.
    """
    import torch

    mask = _open_mask(path)
    if image_size is not None and tuple(mask.size) != tuple(image_size):
        (mw, mh), (iw, ih) = mask.size, image_size
        raise UsageError(
            f"mask {path} is {mw}x{mh} but its image is {iw}x{ih}; give a mask of the image's size"
        )
    return torch.from_numpy(preprocess.frame_mask(mask).copy())


def box_mask(
    box: str | Sequence[float], image_size: tuple[int, int], preprocess: Preprocess
) -> Tensor:
    """A box in the model's input frame: a bool tensor of ``preprocess.size``.

    The box ``x0, y0, x1, y1`` is in the original (upright) image's pixel coordinates, ``x1``
    and ``y1`` exclusive, clipped to the image. It is rasterised by pixel centres (pixel
    ``(c, r)`` is inside when ``x0 <= c + 0.5 < x1`` and ``y0 <= r + 0.5 < y1``; integer boxes
    cover exactly columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``), then framed as a mask
    file would be. A box containing no pixel centre gives an empty mask, which the
    localization checks skip (NaN).

    Args:
        box: ``x0, y0, x1, y1``: four numbers, or a string :func:`parse_box` reads.
        image_size: the image's ``(width, height)``.
        preprocess: the model's preprocessing.

    Returns:
        A bool tensor ``[H, W]`` in the model-input frame.

    Raises:
        UsageError: not four finite numbers, ``x1 <= x0`` or ``y1 <= y0``, or a box lying
            wholly outside the image.
    """
    import numpy as np
    import torch
    from PIL import Image as PILImage

    x0, y0, x1, y1 = parse_box(box)
    width, height = image_size
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise UsageError(f"box {_show(box)} lies outside the {width}x{height} image; {BOX_FIX}")
    c0, c1 = (min(max(math.ceil(v - 0.5), 0), width) for v in (x0, x1))
    r0, r1 = (min(max(math.ceil(v - 0.5), 0), height) for v in (y0, y1))
    raster = np.zeros((height, width), dtype=np.uint8)
    raster[r0:r1, c0:c1] = 255
    return torch.from_numpy(preprocess.frame_mask(PILImage.fromarray(raster)).copy())


def parse_box(value: str | Sequence[object]) -> tuple[float, float, float, float]:
    """Four box coordinates from ``"x0,y0,x1,y1"`` (commas and/or spaces, optional brackets)
    or a sequence of four numbers.

    Raises:
        UsageError: not four finite numbers, or ``x1 <= x0`` or ``y1 <= y0``.
    """
    if isinstance(value, str):
        parts: Sequence[object] = value.strip().strip("()[]").replace(",", " ").split()
    elif isinstance(value, Sequence):
        parts = value
    else:
        raise UsageError(f"box {_show(value)} is not four numbers; {BOX_FIX}")
    try:
        if len(parts) != 4 or any(isinstance(p, bool) for p in parts):
            raise ValueError
        x0, y0, x1, y1 = (float(p) for p in parts)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UsageError(f"box {_show(value)} is not four numbers; {BOX_FIX}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise UsageError(f"box {_show(value)} has a non-finite number; {BOX_FIX}")
    if x1 <= x0 or y1 <= y0:
        raise UsageError(f"box {_show(value)} is empty (x1 <= x0 or y1 <= y0); {BOX_FIX}")
    return x0, y0, x1, y1


def _show(value: object) -> str:
    """The box as the user wrote it, on one line."""
    return repr(" ".join(value.split())) if isinstance(value, str) else repr(value)


def _open_mask(path: str | Path) -> Image:
    """The mask file decoded, upright, its pixel values as stored (not made RGB: 16-bit and
    palette values decide what is marked)."""
    from seewhy.data.images import open_image

    return open_image(path, what="mask")[0]
