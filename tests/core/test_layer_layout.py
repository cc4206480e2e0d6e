"""Per-layer layout detection: NCHW vs NHWC from the output shape and the input size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from seewhy import explain
from seewhy.core.errors import MethodNotApplicableError
from seewhy.core.layers import LayerSpec, get_layer, list_layers, resolve_layer

X = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def swin() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.swin_t(weights=None, num_classes=4).eval()


@pytest.fixture(scope="module")
def swin_features(swin: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return swin.features(X)


@pytest.mark.parametrize("name", ["features", "features.7"])
def test_torchvision_swin_stage_outputs_are_read_as_nhwc(
    swin: nn.Module, swin_features: torch.Tensor, name: str
) -> None:
    assert tuple(swin_features.shape) == (1, 7, 7, 768)
    spec = resolve_layer(swin, name, X)
    assert (spec.layout, spec.shape, spec.calls) == ("nhwc", (1, 7, 7, 768), 1)
    expected = swin_features.permute(0, 3, 1, 2)
    assert torch.equal(spec.to_nchw(swin_features), expected)
    # without a dry run: from the shape and the input size, or from the shape alone
    plain = get_layer(swin, name)
    assert plain.layout == "auto"
    assert torch.equal(plain.to_nchw(swin_features, (224, 224)), expected)
    assert plain.layout_of(swin_features) == "nhwc"
    assert torch.equal(plain.to_nchw(swin_features), expected)


def test_gradcam_on_torchvision_swin_features_matches_a_hand_computation(
    swin: nn.Module, swin_features: torch.Tensor
) -> None:
    (e,) = explain(swin, X, ["gradcam"], layer="features", target=1)
    assert e.map.shape == (1, 224, 224)
    # by hand: the head on a leaf at the features' output, channel weights = mean gradient
    f = swin_features.clone().requires_grad_(True)
    out = swin.head(swin.flatten(swin.avgpool(swin.permute(swin.norm(f)))))
    (g,) = torch.autograd.grad(out[:, 1].sum(), f)
    low = (g.mean(dim=(1, 2))[:, None, None, :] * f.detach()).sum(-1).clamp_min(0)
    torch.testing.assert_close(e.raw["image"], low, rtol=1e-4, atol=1e-6)
    up = F.interpolate(low[:, None], size=(224, 224), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(e.map, up, rtol=1e-4, atol=1e-6)
    m = e.map[0]
    assert float(m.max()) > 0 and float(m.std()) > 0.05 * float(m.max())  # not degenerate
    assert int((low[0] > 0).sum()) >= 5  # several of the 7x7 positions light up


def test_torchvision_swin_rows_carry_their_layouts(swin: nn.Module) -> None:
    rows = {r.name: r for r in list_layers(swin, X)}
    assert (rows["features"].shape, rows["features"].layout) == ((1, 7, 7, 768), "nhwc")
    assert (rows["features.0.0"].shape, rows["features.0.0"].layout) == ((1, 96, 56, 56), "nchw")
    assert (rows["features.1"].shape, rows["features.1"].layout) == ((1, 56, 56, 96), "nhwc")
    assert (rows["permute"].shape, rows["permute"].layout) == ((1, 768, 7, 7), "nchw")
    assert rows["features"].spatial and rows["permute"].spatial
    assert not rows["avgpool"].spatial  # [1, 768, 1, 1]


def test_resnet_layer4_stays_nchw() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    spec = resolve_layer(model, "layer4", X)
    assert (spec.layout, spec.shape, spec.calls) == ("nchw", (1, 512, 7, 7), 1)
    t = torch.randn(1, 512, 7, 7)
    assert spec.to_nchw(t) is t
    assert get_layer(model, "layer4").to_nchw(t) is t


@pytest.mark.parametrize(
    ("shape", "size", "layout"),
    [
        ((2, 64, 56, 56), (224, 224), "nchw"),
        ((2, 64, 56, 56), None, "nchw"),
        ((2, 512, 7, 10), (224, 320), "nchw"),
        ((2, 56, 56, 96), (224, 224), "nhwc"),
        ((2, 56, 56, 96), None, "nhwc"),
        ((2, 128, 128, 96), (512, 512), "nhwc"),  # fewer channels than positions per side
        ((2, 7, 10, 768), (224, 320), "nhwc"),
        ((2, 8, 10, 768), (230, 300), "nhwc"),  # ceil-mode strides: near-proportional
        ((2, 7, 7, 7), (224, 224), "nchw"),  # ambiguous on a square input: NCHW
        ((2, 7, 7, 7), None, "nchw"),
        ((2, 16, 16, 8), (64, 32), "nchw"),  # 16 channels on a 16 x 8 grid of a 64 x 32 input
        ((2, 16, 16, 8), (64, 64), "nhwc"),
        ((2, 3, 224, 224), (224, 224), "nchw"),
        ((2, 1, 1, 768), (224, 224), "nhwc"),
        ((2, 768, 1, 1), (224, 224), "nchw"),
        ((2, 197, 384), (224, 224), "tokens"),
    ],
)
def test_layout_from_shape_and_input_size(
    shape: tuple[int, ...], size: tuple[int, int] | None, layout: str
) -> None:
    spec = LayerSpec("x", nn.Identity())
    t = torch.randn(*shape)
    assert spec.layout_of(t, size) == layout
    if layout == "nhwc":
        assert torch.equal(spec.to_nchw(t, size), t.permute(0, 3, 1, 2))
    elif layout == "nchw":
        assert spec.to_nchw(t, size) is t


def test_a_known_layout_wins_over_the_shape() -> None:
    t = torch.randn(1, 7, 7, 7)
    assert LayerSpec("x", nn.Identity(), layout="nhwc").layout_of(t, (224, 224)) == "nhwc"
    assert LayerSpec("x", nn.Identity(), layout="nchw").layout_of(t) == "nchw"
    # an input size stored by the dry run is used when none is passed
    u = torch.randn(1, 16, 16, 8)
    assert LayerSpec("x", nn.Identity(), input_size=(64, 32)).layout_of(u) == "nchw"
    assert LayerSpec("x", nn.Identity(), input_size=(64, 64)).layout_of(u) == "nhwc"


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_a_layer_without_a_spatial_output_is_refused_up_front() -> None:
    model = MLP().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(MethodNotApplicableError) as info:
        resolve_layer(model, "fc1", x)
    msg = str(info.value)
    assert "\n" not in msg
    assert "'fc1'" in msg and "(1, 16)" in msg and "seewhy layers MODEL" in msg
    assert "gradient" in msg
    with pytest.raises(MethodNotApplicableError):
        get_layer(model, "fc2", x)
    with pytest.raises(MethodNotApplicableError, match="no layer with a spatial output"):
        resolve_layer(model, "auto", x)
    # a 1x1 map is no map either
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)).eval()
    with pytest.raises(MethodNotApplicableError, match=r"'1'.*\(1, 4, 1, 1\)"):
        resolve_layer(conv, "1", x)
    assert resolve_layer(conv, "0", x).shape == (1, 4, 6, 6)
