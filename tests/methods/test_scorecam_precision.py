"""Score-CAM's ``precision``: ``auto`` (bfloat16 masked forwards where native) and ``float32``.

Whether this machine computes bfloat16 natively is patched both ways, so each branch runs on
any CPU (autocast to bfloat16 works everywhere, natively or not).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seewhy.core import engine as engine_module
from seewhy.core.errors import UsageError
from seewhy.core.explanation import Explanation
from seewhy.core.targets import ClassTarget
from seewhy.methods.registry import create_method


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.fixture
def resnet() -> tuple[nn.Module, torch.Tensor]:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    return model, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))


def scorecam(model: nn.Module, x: torch.Tensor, **settings: object) -> Explanation:
    return create_method("scorecam", layer="layer3", **settings)(model, x, ClassTarget(1))


def test_auto_is_the_default_and_uses_bfloat16_where_native(
    resnet: tuple[nn.Module, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x = resnet
    exact = scorecam(model, x, precision="float32")
    assert exact.params["precision"] == "float32" and exact.params["forward_dtype"] == "float32"

    monkeypatch.setattr(engine_module, "bf16_native", lambda device: True)
    fast = scorecam(model, x)
    assert fast.params["precision"] == "auto" and fast.params["forward_dtype"] == "bfloat16"
    # bfloat16 scores move the softmax weights a little, never the picture.
    assert not torch.equal(fast.map, exact.map)
    for i in range(len(x)):
        assert pearson(fast.map[i], exact.map[i]) >= 0.99
        peak = float(exact.map[i].max())
        assert float((fast.map[i] - exact.map[i]).abs().max()) <= 0.1 * peak

    monkeypatch.setattr(engine_module, "bf16_native", lambda device: False)
    fallback = scorecam(model, x)
    assert fallback.params["forward_dtype"] == "float32"
    torch.testing.assert_close(fallback.map, exact.map, atol=0, rtol=0)


def test_auto_keeps_a_half_precision_model_in_its_own_dtype(
    resnet: tuple[nn.Module, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x = resnet
    monkeypatch.setattr(engine_module, "bf16_native", lambda device: True)
    e = scorecam(model.to(torch.bfloat16), x.to(torch.bfloat16))
    assert e.params["forward_dtype"] == "bfloat16"
    assert e.map.dtype == torch.float32 and bool(torch.isfinite(e.map).all())


def test_unknown_precision_names_the_choices(resnet: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = resnet
    with pytest.raises(UsageError, match=r"precision 'fp8'.*auto.*float32"):
        scorecam(model, x, precision="fp8")


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"),
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_cpu_bfloat16_counts_only_in_hardware(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, native: bool
) -> None:
    # oneDNN converts bfloat16 on any AVX-512 CPU (slower than float32 there): not native.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert engine_module.bf16_native(torch.device("cpu")) is native


def test_cuda_bfloat16_needs_ampere(monkeypatch: pytest.MonkeyPatch) -> None:
    for capability, native in [((7, 5), False), ((8, 0), True), ((9, 0), True)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d, c=capability: c)
        assert engine_module.bf16_native(torch.device("cuda")) is native
