"""Contracts every CAM keeps: batching, chunking, hooks released, model left as found, signs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seewhy import explain
from seewhy.core.errors import LayerError, MethodNotApplicableError
from seewhy.core.registry import available_methods, create_method
from seewhy.core.targets import ClassTarget
from seewhy.models.model import Model

CAMS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam"]


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_every_cam_is_registered() -> None:
    assert set(CAMS) <= set(available_methods())


def test_batched_equals_per_sample(small_cnn: nn.Module, images: torch.Tensor) -> None:
    together = explain(small_cnn, images, CAMS, layer="features")
    for i in range(images.shape[0]):
        alone = explain(small_cnn, images[i : i + 1], CAMS, layer="features")
        for a, b in zip(together, alone, strict=True):
            torch.testing.assert_close(a.map[i : i + 1], b.map, atol=1e-5, rtol=1e-4)
            assert a.method == b.method


def test_explain_chunks_equal_one_batch(small_cnn: nn.Module, images: torch.Tensor) -> None:
    whole = explain(small_cnn, images, CAMS, batch_size=8)
    chunked = explain(small_cnn, images, CAMS, batch_size=2)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a.map, b.map, atol=1e-5, rtol=1e-4)
        assert a.output is not None and b.output is not None
        torch.testing.assert_close(a.output, b.output)


def test_chunked_scorecam_equals_unchunked(small_cnn: nn.Module, images: torch.Tensor) -> None:
    target = ClassTarget(1)
    one = create_method("scorecam", layer="features", batch_size=1)(small_cnn, images, target)
    many = create_method("scorecam", layer="features", batch_size=1000)(small_cnn, images, target)
    odd = create_method("scorecam", layer="features", batch_size=7)(small_cnn, images, target)
    torch.testing.assert_close(one.map, many.map, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(odd.map, many.map, atol=1e-5, rtol=1e-4)


def test_five_gradient_cams_share_one_backward(
    small_cnn: nn.Module, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    explain(small_cnn, images, CAMS[:5])
    assert len(calls) == 1


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    sa, sb = a["state"], b["state"]
    assert isinstance(sa, dict) and isinstance(sb, dict) and sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    ga, gb = a["grad"], b["grad"]
    assert isinstance(ga, list) and isinstance(gb, list)
    for x, y in zip(ga, gb, strict=True):
        assert (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))


@pytest.mark.parametrize("method", available_methods())
def test_model_left_as_found(small_cnn: nn.Module, images: torch.Tensor, method: str) -> None:
    model = small_cnn.train()  # handed over in training mode, with mixed flags and a .grad
    model.features[0].weight.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = _snapshot(model)
    e = create_method(method, layer="features")(model, images, "pred")
    _same(before, _snapshot(model))
    assert _hooks(model) == 0
    # and the explanation was taken in eval mode: equal to one from the model in eval mode
    ref = create_method(method, layer="features")(model.eval(), images, "pred")
    torch.testing.assert_close(e.map, ref.map, atol=1e-5, rtol=1e-4)


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom after the layer")


@pytest.mark.parametrize("method", CAMS)
def test_no_hook_left_after_an_exception(method: str) -> None:
    model = Exploding().eval()
    with pytest.raises(RuntimeError, match="boom"):
        create_method(method, layer="conv")(model, torch.randn(1, 3, 8, 8), 0)
    assert _hooks(model) == 0


class RedMinusBlue(nn.Module):
    """A regressor: output = mean(red) - mean(blue), through a 1x1 conv and ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0  # red
            self.conv.weight[1, 2] = 1.0  # blue
            self.head.weight.copy_(torch.tensor([[1.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"])
def test_regression_value_and_minus_value(method: str) -> None:
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, :, :4] = 1.0  # left half red: raises the output
    x[0, 2, :, 4:] = 1.0  # right half blue: lowers it
    model = Model(RedMinusBlue().eval(), task="regression", labels=["price"])
    (up,) = explain(model, x, [method], target="value", layer="conv")
    (down,) = explain(model, x, [method], target="-value", layer="conv")
    assert up.target == "price" and down.target == "-price"
    left, right = (slice(None), slice(0, 3)), (slice(None), slice(5, 8))
    assert up.map[0][left].min() > 0 and up.map[0][right].abs().max() == 0
    assert down.map[0][right].min() > 0 and down.map[0][left].abs().max() == 0


def test_cam_on_model_without_spatial_layer_fails_with_reason() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    with pytest.raises(MethodNotApplicableError, match="no layer with a spatial output"):
        explain(mlp, torch.randn(1, 3, 8, 8), ["gradcam"])
    with pytest.raises(MethodNotApplicableError, match="not a spatial"):
        explain(mlp, torch.randn(1, 3, 8, 8), ["gradcam"], layer="1")


def test_unknown_layer_names_closest(small_cnn: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(LayerError, match=r"closest: 'features'.*seewhy layers"):
        explain(small_cnn, images, ["gradcam"], layer="featurs")


def test_all_targets_gives_one_explanation_per_class(
    small_cnn: nn.Module, images: torch.Tensor
) -> None:
    out = explain(small_cnn, images, ["gradcam", "hirescam"], target="all")
    assert [(e.target, e.method) for e in out] == [
        (str(c), m) for c in range(3) for m in ("gradcam", "hirescam")
    ]
    for c in range(3):
        (ref,) = explain(small_cnn, images, ["gradcam"], target=c)
        torch.testing.assert_close(out[2 * c].map, ref.map)


def test_bf16_model_gives_float32_maps_close_to_fp32(small_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    (ref,) = explain(small_cnn, x, ["gradcam"], target=0)
    half = SmallCNNCopy(small_cnn).to(torch.bfloat16)
    (low,) = explain(half, x, ["gradcam"], target=0)
    assert low.map.dtype == torch.float32
    r = torch.corrcoef(torch.stack([low.map.flatten(), ref.map.flatten()]))[0, 1]
    assert r > 0.95


def SmallCNNCopy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_maps_equal_cpu_maps(small_cnn: nn.Module, images: torch.Tensor) -> None:
    cpu = explain(small_cnn, images, CAMS)
    gpu_model = SmallCNNCopy(small_cnn).cuda()
    gpu = explain(gpu_model, images.cuda(), CAMS)
    for a, b in zip(cpu, gpu, strict=True):
        assert b.map.device.type == "cuda"
        torch.testing.assert_close(a.map, b.map.cpu(), atol=1e-4, rtol=1e-3)


def test_scorecam_fast_precision_agrees_with_float32() -> None:
    torch.manual_seed(0)
    model = torchvision_resnet18()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    fast = create_method("scorecam", layer="layer3", precision="auto")(model, x, ClassTarget(1))
    exact = create_method("scorecam", layer="layer3", precision="float32")(model, x, ClassTarget(1))
    for i in range(2):
        r = torch.corrcoef(torch.stack([fast.map[i].flatten(), exact.map[i].flatten()]))[0, 1]
        assert r >= 0.99


def torchvision_resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=5).eval()
