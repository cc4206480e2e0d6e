"""The many-point gradient methods (ig, smoothgrad, expected-gradients) send their points through
the forward engine's folded copy of an image model with batch norms: the same attributions as the
plain model's (up to float rounding), the user's model untouched and run only for the clean pass.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import seewhy.methods.gradients as gradients
from seewhy import explain

METHODS = ["ig(steps=16)", "smoothgrad(samples=6)", "expected-gradients(samples=6)"]


@pytest.fixture(autouse=True)
def fold_small_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """These 12 x 12 images are far below the size where the copy pays: fold them anyway."""
    monkeypatch.setattr(gradients, "FOLD_MIN_PIXELS", 0)


class BNNet(nn.Module):
    """conv-BN-ReLU twice (running statistics set off their defaults), pooled, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
        )
        self.head = nn.Linear(6, 4)
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # rows through this very module (not a hook: hooked models are not folded); a deep copy
        # counts into its own list, and a traced copy runs no Python at all
        self.rows.append(x.shape[0])
        return self.head(self.features(x).mean(dim=(2, 3)))


def _net() -> BNNet:
    torch.manual_seed(0)
    net = BNNet()
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return net.eval()


def _x(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(2))


class _Rows:
    """The rows through ``net`` itself from now on."""

    def __init__(self, net: BNNet) -> None:
        self.net, self.start = net, len(net.rows)

    def __int__(self) -> int:
        return sum(self.net.rows[self.start :])


@pytest.mark.parametrize("method", METHODS)
def test_the_folded_copy_gives_the_plain_models_attributions(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, x = _net(), _x()
    before = copy.deepcopy(net.state_dict())
    seen = _Rows(net)
    fast = explain(net, x, [method], target="pred", batch_size=4, seed=5)[0]
    # only the clean pass (3 rows) ran on the user's model; every point ran on the copy
    assert int(seen) == 3
    monkeypatch.setattr(gradients, "FOLD_POINTS", False)
    seen = _Rows(net)
    plain = explain(net, x, [method], target="pred", batch_size=4, seed=5)[0]
    assert int(seen) > 3 * 6  # the points went through the user's model this time
    ref = plain.raw["image"]
    scale = float(ref.abs().max())
    assert scale > 0
    torch.testing.assert_close(fast.raw["image"], ref, rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(fast.output, plain.output, rtol=0, atol=0)
    if "completeness_gap" in plain.extras:
        torch.testing.assert_close(
            fast.extras["completeness_gap"], plain.extras["completeness_gap"], rtol=0, atol=1e-4
        )
    # the user's model is as it was
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not net.training


def test_a_model_without_batch_norms_runs_its_points_as_it_is() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    x = _x(2)
    net(x)
    net.eval()
    seen = [0]
    handle = net[0].register_forward_hook(lambda m, i, o: seen.__setitem__(0, seen[0] + len(i[0])))
    explain(net, x, ["ig(steps=8)"], target="pred", batch_size=4)
    handle.remove()
    assert seen[0] == 2 + 2 * 8 + 2  # clean pass, the points, the baselines' forward


def test_saliency_alone_makes_no_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    import seewhy.core.engine as engine

    made: list[object] = []
    real = engine.ForwardEngine.__init__

    def spy(self: object, *a: object, **k: object) -> None:
        made.append(self)
        real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.ForwardEngine, "__init__", spy)
    explain(_net(), _x(2), ["saliency", "inputxgrad"], target="pred")
    assert made == []
    explain(_net(), _x(2), ["saliency", "ig(steps=4)"], target="pred")
    assert len(made) == 1


def test_a_small_job_runs_its_points_on_the_model_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below FOLD_MIN_PIXELS (rows x points x H x W) the copy would cost more than it saves."""
    monkeypatch.setattr(gradients, "FOLD_MIN_PIXELS", 16 * 224 * 224)
    net, x = _net(), _x(3)  # 3 rows x 16 steps x 144 pixels
    seen = _Rows(net)
    explain(net, x, ["ig(steps=16)"], target="pred", batch_size=4)
    assert int(seen) == 3 + 3 * 16 + 3
    monkeypatch.setattr(gradients, "FOLD_MIN_PIXELS", 3 * 16 * 144)  # just enough
    seen = _Rows(net)
    explain(net, x, ["ig(steps=16)"], target="pred", batch_size=4)
    assert int(seen) == 3
