"""``Preprocess``: image -> tensor in the model's own frame (resize, crop, scale, normalise).

A value type every room reads (methods size their inputs by it, figures draw in its frame), so
it lives in ``core``; ``seewhy.models.preprocess`` fills it from a card, timm or torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image
    from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


CROP_MODES = ("center", "squash", "border")
BIT_DEPTHS = ("minmax", "full")


@dataclass(frozen=True)
class Preprocess:
    """Image -> tensor in the model's own frame: resize, centre-crop, scale to ``[0, 1]``,
    normalise.

    The geometry is timm's evaluation transform (``timm.data.create_transform(
    is_training=False)``), pixel for pixel: the image is resized to ``size / crop_pct``
    (rounded down), then the centre ``size`` is cut out. ``crop_mode`` says how it is resized:

    - ``center``: the shorter side to ``size / crop_pct``, keeping the aspect ratio (timm's
      default; torchvision's weight transforms are this with ``crop_pct = crop / resize``);
    - ``squash``: both sides to ``size / crop_pct``, the aspect ratio not kept;
    - ``border``: the longer side to ``size / crop_pct``, then padded with the mean colour.

    The defaults (``squash`` at ``crop_pct = 1.0``) crop nothing: the whole image is resized to
    ``size``, so the explanation covers every pixel the user sees, borders included.

    ``bit_depth`` is how this model's 16-bit images are to be decoded (``minmax``: stretched per
    image; ``full``: divided by 65535, see :func:`seewhy.data.images.decode_image`); the images
    this class receives are already 8-bit. ``source`` says where the values came from
    (``card``, ``timm``, ``torchvision``, ``imagenet``) for the report.
    """

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    crop_mode: str = "squash"
    bit_depth: str = "minmax"
    source: str = "imagenet"

    def frame(self, image: Image) -> Image:
        """The RGB image as the model sees it: resized and cropped to ``size``, not normalised.

        Maps computed on the model's input lie exactly over this image.
        """

        from PIL import Image as PILImage

        resample = {
            "bilinear": PILImage.Resampling.BILINEAR,
            "bicubic": PILImage.Resampling.BICUBIC,
            "nearest": PILImage.Resampling.NEAREST,
            "lanczos": PILImage.Resampling.LANCZOS,
        }.get(self.interpolation, PILImage.Resampling.BILINEAR)
        img = image.convert("RGB")
        h, w = self.size
        width, height = img.size
        new_w, new_h, fill = self._resized(width, height)
        if (new_w, new_h) != (width, height):
            img = img.resize((new_w, new_h), resample)
        return _center_crop(img, h, w, fill)

    def frame_mask(self, mask: Image) -> np.ndarray:
        """A mask in the model's input frame: a bool array ``[H, W]`` lying exactly over the
        maps (and over :meth:`frame`'s image).

        The geometry is :meth:`frame`'s (the same resize and centre crop) with ``NEAREST``
        resampling, so no pixel is blended; padding (``border`` mode) is outside the mask.
        A pixel is in the mask when it is non-zero: any channel for colour masks, the palette
        index for palette (``P``) masks (index 0 = background, as label maps use it), the
        value itself for 16-bit, 32-bit and float masks. Where an alpha channel has some
        transparency, the opaque part (alpha > 0) is the mask; where it is fully opaque the
        colour decides.

        Args:
            mask: the mask as loaded, of the image's size (``width x height``).

        Returns:
            A bool array of shape ``size``.
        """
        import numpy as np
        from PIL import Image as PILImage

        inside = _nonzero(mask)
        h, w = self.size
        height, width = inside.shape
        new_w, new_h, _ = self._resized(width, height)
        img = PILImage.fromarray(inside.astype(np.uint8) * 255)  # mode "L"
        if (new_w, new_h) != (width, height):
            img = img.resize((new_w, new_h), PILImage.Resampling.NEAREST)
        framed = _center_crop(img.convert("RGB"), h, w, (0, 0, 0))
        return np.asarray(framed)[..., 0] > 0

    def frame_labels(self, labels: np.ndarray) -> np.ndarray:
        """A label map (one class id per pixel, ``[height, width]`` integers) in the model's
        input frame: :meth:`frame`'s geometry with ``NEAREST`` resampling, so every pixel keeps
        a class id of the original; padding (``border`` mode) gets -1 (no class).

        Returns:
            An int32 array of shape ``size``.
        """
        import numpy as np
        from PIL import Image as PILImage

        ids = np.asarray(labels).astype(np.int32) + 1  # 0: padding
        h, w = self.size
        height, width = ids.shape
        new_w, new_h, _ = self._resized(width, height)
        img = PILImage.fromarray(ids)  # mode "I"
        if (new_w, new_h) != (width, height):
            img = img.resize((new_w, new_h), PILImage.Resampling.NEAREST)
        framed = np.asarray(img, dtype=np.int32)
        out = np.zeros((int(h), int(w)), dtype=np.int32)
        top = (framed.shape[0] - h) / 2.0
        left = (framed.shape[1] - w) / 2.0
        # the centre crop (or pad) of _center_crop, on an integer array
        src_top, src_left = max(round(top), 0), max(round(left), 0)
        dst_top = (h - framed.shape[0]) // 2 if framed.shape[0] < h else 0
        dst_left = (w - framed.shape[1]) // 2 if framed.shape[1] < w else 0
        rows, cols = min(h, framed.shape[0]), min(w, framed.shape[1])
        out[dst_top : dst_top + rows, dst_left : dst_left + cols] = framed[
            src_top : src_top + rows, src_left : src_left + cols
        ]
        return out - 1

    def _resized(self, width: int, height: int) -> tuple[int, int, tuple[int, ...]]:
        """The size an image of ``width x height`` is resized to before the centre crop, and
        the colour padding takes (``border`` mode)."""
        import math

        h, w = self.size
        scale_h, scale_w = math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)
        fill: tuple[int, ...] = (0, 0, 0)
        if self.crop_mode == "squash":
            new_h, new_w = scale_h, scale_w
        elif self.crop_mode == "border":  # timm's ResizeKeepRatio(longest=1) + CenterCropOrPad
            ratio = max(height / scale_h, width / scale_w)
            new_h, new_w = round(height / ratio), round(width / ratio)
            if len(self.mean) == 3:
                fill = tuple(round(255 * v) for v in self.mean)
        elif scale_h == scale_w:  # torchvision's Resize(int): the shorter side, long one floored
            short, long = min(width, height), max(width, height)
            new_short, new_long = scale_h, int(scale_h * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        else:  # timm's ResizeKeepRatio(longest=0): the shorter side relative to its target
            ratio = min(height / scale_h, width / scale_w)
            new_h, new_w = round(height / ratio), round(width / ratio)
        return new_w, new_h, fill

    def box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Where the model's input frame lies on an image of ``width x height``:
        ``(left, top, right, bottom)`` in that image's pixel coordinates (beyond its edges
        where the frame is padded). Maps of models that crop differently are compared there.
        """
        h, w = self.size
        new_w, new_h, _ = self._resized(width, height)

        def offset(have: int, want: int) -> int:
            return -((want - have) // 2) if want > have else round((have - want) / 2.0)

        left, top = offset(new_w, w), offset(new_h, h)
        sx, sy = width / new_w, height / new_h
        return (left * sx, top * sy, (left + w) * sx, (top + h) * sy)

    def __call__(self, images: Sequence[Image]) -> Tensor:
        """A float32 batch ``[B, C, H, W]`` from PIL images (each made RGB and framed as
        :meth:`frame` does)."""
        import numpy as np
        import torch

        arrays = [np.asarray(self.frame(img), dtype=np.float32) / 255.0 for img in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        if len(self.mean) == 1:  # single-channel models
            batch = batch.mean(dim=1, keepdim=True)
        return (batch - mean) / std

    def describe(self) -> dict[str, Any]:
        """The settings as plain JSON values (the ``preprocess`` of a summary's ``models[]``)."""
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "bit_depth": self.bit_depth,
            "source": self.source,
        }


def _nonzero(mask: Image) -> np.ndarray:
    """The mask's non-zero pixels as a bool array ``[height, width]`` (see
    :meth:`Preprocess.frame_mask`)."""
    import numpy as np

    if mask.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mask.mode in ("P", "L", "RGB") and "transparency" in mask.info
    ):
        alpha = np.asarray(mask.convert("RGBA"))[..., -1]
        if (alpha < alpha.max()).any():  # some transparency: the opaque part is the mask
            return np.asarray(alpha > 0)
        if mask.mode not in ("P", "L", "1", "RGB"):  # fully opaque: the colour decides
            mask = mask.convert("RGB")
    if mask.mode not in ("1", "L", "P", "RGB", "I", "F") and not mask.mode.startswith("I;16"):
        mask = mask.convert("RGB")  # CMYK, YCbCr, LAB, HSV ...
    values = np.asarray(mask)
    if values.ndim == 3:
        return np.asarray((values != 0).any(axis=-1))
    return np.asarray(values != 0)


def _center_crop(img: Image, h: int, w: int, fill: tuple[int, ...]) -> Image:
    """The centre ``h x w`` of ``img``, padded with ``fill`` where it is smaller (as
    torchvision's ``center_crop`` and timm's ``center_crop_or_pad`` place it)."""
    from PIL import Image as PILImage

    width, height = img.size
    if w > width or h > height:
        left, top = (w - width) // 2 if w > width else 0, (h - height) // 2 if h > height else 0
        right = (w - width + 1) // 2 if w > width else 0
        bottom = (h - height + 1) // 2 if h > height else 0
        padded = PILImage.new("RGB", (width + left + right, height + top + bottom), fill)
        padded.paste(img, (left, top))
        img, (width, height) = padded, padded.size
        if (width, height) == (w, h):
            return img
    top, left = round((height - h) / 2.0), round((width - w) / 2.0)
    if (top, left, width, height) == (0, 0, w, h):
        return img
    return img.crop((left, top, left + w, top + h))
