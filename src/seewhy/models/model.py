"""``Model``: a ready-to-explain model — module, preprocessing, task, labels, layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Image -> tensor: resize the whole image to ``size`` (no crop, so the explanation covers
    every pixel the user sees, borders included), scale to ``[0, 1]``, normalise.

    ``source`` says where the values came from (``card``, ``timm``, ``torchvision``,
    ``imagenet``) for the report.
    """

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    source: str = "imagenet"

    def __call__(self, images: Sequence[Image]) -> Tensor:
        """A float32 batch ``[B, C, H, W]`` from RGB PIL images."""
        import numpy as np
        import torch
        from PIL import Image as PILImage

        resample = {
            "bilinear": PILImage.Resampling.BILINEAR,
            "bicubic": PILImage.Resampling.BICUBIC,
            "nearest": PILImage.Resampling.NEAREST,
            "lanczos": PILImage.Resampling.LANCZOS,
        }.get(self.interpolation, PILImage.Resampling.BILINEAR)
        h, w = self.size
        arrays = [
            np.asarray(img.convert("RGB").resize((w, h), resample), dtype=np.float32) / 255.0
            for img in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        if len(self.mean) == 1:  # single-channel models
            batch = batch.mean(dim=1, keepdim=True)
        return (batch - mean) / std


@dataclass
class Model:
    """A loaded model, as ``seewhy.load_model`` returns it.

    Attributes:
        module: the ``nn.Module`` (in eval mode after loading).
        name: short name for files and figures (card ``name``, else the card's stem / arch).
        arch: the arch string it was built from (``timm:convnext_tiny`` ...).
        task: ``classification``, ``multilabel`` or ``regression``.
        labels: class names (or output names for a regressor), if known.
        num_outputs: width of the output.
        layer: the CAM layer (``auto`` or a module name).
        checkpoint: the checkpoint path, if any.
        metadata: what the checkpoint recorded beside its weights (accuracy, epoch ...).
        preprocess: image -> tensor.
        inputs: the card's ``[inputs]`` table for multimodal models (forward's argument names
            for the image, text and tabular inputs); empty for image-only models.
    """

    module: nn.Module
    name: str = "model"
    arch: str = "module"
    task: str = "classification"
    labels: list[str] | None = None
    num_outputs: int | None = None
    layer: str = "auto"
    checkpoint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    preprocess: Preprocess = field(default_factory=Preprocess)
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> Any:
        import torch

        p = next(iter(self.module.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    def label(self, index: int) -> str:
        """The name of output ``index`` (its number when there are no labels)."""
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)

    def describe(self) -> dict[str, Any]:
        """The ``models[]`` entry of summary.json."""
        return {
            "name": self.name,
            "arch": self.arch,
            "checkpoint": self.checkpoint,
            "task": self.task,
            "labels": self.labels,
            "layer": self.layer,
        }
