"""Where preprocessing comes from: the card, else timm's data config, else torchvision's
weight transforms, else ImageNet constants at 224."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seewhy.core.errors import ModelLoadError
from seewhy.models.model import IMAGENET_MEAN, IMAGENET_STD, Preprocess

if TYPE_CHECKING:
    from torch import nn


INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _size(value: Any) -> tuple[int, int]:
    """A card's ``size``: an integer (square) or ``[height, width]``."""
    if _positive_int(value):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_positive_int, value)):
        return (int(value[0]), int(value[1]))
    raise ModelLoadError(
        f"[preprocess] size = {value!r}: expected a positive integer or [height, width]"
    )


def _channels(key: str, value: Any) -> tuple[float, ...]:
    """A card's ``mean``/``std``: one number per channel (1 or 3), std non-zero."""
    ok = (
        isinstance(value, (list, tuple))
        and len(value) in (1, 3)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if not ok or (key == "std" and any(v == 0 for v in value)):
        raise ModelLoadError(
            f"[preprocess] {key} = {value!r}: expected a list of 3 numbers (or 1 for a "
            f"single-channel model){', none zero' if key == 'std' else ''}, e.g. "
            f"{key} = {list(IMAGENET_MEAN if key == 'mean' else IMAGENET_STD)}"
        )
    return tuple(float(v) for v in value)


def _from_timm(module: nn.Module) -> Preprocess | None:
    if not hasattr(module, "pretrained_cfg"):
        return None
    from timm.data import resolve_model_data_config

    try:
        cfg = resolve_model_data_config(module)
    except (AttributeError, KeyError, TypeError, ValueError):  # only looks like a timm model
        return None
    _, h, w = cfg.get("input_size", (3, 224, 224))
    return Preprocess(
        size=(int(h), int(w)),
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
    """The model's preprocessing: defaults by origin, then the card's ``[preprocess]`` keys.

    Args:
        module: the built model (timm models carry their data config).
        arch: the arch string; ``timm:`` reads timm's data config, ``torchvision:`` the default
            weights' transforms (metadata only, nothing is downloaded), anything else a timm
            config if the module has one, else ImageNet mean/std at 224x224.
        overrides: the card's / caller's ``size`` (int or ``[h, w]``), ``mean``, ``std``,
            ``interpolation``; each given key replaces the default and ``source`` becomes
            ``"card"``.

    Raises:
        ModelLoadError: an unknown key or a value of the wrong form, naming it.
    """
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
    interpolation = overrides.get("interpolation", base.interpolation)
    if "interpolation" in overrides and interpolation not in INTERPOLATIONS:
        raise ModelLoadError(
            f"[preprocess] interpolation = {interpolation!r}: expected one of "
            f"{', '.join(INTERPOLATIONS)}"
        )
    mean = _channels("mean", overrides["mean"]) if "mean" in overrides else base.mean
    std = _channels("std", overrides["std"]) if "std" in overrides else base.std
    if len(mean) != len(std):
        raise ModelLoadError(
            f"[preprocess] mean has {len(mean)} values but std has {len(std)}; give both per "
            "channel"
        )
    return Preprocess(
        size=_size(overrides["size"]) if "size" in overrides else base.size,
        mean=mean,
        std=std,
        interpolation=str(interpolation),
        source="card",
    )
