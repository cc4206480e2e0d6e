"""CAMs on single-logit binary classifiers, multilabel models and regressors; ``batch_size`` as
the largest batch any forward sends; layers that run twice; TorchScript refused up front.

The models are hand-weighted 1x1 convolutions on colour channels, read through ReLU and global
average pooling, so the gradients and the maps are known exactly (8x8 images, the layer grid is
the input grid and the upsampling is the identity).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seewhy import explain
from seewhy.core.errors import MethodNotApplicableError, UsageError
from seewhy.core.inputs import Inputs
from seewhy.core.targets import ClassTarget, PredictedClass, RegressionTarget
from seewhy.methods.base import Method
from seewhy.methods.cam import CAM
from seewhy.methods.registry import create_method
from seewhy.models.model import Model

GRADIENT_CAMS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"]
CAMS = [*GRADIENT_CAMS, "eigencam", "scorecam"]
EXACT = {"precision": "float32"}  # Score-CAM's maps must not depend on the machine


class ColourLinear(nn.Module):
    """``out = head(mean(act(conv(x))))`` with a 1x1 conv that copies the colour channels.

    The CAM layer is ``act`` (the ReLU), where the gradient of a head row is that row / 64 at
    every position (at ``conv`` the ReLU would zero it wherever a colour is absent).
    """

    def __init__(self, head: list[list[float]], scale: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, len(head), bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.head.weight.copy_(scale * torch.tensor(head))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.act(self.conv(x))).flatten(1))


def stripes(red: int, green: int, blue: int) -> Tensor:
    """One 8x8 image: the first ``red`` columns red, the next ``green`` green, then blue."""
    x = torch.zeros(1, 3, 8, 8)
    edges = [0, red, red + green, red + green + blue]
    for c in range(3):
        x[0, c, :, edges[c] : edges[c + 1]] = 1.0
    return x


def columns(values: list[float]) -> Tensor:
    """An 8x8 map whose column ``j`` holds ``values[j]``."""
    return torch.tensor(values).expand(8, 8)


# ---------------------------------------------------------------------------------------------
# Binary: z = mean(red) - mean(blue). Two red columns and six blue ones: z = (16 - 48)/64 < 0.


def binary() -> nn.Module:
    return ColourLinear([[1.0, 0.0, -1.0]]).eval()


def two_column() -> nn.Module:
    """The same classifier with two logits ``[-z, z]``: its class c is the binary class c."""
    return ColourLinear([[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]]).eval()


NEGATIVE = stripes(2, 0, 6)  # z = -0.5: predicted negative
POSITIVE = stripes(6, 0, 2)  # z = +0.5: predicted positive


def test_binary_pred_explains_the_negated_logit_when_negative() -> None:
    # d(-z)/dA = (-1, 0, +1)/64 at every position: Grad-CAM weighs blue +1/64, red -1/64.
    (e,) = explain(binary(), NEGATIVE, ["gradcam"], target="pred", layer="act")
    assert e.target_indices is not None and e.target_indices.tolist() == [0]
    assert e.output is not None and e.output.tolist() == [[-0.5]]
    torch.testing.assert_close(e.map[0], columns([0.0] * 2 + [1 / 64] * 6))
    (pos,) = explain(binary(), POSITIVE, ["gradcam"], target="pred", layer="act")
    assert pos.target_indices is not None and pos.target_indices.tolist() == [1]
    torch.testing.assert_close(pos.map[0], columns([1 / 64] * 6 + [0.0] * 2))


def test_binary_class_targets_explain_either_class() -> None:
    model = Model(binary(), labels=["benign", "malignant"])
    (neg,) = explain(model, POSITIVE, ["gradcam"], target="benign", layer="act")
    (pos,) = explain(model, POSITIVE, ["gradcam"], target=1, layer="act")
    assert neg.target == "benign" and pos.target == "malignant"
    assert neg.target_indices is not None and neg.target_indices.tolist() == [0]
    assert pos.target_indices is not None and pos.target_indices.tolist() == [1]
    torch.testing.assert_close(neg.map[0], columns([0.0] * 6 + [1 / 64] * 2))
    torch.testing.assert_close(pos.map[0], columns([1 / 64] * 6 + [0.0] * 2))
    # the scores the maps explain: the logit for the positive class, its negation otherwise
    out = binary()(POSITIVE)
    assert ClassTarget(0)(out).tolist() == [-0.5] and ClassTarget(1)(out).tolist() == [0.5]


@pytest.mark.parametrize("target", ["pred", 0, 1, "all"])
def test_binary_equals_the_two_logit_model(target: str | int) -> None:
    x = torch.cat([NEGATIVE, POSITIVE, stripes(3, 2, 3) + 0.3 * stripes(0, 0, 8)])
    ours = explain(binary(), x, CAMS, target=target, layer="act", **EXACT)
    ref = explain(two_column(), x, CAMS, target=target, layer="act", **EXACT)
    assert len(ours) == len(ref) == (2 * len(CAMS) if target == "all" else len(CAMS))
    for a, b in zip(ours, ref, strict=True):
        assert a.method == b.method and a.target == b.target
        assert a.target_indices is not None and b.target_indices is not None
        assert a.target_indices.tolist() == b.target_indices.tolist()
        torch.testing.assert_close(a.map, b.map, atol=1e-6, rtol=1e-5)


def test_multilabel_pred_explains_the_top_scoring_label() -> None:
    # logits = the colour means (2, 4, 2)/8: green on top, by logit as by sigmoid
    model = Model(ColourLinear(torch.eye(3).tolist()).eval(), task="multilabel")
    x = stripes(2, 4, 2)
    (e,) = explain(model, x, ["gradcam"], target="pred", layer="act")
    assert e.output is not None and e.output.tolist() == [[0.25, 0.5, 0.25]]
    assert e.target_indices is not None and e.target_indices.tolist() == [1]
    torch.testing.assert_close(e.map[0], columns([0.0] * 2 + [1 / 64] * 4 + [0.0] * 2))


def test_multilabel_single_column_explains_that_label_with_its_sign() -> None:
    # not binary: the one label's logit, even when negative (what raises that label's score)
    model = Model(binary(), task="multilabel", labels=["red over blue"])
    (e,) = explain(model, NEGATIVE, ["gradcam"], target="pred", layer="act")
    assert e.target_indices is not None and e.target_indices.tolist() == [0]
    torch.testing.assert_close(e.map[0], columns([1 / 64] * 2 + [0.0] * 6))


# ---------------------------------------------------------------------------------------------
# Regression: price = mean(red) + 2 mean(green) - mean(blue).

PRICE = [[1.0, 2.0, -1.0]]
HOUSE = stripes(2, 2, 4)  # price = (16 + 32 - 32)/64 = 0.25


def regressor(scale: float = 1.0) -> Model:
    return Model(ColourLinear(PRICE, scale).eval(), task="regression", labels=["price"])


def test_scorecam_regression_weighs_the_change_from_the_blank_input() -> None:
    # Each channel masks its own stripe. Kept alone, red gives 16/64, green 2 * 16/64, blue
    # -32/64; the blank (all-zero) input gives 0. w = sign * (score - 0) per channel.
    (up,) = explain(regressor(), HOUSE, ["scorecam"], target="value", layer="act", **EXACT)
    (down,) = explain(regressor(), HOUSE, ["scorecam"], target="-value", layer="act", **EXACT)
    torch.testing.assert_close(up.map[0], columns([0.25] * 2 + [0.5] * 2 + [0.0] * 4))
    torch.testing.assert_close(down.map[0], columns([0.0] * 4 + [0.5] * 4))
    torch.testing.assert_close(up.extras["opposite"], down.map)
    torch.testing.assert_close(down.extras["opposite"], up.map)


def test_scorecam_regression_does_not_depend_on_the_output_unit() -> None:
    # A price in units of 1e5: a softmax of raw scores would go one-hot (green alone).
    (small,) = explain(regressor(), HOUSE, ["scorecam"], layer="act", **EXACT)
    (large,) = explain(regressor(1e5), HOUSE, ["scorecam"], layer="act", **EXACT)
    torch.testing.assert_close(large.normalized(), small.normalized(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(large.map, 1e5 * small.map, atol=0, rtol=1e-5)


class CountingGrad:
    def __init__(self) -> None:
        self.calls = 0
        self.real = torch.autograd.grad

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


ROWS: list[int] = []  # the batch size of every forward of a CountingRows model, copies included


@torch.fx.wrap
def _seen(x: Tensor) -> Tensor:
    ROWS.append(int(x.shape[0]))
    return x


class CountingRows(nn.Module):
    """``inner`` behind a forward that records its batch size (also once ``torch.fx`` traced,
    as Score-CAM's batch-norm folding does: ``_seen`` stays a call in the graph)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(_seen(x))


def test_regression_opposite_maps_from_the_same_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    model = Model(CountingRows(ColourLinear(PRICE).eval()), task="regression")
    x = torch.cat([HOUSE, stripes(4, 1, 3), stripes(1, 6, 1)])
    methods = [create_method(n, layer="inner.act", **EXACT) for n in CAMS]
    grads = CountingGrad()
    monkeypatch.setattr(torch.autograd, "grad", grads)
    ROWS.clear()
    exps = CAM.run_many(methods, model, Inputs.of(x), RegressionTarget())
    # one forward and one backward for the layer; Score-CAM: one forward of its 3 x 3 distinct
    # masks and one of the blank input. Explaining -value as well used to double both.
    assert grads.calls == 1
    assert ROWS == [3, 9, 1]
    monkeypatch.undo()
    for e in exps:
        (ref,) = explain(model, x, [e.method], target=RegressionTarget(sign=-1), layer="inner.act")
        if e.method == "eigencam":  # target-independent: no opposite to draw
            assert "opposite" not in e.extras
            continue
        assert e.extras["opposite"].shape == e.map.shape == (3, 8, 8)
        assert e.extras["opposite_target"] == "-value"
        torch.testing.assert_close(e.extras["opposite"], ref.map, atol=1e-6, rtol=1e-5)
        assert float(e.extras["opposite"].abs().max()) > 0, e.method


def test_only_eigencam_is_target_independent() -> None:
    from seewhy.methods.registry import method_class

    classes: dict[str, type[Method]] = {n: method_class(n) for n in CAMS}
    assert {n for n, c in classes.items() if not c.depends_on_target} == {"eigencam"}


def test_classification_targets_get_no_opposite(small_cnn: nn.Module, images: Tensor) -> None:
    for e in explain(small_cnn, images, CAMS, target="pred", **EXACT):
        assert "opposite" not in e.extras


# ---------------------------------------------------------------------------------------------
# batch_size: the largest batch any forward sends to the model, for every method.


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_no_forward_sees_more_than_batch_size_rows(small_cnn: nn.Module, method: str) -> None:
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    model = CountingRows(small_cnn)
    ref = create_method(method, layer="inner.features", **EXACT)(model, x, 1)
    for run in (
        lambda: create_method(method, layer="inner.features", **EXACT)(model, x, 1, batch_size=3),
        lambda: CAM.run_many(
            [create_method(method, layer="inner.features", **EXACT)],
            Model.of(model),
            Inputs.of(x),
            ClassTarget(1),
            batch_size=3,
        )[0],
        lambda: explain(model, x, [method], target=1, batch_size=3, **EXACT)[0],
    ):
        ROWS.clear()
        e = run()
        assert ROWS and max(ROWS) <= 3, ROWS
        torch.testing.assert_close(e.map, ref.map, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batch_size_must_be_a_positive_integer(
    small_cnn: nn.Module, images: Tensor, bad: Any
) -> None:
    with pytest.raises(UsageError, match="batch_size must be an integer >= 1"):
        create_method("scorecam", layer="features")(small_cnn, images, 0, batch_size=bad)
    with pytest.raises(UsageError, match="batch_size must be an integer >= 1"):
        CAM.run_many(
            [create_method("gradcam")],
            Model.of(small_cnn),
            Inputs.of(images),
            ClassTarget(0),
            batch_size=bad,
        )


def test_scorecam_has_no_batch_size_setting(small_cnn: nn.Module) -> None:
    with pytest.raises(UsageError, match=r"batch_size is a call argument"):
        create_method("scorecam", layer="features", batch_size=1)  # not a setting
    assert "batch_size" not in create_method("scorecam", layer="features").params()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    model = CountingRows(small_cnn)
    ROWS.clear()
    explain(model, x, ["scorecam"], layer="inner.features", **EXACT)
    assert max(ROWS) == 8  # the API's default batch_size sends 8 masked inputs at a time


# ---------------------------------------------------------------------------------------------
# A layer that runs twice: the last call is explained, and the count is recorded.


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.conv(torch.relu(self.conv(x))))
        return self.fc(y.mean(dim=(2, 3)))


class Unrolled(nn.Module):
    """``Twice`` with its two calls as two layers (``second`` shares the weights)."""

    def __init__(self, twice: Twice) -> None:
        super().__init__()
        self.first = twice.conv
        self.second = copy.deepcopy(twice.conv)
        self.fc = twice.fc

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.second(torch.relu(self.first(x))))
        return self.fc(y.mean(dim=(2, 3)))


def test_a_layer_called_twice_explains_its_last_call(images: Tensor) -> None:
    twice = Twice().eval()
    ours = explain(twice, images, CAMS, target=0, layer="conv", **EXACT)
    ref = explain(Unrolled(twice).eval(), images, CAMS, target=0, layer="second", **EXACT)
    for a, b in zip(ours, ref, strict=True):
        assert a.params["layer_calls"] == 2 and "layer_calls" not in b.params
        torch.testing.assert_close(a.map, b.map, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# TorchScript: no hooks, so CAMs refuse it before any work.


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("layer", ["features", None])
@pytest.mark.parametrize("method", CAMS)
def test_cams_refuse_torchscript_up_front(
    small_cnn: nn.Module, images: Tensor, method: str, layer: str | None
) -> None:
    scripted = torch.jit.script(small_cnn)
    with pytest.raises(MethodNotApplicableError, match=r"TorchScript modules cannot be hooked"):
        explain(scripted, images, [method], layer=layer)
    with pytest.raises(MethodNotApplicableError, match=r"original nn.Module \(FILE.py:FACTORY"):
        create_method(method, layer=layer)(scripted, images, PredictedClass())
