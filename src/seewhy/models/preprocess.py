"""Where preprocessing comes from: the card, else timm's data config, else torchvision's
weight transforms, else ImageNet constants at 224."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seewhy.core.errors import ModelLoadError
from seewhy.models.model import IMAGENET_MEAN, IMAGENET_STD, Preprocess

if TYPE_CHECKING:
    from torch import nn


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
    ):
        return (int(value[0]), int(value[1]))
    if isinstance(value, (list, tuple)) and len(value) == 3:  # timm's (C, H, W)
        return (int(value[1]), int(value[2]))
    raise ModelLoadError(f"[preprocess] size = {value!r}: expected an integer or [height, width]")


def _from_timm(module: nn.Module) -> Preprocess | None:
    if not hasattr(module, "pretrained_cfg"):
        return None
    try:
        from timm.data import resolve_model_data_config

        cfg = resolve_model_data_config(module)
    except Exception:  # a custom model that only looks like timm's
        return None
    return Preprocess(
        size=_size(cfg.get("input_size", (3, 224, 224))),
        mean=tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(float(v) for v in cfg.get("std", IMAGENET_STD)),
        interpolation=str(cfg.get("interpolation", "bilinear")),
        source="timm",
    )


def _from_torchvision(name: str) -> Preprocess | None:
    try:
        import torchvision

        weights = torchvision.models.get_model_weights(name)
        t = weights.DEFAULT.transforms()
    except (ValueError, AttributeError, KeyError):
        return None
    crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
    return Preprocess(
        size=(int(crop), int(crop)),
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        interpolation=str(getattr(t.interpolation, "value", "bilinear")),
        source="torchvision",
    )


def resolve_preprocess(
    module: nn.Module, arch: str, overrides: dict[str, Any] | None = None
) -> Preprocess:
    """The model's preprocessing: defaults by origin, then the card's ``[preprocess]`` keys."""
    base: Preprocess | None = None
    if arch.startswith("timm:"):
        base = _from_timm(module)
    elif arch.startswith("torchvision:"):
        base = _from_torchvision(arch.split(":", 1)[1])
    else:
        base = _from_timm(module)
    base = base or Preprocess()
    if not overrides:
        return base
    known = {"size", "mean", "std", "interpolation"}
    unknown = set(overrides) - known
    if unknown:
        raise ModelLoadError(
            f"unknown [preprocess] key(s) {', '.join(sorted(unknown))}; expected "
            f"{', '.join(sorted(known))}"
        )
    return Preprocess(
        size=_size(overrides["size"]) if "size" in overrides else base.size,
        mean=tuple(float(v) for v in overrides.get("mean", base.mean)),
        std=tuple(float(v) for v in overrides.get("std", base.std)),
        interpolation=str(overrides.get("interpolation", base.interpolation)),
        source="card",
    )
