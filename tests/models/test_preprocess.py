"""Preprocess: image -> normalised batch, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seewhy.models.model import IMAGENET_MEAN, IMAGENET_STD, Preprocess


def test_solid_colour_normalises_to_known_values_at_the_asked_size() -> None:
    img = Image.new("RGB", (7, 5), (255, 0, 51))  # PIL sizes are (width, height)
    batch = Preprocess(size=(2, 3))([img, img])
    assert batch.shape == (2, 3, 2, 3) and batch.dtype == torch.float32
    rgb = torch.tensor([1.0, 0.0, 0.2])
    expected = (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(batch, expected.view(1, 3, 1, 1).expand(2, 3, 2, 3))


def test_pixels_keep_their_place() -> None:
    # no resize (the image is already at size): rows stay rows, columns stay columns
    px = np.array([[[0, 10, 20], [30, 40, 50], [60, 70, 80]], [[90, 100, 110]] * 3], np.uint8)
    img = Image.fromarray(px)  # 2 rows x 3 columns
    batch = Preprocess(size=(2, 3), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))([img])
    torch.testing.assert_close(
        batch[0], torch.tensor(px, dtype=torch.float32).permute(2, 0, 1) / 255
    )


def test_grey_images_and_single_channel_models() -> None:
    grey = Image.new("L", (4, 4), 51)
    (g,) = Preprocess(size=(4, 4), mean=(0.0, 0.0, 0.0), std=(0.5, 0.5, 0.5))([grey])
    torch.testing.assert_close(g, torch.full((3, 4, 4), 0.4))
    one = Preprocess(size=(4, 4), mean=(0.5,), std=(0.25,))
    (c,) = one([Image.new("RGB", (4, 4), (255, 0, 51))])  # channel mean (1 + 0 + 0.2) / 3
    assert c.shape == (1, 4, 4)
    torch.testing.assert_close(c, torch.full((1, 4, 4), (0.4 - 0.5) / 0.25))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_interpolation_is_the_named_pil_filter(interpolation: str) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8))
    pre = Preprocess(size=(5, 6), mean=(0.0,) * 3, std=(1.0,) * 3, interpolation=interpolation)
    resample = getattr(Image.Resampling, interpolation.upper())
    ref = np.asarray(img.resize((6, 5), resample), dtype=np.float32) / 255
    torch.testing.assert_close(pre([img])[0], torch.from_numpy(ref).permute(2, 0, 1))
