"""Contracts every CAM keeps: batching, chunking, hooks released, model left as found, signs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from model_state import assert_same, snapshot
from seewhy import explain
from seewhy.core.errors import LayerError, MethodNotApplicableError
from seewhy.core.targets import ClassTarget
from seewhy.methods.registry import available_methods, create_method, for_trees
from seewhy.models.model import Model

CAMS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam"]


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_every_cam_is_registered() -> None:
    assert set(CAMS) <= set(available_methods())


# Score-CAM's numbers must not depend on the machine: precision="auto" would run bfloat16
# where the hardware has it (tests/methods/test_scorecam_precision.py patches that check).
EXACT = {"precision": "float32"}


def test_batched_equals_per_sample(small_cnn: nn.Module, images: torch.Tensor) -> None:
    together = explain(small_cnn, images, CAMS, layer="features", **EXACT)
    for i in range(images.shape[0]):
        alone = explain(small_cnn, images[i : i + 1], CAMS, layer="features", **EXACT)
        for a, b in zip(together, alone, strict=True):
            torch.testing.assert_close(a.map[i : i + 1], b.map, atol=1e-5, rtol=1e-4)
            assert a.method == b.method


def test_explain_chunks_equal_one_batch(small_cnn: nn.Module, images: torch.Tensor) -> None:
    whole = explain(small_cnn, images, CAMS, batch_size=8, **EXACT)
    chunked = explain(small_cnn, images, CAMS, batch_size=2, **EXACT)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a.map, b.map, atol=1e-5, rtol=1e-4)
        assert a.output is not None and b.output is not None
        torch.testing.assert_close(a.output, b.output)


def test_chunked_scorecam_equals_unchunked(small_cnn: nn.Module, images: torch.Tensor) -> None:
    target = ClassTarget(1)
    scorecam = create_method("scorecam", layer="features", **EXACT)
    one = scorecam(small_cnn, images, target, batch_size=1)
    many = scorecam(small_cnn, images, target, batch_size=1000)
    odd = scorecam(small_cnn, images, target, batch_size=7)
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


@pytest.mark.parametrize("method", [m for m in available_methods() if not for_trees(m)])
def test_model_left_as_found(small_cnn: nn.Module, images: torch.Tensor, method: str) -> None:
    model = small_cnn.train()  # handed over in training mode, with mixed flags and a .grad
    model.features[0].weight.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = snapshot(model)
    e = create_method(method, layer="features", **EXACT)(model, images, "pred")
    assert_same(before, snapshot(model))
    assert _hooks(model) == 0
    # and the explanation was taken in eval mode: equal to one from the model in eval mode
    ref = create_method(method, layer="features", **EXACT)(model.eval(), images, "pred")
    torch.testing.assert_close(e.map, ref.map, atol=1e-5, rtol=1e-4)


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom after the layer")


@pytest.mark.parametrize("method", CAMS)
@pytest.mark.parametrize("layer", ["conv", "auto"])
def test_no_hook_left_and_state_restored_after_an_exception(method: str, layer: str) -> None:
    model = Exploding().train()  # handed over in training mode, one parameter frozen
    model.conv.bias.requires_grad_(False)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):  # "auto" fails in its dry run already
        create_method(method, layer=layer)(model, torch.randn(1, 3, 8, 8), 0)
    assert _hooks(model) == 0
    assert_same(before, snapshot(model))
    assert model.training and model.conv.weight.requires_grad


def test_auto_layer_leaves_a_training_model_as_found(
    small_cnn: nn.Module, images: torch.Tensor
) -> None:
    # The dry run that finds the layer must not update batch-norm statistics either.
    model = small_cnn.train()
    model.fc.bias.requires_grad_(False)
    model.features[0].weight.grad = torch.full_like(model.features[0].weight, 2.0)
    before = snapshot(model)
    exps = explain(model, images, CAMS, target="all")
    assert_same(before, snapshot(model))
    assert _hooks(model) == 0 and {e.layer for e in exps} == {"features"}


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


def test_regression_scorecam_weighs_what_raises_or_lowers() -> None:
    # Masks: the red half and the blue half. Masked inputs score +0.5 (red kept) and -0.5 (blue
    # kept), the blank input 0, so value weighs the channels by the change [0.5, -0.5] and
    # -value by [-0.5, 0.5]; each map is relu(its weight) on its half.
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, :, :4] = 1.0
    x[0, 2, :, 4:] = 1.0
    model = Model(RedMinusBlue().eval(), task="regression")
    for target, (left, right) in [("value", (0.5, 0.0)), ("-value", (0.0, 0.5))]:
        (e,) = explain(model, x, ["scorecam"], target=target, layer="conv", **EXACT)
        expected = torch.tensor([left] * 4 + [right] * 4).expand(8, 8)
        torch.testing.assert_close(e.map[0], expected, atol=1e-6, rtol=1e-5)
        assert e.target == target


@pytest.mark.parametrize("method", CAMS)
def test_cam_on_model_without_spatial_layer_fails_with_reason(method: str) -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    with pytest.raises(MethodNotApplicableError, match="no layer with a spatial output"):
        explain(mlp, torch.randn(1, 3, 8, 8), [method])
    with pytest.raises(MethodNotApplicableError, match="not a spatial"):
        explain(mlp, torch.randn(1, 3, 8, 8), [method], layer="1")
    assert _hooks(mlp) == 0


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


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_models_give_float32_maps_for_every_cam(
    small_cnn: nn.Module, dtype: torch.dtype
) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    refs = explain(small_cnn, x, CAMS, target=0, **EXACT)
    half = copy.deepcopy(small_cnn).to(dtype)
    before = snapshot(half)
    lows = explain(half, x, CAMS, target=0)  # a float32 batch: cast to the model's dtype
    assert_same(before, snapshot(half))
    assert all(p.dtype == dtype for p in half.parameters()) and _hooks(half) == 0
    for ref, low in zip(refs, lows, strict=True):
        assert low.method == ref.method
        assert low.map.dtype == torch.float32 and low.map.shape == (2, 32, 32), low.method
        assert low.output is not None and low.output.dtype == torch.float32
        assert torch.isfinite(low.map).all(), low.method
        for i in range(2):
            pair = torch.stack([low.map[i].flatten(), ref.map[i].flatten()])
            assert torch.corrcoef(pair)[0, 1] > 0.99, (low.method, i)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_maps_equal_cpu_maps(small_cnn: nn.Module, images: torch.Tensor) -> None:
    # Score-CAM in float32 on both sides: precision="auto" would pick bfloat16 where native.
    cpu = explain(small_cnn, images, CAMS, precision="float32")
    gpu_model = copy.deepcopy(small_cnn).cuda()
    gpu = explain(gpu_model, images.cuda(), CAMS, precision="float32")
    for a, b in zip(cpu, gpu, strict=True):
        assert b.map.device.type == "cuda"
        torch.testing.assert_close(a.map, b.map.cpu(), atol=1e-4, rtol=1e-3)


def torchvision_resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=5).eval()


def test_explain_a_loaded_model_on_paths_and_pil_images(tmp_path: Path) -> None:
    from seewhy import load_model

    model = load_model("timm:test_resnet", num_classes=3, device="cpu")
    pre = model.preprocess
    assert (pre.source, pre.size, pre.interpolation) == ("timm", (160, 160), "bilinear")
    rng = np.random.default_rng(0)
    pils = [Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)) for _ in range(2)]
    pils[0].save(tmp_path / "a.png")
    # the batch as timm's own eval transform makes it (resize, centre crop, normalise)
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config(model=model.module))
    batch = torch.stack([transform(p) for p in pils])
    methods = ["gradcam", "eigencam"]
    from_files = explain(model, [tmp_path / "a.png", pils[1]], methods, target="pred")
    from_tensor = explain(model.module, batch, methods, target="pred")
    with torch.no_grad():
        logits = model.module(batch)
    for a, b in zip(from_files, from_tensor, strict=True):
        assert a.layer == b.layer == "layer4" and a.map.shape == (2, 160, 160)
        assert a.output is not None
        torch.testing.assert_close(a.output, logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a.map, b.map, atol=1e-4, rtol=1e-3)
        assert a.target_indices is not None
        assert a.target_indices.tolist() == logits.argmax(1).tolist()
    # one path alone, and a string path, are a batch of one
    (single,) = explain(model, str(tmp_path / "a.png"), ["gradcam"], target=1)
    (ref,) = explain(model.module, batch[:1], ["gradcam"], target=1)
    torch.testing.assert_close(single.map, ref.map, atol=1e-4, rtol=1e-3)


def test_a_vit_layer_whose_patch_tokens_get_no_gradient_is_refused_not_drawn_blank() -> None:
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("test_vit", pretrained=False, num_classes=3).eval()
    size = vit.pretrained_cfg["input_size"][1:]
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    last = f"blocks.{len(vit.blocks) - 1}"
    # After the last block only the class token reaches the head: its patch tokens' gradient
    # is exactly zero, and the map would be blank.
    with pytest.raises(LayerError, match=r"class \(prefix\) tokens.*norm1"):
        explain(vit, x, ["gradcam"], layer=last)
    (e,) = explain(vit, x, ["gradcam"], layer=f"{last}.norm1")
    assert float(e.map.std()) > 0
