"""``hf:PATH``: a Hugging Face transformers image classifier saved on disk (``save_pretrained``).

- The model: ``AutoModelForImageClassification.from_pretrained(PATH, local_files_only=True)``;
  nothing is downloaded, and no code from the folder runs (``trust_remote_code`` stays off).
  Its forward takes ``pixel_values`` and returns an ``ImageClassifierOutput``, whose ``logits``
  are read (the card's ``output`` picks another).
- The labels: ``config.id2label`` in index order, unless they are transformers' placeholders
  (``LABEL_0``, ``LABEL_1`` ...); a card's or the CLI's labels win.
- The preprocessing: the folder's ``preprocessor_config.json`` (``image_mean``,
  ``image_std``, ``do_normalize``, ``do_rescale`` and ``rescale_factor`` as a mean/std on
  ``[0, 1]`` pixels; ``size`` as ``{height, width}`` (squashed; with ``crop_size``, the centre
  cut out, a non-square crop of another share per side as :class:`HFPreprocess`) or
  ``{shortest_edge}`` with ``crop_size``, or ConvNeXt's ``crop_pct`` (below 384: the shortest
  edge to ``edge / crop_pct``, then the centre ``edge``; from 384: squashed to ``edge x edge``);
  ``resample``), else ``config.image_size`` with ImageNet's mean/std; the card's
  ``[preprocess]`` keys win.

transformers is an optional dependency (``pip install 'seewhy[text]'``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import ModelLoadError
from seewhy.core.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

if TYPE_CHECKING:
    from torch import nn

PROCESSOR_FILE = "preprocessor_config.json"
# PIL's resampling numbers, as transformers' processors record them
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def build_hf(path: Path, arch: str) -> nn.Module:
    """The image classifier saved in the folder ``path`` (``arch`` names it in errors)."""
    if not path.is_dir():
        raise ModelLoadError(
            f"'{arch}': {path} is not a folder; hf: takes the folder a transformers model was "
            "saved to (model.save_pretrained(DIR): config.json and the weights)"
        )
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"'{arch}': {path} has no config.json; save the model with "
            "model.save_pretrained(DIR) (and its processor with processor.save_pretrained(DIR))"
        )
    try:
        import transformers
    except ImportError:
        raise ModelLoadError(f"'{arch}' needs transformers: pip install 'seewhy[text]'") from None
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar would land on the console
    try:
        module = transformers.AutoModelForImageClassification.from_pretrained(
            str(path), local_files_only=True
        )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"'{arch}': transformers cannot load an image classifier from {path}: {first}"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return module.eval()


def hf_labels(module: nn.Module) -> list[str] | None:
    """``config.id2label`` in index order, or None when absent or transformers' placeholders
    (``LABEL_0`` ...)."""
    config = getattr(module, "config", None)
    id2label = getattr(config, "id2label", None)
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        ordered = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return None
    if all(re.fullmatch(r"LABEL_\d+", v) for v in ordered):
        return None
    return ordered


def hf_preprocess(module: nn.Module, path: Path) -> Preprocess:
    """The preprocessing the saved processor describes (see the module docstring)."""
    config = getattr(module, "config", None)
    side = getattr(config, "image_size", None)
    fallback = int(side) if isinstance(side, int) and side > 0 else 224
    processor: dict[str, Any] = {}
    file = path / PROCESSOR_FILE
    if file.is_file():
        try:
            processor = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(processor, dict) or not processor:
        return Preprocess(size=(fallback, fallback), source="hf")
    mean, std = _scaling(processor)
    size = processor.get("size")
    crop = processor.get("crop_size") if processor.get("do_center_crop") else None
    crop_pct = 1.0
    mode = "squash"
    resize: tuple[int, int] | None = None
    if isinstance(size, dict) and "height" in size and "width" in size:
        out = (int(size["height"]), int(size["width"]))
        if (
            isinstance(crop, dict)
            and "height" in crop
            and "width" in crop
            and int(crop["height"]) <= out[0]
            and int(crop["width"]) <= out[1]
        ):
            # DeiT, BEiT: squashed to size, then the centre crop_size cut out
            squashed = out
            out = (int(crop["height"]), int(crop["width"]))
            crop_pct = out[0] / squashed[0]
            if (math.floor(out[0] / crop_pct), math.floor(out[1] / crop_pct)) != squashed:
                # another share of each side is kept (a non-square crop of a non-square
                # size): one crop_pct cannot say it, the squashed size is kept as given
                resize = squashed
    elif isinstance(size, dict) and "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        mode = "center"
        convnext = "crop_pct" in processor or str(
            processor.get("image_processor_type", "")
        ).startswith("ConvNext")
        if isinstance(crop, dict) and "height" in crop:
            out = (int(crop["height"]), int(crop["width"]))
            crop_pct = min(1.0, out[0] / edge)
        elif convnext and edge >= 384:
            # ConvNeXt at 384 or more: squashed to edge x edge, nothing cropped
            out, mode = (edge, edge), "squash"
        elif convnext and isinstance(processor.get("crop_pct"), (int, float)):
            out = (edge, edge)  # ConvNeXt: resize to edge / crop_pct, then crop edge
            crop_pct = float(processor["crop_pct"])
        else:
            out = (edge, edge)
    elif isinstance(size, int):
        out = (size, size)
    else:
        out = (fallback, fallback)
    fields: dict[str, Any] = {
        "size": out,
        "mean": mean,
        "std": std,
        "interpolation": _RESAMPLE.get(processor.get("resample"), "bilinear"),  # type: ignore[arg-type]
        "crop_pct": crop_pct,
        "crop_mode": mode,
        "source": "hf",
    }
    return Preprocess(**fields) if resize is None else HFPreprocess(**fields, resize=resize)


@dataclass(frozen=True)
class HFPreprocess(Preprocess):
    """A processor that squashes to one size and centre-crops another whose sides keep
    different shares (DeiT's ``size = {height: 40, width: 56}`` with ``crop_size = {height: 32,
    width: 48}``): :class:`Preprocess` with the squashed size given (``resize``, ``[height,
    width]``) instead of derived from ``crop_pct``. Everything that frames an image (pixels,
    masks, label maps, the box) goes through ``_resized``, so all of it follows."""

    resize: tuple[int, int] | None = None

    def _resized(self, width: int, height: int) -> tuple[int, int, tuple[int, ...]]:
        if self.resize is None or self.crop_mode != "squash":
            return super()._resized(width, height)
        return self.resize[1], self.resize[0], (0, 0, 0)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.resize is not None:
            d["resize"] = list(self.resize)
        return d


def _scaling(processor: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The processor's ``(mean, std)`` on seewhy's ``[0, 1]`` pixels.

    transformers multiplies the 0-255 pixels by ``rescale_factor`` (``1/255``) when
    ``do_rescale``, then subtracts ``image_mean`` and divides by ``image_std`` when
    ``do_normalize``; seewhy always divides by 255 first, so a pixel ``x`` in [0, 1] stands for
    ``x * k`` with ``k = 255 * rescale_factor`` (1 by default), or ``k = 255`` without rescaling,
    and ``(x * k - mean) / std = (x - mean / k) / (std / k)``."""
    normalize = processor.get("do_normalize", True) is not False
    rescale = processor.get("do_rescale", True) is not False
    if normalize:
        mean = _triple(processor.get("image_mean"), IMAGENET_MEAN)
        std = _triple(processor.get("image_std"), IMAGENET_STD)
    else:
        mean, std = (0.0,) * 3, (1.0,) * 3
    factor = processor.get("rescale_factor", 1 / 255)
    if not rescale:
        k = 255.0
    elif isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor > 0:
        k = 255.0 * float(factor)
    else:
        k = 1.0
    if abs(k - 1.0) < 1e-9:
        return mean, std
    return tuple(m / k for m in mean), tuple(s / k for s in std)


def _triple(value: Any, default: tuple[float, ...]) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    return default
