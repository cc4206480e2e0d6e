"""Localization against ground truth: pointing game, energy in the mask, the mask's area
(SPEC section 6).

Every function works per sample on maps ``[B, H, W]`` (float, signed or not) and masks
``[B, H, W]`` (bool; anything else is read as ``!= 0``) in the same model-input frame (see
:mod:`seewhy.data.masks`). A sample that cannot be scored, because its mask is empty or its map
says nothing, gets NaN, so that means over samples skip it (``nanmean``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor


def check_maps(maps: Tensor, name: str = "maps") -> Tensor:
    """``maps`` if it is one 2-D map per sample (``[B, H, W]``, at least one pixel).

    Raises:
        UsageError: another shape.
    """
    if maps.dim() != 3 or maps.shape[-1] * maps.shape[-2] == 0:
        raise UsageError(
            f"{name} has shape {tuple(maps.shape)}; expected [B, H, W], one 2-D map per "
            "sample (add a batch dimension with map[None])"
        )
    return maps


def _check_pair(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """The maps as float64 and the masks as bool, both ``[B, H*W]``."""
    import torch

    check_maps(maps)
    check_maps(masks, "masks")
    if maps.shape != masks.shape:
        raise UsageError(
            f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape; "
            "bring the masks into the maps' frame (seewhy.data.masks.load_mask or box_mask)"
        )
    inside = masks if masks.dtype == torch.bool else masks != 0
    return maps.flatten(1).double(), inside.flatten(1).to(maps.device)


def pointing_game(maps: Tensor, masks: Tensor) -> Tensor:
    """Whether each map's peak lies in its mask (Zhang et al., 2016, "Top-down Neural Attention
    by Excitation Backprop"). The paper's 15-pixel tolerance is not applied here: the trust
    checks (:mod:`seewhy.checks.suite`) grow each mask by it before calling this.

    Ties are resolved in the map's favour: the sample is a hit when ANY pixel holding the
    map's maximum lies in the mask.

    Args:
        maps: ``[B, H, W]``.
        masks: ``[B, H, W]`` bool, the same shape.

    Returns:
        float64 ``[B]``: 1.0 a hit, 0.0 a miss, NaN where the mask is empty (nothing to point
        at) or the map is constant or has a NaN or infinite value (no peak).

    Raises:
        UsageError: shapes that are not ``[B, H, W]`` or do not match.
    """
    import torch

    flat, inside = _check_pair(maps, masks)
    finite = torch.isfinite(flat).all(dim=1)
    safe = torch.where(finite[:, None], flat, torch.zeros_like(flat))
    peak = safe.amax(dim=1)
    hit = ((safe == peak[:, None]) & inside).any(dim=1).double()
    scorable = finite & (peak > safe.amin(dim=1)) & inside.any(dim=1)
    return torch.where(scorable, hit, torch.full_like(hit, float("nan")))


def energy_in_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """The share of each map's positive attribution inside its mask:
    ``sum(relu(map) * mask) / sum(relu(map))``.

    Negative attribution (evidence against the target in signed maps) is left out; unsigned
    maps are counted as they are.

    Args:
        maps: ``[B, H, W]``.
        masks: ``[B, H, W]`` bool, the same shape.

    Returns:
        float64 ``[B]`` in ``[0, 1]``; NaN where the mask is empty, the map has no positive
        attribution, or it has a NaN or infinite value.

    Raises:
        UsageError: shapes that are not ``[B, H, W]`` or do not match.
    """
    import torch

    flat, inside = _check_pair(maps, masks)
    finite = torch.isfinite(flat).all(dim=1)
    positive = torch.where(finite[:, None], flat.clamp(min=0), torch.zeros_like(flat))
    total = positive.sum(dim=1)
    share = (positive * inside).sum(dim=1) / total.clamp(min=torch.finfo(total.dtype).tiny)
    scorable = finite & (total > 0) & inside.any(dim=1)
    return torch.where(scorable, share, torch.full_like(share, float("nan")))


def mask_area(masks: Tensor) -> Tensor:
    """Each mask's share of the frame: the chance level of :func:`energy_in_mask` and, roughly,
    of :func:`pointing_game` for a map that ignores the image.

    Args:
        masks: ``[B, H, W]`` bool.

    Returns:
        float64 ``[B]`` in ``(0, 1]``; NaN where the mask is empty (as those samples are
        skipped by the other checks).

    Raises:
        UsageError: a shape that is not ``[B, H, W]``.
    """
    import torch

    check_maps(masks, "masks")
    inside = masks if masks.dtype == torch.bool else masks != 0
    area = inside.flatten(1).double().mean(dim=1)
    return torch.where(area > 0, area, torch.full_like(area, float("nan")))
