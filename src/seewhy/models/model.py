"""The model types the loaders build: :class:`Model` and its :class:`Preprocess`.

Both live in :mod:`seewhy.core` (methods receive them); they are re-exported here for the
loaders and for users' imports.
"""

from __future__ import annotations

from seewhy.core.model import Model
from seewhy.core.preprocess import (
    BIT_DEPTHS,
    CROP_MODES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
)

__all__ = ["BIT_DEPTHS", "CROP_MODES", "IMAGENET_MEAN", "IMAGENET_STD", "Model", "Preprocess"]
