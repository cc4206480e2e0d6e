"""The trust checks on generated ground truth (issue "Must show"): a CNN trained where a known
region decides the class passes; a model-independent edge "explainer" fails randomization; the
same architecture with random weights is not passed; a model that reads a corner marker is
flagged although its accuracy is high; the user's model is unchanged by every check."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
from checks_ground_truth import Net, accuracy, marker_images, region_images, train
from torch import nn

import seewhy
from model_state import assert_same, snapshot
from seewhy.core.explanation import Explanation
from seewhy.core.inputs import Inputs
from seewhy.core.model import Model
from seewhy.core.targets import Target
from seewhy.methods import registry
from seewhy.methods.base import Method

STEPS = 20


@pytest.fixture(scope="module")
def region() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The region model and 12 class-1 test images it gets right, with their masks."""
    net = train(region_images)
    x, y, masks = region_images(100, torch.Generator().manual_seed(1))
    assert accuracy(net, x, y) > 0.95
    with torch.no_grad():
        ok = (net(x).argmax(1) == 1) & (y == 1)
    return net, x[ok][:12], masks[ok][:12]


@pytest.fixture(scope="module")
def marker() -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    net = train(marker_images)
    x, y, masks = marker_images(100, torch.Generator().manual_seed(1))
    acc = accuracy(net, x, y)
    with torch.no_grad():
        ok = (net(x).argmax(1) == 1) & (y == 1)
    return net, x[ok][:12], masks[ok][:12], acc


def _one(results: Sequence[seewhy.CheckResult], method: str = "gradcam") -> seewhy.CheckResult:
    return next(r for r in results if r.method == method)


def test_trained_region_model_passes(region: Any) -> None:
    net, x, masks = region
    before = snapshot(net)
    r = _one(seewhy.check(net, x, ["gradcam"], masks=masks, steps=STEPS, seed=0))
    assert_same(before, snapshot(net))
    f = r.figures
    assert r.verdict == "pass", r.reasons
    assert f["energy_in_mask"] > 5 * f["mask_area"]  # area share: 16 / 1024 pixels
    assert f["mask_area"] == pytest.approx(16 / 1024)
    assert f["pointing_game"] >= 0.9
    assert f["randomization_similarity"] < 0.3
    assert f["deletion_auc"] < f["deletion_auc_random"] - 0.1
    assert f["insertion_auc"] > f["insertion_auc_random"] + 0.1
    assert r.record()["verdict"] == "pass" and r.flags == []


@pytest.fixture
def edges() -> Iterator[str]:
    """A model-independent "explainer": the Sobel edge magnitude of the input."""

    @dataclass(frozen=True)
    class Edges(Method):
        signed: ClassVar[bool] = False

        @classmethod
        def run_many(
            cls,
            methods: Sequence[Method],
            model: Model,
            inputs: Inputs,
            target: Target,
            **_: Any,
        ) -> list[Explanation]:
            x = inputs["image"].mean(dim=1, keepdim=True)
            kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
            gx = nn.functional.conv2d(x, kx, padding=1)
            gy = nn.functional.conv2d(x, kx.transpose(2, 3), padding=1)
            maps = (gx.square() + gy.square()).sqrt()[:, 0]
            with torch.no_grad():
                out = model.forward(inputs)
            t = target.resolve(out)
            return [
                Explanation(
                    method=m.name,
                    attributions={"image": maps},
                    target=t.name,
                    output=out,
                    target_indices=t.class_indices,
                )
                for m in methods
            ]

    registry.register("test-edges")(Edges)
    try:
        yield "test-edges"
    finally:
        registry._METHODS.pop("test-edges", None)


def test_edge_explainer_fails_randomization(region: Any, edges: str) -> None:
    net, x, masks = region
    r = _one(seewhy.check(net, x, [edges], masks=masks, steps=STEPS), edges)
    assert r.figures["randomization_similarity"] == pytest.approx(1.0)
    assert r.figures["collapse_layer"] is None
    assert r.verdict == "fail"
    assert "randomization" in r.flags
    assert r.reasons[0].startswith("fails randomization: rank correlation 1.00")


def test_random_weights_are_not_passed(region: Any) -> None:
    _, x, masks = region
    torch.manual_seed(3)
    untrained = Net().eval()
    r = _one(seewhy.check(untrained, x, ["gradcam"], masks=masks, steps=STEPS))
    f = r.figures
    assert r.verdict != "pass", r.reasons
    assert "faithfulness" in r.flags
    # no better than a random order, on the probability scale
    assert f["deletion_auc_random"] - f["deletion_auc"] < 0.02
    assert f["insertion_auc"] - f["insertion_auc_random"] < 0.02


def test_corner_marker_model_is_flagged(marker: Any) -> None:
    net, x, masks, acc = marker
    assert acc > 0.95  # high accuracy, for the wrong reason
    r = _one(seewhy.check(net, x, ["gradcam"], masks=masks, steps=STEPS))
    f = r.figures
    assert r.verdict in ("warn", "fail")
    assert {"border", "corner"} & set(r.flags)
    assert f["border_share"] > 1.5 * f["border_area"]
    assert f["energy_in_mask"] < 1.5 * f["mask_area"]
    assert "localization" in r.flags
    assert len(r.flagged_samples) >= len(x) // 2


def test_model_unchanged_in_train_mode(region: Any) -> None:
    """Train-mode model with requires_grad: every check leaves flags, weights, grads alone."""
    net, x, masks = region
    model = Net()
    model.load_state_dict(net.state_dict())
    model.train()
    model.features[0].weight.grad = torch.ones_like(model.features[0].weight)
    before = snapshot(model)
    seewhy.check(model, x[:4], ["gradcam", "saliency"], masks=masks[:4], steps=5)
    assert_same(before, snapshot(model))
