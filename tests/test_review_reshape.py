"""Defects an outside review of the core reshape found; each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import seewhy
from seewhy.core.errors import TargetError, UsageError
from seewhy.core.targets import PredictedClass


class ViewHead(nn.Module):
    """A LeNet-style head that ``view``s its conv output: fails on channels-last tensors."""

    def __init__(self, reshape: bool = False) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 5)
        self.r = nn.ReLU()
        self.fc = nn.Linear(6 * 12 * 12, 4)
        self.reshape = reshape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.r(self.c1(x))
        flat = x.reshape(x.size(0), -1) if self.reshape else x.view(x.size(0), -1)
        return self.fc(flat)


def test_scorecam_runs_a_model_that_views_its_conv_output() -> None:
    torch.manual_seed(0)
    viewing = ViewHead().eval()
    reshaping = ViewHead(reshape=True).eval()
    reshaping.load_state_dict(viewing.state_dict())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    (got,) = seewhy.explain(viewing, x, ["scorecam"], layer="r", precision="float32")
    (want,) = seewhy.explain(reshaping, x, ["scorecam"], layer="r", precision="float32")
    torch.testing.assert_close(got.map, want.map, rtol=1e-5, atol=1e-6)
    assert float(got.map.abs().max()) > 0


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3, padding=1)
        self.r = nn.ReLU()
        self.fc = nn.Linear(12, 3)

    def forward(self, pixel_values: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.r(self.c(pixel_values)).mean(dim=(2, 3)), feats], 1))


def test_the_auto_layer_of_a_multi_input_model_runs_it_with_every_input() -> None:
    torch.manual_seed(0)
    model = seewhy.Model(
        TwoInputs().eval(), inputs={"image": "pixel_values", "f": {"arg": "feats"}}
    )
    g = torch.Generator().manual_seed(2)
    batch = {"image": torch.randn(2, 3, 8, 8, generator=g), "f": torch.randn(2, 4, generator=g)}
    (auto,) = seewhy.explain(model, batch, ["gradcam"])
    (named,) = seewhy.explain(model, batch, ["gradcam"], layer="r")
    assert auto.layer == "r"
    torch.testing.assert_close(auto.map, named.map)


def test_an_empty_tensor_batch_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="empty"):
        seewhy.explain(nn.Conv2d(3, 2, 3), torch.zeros(0, 3, 8, 8))


def test_arrays_are_refused_and_a_list_of_image_tensors_is_a_batch() -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    module(torch.zeros(1, 3, 8, 8))
    module.eval()
    with pytest.raises(UsageError, match="cannot explain a ndarray"):
        seewhy.explain(module, np.zeros((8, 8, 3), np.uint8), layer="1")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    (listed,) = seewhy.explain(module, [x[0], x[1]], layer="1")
    (stacked,) = seewhy.explain(module, x, layer="1")
    torch.testing.assert_close(listed.map, stacked.map)
    with pytest.raises(UsageError, match="one shape"):
        seewhy.explain(module, [x[0], x[0, :, :4]], layer="1")


def test_a_resolved_target_for_another_batch_is_refused_at_the_door() -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    resolved = PredictedClass().resolve(torch.zeros(5, 2))
    with pytest.raises(TargetError, match="resolved for 5 samples, but the batch has 3"):
        seewhy.explain(module, torch.zeros(3, 3, 8, 8), target=resolved, layer="1", batch_size=2)
