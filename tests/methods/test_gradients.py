"""Gradient methods (saliency, inputxgrad, ig, smoothgrad, expected-gradients): axioms on
hand-weighted and small generated models, agreement with captum (and shap when installed),
memory-bounded batching, targets resolved on the clean input, the model left as found, and
TorchScript modules.

Models are built here with fixed seeds (no downloads); images are generated.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import seewhy.methods.gradients as gradients
from model_state import assert_same, snapshot
from seewhy import explain
from seewhy.core.errors import UsageError
from seewhy.core.model import Model
from seewhy.core.targets import ClassTarget
from seewhy.methods.gradients import (
    ExpectedGradients,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    quadrature,
)
from seewhy.methods.registry import available_methods, create_method, method_class

METHODS = ["saliency", "inputxgrad", "ig", "smoothgrad", "expected-gradients"]
SIGNED = {"inputxgrad", "ig", "expected-gradients"}


def _images(n: int, size: int = 16, seed: int = 1) -> Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


class HandLinear(nn.Module):
    """``out = W x + c`` on 2 x 1 x 3 inputs (6 features), 2 classes: every gradient is a row
    of ``W``, so every method's attribution is known by hand."""

    W = torch.tensor([[1.0, -2.0, 3.0, 0.5, -1.0, 2.0], [0.0, 1.0, -1.0, 2.0, 0.0, -3.0]])

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)
        with torch.no_grad():
            self.fc.weight.copy_(self.W)
            self.fc.bias.copy_(torch.tensor([0.5, -1.0]))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


X_LINEAR = torch.tensor([[[[1.0, 2.0, -1.0]], [[0.5, -2.0, 4.0]]]])  # [1, 2, 1, 3]


def smooth_cnn(outputs: int = 3) -> nn.Module:
    """Softplus/GELU CNN on 16 x 16 images, weights scaled so the path is far from linear."""
    torch.manual_seed(0)
    first, second = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, stride=2)
    with torch.no_grad():
        first.weight.mul_(4)
        second.weight.mul_(4)
    return nn.Sequential(
        first,
        nn.Softplus(),
        second,
        nn.GELU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, outputs),
    ).eval()


def relu_cnn() -> nn.Module:
    """Three 3x3 conv + ReLU blocks, random weights (seed 0), 16 x 16 images, 3 classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 3),
    ).eval()


def _column(model: nn.Module, x: Tensor, classes: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).gather(1, classes[:, None])[:, 0]


def _relative_gap(model: nn.Module, x: Tensor, steps: int, rule: str) -> Tensor:
    """|completeness gap| / |f(x) - f(0)| per image, for the predicted class."""
    e = IntegratedGradients(steps=steps, rule=rule)(model, x, "pred", batch_size=256)
    assert e.target_indices is not None
    delta = _column(model, x, e.target_indices) - _column(
        model, torch.zeros_like(x), e.target_indices
    )
    return (e.extras["completeness_gap"] / delta).abs()


class Shifted(nn.Module):
    """``z -> model(z + b)``: integrated gradients of it at ``x - b`` from the zero baseline
    are integrated gradients of ``model`` at ``x`` from the baseline ``b``."""

    def __init__(self, model: nn.Module, b: Tensor) -> None:
        super().__init__()
        self.model = model
        self.b: Tensor
        self.register_buffer("b", b)

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z + self.b)


# -- registry and settings ------------------------------------------------------------------


def test_registered_with_aliases_and_one_family() -> None:
    assert set(METHODS) <= set(available_methods())
    assert method_class("shap") is ExpectedGradients
    assert method_class("integrated-gradients") is IntegratedGradients
    assert method_class("input-x-gradient") is InputXGradient
    assert {method_class(m).signed for m in METHODS} == {True, False}
    assert {m for m in METHODS if method_class(m).signed} == SIGNED
    assert ExpectedGradients.uses_background and not IntegratedGradients.uses_background
    ig = create_method("ig", steps=32, rule="riemann-middle", layer="ignored")
    assert ig.params() == {
        "steps": 32,
        "baseline": "zeros",
        "rule": "riemann-middle",
        "precision": "float32",
    }


@pytest.mark.parametrize(
    ("cls", "settings", "word"),
    [
        (IntegratedGradients, {"steps": 0}, "steps"),
        (IntegratedGradients, {"steps": 2.5}, "steps"),
        (IntegratedGradients, {"rule": "simpson"}, "gauss-legendre"),
        (IntegratedGradients, {"rule": "riemann-trapezoid", "steps": 1}, ">= 2"),
        (IntegratedGradients, {"baseline": "blur"}, "zeros"),
        (SmoothGrad, {"samples": 0}, "samples"),
        (SmoothGrad, {"noise": -0.1}, "noise"),
        (SmoothGrad, {"noise": float("nan")}, "noise"),
        (ExpectedGradients, {"samples": True}, "samples"),
    ],
)
def test_bad_settings_are_usage_errors(cls: Any, settings: dict[str, Any], word: str) -> None:
    with pytest.raises(UsageError, match=word):
        cls(**settings)


def test_quadrature_rules_integrate_what_they_should() -> None:
    # Gauss-Legendre with n nodes is exact for degree 2n - 1: t^7 with 4 nodes.
    a, w = quadrature("gauss-legendre", 4)
    assert sum(wi * ai**7 for ai, wi in zip(a, w, strict=True)) == pytest.approx(1 / 8, abs=1e-14)
    # Every rule's weights sum to 1 (captum's trapezoid sums to (n-1)/n: see quadrature()).
    for rule in gradients.RULES:
        a, w = quadrature(rule, 5)
        assert sum(w) == pytest.approx(1.0, abs=1e-12)
        assert min(a) >= 0 and max(a) <= 1
    assert quadrature("riemann-trapezoid", 5)[0] == [0, 0.25, 0.5, 0.75, 1.0]
    assert quadrature("riemann-middle", 4)[0] == [0.125, 0.375, 0.625, 0.875]


# -- golden numbers on a hand-weighted linear model ------------------------------------------


def test_linear_model_golden_numbers() -> None:
    model = HandLinear().eval()
    # no background: explain draws from the batch itself, one row, below the minimum of 2
    exps = explain(model, X_LINEAR, METHODS, target=0)
    by = {e.method: e for e in exps}
    grad = torch.tensor([[[[1.0, -2.0, 3.0]], [[0.5, -1.0, 2.0]]]])
    x_times_w = torch.tensor([[[[1.0, -4.0, -3.0]], [[0.25, 2.0, 8.0]]]])
    torch.testing.assert_close(by["saliency"].raw["image"], grad)
    torch.testing.assert_close(by["saliency"].map, torch.tensor([[[1.0, 2.0, 3.0]]]))
    torch.testing.assert_close(by["inputxgrad"].raw["image"], x_times_w)
    torch.testing.assert_close(by["inputxgrad"].map, torch.tensor([[[1.25, -2.0, 5.0]]]))
    # IG from zeros and EG with the zero-baseline fallback are x * W on a linear model.
    torch.testing.assert_close(by["ig"].raw["image"], x_times_w)
    torch.testing.assert_close(by["expected-gradients"].raw["image"], x_times_w)
    assert "zero baseline" in by["expected-gradients"].extras["baseline_note"]
    assert by["expected-gradients"].params["background_rows"] == 0
    # completeness: sum = f(x) - f(0) = 1 - 4 - 3 + 0.25 + 2 + 8 = 4.25
    assert float(by["ig"].extras["completeness_gap"][0]) == pytest.approx(0.0, abs=1e-6)
    assert float(by["ig"].raw["image"].sum()) == pytest.approx(4.25, abs=1e-6)
    # SmoothGrad on a linear model: every noisy copy has the same gradient.
    torch.testing.assert_close(by["smoothgrad"].raw["image"], grad)
    for e in exps:
        assert e.signed == (e.method in SIGNED) and e.input_signed == {"image": e.signed}
        assert e.target == "0" and e.target_indices is not None
        assert e.target_indices.tolist() == [0] and e.layer is None
        torch.testing.assert_close(e.output, torch.tensor([[4.75, -9.0]]))
        assert e.raw["image"].dtype == torch.float32 and not e.raw["image"].requires_grad


def test_expected_gradients_with_one_baseline_row_on_a_linear_model_is_exact() -> None:
    # Two copies of b: every draw picks b, so EG = mean_j (x - b) * W = (x - b) * W exactly.
    model = HandLinear().eval()
    b = torch.tensor([[[[0.5, -1.0, 2.0]], [[1.0, 1.0, -2.0]]]])
    e = ExpectedGradients(samples=7)(model, X_LINEAR, 1, background=torch.cat([b, b]))
    want = (X_LINEAR - b) * HandLinear.W[1].view(1, 2, 1, 3)
    torch.testing.assert_close(e.raw["image"], want)
    assert "baseline_note" not in e.extras and e.params["background_rows"] == 2
    # a single row is below the minimum of 2: the zero baseline, said so
    one = ExpectedGradients(samples=7)(model, X_LINEAR, 1, background=b)
    torch.testing.assert_close(one.raw["image"], X_LINEAR * HandLinear.W[1].view(1, 2, 1, 3))
    assert "got 1" in one.extras["baseline_note"]


# -- axioms on smooth and ReLU models ---------------------------------------------------------


def test_ig_completeness_within_one_percent_at_64_gauss_legendre_steps() -> None:
    model, x = smooth_cnn(), _images(3)
    e = IntegratedGradients(steps=64)(model, x, "pred")
    assert e.target_indices is not None
    delta = _column(model, x, e.target_indices) - _column(
        model, torch.zeros_like(x), e.target_indices
    )
    # the gap the method reports is the gap computed here from the model
    gap = e.raw["image"].flatten(1).sum(1) - delta
    torch.testing.assert_close(e.extras["completeness_gap"], gap, atol=1e-5, rtol=0)
    assert bool((gap.abs() <= 0.01 * delta.abs()).all())
    assert float(delta.abs().min()) > 0.3  # not a vacuous check on a flat model


def test_gauss_legendre_converges_faster_than_riemann_on_a_smooth_model() -> None:
    model, x = smooth_cnn(), _images(3)
    gl = _relative_gap(model, x, 8, "gauss-legendre")
    middle = _relative_gap(model, x, 8, "riemann-middle")
    trapezoid = _relative_gap(model, x, 8, "riemann-trapezoid")
    assert float(gl.max()) < 1e-4  # measured 2.1e-5
    assert float(middle.min()) > 1e-4 and float(trapezoid.min()) > 1e-4  # 4.3e-4, 1.2e-3


def test_relu_cnn_needs_128_gauss_legendre_steps_for_one_percent() -> None:
    # The number stated in IntegratedGradients' docstring. Images whose f(x) - f(0) is below
    # the median are left out: a near-zero difference makes any relative gap blow up.
    model, x = relu_cnn(), _images(16)
    with torch.no_grad():
        classes = model(x).argmax(1)
    delta = (_column(model, x, classes) - _column(model, torch.zeros_like(x), classes)).abs()
    keep = delta >= delta.median()
    gaps = {n: _relative_gap(model, x, n, "gauss-legendre") for n in (16, 64, 128)}
    assert float(gaps[16][keep].max()) > 0.02  # measured 2.9%
    assert float(gaps[64][keep].max()) > 0.01  # 1.05%: 64 is not quite enough
    assert float(gaps[64].median()) < 0.01  # but enough for the median image (0.5%)
    assert float(gaps[128][keep].max()) < 0.01  # 0.39%


def test_smoothgrad_without_noise_is_saliency_exactly() -> None:
    model, x = smooth_cnn(), _images(3)
    sal, sg = explain(model, x, [Saliency(), SmoothGrad(noise=0.0)], batch_size=2)
    assert torch.equal(sg.raw["image"], sal.raw["image"])
    assert torch.equal(sg.map, sal.map)
    assert not sg.signed and float(sg.extras["noise_std"].abs().max()) == 0.0


def test_expected_gradients_with_one_baseline_is_ig_from_it() -> None:
    model, x = smooth_cnn(), _images(1)
    b = _images(1, seed=9)
    target = int(model(x).argmax())
    ig_b = IntegratedGradients(steps=64)(Shifted(model, b), x - b, target).raw["image"]
    ig_0 = IntegratedGradients(steps=64)(model, x, target).raw["image"]
    eg = ExpectedGradients(samples=2000)(
        model, x, target, background=torch.cat([b, b]), batch_size=500
    ).raw["image"]
    # Monte-Carlo over alpha only: measured relative L2 error 0.8%; IG from zeros is 72% away.
    assert float((eg - ig_b).norm() / ig_b.norm()) < 0.05
    assert float((ig_0 - ig_b).norm() / ig_b.norm()) > 0.5


# -- agreement with captum (and shap) ----------------------------------------------------------


def _allclose(a: Tensor, b: Tensor) -> None:
    scale = float(b.detach().abs().max())
    assert scale > 0
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_saliency_and_input_x_gradient_agree_with_captum() -> None:
    captum = pytest.importorskip("captum.attr")
    model, x = smooth_cnn(), _images(3)
    classes = model(x).argmax(1)
    sal, ixg = explain(model, x, ["saliency", "inputxgrad"], batch_size=2)
    _allclose(sal.raw["image"].abs(), captum.Saliency(model).attribute(x, classes, abs=True))
    _allclose(ixg.raw["image"], captum.InputXGradient(model).attribute(x, classes))


@pytest.mark.parametrize(
    ("rule", "captum_rule", "factor"),
    [
        ("gauss-legendre", "gausslegendre", 1.0),
        ("riemann-middle", "riemann_middle", 1.0),
        ("riemann-left", "riemann_left", 1.0),
        # captum's trapezoid weights sum to (n-1)/n: its attributions are ours times that
        ("riemann-trapezoid", "riemann_trapezoid", 19 / 20),
    ],
)
def test_ig_agrees_with_captum_at_the_same_rule(rule: str, captum_rule: str, factor: float) -> None:
    captum = pytest.importorskip("captum.attr")
    model, x = relu_cnn(), _images(3)
    classes = model(x).argmax(1)
    ours = IntegratedGradients(steps=20, rule=rule)(model, x, "pred", batch_size=7)
    theirs = captum.IntegratedGradients(model).attribute(
        x, target=classes, n_steps=20, method=captum_rule
    )
    _allclose(ours.raw["image"] * factor, theirs)


def test_smoothgrad_agrees_with_captum_noise_tunnel_given_the_same_noise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    captum = pytest.importorskip("captum.attr")
    from captum.attr._core.noise_tunnel import NoiseTunnel

    model, x = smooth_cnn(), _images(2)
    classes = model(x).argmax(1)
    seeds, samples, level = [11, 22], 8, 0.2
    e = SmoothGrad(samples=samples, noise=level)(model, x, "pred", seeds=seeds, batch_size=5)
    sigma = level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    torch.testing.assert_close(e.extras["noise_std"], sigma)
    noise = []  # the documented draws: row i's copies in order from a generator seeded seeds[i]
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s)
        noise += [torch.randn(x.shape[1:], generator=g) * sigma[i] for _ in range(samples)]

    def same_noise(inp: Tensor, stdev: float, n: int) -> Tensor:
        return inp.repeat_interleave(n, dim=0) + torch.stack(noise)

    monkeypatch.setattr(NoiseTunnel, "_add_noise_to_input", staticmethod(same_noise))
    tunnel = captum.NoiseTunnel(captum.Saliency(model))
    mean_grad = tunnel.attribute(
        x, nt_type="smoothgrad", nt_samples=samples, stdevs=1.0, target=classes, abs=False
    )
    _allclose(e.raw["image"], mean_grad)
    torch.testing.assert_close(e.map, mean_grad.abs().amax(dim=1))
    # captum's default abs=True averages |grad|: another map (why we say which one we give)
    mean_abs = tunnel.attribute(x, nt_type="smoothgrad", nt_samples=samples, target=classes)
    assert float((mean_abs - mean_grad.abs()).abs().max()) > 1e-3 * float(mean_abs.max())


def _pearson(a: Tensor, b: Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_expected_gradients_agrees_with_captum_gradient_shap() -> None:
    captum = pytest.importorskip("captum.attr")
    model, x, bg = smooth_cnn(), _images(2), _images(6, seed=5)
    classes = model(x).argmax(1)
    ours = ExpectedGradients(samples=1000)(model, x, "pred", background=bg, batch_size=500)
    torch.manual_seed(0)  # captum draws from the global generator
    theirs = captum.GradientShap(model).attribute(
        x, baselines=bg, n_samples=1000, stdevs=0.0, target=classes
    )
    for i in range(2):  # measured r = 0.9996 and 0.997
        assert _pearson(ours.raw["image"][i], theirs[i].detach()) >= 0.99


def test_expected_gradients_agrees_with_shap_gradient_explainer() -> None:
    shap = pytest.importorskip("shap", reason="shap (the tabular extra) is not installed")
    model, x, bg = smooth_cnn(), _images(2), _images(6, seed=5)
    classes = model(x).argmax(1).tolist()
    ours = ExpectedGradients(samples=1000)(model, x, "pred", background=bg, batch_size=500)
    explainer = shap.GradientExplainer(model, bg, batch_size=500)
    values = explainer.shap_values(x, nsamples=1000, rseed=0)
    for i, c in enumerate(classes):
        # shap < 0.45: a list per output; later: one array with the outputs last
        theirs = values[c][i] if isinstance(values, list) else values[i, ..., c]
        # measured r = 0.9993 and 0.9988
        assert _pearson(ours.raw["image"][i], torch.as_tensor(theirs).float()) >= 0.99


# -- batching, seeds ----------------------------------------------------------------------------


class Counting(nn.Module):
    """Records the rows of every forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.rows.append(int(x.shape[0]))
        return self.model(x)


@pytest.mark.parametrize(
    ("method", "rows"),
    [
        # clean pass 3 + 3 x 50 path points + 3 baselines (the completeness gap)
        (IntegratedGradients(steps=50), 3 + 150 + 3),
        (SmoothGrad(samples=50), 3 + 150),
        (ExpectedGradients(samples=50), 3 + 150),
    ],
)
def test_no_forward_sends_more_than_batch_size(method: Any, rows: int) -> None:
    model, x = Counting(smooth_cnn()), _images(3)
    bg = _images(4, seed=3)
    chunked = method(model, x, "pred", batch_size=7, background=bg, seeds=[1, 2, 3])
    assert max(model.rows) <= 7 and sum(model.rows) == rows
    whole = method(model, x, "pred", batch_size=1000, background=bg, seeds=[1, 2, 3])
    torch.testing.assert_close(chunked.raw["image"], whole.raw["image"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(chunked.map, whole.map, atol=1e-5, rtol=1e-4)


def test_saliency_and_input_x_gradient_share_one_pass() -> None:
    model, x = Counting(smooth_cnn()), _images(3)
    sal, ixg, sg0 = explain(model, x, ["saliency", "inputxgrad", "smoothgrad"], noise=0)
    assert model.rows == [3]  # one forward (and one backward) for all three
    torch.testing.assert_close(ixg.raw["image"], x * sal.raw["image"])
    assert torch.equal(sg0.raw["image"], sal.raw["image"])


def test_batched_equals_per_sample_with_sample_ids() -> None:
    model, x = smooth_cnn(), _images(3)
    bg, ids = _images(5, seed=4), ["a", "b", "c"]
    settings = {"steps": 12, "samples": 12}
    together = explain(
        model, x, METHODS, sample_ids=ids, seed=3, background=bg, batch_size=4, **settings
    )
    for i, sid in enumerate(ids):
        alone = explain(
            model, x[i : i + 1], METHODS, sample_ids=[sid], seed=3, background=bg, **settings
        )
        for a, b in zip(together, alone, strict=True):
            assert a.method == b.method
            torch.testing.assert_close(
                a.raw["image"][i : i + 1], b.raw["image"], atol=1e-5, rtol=1e-4
            )
    # and the draws do depend on the seed
    other = explain(model, x, ["smoothgrad"], sample_ids=ids, seed=4, samples=12)[0]
    assert float((other.raw["image"] - together[3].raw["image"]).abs().max()) > 1e-4


# -- targets --------------------------------------------------------------------------------------

RAMP = torch.linspace(0.1, 1.0, 48).view(1, 3, 4, 4)


class FlipsOnThePath(nn.Module):
    """Logit 0 is ``s + 0.1 s^2`` with ``s = sum(x)``; logit 1 a constant just below logit 0 on
    the clean ramp. Every point of the path from zeros (and the zero baseline) predicts class 1;
    the clean ramp predicts class 0."""

    def __init__(self) -> None:
        super().__init__()
        s = float(RAMP.sum())
        self.level = 0.95 * (s + 0.1 * s * s)

    def forward(self, x: Tensor) -> Tensor:
        s = x.flatten(1).sum(1)
        return torch.stack([s + 0.1 * s * s, torch.full_like(s, self.level)], dim=1)


@pytest.mark.parametrize("method", METHODS)
def test_pred_is_resolved_on_the_clean_input(method: str) -> None:
    model = FlipsOnThePath()
    assert model(RAMP).argmax(1).tolist() == [0]
    assert model(0.9 * RAMP).argmax(1).tolist() == [1]  # points on the path pick class 1
    (e,) = explain(model, RAMP, [method], background=torch.zeros(2, 3, 4, 4), samples=64)
    assert e.target_indices is not None and e.target_indices.tolist() == [0]
    assert e.target == "pred"
    # class 1 is constant: a re-decided target would give zero maps (the smallest entry of
    # IG's is 0.1 x (1 + 0.1 s) = 0.36)
    assert float(e.raw["image"].abs().min()) > 0.2
    if method == "ig":
        # quadratic along the path: Gauss-Legendre is exact; f0(x) - f0(0) = s + 0.1 s^2
        s = float(RAMP.sum())
        assert float(e.raw["image"].sum()) == pytest.approx(s + 0.1 * s * s, rel=1e-5)
        assert abs(float(e.extras["completeness_gap"][0])) < 1e-3


def test_regression_value_and_minus_value_give_negated_signed_maps() -> None:
    model = Model(smooth_cnn(outputs=1), task="regression", labels=["price"])
    x, bg = _images(2), _images(3, seed=7)
    up = explain(model, x, METHODS, target="value", background=bg, steps=8, samples=8)
    down = explain(model, x, METHODS, target="-value", background=bg, steps=8, samples=8)
    for a, b in zip(up, down, strict=True):
        assert (a.target, b.target) == ("price", "-price")
        torch.testing.assert_close(b.raw["image"], -a.raw["image"])
        if a.signed:
            torch.testing.assert_close(b.map, -a.map)
        else:  # |gradient| maps: the same for both signs
            torch.testing.assert_close(b.map, a.map)
        assert "opposite" not in a.extras and "opposite" not in b.extras
        assert float(a.map.abs().max()) > 0


def test_target_all_gives_one_explanation_per_class() -> None:
    model, x = smooth_cnn(), _images(2)
    exps = explain(model, x, ["ig", "saliency"], target="all", steps=8)
    assert [(e.method, e.target) for e in exps] == [
        (m, str(k)) for k in range(3) for m in ("ig", "saliency")
    ]
    for k in range(3):
        ig = exps[2 * k]
        assert ig.target_indices is not None and ig.target_indices.tolist() == [k, k]
        alone = IntegratedGradients(steps=8)(model, x, ClassTarget(k))
        torch.testing.assert_close(ig.raw["image"], alone.raw["image"])
    # the three classes' maps differ
    assert float((exps[0].map - exps[2].map).abs().max()) > 1e-4


# -- the model left as found; TorchScript ----------------------------------------------------------


class FailsOnCall(nn.Module):
    """A CNN with batch-norm and dropout that raises on its ``n``-th forward."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.net = nn.Sequential(self.conv, nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(4 * 14 * 14, 2)
        self.n: int = n
        self.calls: int = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("boom mid-method")
        return self.head(self.net(x).flatten(1))


def _handed_over(model: FailsOnCall) -> FailsOnCall:
    model.train()  # training mode, one parameter frozen, a .grad set
    assert model.conv.bias is not None
    model.conv.bias.requires_grad_(False)
    model.head.weight.grad = torch.full_like(model.head.weight, 3.0)
    return model


@pytest.mark.parametrize("method", METHODS)
def test_model_left_as_found_after_success_and_after_an_error(method: str) -> None:
    torch.manual_seed(0)
    model = _handed_over(FailsOnCall(n=10**9))
    x, bg = _images(3), _images(2, seed=2)
    before = snapshot(model)
    settings = {"steps": 6, "samples": 6}
    e = create_method(method, **settings)(model, x, "pred", background=bg, batch_size=4)
    assert_same(before, snapshot(model))
    # taken in eval mode: equal to the explanation of a copy in eval mode
    ref = create_method(method, **settings)(copy.deepcopy(model).eval(), x, "pred", background=bg)
    torch.testing.assert_close(e.raw["image"], ref.raw["image"], atol=1e-6, rtol=1e-5)
    model.calls, model.n = 0, 3  # fails after the clean pass, inside the path passes
    if method in ("saliency", "inputxgrad"):
        model.n = 1  # these have only the clean pass
    with pytest.raises(RuntimeError, match="boom"):
        create_method(method, **settings)(model, x, "pred", background=bg, batch_size=2)
    assert_same(before, snapshot(model))
    assert model.training and model.conv.weight.requires_grad


def test_ig_on_a_traced_model_equals_ig_on_the_module() -> None:
    model, x = smooth_cnn(), _images(2)
    traced = torch.jit.trace(model, x)
    assert isinstance(traced, torch.jit.ScriptModule)
    a = IntegratedGradients(steps=16)(model, x, "pred", batch_size=8)
    b = IntegratedGradients(steps=16)(traced, x, "pred", batch_size=8)
    torch.testing.assert_close(b.raw["image"], a.raw["image"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(b.extras["completeness_gap"], a.extras["completeness_gap"])
