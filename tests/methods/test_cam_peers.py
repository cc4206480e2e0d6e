"""Agreement with pytorch-grad-cam and captum on real architectures (random seeded weights).

torchvision resnet50 and timm convnext_tiny, each built once per module. The CAM layer is the
last stage (``layer4``, ``stages.3``; convnext is NCHW there) and, for the gradient CAMs, also a
middle one (``layer3``, ``stages.2.blocks.4``): right before global pooling the gradient is
constant over positions, which makes Grad-CAM, HiResCAM and XGrad-CAM the same map (and
Grad-CAM++ nearly LayerCAM), so only a middle layer tells those formulas apart
(``test_the_middle_layer_tells_the_formulas_apart``).

pytorch-grad-cam returns min-max normalised maps; ours are compared after the same normalisation
(``Explanation.normalized``), per sample, with Pearson's r.

Cost: each pytorch-grad-cam gradient CAM is a forward+backward of its own, so the fixed-class and
predicted-class batches go through it as one batch of four, and while a peer runs only the CAM
layer's last parameter requires grad: the peer's backward then stops at the layer instead of
running down to the stem (the gradient at the layer's output, all that a CAM reads, is the same).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pytest
import timm
import torch
import torchvision
from captum.attr import LayerAttribution, LayerGradCam
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

from seewhy.core.explanation import Explanation
from seewhy.core.inputs import Inputs
from seewhy.core.model import Model
from seewhy.core.targets import ClassTarget, PredictedClass, Target
from seewhy.methods import cam as cam_module
from seewhy.methods.cam import CAM
from seewhy.methods.registry import create_method

GRADIENT_PEERS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
}
GRADIENT_CAMS = list(GRADIENT_PEERS)
# (stage, target kind) pairs compared with pytorch-grad-cam's gradient CAMs
CASES = [("last", "fixed"), ("last", "pred"), ("middle", "pred")]
FIXED_CLASS = 3  # predicted for neither sample (checked), so "fixed" and "pred" differ
SIZE = 224
R_MIN = 0.99


def pearson(a: Tensor, b: Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1])


@dataclass(frozen=True)
class Arch:
    """A model under test, its layers, and its last stage's output computed without a hook."""

    name: str
    model: nn.Module
    layers: dict[str, str]  # stage ("last", "middle") -> module name
    features: Callable[[Tensor], Tensor]  # input -> the last stage's output
    head: Callable[[Tensor], Tensor]  # the last stage's output -> logits
    scorecam_layer: str
    x: Tensor  # [2, 3, SIZE, SIZE]

    @property
    def layer(self) -> str:
        return self.layers["last"]

    def module(self, layer: str) -> nn.Module:
        return dict(self.model.named_modules())[layer]


Build = tuple[
    nn.Module, dict[str, str], Callable[[Tensor], Tensor], Callable[[Tensor], Tensor], str
]


def _resnet50() -> Build:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None, num_classes=10).eval()
    trunk = nn.Sequential(*list(model.children())[:-2])  # conv1 ... layer4
    head = nn.Sequential(model.avgpool, nn.Flatten(), model.fc)
    return model, {"last": "layer4", "middle": "layer3"}, trunk, head, "layer2"


def _convnext() -> Build:
    """convnext_tiny with random weights made to behave like a trained one in two ways.

    Layer scale 1 (timm's init, 1e-6, makes every block an identity and the network a stem,
    three downsamples and a head). Small random biases (timm's init, zeros, sends a masked-out
    patch through every LayerNorm as a near-zero vector that the norm scales up, so Score-CAM's
    scores hang on float rounding: at timm's init 1e-6 of mask noise moves them by 1e-2, here
    by 2e-6).
    """
    torch.manual_seed(0)
    model = timm.create_model(
        "convnext_tiny", pretrained=False, num_classes=10, ls_init_value=1.0
    ).eval()
    assert isinstance(model.norm_pre, nn.Identity)  # forward_features ends at stages.3
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.copy_(0.02 * torch.randn(m.bias.shape, generator=g))
    # The middle layer is a block inside stage 2, not the stage's output: a LayerNorm reads that
    # output, and a LayerNorm is invariant to scaling its input at each position, so there
    # sum_k A_k dy/dA_k = 0 everywhere and HiResCAM is float rounding on both sides.
    return (
        model,
        {"last": "stages.3", "middle": "stages.2.blocks.4"},
        cast(Callable[[Tensor], Tensor], model.forward_features),
        cast(Callable[[Tensor], Tensor], model.forward_head),
        "stages.1",
    )


BUILDERS = {"resnet50": _resnet50, "convnext_tiny": _convnext}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def arch(request: pytest.FixtureRequest) -> Arch:
    model, layers, features, head, scorecam_layer = BUILDERS[request.param]()
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return Arch(request.param, model, layers, features, head, scorecam_layer, x)


@pytest.fixture(scope="module")
def predicted(arch: Arch) -> list[int]:
    """The predicted class per sample, from a plain forward."""
    with torch.no_grad():
        pred = arch.model(arch.x).argmax(dim=1).tolist()
    assert FIXED_CLASS not in pred
    return pred


def target_of(kind: str) -> Target:
    return ClassTarget(FIXED_CLASS) if kind == "fixed" else PredictedClass()


Ours = dict[tuple[str, str], dict[str, Explanation]]


@pytest.fixture(scope="module")
def ours(arch: Arch) -> Ours:
    """(stage, kind) -> method -> our explanation; one run_many per target kind (one pass per
    layer): the five gradient CAMs and eigencam at the last stage, the five at the middle one."""
    plan = {
        "fixed": [("last", n) for n in [*GRADIENT_CAMS, "eigencam"]],
        "pred": [("last", n) for n in [*GRADIENT_CAMS, "eigencam"]]
        + [("middle", n) for n in GRADIENT_CAMS],
    }
    result: Ours = {}
    for kind, todo in plan.items():
        methods = [create_method(n, layer=arch.layers[s]) for s, n in todo]
        explanations = CAM.run_many(
            methods, Model.of(arch.model), Inputs.of(arch.x), target_of(kind)
        )
        for (stage, name), e in zip(todo, explanations, strict=True):
            result.setdefault((stage, kind), {})[name] = e
    return result


@contextmanager
def backward_stops_at(model: nn.Module, layer: nn.Module) -> Iterator[None]:
    """Inside the block only ``layer``'s last parameter requires grad (flags restored after)."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    last = list(layer.parameters())[-1]
    try:
        for p in params:
            p.requires_grad_(p is last)
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


def run_peer(
    cls: type, arch: Arch, layer: str, x: Tensor, classes: list[int], **settings: Any
) -> Tensor:
    """pytorch-grad-cam's maps (min-max normalised, input resolution) for the rows of ``x``."""
    with cls(model=arch.model, target_layers=[arch.module(layer)]) as cam:
        for key, value in settings.items():
            setattr(cam, key, value)
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
    return torch.from_numpy(out)


Peer = dict[tuple[str, str], dict[str, Tensor]]


@pytest.fixture(scope="module")
def peer(arch: Arch, predicted: list[int]) -> Peer:
    """(stage, kind) -> method -> pytorch-grad-cam's maps [2, H, W]."""
    fixed = [FIXED_CLASS] * len(arch.x)
    result: Peer = {}
    for name, cls in GRADIENT_PEERS.items():
        last = arch.layers["last"]
        with backward_stops_at(arch.model, arch.module(last)):
            both = run_peer(cls, arch, last, torch.cat([arch.x, arch.x]), fixed + predicted)
        result.setdefault(("last", "fixed"), {})[name] = both[:2]
        result.setdefault(("last", "pred"), {})[name] = both[2:]
        middle = arch.layers["middle"]
        with backward_stops_at(arch.model, arch.module(middle)):
            result.setdefault(("middle", "pred"), {})[name] = run_peer(
                cls, arch, middle, arch.x, predicted
            )
    return result


def test_models_and_targets_are_what_the_peer_tests_assume(
    arch: Arch, ours: Ours, peer: Peer, predicted: list[int]
) -> None:
    assert not arch.model.training
    assert all(p.requires_grad for p in arch.model.parameters())  # restored after the peers
    for (stage, kind), explanations in ours.items():
        for name, e in explanations.items():
            assert e.layer == arch.layers[stage], name
            assert e.map.shape == (2, SIZE, SIZE) and e.map.dtype == torch.float32
            expected = [FIXED_CLASS] * 2 if kind == "fixed" else predicted
            assert e.target_indices is not None and e.target_indices.tolist() == expected


PEER_GRADCAMPP_EPS = 1e-6  # pytorch-grad-cam adds 1e-6 to Grad-CAM++'s denominator


@pytest.mark.parametrize(("stage", "kind"), CASES)
@pytest.mark.parametrize("name", GRADIENT_CAMS)
def test_gradient_cam_matches_pytorch_grad_cam(
    arch: Arch, ours: Ours, peer: Peer, name: str, stage: str, kind: str
) -> None:
    """Grad-CAM++ runs with pytorch-grad-cam's epsilon (ours: ``cam.EPS`` = 1e-7): the
    denominator is of the order of G^2 and these gradients are ~1e-4..1e-3, so on
    convnext_tiny that constant alone takes the peer's map to r = 0.97 from the formula's
    (``test_gradcam_plus_plus_is_the_closed_form`` checks ours against the formula itself)."""
    e = ours[stage, kind][name]
    if name == "gradcam++":
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cam_module, "EPS", PEER_GRADCAMPP_EPS)
            e = create_method(name, layer=arch.layers[stage])(arch.model, arch.x, target_of(kind))
    mine = e.normalized()
    ref = peer[stage, kind][name]
    r = [pearson(mine[i], ref[i]) for i in range(len(ref))]
    assert min(r) >= R_MIN, f"{arch.name} {arch.layers[stage]} {name} ({kind}): r = {r}"


class ScaledLogits(nn.Module):
    """``model``'s logits times ``scale`` (so every gradient is ``scale`` times larger)."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model = model
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.model(x)


def gradcam_plus_plus_closed_form(a: Tensor, g: Tensor) -> Tensor:
    """Grad-CAM++ in float64 with no epsilon: ``alpha = 1 / (2 + sum(A) G)`` where ``G != 0``
    (the paper's ``G^2 / (2 G^2 + sum(A) G^3)``), weights ``sum(alpha relu(G))``."""
    a, g = a.double(), g.double()
    s = a.sum(dim=(2, 3), keepdim=True)
    alpha = torch.where(g != 0, 1 / (2 + s * g), torch.zeros_like(g))
    w = (alpha * g.clamp_min(0)).sum(dim=(2, 3))
    return (w[:, :, None, None] * a).sum(dim=1).clamp_min(0)


@pytest.mark.parametrize("kind", ["fixed", "pred"])
def test_gradcam_plus_plus_is_the_closed_form(arch: Arch, ours: Ours, kind: str) -> None:
    """Ours against Grad-CAM++'s closed form computed from the last stage's activations and
    the head's gradient (no hook). At the model's own scale the gradients (~1e-4) are small
    enough for ours' epsilon (1e-7, against G^2 ~ 1e-8) to change the map's amplitude (resnet50:
    its peak 35% low) but not its shape (r >= 0.99). With the logits scaled up (at most 100x,
    and little enough that ``2 + sum(A) G >= 1`` wherever ``G > 0``: convnext's activations are
    signed and the closed form has a pole) the epsilon is negligible, and the maps must agree
    to 1% of their peak (a 1 in place of the 2 moves them by 15% or more)."""
    e = ours["last", kind]["gradcam++"]
    assert e.target_indices is not None
    with torch.no_grad():
        a = arch.features(arch.x)
    a.requires_grad_(True)
    score = arch.head(a).gather(1, e.target_indices[:, None]).sum()
    (g,) = torch.autograd.grad(score, a)
    a = a.detach()
    exact = gradcam_plus_plus_closed_form(a, g)
    low = e.raw["image"]
    r = [pearson(low[i], exact[i]) for i in range(2)]
    assert min(r) >= R_MIN, f"{arch.name} ({kind}), model's scale: r = {r}"

    toward_pole = float((-a.sum(dim=(2, 3), keepdim=True) * g)[g > 0].max())
    scale = 100.0 if toward_pole <= 0.01 else min(100.0, 1 / toward_pole)
    model = ScaledLogits(arch.model, scale)
    method = create_method("gradcam++", layer=f"model.{arch.layer}")
    scaled = method(model, arch.x, target_of(kind)).raw["image"]
    exact = gradcam_plus_plus_closed_form(a, scale * g).float()
    torch.testing.assert_close(scaled, exact, rtol=0, atol=1e-2 * float(exact.max()))


def test_the_middle_layer_tells_the_formulas_apart(arch: Arch, peer: Peer) -> None:
    """Guard against a comparison that cannot fail: where two methods give the same map, a
    formula swapped between them would pass. On resnet50's layer3 XGrad-CAM's weights come
    close to Grad-CAM's (r = 0.993); convnext's middle layer tells those two apart (r = 0.10).
    Every other pair differs on both models (r <= 0.87)."""
    ref = peer["middle", "pred"]
    alike = {
        (a, b)
        for a in GRADIENT_CAMS
        for b in GRADIENT_CAMS
        if a < b and min(pearson(ref[a][i], ref[b][i]) for i in range(2)) >= R_MIN
    }
    assert alike <= {("gradcam", "xgradcam")}, f"{arch.name}: maps alike for {alike}"


def _flip_svd(svd: Callable[..., Any], calls: list[int]) -> Callable[..., Any]:
    """``svd`` with the signs of its singular vectors flipped (an equally valid SVD)."""

    def flipped(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        u, s, vh = svd(*args, **kwargs)
        return -u, s, -vh

    return flipped


def test_eigencam_matches_pytorch_grad_cam_up_to_the_svd_sign(
    arch: Arch, ours: Ours, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytorch-grad-cam keeps the sign its SVD returns. Run it with numpy's signs as they come
    and with them flipped: for every sample exactly one of the two orientations is ours
    (r >= 0.99) and the other is the inverted map (r < 0) - the documented deviation."""
    mine = ours["last", "fixed"]["eigencam"]
    # gradient-free: the target changes nothing
    torch.testing.assert_close(ours["last", "pred"]["eigencam"].map, mine.map, rtol=0, atol=0)
    classes = [FIXED_CLASS] * 2
    as_is = run_peer(EigenCAM, arch, arch.layer, arch.x, classes)
    calls: list[int] = []
    monkeypatch.setattr(np.linalg, "svd", _flip_svd(np.linalg.svd, calls))
    flipped = run_peer(EigenCAM, arch, arch.layer, arch.x, classes)
    assert calls, "pytorch-grad-cam no longer calls numpy's svd: revisit this test"
    for i in range(2):
        m = mine.normalized()[i]
        r = sorted([pearson(m, as_is[i]), pearson(m, flipped[i])])
        assert r[1] >= R_MIN and r[0] < 0, f"{arch.name} sample {i}: r = {r}"


def test_eigencam_orients_the_component_with_the_channel_sum(
    arch: Arch, ours: Ours, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our map is the rectified projection on the first principal component, signed so that it
    correlates positively with the channel-summed activation, whatever sign the SVD returns."""
    mine = ours["last", "fixed"]["eigencam"]
    low = mine.raw["image"]
    with torch.no_grad():
        acts = arch.features(arch.x).float()  # [2, K, h, w]
    for i in range(2):
        m = acts[i].flatten(1).T  # positions x channels
        m = m - m.mean(dim=0, keepdim=True)
        v = torch.linalg.svd(m, full_matrices=False)[2][0]
        total = acts[i].sum(dim=0).flatten()
        projections = {s: m @ (s * v) for s in (1.0, -1.0)}
        chosen = [s for s, p in projections.items() if float(p @ (total - total.mean())) > 0]
        assert len(chosen) == 1
        expected = projections[chosen[0]].clamp_min(0).view(low.shape[1:])
        rejected = projections[-chosen[0]].clamp_min(0).view(low.shape[1:])
        scale = float(expected.abs().max())
        torch.testing.assert_close(low[i], expected, rtol=1e-4, atol=1e-4 * scale)
        assert pearson(low[i], rejected) < 0
    calls: list[int] = []
    monkeypatch.setattr(torch.linalg, "svd", _flip_svd(torch.linalg.svd, calls))
    again = create_method("eigencam", layer=arch.layer)(arch.model, arch.x, ClassTarget(0))
    assert calls, "EigenCAM no longer calls torch.linalg.svd: revisit this test"
    torch.testing.assert_close(again.map, mine.map, rtol=0, atol=0)


def test_gradcam_matches_captum_layergradcam(arch: Arch, ours: Ours) -> None:
    mine = ours["last", "fixed"]["gradcam"].map
    attr = LayerGradCam(arch.model, arch.module(arch.layer)).attribute(
        arch.x, target=FIXED_CLASS, relu_attributions=True
    )
    up = LayerAttribution.interpolate(attr, (SIZE, SIZE), interpolate_mode="bilinear")
    ref = up[:, 0].detach()
    for i in range(2):
        assert pearson(mine[i], ref[i]) >= R_MIN
        diff = float((mine[i] / mine[i].max() - ref[i] / ref[i].max()).abs().max())
        assert diff < 1e-3, f"{arch.name} sample {i}: max abs diff {diff}"


def test_run_many_equals_each_method_alone(arch: Arch, ours: Ours) -> None:
    target = ClassTarget(FIXED_CLASS)
    methods = [create_method(n, layer=arch.layer) for n in GRADIENT_CAMS]
    together = CAM.run_many(methods, Model.of(arch.model), Inputs.of(arch.x), target)
    for name, m, e in zip(GRADIENT_CAMS, methods, together, strict=True):
        alone = m(arch.model, arch.x, target)
        assert alone.method == e.method == name
        torch.testing.assert_close(e.map, alone.map, rtol=0, atol=0)
        torch.testing.assert_close(e.raw["image"], alone.raw["image"], rtol=0, atol=0)
        # the fixture's pass also carried eigencam: sharing it changes nothing either
        torch.testing.assert_close(ours["last", "fixed"][name].map, e.map, rtol=0, atol=0)


SCORECAM_SIZE = 64
SCORECAM_BATCH = 64


def test_scorecam_matches_pytorch_grad_cam(arch: Arch) -> None:
    """Score-CAM costs a forward per channel, so it reads a middle layer (resnet50 layer2: 512
    channels; convnext_tiny stages.1: 192) on a 64x64 image: an 8x8 grid. The last stage (2048 /
    768 channels) would cost minutes here and, on the 2x2-3x3 grid of a small image, the two
    tools' mask upsampling conventions (pytorch-grad-cam: align_corners=True; seewhy: False)
    alone pull r below 0.99. Both tools get the same layer, class and batch_size."""
    x = torch.randn(1, 3, SCORECAM_SIZE, SCORECAM_SIZE, generator=torch.Generator().manual_seed(2))
    layer = arch.scorecam_layer
    # float32, not "auto": bfloat16 masked forwards where native would make r machine-dependent
    mine = create_method("scorecam", layer=layer, precision="float32")(
        arch.model, x, ClassTarget(FIXED_CLASS), batch_size=SCORECAM_BATCH
    )
    ref = run_peer(ScoreCAM, arch, layer, x, [FIXED_CLASS], batch_size=SCORECAM_BATCH)
    r = pearson(mine.normalized()[0], ref[0])
    assert r >= R_MIN, f"{arch.name} {layer}: r = {r}"
