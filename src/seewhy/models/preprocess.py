"""Where preprocessing comes from: the card, else timm's data config (crop included), else
torchvision's weight transforms (resize, then centre-crop), else ImageNet constants at 224 with
no crop."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import ModelLoadError
from seewhy.core.layers import input_channels
from seewhy.models.model import BIT_DEPTHS, CROP_MODES, IMAGENET_MEAN, IMAGENET_STD, Preprocess

if TYPE_CHECKING:
    from torch import nn


INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")
KNOWN_KEYS = ("size", "mean", "std", "interpolation", "crop_pct", "crop_mode", "bit_depth")


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


def _crop_pct(value: Any) -> float:
    """A card's ``crop_pct``: the share of ``size / crop_pct`` kept by the centre crop."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
    if not ok:
        raise ModelLoadError(
            f"[preprocess] crop_pct = {value!r}: expected a number in (0, 1], e.g. crop_pct = "
            "0.875 (resize to size / crop_pct, then centre-crop size); 1.0 crops nothing"
        )
    return float(value)


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ModelLoadError(
            f"[preprocess] {key} = {value!r}: expected one of {', '.join(choices)}"
        )
    return str(value)


def _bit_depth(value: Any) -> str:
    if value not in BIT_DEPTHS:
        raise ModelLoadError(
            f'[preprocess] bit_depth = {value!r}: expected "minmax" (stretch each 16-bit image '
            'from its own min to max) or "full" (divide by 65535)'
        )
    return str(value)


def _from_timm(module: nn.Module) -> Preprocess | None:
    if not hasattr(module, "pretrained_cfg"):
        return None
    from timm.data import resolve_model_data_config
    from timm.data.constants import DEFAULT_CROP_PCT

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
        crop_pct=float(cfg.get("crop_pct") or DEFAULT_CROP_PCT),
        crop_mode=str(cfg.get("crop_mode") or "center"),
        source="timm",
    )


def _from_torchvision(name: str) -> Preprocess | None:
    try:
        import torchvision

        weights = torchvision.models.get_model_weights(name)
        t = weights.DEFAULT.transforms()
    except (ValueError, AttributeError, KeyError):
        return None
    crop = _first(getattr(t, "crop_size", None))
    resize = _first(getattr(t, "resize_size", None))
    if crop is None:
        return None
    # Resize(resize) on the shorter side then CenterCrop(crop) is timm's "center" mode at
    # crop_pct = crop / resize (floor(crop / crop_pct) == resize for every torchvision weight).
    return Preprocess(
        size=(crop, crop),
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        interpolation=str(getattr(t.interpolation, "value", "bilinear")),
        crop_pct=crop / resize if resize else 1.0,
        crop_mode="center" if resize else "squash",
        source="torchvision",
    )


def _first(value: Any) -> int | None:
    """torchvision keeps sizes as ``[n]``."""
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
    return int(value) if isinstance(value, int) and value > 0 else None


def _fit_channels(base: Preprocess, first_conv: tuple[str, int] | None) -> Preprocess:
    """``base`` for a one-channel model (its first convolution reads 1 channel): one mean and
    one std, each the mean of the three, so a grayscale image is normalised as the RGB
    constants would normalise it on average (ImageNet: 0.449 and 0.226)."""
    if first_conv is None or first_conv[1] != 1 or len(base.mean) == 1:
        return base
    mean = sum(base.mean) / len(base.mean)
    std = sum(base.std) / len(base.std)
    return dataclasses.replace(base, mean=(round(mean, 6),), std=(round(std, 6),))


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
            ``interpolation``, ``crop_pct`` (in (0, 1]), ``crop_mode`` (``center``, ``squash``,
            ``border``), ``bit_depth`` (``minmax``, ``full``); each given key replaces the
            default and ``source`` becomes ``"card"``.

    Defaults: timm's data config gives size, mean, std, interpolation, ``crop_pct`` and
    ``crop_mode``; torchvision's transforms give ``crop_pct = crop_size / resize_size`` in
    ``center`` mode; ``hf:`` the saved processor (:func:`~seewhy.models.hf.hf_preprocess`);
    otherwise ImageNet mean/std at 224 with no crop (``squash`` at 1.0).
    ``bit_depth`` defaults to ``minmax``. A model whose first convolution reads one channel
    (:func:`~seewhy.core.layers.input_channels`; X-ray models often do) gets one mean and one
    std, the mean of the default three: its images are fed in grayscale.

    Raises:
        ModelLoadError: an unknown key or a value of the wrong form, naming it.
    """
    base: Preprocess | None = None
    if arch.startswith("timm:"):
        base = _from_timm(module)
    elif arch.startswith("torchvision:"):
        base = _from_torchvision(arch.split(":", 1)[1])
    elif arch.startswith("hf:") and getattr(module, "name_or_path", None):
        from seewhy.models.hf import hf_preprocess

        base = hf_preprocess(module, Path(str(module.name_or_path)))
    else:
        base = _from_timm(module)
    base = _fit_channels(base or Preprocess(), input_channels(module))
    if not overrides:
        return base
    unknown = set(overrides) - set(KNOWN_KEYS)
    if unknown:
        raise ModelLoadError(
            f"unknown [preprocess] key(s) {', '.join(sorted(unknown))}; expected "
            f"{', '.join(sorted(KNOWN_KEYS))}"
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
    fields: dict[str, Any] = {
        "size": _size(overrides["size"]) if "size" in overrides else base.size,
        "mean": mean,
        "std": std,
        "interpolation": str(interpolation),
        "crop_pct": _crop_pct(overrides["crop_pct"]) if "crop_pct" in overrides else base.crop_pct,
        "crop_mode": (
            _choice("crop_mode", overrides["crop_mode"], CROP_MODES)
            if "crop_mode" in overrides
            else base.crop_mode
        ),
        "bit_depth": _bit_depth(overrides["bit_depth"])
        if "bit_depth" in overrides
        else base.bit_depth,
        "source": "card",
    }
    if {"size", "crop_pct", "crop_mode"} & set(overrides):
        return Preprocess(**fields)  # the card's own geometry
    # the default's geometry kept as it is (an hf processor's exact non-square crop included)
    return dataclasses.replace(base, **fields)
