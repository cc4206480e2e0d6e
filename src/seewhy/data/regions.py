"""Region label maps (``--regions-col``, SPEC section 8): one class id per pixel, brought into
the model's input frame, and how a map's attribution falls on the classes.

A label map is an image of the tile's size whose pixel values are class ids ``0 .. K-1``
(``--region-names`` names them in order): a single-channel 8- or 16-bit PNG, or a palette PNG
(the palette index is the id). It gets the image's resize and centre crop with nearest
resampling (:meth:`~seewhy.core.preprocess.Preprocess.frame_labels`), so it lies exactly over
the maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from seewhy.core.preprocess import Preprocess


def load_regions(
    path: str | Path,
    preprocess: Preprocess,
    names: list[str],
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """A label map file in the model-input frame: int32 ``[H, W]``, ``-1`` where padded.

    Raises:
        ImageError: a missing, unreadable or corrupt file.
        UsageError: a colour (RGB) label map, a map of another size than its image, or a
            class id that ``names`` does not have.
    """
    import numpy as np

    from seewhy.data.images import open_image

    img, _, _ = open_image(path, what="region map")
    if img.format in ("JPEG", "MPO"):
        raise UsageError(
            f"region map {path} is a {img.format} file: lossy compression changes class ids at "
            "the edges of regions; save label maps as PNG (or another lossless format)"
        )
    if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise UsageError(
            f"region map {path} is a {img.mode} image; give one class id per pixel as a "
            "single-channel (8/16-bit grayscale) or palette PNG"
        )
    if image_size is not None and tuple(img.size) != tuple(image_size):
        (mw, mh), (iw, ih) = img.size, image_size
        raise UsageError(
            f"region map {path} is {mw}x{mh} but its image is {iw}x{ih}; give a map of the "
            "image's size"
        )
    ids = np.asarray(img).astype(np.int64)
    top = int(ids.max()) if ids.size else 0
    if top >= len(names) or (ids.size and int(ids.min()) < 0):
        unknown = sorted({int(v) for v in np.unique(ids) if v < 0 or v >= len(names)})
        raise UsageError(
            f"region map {path} has class id {', '.join(map(str, unknown[:5]))}, but "
            f"--region-names names {len(names)} classes (0..{len(names) - 1}: "
            f"{', '.join(names)}); add the missing names"
        )
    return preprocess.frame_labels(ids)


@dataclass(frozen=True)
class RegionSums:
    """How one map's attribution falls on the region classes: per class, the positive part
    (what raises the explained output), the negative part's magnitude (what lowers it) and the
    pixel count, over the pixels that have a class."""

    raises: np.ndarray
    lowers: np.ndarray
    pixels: np.ndarray

    def shares(self) -> tuple[list[float] | None, list[float] | None, list[float]]:
        """(share of the raising attribution, share of the lowering attribution, share of the
        area) per class; a share is ``None`` when the map has no such part."""
        return _share(self.raises), _share(self.lowers), _share(self.pixels) or []


def _share(values: np.ndarray) -> list[float] | None:
    total = float(values.sum())
    if not total > 0:
        return None
    return [float(v) / total for v in values]


def region_sums(
    heat: np.ndarray, labels: np.ndarray, classes: int, lowers: np.ndarray | None = None
) -> RegionSums:
    """The attribution of ``heat`` per class of ``labels`` (same ``[H, W]`` frame).

    Args:
        heat: the map; signed maps give both parts, an unsigned one only ``raises``.
        labels: class ids, ``-1`` for pixels outside every class (padding).
        classes: the number of classes.
        lowers: for a method whose map is unsigned (a CAM), its map of the opposite target
            (what lowers the output), which gives the ``lowers`` part.
    """
    import numpy as np

    ids = labels.reshape(-1)
    keep = ids >= 0
    ids = ids[keep]
    flat = np.nan_to_num(heat.reshape(-1)[keep].astype(np.float64))
    raises = np.bincount(ids, weights=np.clip(flat, 0, None), minlength=classes)
    if lowers is not None:
        low = np.nan_to_num(lowers.reshape(-1)[keep].astype(np.float64))
        fall = np.bincount(ids, weights=np.abs(np.clip(low, 0, None)), minlength=classes)
    else:
        fall = np.bincount(ids, weights=-np.clip(flat, None, 0), minlength=classes)
    pixels = np.bincount(ids, minlength=classes).astype(np.float64)
    return RegionSums(raises[:classes], fall[:classes], pixels[:classes])
