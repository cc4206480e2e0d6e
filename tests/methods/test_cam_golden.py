"""Golden values: every CAM on a hand-weighted one-conv model, computed by hand.

Model (tests/conftest.py OneConv): input x = [[1, 2], [3, 4]] (one channel, 2x2); the conv
gives A0 = x, A1 = 2x; the head's class-0 row weighs (channel, position) as
G0 = [1, 0, -1, 2], G1 = [0.5, 0.5, 0, -1] (positions in row-major order) — which are exactly
the gradients of logit 0 w.r.t. A. The layer grid equals the input grid, so the upsampling is
the identity and the maps can be read off directly.
"""

from __future__ import annotations

import pytest
import torch

from seewhy.core.targets import ClassTarget
from seewhy.methods.registry import create_method

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])

GOLDEN = {
    # w = mean(G) = [0.5, 0]          -> relu(0.5 x)
    "gradcam": [0.5, 1.0, 1.5, 2.0],
    # relu(sum_k G_k A_k) = relu([1+1, 0+2, -3+0, 8-8])
    "hirescam": [2.0, 2.0, 0.0, 0.0],
    # relu(sum_k relu(G_k) A_k) = [1+1, 0+2, 0, 8]
    "layercam": [2.0, 2.0, 0.0, 8.0],
    # w0 = sum(G0 A0)/sum(A0) = 6/10, w1 = sum(G1 A1)/sum(A1) = -5/20 -> relu(0.6x - 0.5x)
    "xgradcam": [0.1, 0.2, 0.3, 0.4],
    # alpha = G^2 / (2G^2 + sum(A) G^3): w0 = 1/12 + 2/22, w1 = 2 * 0.5/12 -> (w0 + 2 w1) x
    "gradcam++": [x * (1 / 12 + 2 / 22 + 2 * (1 / 12)) for x in (1.0, 2.0, 3.0, 4.0)],
    # rows [x, 2x] centred on their mean 2.5; first component (1, 2)/sqrt(5), oriented with the
    # channel sum: sqrt(5) (x - 2.5) rectified
    "eigencam": [0.0, 0.0, 0.5 * 5**0.5, 1.5 * 5**0.5],
    # both channels normalise to the same mask (x - 1)/3, so equal scores, softmax weights 1/2
    # each -> relu(0.5 x + 0.5 * 2x)
    "scorecam": [1.5, 3.0, 4.5, 6.0],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_values(one_conv: torch.nn.Module, name: str) -> None:
    # Score-CAM in float32: precision="auto" would run bfloat16 where the hardware has it
    e = create_method(name, layer="conv", precision="float32")(one_conv, X, ClassTarget(0))
    assert e.map.dtype == torch.float32
    assert e.map.shape == (1, 2, 2)
    torch.testing.assert_close(e.map.flatten(), torch.tensor(GOLDEN[name]), atol=1e-5, rtol=1e-5)
    assert e.layer == "conv" and e.target == "0" and e.method == name
    assert e.target_indices is not None and e.target_indices.tolist() == [0]
    # the model's output travels with the explanation: logit 0 = G0.x + G1.2x = 6 - 5,
    # logit 1 = A0[0, 1] + A1[1, 0] = 2 + 6
    assert e.output is not None
    torch.testing.assert_close(e.output, torch.tensor([[1.0, 8.0]]))


def test_scorecam_score_is_the_class_logit_on_the_masked_input(one_conv: torch.nn.Module) -> None:
    # masked input x * (x - 1)/3 = [0, 2/3, 2, 4]; logit 0 = G0.m + G1.(2m) = 6 - 22/3
    masked = X * (X - 1) / 3
    assert one_conv(masked)[0, 0].item() == pytest.approx(6 - 22 / 3, abs=1e-5)


def test_normalized_is_per_sample_min_max(one_conv: torch.nn.Module) -> None:
    e = create_method("gradcam", layer="conv")(one_conv, torch.cat([X, 2 * X]), ClassTarget(0))
    n = e.normalized()
    torch.testing.assert_close(n[0].flatten(), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    torch.testing.assert_close(n[1], n[0])
