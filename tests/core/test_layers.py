"""layer="auto" on the architectures users bring, with no user code."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from pytorch_grad_cam import GradCAM as PeerGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from seewhy import explain, layers, load_model
from seewhy.core.errors import LayerError
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


ONE_PASS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam"]

X = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("spec", "layer", "grid"), ZOO, ids=[z[0] for z in ZOO])
def test_auto_layer_finds_the_last_spatial_layer(
    spec: str, layer: str, grid: tuple[int, int]
) -> None:
    model = build(spec)
    assert auto_layer(model, X[:1]).name == layer
    # every one-pass CAM (the gradient family and EigenCAM share one forward+backward)
    exps = explain(model, X, ONE_PASS)
    for e in exps:
        assert e.layer == layer, e.method
        assert e.map.shape == (2, 224, 224) and e.map.dtype == torch.float32
        assert tuple(e.raw["image"].shape[-2:]) == grid
        assert torch.isfinite(e.map).all(), e.method
        assert (e.map >= 0).all(), e.method  # rectified
    for e in (exps[0], exps[-1]):  # gradcam, eigencam: a real map, something highlighted
        assert (e.map.flatten(1).amax(1) > e.map.flatten(1).amin(1)).all(), e.method


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


class SpotNet(nn.Module):
    """A user's CNN with no hints for seewhy: class 0 = "a red spot", class 1 = "a blue spot".

    conv 1x1: channel 0 = relu(R - (G + B)/2 - 1/4) fires on red only (0.75), channel 1 the
    same for blue; on grey (R = G = B) both are 0. Then a 3x3 box blur with stride 2 (the layer
    grid is half the input's, so the upsampling is exercised), global average pool and the
    head: logit c = 100 x mean of channel c (large enough for Score-CAM's softmax over
    channels to tell the spots apart).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.features[0].weight.copy_(
                torch.tensor([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0]]).view(2, 3, 1, 1)
            )
            self.features[0].bias.fill_(-0.25)
            self.features[2].weight.zero_()
            self.features[2].weight[0, 0] = 1 / 9
            self.features[2].weight[1, 1] = 1 / 9
            self.features[2].bias.zero_()
            self.fc.weight.copy_(100 * torch.eye(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_auto_layer_on_a_custom_cnn_finds_the_planted_spots() -> None:
    g = torch.Generator().manual_seed(7)
    x = 0.5 + 0.05 * torch.randn(1, 1, 64, 64, generator=g).expand(1, 3, 64, 64).clone()
    red, blue = (slice(8, 20), slice(40, 52)), (slice(36, 52), slice(6, 18))
    x[0, :, red[0], red[1]] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    x[0, :, blue[0], blue[1]] = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)
    model = SpotNet().eval()
    assert auto_layer(model, x).name == "features"  # the last 4-D output with h, w > 1
    cams = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "scorecam"]
    for target, (spot, other) in enumerate([(red, blue), (blue, red)]):
        for e in explain(model, x, cams, target=target):
            m = e.map[0]
            assert e.layer == "features" and tuple(e.raw["image"].shape) == (1, 32, 32)
            peak = divmod(int(m.argmax()), 64)
            assert spot[0].start <= peak[0] < spot[0].stop, (e.method, target, peak)
            assert spot[1].start <= peak[1] < spot[1].stop, (e.method, target, peak)
            inside = m[spot].mean()
            # grey background: nothing (beyond the one-pixel blur halo of the spots)
            background = m.clone()
            for s in (spot, other):
                background[s[0].start - 4 : s[0].stop + 4, s[1].start - 4 : s[1].stop + 4] = 0
            assert float(background.abs().max()) == 0.0, e.method
            if e.method != "scorecam":  # the gradient CAMs see only the explained class's spot
                assert float(m[other].max()) < 1e-6 * float(inside), (e.method, target)
            else:  # softmax weights: the other spot is weaker, not gone
                assert float(m[other].mean()) < 0.5 * float(inside)


def test_layers_lists_tokens_and_nhwc_candidates_and_closest_names() -> None:
    vit = build("timm:vit_small_patch16_224")
    rows = {r.name: r for r in layers(vit)}
    assert rows["blocks.11.norm1"].shape == (1, 197, 384) and rows["blocks.11.norm1"].spatial
    assert "head" not in rows and "fc_norm" not in rows  # [1, 384] vectors are no candidates
    with pytest.raises(LayerError, match=r"closest: .*'blocks\.11\.norm1'.*seewhy layers"):
        explain(vit, X[:1], ["gradcam"], layer="blocks.11.norm")
    swin = build("timm:swin_tiny_patch4_window7_224")
    rows = {r.name: r for r in layers(swin)}
    assert rows["layers.3"].shape == (1, 7, 7, 768) and rows["layers.3"].spatial


def test_layers_of_a_loaded_model_use_its_input_size() -> None:
    model = load_model("timm:test_resnet", num_classes=3, device="cpu")  # 160 x 160 in timm
    rows = layers(model)
    assert (rows[-1].name, rows[-1].shape) == ("layer4", (1, 96, 5, 5))
    assert [r.name for r in rows if r.name.startswith("layer")][:1] == ["layer1.0.conv1"]


def test_auto_layer_on_a_torchvision_vit_reads_the_last_blocks_tokens() -> None:
    # torchvision's ViT: a conv patch embedding (the last 4-D output) then class-token blocks
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=3,
    ).eval()
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    layer = "encoder.layers.encoder_layer_1.ln_1"
    (e,) = explain(model, x, ["gradcam"], target=2)
    assert e.layer == layer and tuple(e.raw["image"].shape) == (2, 4, 4)
    assert (e.map.flatten(1).amax(1) > 0).all()
    module = dict(model.named_modules())[layer]
    reshape = lambda t: t[:, 1:, :].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)  # noqa: E731
    with PeerGradCAM(model=model, target_layers=[module], reshape_transform=reshape) as cam:
        ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(2)] * 2))
    for i in range(2):
        r = torch.corrcoef(torch.stack([e.normalized()[i].flatten(), ref[i].flatten()]))[0, 1]
        assert r > 0.99
