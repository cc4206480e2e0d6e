"""Auto layer skips modules whose output does not depend on the image (a Swin attention's
relative position bias); a dry run on an image of another size than the model states is one
line naming both sizes and the card's fix."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from seewhy.core.errors import ModelLoadError
from seewhy.core.layers import auto_layer, expected_size, list_layers, reads_input


class Bias(nn.Module):
    """A [1, heads, N, N] bias made from the weights alone, as a Swin's relative position bias."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(2, 16, 16))

    def forward(self) -> torch.Tensor:
        return self.table.unsqueeze(0)


class BiasLast(nn.Module):
    """A CNN whose last module to finish with a 4-D output is the constant bias."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bias = Bias()
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        f = torch.relu(self.conv(x))
        b = self.bias()
        out = self.head(f.mean((2, 3))) + b.mean()
        return out if scale is None else out * scale


def test_auto_skips_a_layer_that_does_not_read_the_image() -> None:
    torch.manual_seed(0)
    model = BiasLast().eval()
    rows = {r.name: r for r in list_layers(model, torch.zeros(1, 3, 16, 16))}
    assert rows["bias"].spatial  # looks like a 16x16 map
    assert not reads_input(model, "bias", torch.zeros(1, 3, 16, 16))
    assert reads_input(model, "conv", torch.zeros(1, 3, 16, 16))
    assert auto_layer(model, torch.zeros(1, 3, 16, 16)).name == "conv"


def test_auto_skips_it_with_a_multi_input_run_and_restores_the_example() -> None:
    torch.manual_seed(0)
    model = BiasLast().eval()
    image = torch.full((1, 3, 16, 16), 0.25)
    scale = torch.ones(1, 1)
    spec = auto_layer(model, image, lambda: model(image, scale))
    assert spec.name == "conv"
    assert torch.equal(image, torch.full((1, 3, 16, 16), 0.25))


def test_an_unwritable_example_with_a_run_is_taken_to_read_the_image() -> None:
    model = BiasLast().eval()
    image = torch.zeros(1, 1, 16, 16).expand(1, 3, 16, 16)  # not writable in place
    assert reads_input(model, "bias", image, lambda: model(image))


def test_timm_vit_at_another_size_is_one_line() -> None:
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=3
    ).eval()
    assert expected_size(vit) == (32, 32)
    with pytest.raises(ModelLoadError, match=r"takes 32x32 images but gets 16x16") as err:
        list_layers(vit, torch.zeros(1, 3, 16, 16))
    assert "[preprocess] size = 32" in str(err.value) and "\n" not in str(err.value)


def test_a_non_square_size_is_written_as_a_pair() -> None:
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=(32, 16), patch_size=8, num_classes=3
    ).eval()
    with pytest.raises(ModelLoadError, match=r"size = \[32, 16\]"):
        list_layers(vit, torch.zeros(1, 3, 16, 16))


def test_other_errors_of_a_sized_model_are_raised_as_they_are() -> None:
    class Sized(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.img_size, self.strict_img_size = (32, 32), True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("boom 32")

    with pytest.raises(ValueError, match=r"^boom 32$"):
        list_layers(Sized(), torch.zeros(1, 3, 16, 16))
    assert expected_size(nn.Conv2d(3, 3, 1)) is None
