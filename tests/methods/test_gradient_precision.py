"""bfloat16 ``precision`` of the methods with many points (ig, smoothgrad, expected-gradients).

This CPU does not compute bfloat16 natively, so the tests that run the bfloat16 path declare it
native (``bf16_native`` patched): autocast then runs emulated, slower but with the same
arithmetic, which is what the numbers below check. Speed is measured in benchmarks/ only.
"""

from __future__ import annotations

import pytest
import torch
from test_gradients import _images as images
from test_gradients import smooth_cnn
from torch import Tensor

import seewhy.core.engine as engine
from seewhy import explain
from seewhy.core.errors import UsageError
from seewhy.methods.gradients import ExpectedGradients, IntegratedGradients, SmoothGrad
from seewhy.methods.registry import create_method, parse_method_spec


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "bf16_native", lambda device: True)


def _pearson(a: Tensor, b: Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_ig_bfloat16_completeness_within_two_percent(native: None) -> None:
    model, x = smooth_cnn(), images(3)
    e = IntegratedGradients(steps=64, precision="bfloat16")(model, x, "pred")
    exact = IntegratedGradients(steps=64)(model, x, "pred")
    assert e.params["forward_dtype"] == "bfloat16"
    assert exact.params["forward_dtype"] == "float32"
    assert e.target_indices is not None
    with torch.no_grad():
        fx = model(x).gather(1, e.target_indices[:, None])[:, 0]
        fb = model(torch.zeros_like(x)).gather(1, e.target_indices[:, None])[:, 0]
    delta = fx - fb
    gap = e.raw["image"].flatten(1).sum(1) - delta
    assert float(delta.abs().min()) > 0.3
    assert bool((gap.abs() <= 0.02 * delta.abs()).all()), (gap / delta).tolist()
    # bfloat16 really ran: the attribution differs from the float32 one, yet agrees closely
    assert not torch.equal(e.raw["image"], exact.raw["image"])
    assert _pearson(e.raw["image"], exact.raw["image"]) > 0.99
    # the clean pass stays float32: the same output and target
    torch.testing.assert_close(e.output, exact.output, rtol=0, atol=0)


@pytest.mark.parametrize(
    "method", ["smoothgrad(samples=8,precision=bfloat16)", "shap(samples=8,precision=bfloat16)"]
)
def test_smoothgrad_and_expected_gradients_bfloat16_agree_with_float32(
    native: None, method: str
) -> None:
    model, x = smooth_cnn(), images(4)
    low = explain(model, x, [method], target="pred", seed=3)[0]
    exact = explain(model, x, [method.replace("bfloat16", "float32")], target="pred", seed=3)[0]
    assert low.params["forward_dtype"] == "bfloat16"
    assert not torch.equal(low.raw["image"], exact.raw["image"])
    assert _pearson(low.raw["image"], exact.raw["image"]) > 0.99


def test_bfloat16_refused_where_not_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "bf16_native", lambda device: False)
    model, x = smooth_cnn(), images(2)
    with pytest.raises(UsageError, match=r"ig\(precision=bfloat16\).*natively.*float32 or auto"):
        IntegratedGradients(steps=4, precision="bfloat16")(model, x, "pred")
    # auto falls back to the model's own precision
    e = IntegratedGradients(steps=4, precision="auto")(model, x, "pred")
    assert e.params["forward_dtype"] == "float32"


def test_bfloat16_refused_on_a_double_model(native: None) -> None:
    model, x = smooth_cnn().double(), images(2).double()
    with pytest.raises(UsageError, match="float64 model"):
        SmoothGrad(samples=2, precision="bfloat16")(model, x, "pred")
    e = SmoothGrad(samples=2, precision="auto")(model, x, "pred")
    assert e.params["forward_dtype"] == "float64"


def test_auto_is_bfloat16_where_native(native: None) -> None:
    model, x = smooth_cnn(), images(2)
    e = ExpectedGradients(samples=4, precision="auto")(model, x, "pred")
    assert e.params["forward_dtype"] == "bfloat16"


def test_unknown_precision_is_a_usage_error_and_cli_spec_parses() -> None:
    with pytest.raises(UsageError, match="precision 'float16' is unknown"):
        IntegratedGradients(precision="float16")
    name, settings = parse_method_spec("ig(steps=8,precision=bfloat16)")
    m = create_method(name, **settings)
    assert m.params()["precision"] == "bfloat16" and m.params()["steps"] == 8
