"""layer="auto" on the architectures users bring, with no user code."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from pytorch_grad_cam import GradCAM as PeerGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from seewhy import explain, layers
from seewhy.core.layers import auto_layer

ZOO = [
    # (builder, expected auto layer, layer grid at 224)
    ("timm:convnextv2_atto", "stages.3", (7, 7)),
    ("timm:tf_efficientnetv2_s", "blocks.5", (7, 7)),
    ("timm:vit_small_patch16_224", "blocks.11.norm1", (14, 14)),
    ("timm:deit_small_patch16_224", "blocks.11.norm1", (14, 14)),
    ("timm:swin_tiny_patch4_window7_224", "layers.3", (7, 7)),
    ("torchvision:resnet18", "layer4", (7, 7)),
    ("torchvision:densenet121", "features", (7, 7)),
    ("torchvision:mobilenet_v3_small", "features", (7, 7)),
    ("torchvision:efficientnet_b0", "features", (7, 7)),
]


def build(spec: str) -> nn.Module:
    torch.manual_seed(0)
    kind, name = spec.split(":")
    if kind == "timm":
        return timm.create_model(name, pretrained=False, num_classes=4).eval()
    return torchvision.models.get_model(name, weights=None, num_classes=4).eval()


X = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("spec", "layer", "grid"), ZOO, ids=[z[0] for z in ZOO])
def test_auto_layer_finds_the_last_spatial_layer(
    spec: str, layer: str, grid: tuple[int, int]
) -> None:
    model = build(spec)
    assert auto_layer(model, X[:1]).name == layer
    (e,) = explain(model, X, ["gradcam"])
    assert e.layer == layer
    assert e.map.shape == (2, 224, 224) and e.map.dtype == torch.float32
    assert tuple(e.extras["low_res"].shape[-2:]) == grid
    assert torch.isfinite(e.map).all()
    # a real map: not constant, something highlighted
    assert (e.map.flatten(1).amax(1) > e.map.flatten(1).amin(1)).all()


def _tokens_to_grid(t: torch.Tensor) -> torch.Tensor:
    return t[:, 1:, :].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)


def _nhwc_to_nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    ("spec", "module", "reshape"),
    [
        ("timm:vit_small_patch16_224", "blocks.11.norm1", _tokens_to_grid),
        ("timm:swin_tiny_patch4_window7_224", "layers.3", _nhwc_to_nchw),
    ],
)
def test_token_and_nhwc_reshapes_match_a_hand_written_transform(
    spec: str, module: str, reshape: object
) -> None:
    model = build(spec)
    (ours,) = explain(model, X, ["gradcam"], target=2)
    layer = dict(model.named_modules())[module]
    with PeerGradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        ref = torch.from_numpy(cam(input_tensor=X, targets=[ClassifierOutputTarget(2)] * 2))
    for i in range(2):
        r = torch.corrcoef(torch.stack([ours.normalized()[i].flatten(), ref[i].flatten()]))[0, 1]
        assert r > 0.99


def test_layers_lists_spatial_candidates_with_shapes() -> None:
    model = build("torchvision:resnet18")
    rows = layers(model)
    by_name = {r.name: r for r in rows}
    assert by_name["layer4"].shape == (1, 512, 7, 7)
    assert by_name["layer1"].shape == (1, 64, 56, 56)
    assert "fc" not in by_name and "avgpool" not in by_name  # vectors / 1x1 are not candidates
    assert rows[-1].name == "layer4"
