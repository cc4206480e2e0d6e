"""core.hooks on the edges: in-place ops after the layer, layers that run more than once."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from seewhy import explain
from seewhy.core.errors import LayerError
from seewhy.core.hooks import capture_output
from seewhy.core.layers import resolve_layer


class ReluInplaceAfter(nn.Module):
    """``features -> F.relu(inplace=True) -> pool -> fc``, as torchvision's DenseNet."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.features(x), inplace=self.inplace)
        return self.fc(self.pool(f).flatten(1))


class ReluModuleAfter(nn.Module):
    """``features -> nn.ReLU(inplace=True) -> pool -> fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.features(x))).flatten(1))


def _x(seed: int = 0, size: int = 8) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", [ReluInplaceAfter, ReluModuleAfter])
@pytest.mark.parametrize("leaf", [False, True])
def test_capture_keeps_the_layers_output_despite_inplace_ops(cls: type, leaf: bool) -> None:
    torch.manual_seed(0)
    model = cls().eval()
    x = _x()
    with torch.no_grad():
        truth = model.features(x)
        expected_out = model(x)
    assert float(truth.min()) < -0.1  # the in-place ReLU would change it
    with torch.enable_grad(), capture_output(model.features, "features", leaf=leaf) as cap:
        out = model(x)
    torch.testing.assert_close(cap.get().detach(), truth, rtol=0, atol=0)
    torch.testing.assert_close(out.detach(), expected_out)  # the model's output is unchanged
    # and the same as a copy of the model without the in-place op
    if cls is ReluInplaceAfter:
        plain = copy.deepcopy(model)
        plain.inplace = False
        with capture_output(plain.features, "features", leaf=False) as ref, torch.no_grad():
            plain(x)
        torch.testing.assert_close(cap.get().detach(), ref.get(), rtol=0, atol=0)


def test_eigencam_alone_equals_eigencam_beside_gradcam_after_an_inplace_relu() -> None:
    torch.manual_seed(0)
    model = ReluInplaceAfter().eval()
    x = _x(1, 12)
    (alone,) = explain(model, x, ["eigencam"], layer="features")
    _, beside = explain(model, x, ["gradcam", "eigencam"], layer="features")
    assert float(alone.map.max()) > 0
    torch.testing.assert_close(alone.map, beside.map, rtol=1e-5, atol=1e-6)
    # both read the layer's real (pre-ReLU) output: the map of a hand EigenCAM on it
    with torch.no_grad():
        a = model.features(x)
    m = a.flatten(2).transpose(1, 2)
    m = m - m.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    proj = (m @ vh[:, 0, :, None]).squeeze(-1)
    total = a.sum(dim=1).flatten(1)
    total = total - total.mean(dim=1, keepdim=True)
    flip = torch.where((proj * total).sum(dim=1) < 0, -1.0, 1.0)
    low = (proj * flip[:, None]).view(2, 12, 12).clamp_min(0)
    torch.testing.assert_close(alone.raw["image"], low, rtol=1e-4, atol=1e-5)


class TwiceConv(nn.Module):
    """The same conv applied twice (shared weights), then a position-weighted head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.head = nn.Linear(2 * 6 * 6, 3)

    def first(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y2 = self.conv(self.first(x))
        return self.head(torch.tanh(y2).flatten(1))


def test_a_layer_that_runs_twice_is_read_at_its_last_call() -> None:
    torch.manual_seed(0)
    model = TwiceConv().eval()
    x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    # by hand: d score / d (second call's output), and the first call's output for contrast
    with torch.no_grad():
        y1 = model.conv(x)
        y2 = model.conv(torch.tanh(y1))
    leaf = y2.clone().requires_grad_(True)
    (by_hand,) = torch.autograd.grad(model.head(torch.tanh(leaf).flatten(1))[:, 1].sum(), leaf)
    with capture_output(model.conv, "conv", leaf=True) as cap, torch.enable_grad():
        score = model(x)[:, 1].sum()
        (g,) = torch.autograd.grad(score, cap.get())
    assert cap.calls == 2
    torch.testing.assert_close(cap.get().detach(), y2, rtol=0, atol=0)
    torch.testing.assert_close(g, by_hand, rtol=1e-6, atol=1e-7)
    with capture_output(model.conv, "conv", leaf=False) as cap, torch.no_grad():
        model(x)
    assert cap.calls == 2
    torch.testing.assert_close(cap.get(), y2, rtol=0, atol=0)
    assert not torch.allclose(y1, y2)
    # resolve_layer with an example records how many times the layer runs in one forward
    spec = resolve_layer(model, "conv", x[:1])
    assert (spec.calls, spec.layout, spec.shape) == (2, "nchw", (1, 2, 6, 6))


class Checkpointed(nn.Module):
    """conv -> [checkpointed: conv2 -> relu] -> pool -> fc."""

    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3 * 5 * 5, 2)
        self.reentrant = reentrant

    def segment(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = checkpoint(self.segment, self.conv(x), use_reentrant=self.reentrant)
        return self.fc(h.flatten(1))


def test_activation_checkpointing_recompute_is_not_a_second_call() -> None:
    torch.manual_seed(0)
    model = Checkpointed(reentrant=False).eval().requires_grad_(False)
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = model.conv2(model.conv(x))
    leaf = y.clone().requires_grad_(True)
    (by_hand,) = torch.autograd.grad(model.fc(torch.relu(leaf).flatten(1))[:, 0].sum(), leaf)
    with capture_output(model.conv2, "conv2", leaf=True) as cap, torch.enable_grad():
        score = model(x)[:, 0].sum()
        act = cap.get()
        (g,) = torch.autograd.grad(score, act)  # recomputes the segment in the backward
    assert cap.calls == 1  # the backward's recomputation does not count
    assert cap.get() is act  # nor does it replace the captured value
    torch.testing.assert_close(act.detach(), y, rtol=0, atol=0)
    torch.testing.assert_close(g, by_hand, rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
def test_a_layer_run_with_gradients_off_says_so() -> None:
    # reentrant checkpointing runs its segment under no_grad: no gradient can reach conv2
    torch.manual_seed(0)
    model = Checkpointed(reentrant=True).eval().requires_grad_(False)
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(4))
    with capture_output(model.conv2, "conv2", leaf=True) as cap, torch.enable_grad():
        model(x)
        with pytest.raises(LayerError, match=r"'conv2' runs with gradients off.*use_reentrant"):
            cap.get()
    assert cap.calls == 1
    # gradient-free captures still read it
    with capture_output(model.conv2, "conv2", leaf=False) as cap, torch.no_grad():
        model(x)
    torch.testing.assert_close(cap.get(), model.conv2(model.conv(x)), rtol=0, atol=0)
