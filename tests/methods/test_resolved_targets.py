"""Targets are resolved once, on the clean batch: a method that runs the model on perturbed
inputs explains the class picked on the clean input, never one re-decided on the perturbed."""

from __future__ import annotations

import torch
from torch import nn

from seewhy import explain
from seewhy.core.targets import PredictedClass

RAMP = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
CLEAN_SUM = float(RAMP.sum())  # 32


class FlipsWhenMasked(nn.Module):
    """Logit 0 is the image's sum, logit 1 a constant 0.9 x the clean ramp's sum: the clean ramp
    predicts class 0, and every masked (darker) copy of it class 1. The layer ``act`` has two
    channels, ``relu(x - 0.5)`` and ``relu(0.5 - x)``: two distinct Score-CAM masks."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.features.bias.copy_(torch.tensor([-0.5, 0.5]))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.features(x))
        s = x.flatten(1).sum(1) + 0 * a.sum(dim=(1, 2, 3))
        return torch.stack([s, torch.full_like(s, 0.9 * CLEAN_SUM)], dim=1)


def test_scorecam_reads_the_class_picked_on_the_clean_input() -> None:
    model = FlipsWhenMasked().eval()
    a = torch.relu(torch.cat([RAMP - 0.5, 0.5 - RAMP], dim=1))  # [1, 2, 8, 8]
    masks = a / a.flatten(2).amax(dim=2)[..., None, None]  # min-max (both minima are 0)
    masked_logits = model(RAMP * masks.transpose(0, 1))  # one masked copy per channel
    assert masked_logits.argmax(dim=1).tolist() == [1, 1]  # re-deciding would pick class 1
    assert int(PredictedClass().indices(model(RAMP))[0]) == 0  # the clean input: class 0

    (e,) = explain(model, RAMP, ["scorecam"], target="pred", layer="act", precision="float32")
    assert e.target_indices is not None and e.target_indices.tolist() == [0]
    weights = torch.softmax(masked_logits[:, 0], dim=0)  # column 0, the clean pick
    want = torch.relu((weights[:, None, None] * a[0]).sum(0))
    torch.testing.assert_close(e.raw["image"][0], want, rtol=1e-5, atol=1e-6)
    # Re-deciding on the masked inputs would read column 1 (constant): equal weights, another map.
    redecided = torch.relu((0.5 * a[0]).sum(0))
    assert float((e.raw["image"][0] - redecided).abs().max()) > 0.05


def test_a_target_resolved_by_the_caller_is_kept_across_chunks() -> None:
    model = FlipsWhenMasked().eval()
    x = torch.cat([RAMP, 0.5 * RAMP, RAMP.flip(-1)])  # clean picks: 0, 1, 0
    resolved = PredictedClass().resolve(model(x))
    (whole,) = explain(model, x, ["gradcam"], target=resolved, layer="act", batch_size=3)
    (chunked,) = explain(model, x, ["gradcam"], target=resolved, layer="act", batch_size=2)
    assert whole.target_indices is not None and whole.target_indices.tolist() == [0, 1, 0]
    assert chunked.target_indices is not None and chunked.target_indices.tolist() == [0, 1, 0]
    torch.testing.assert_close(whole.map, chunked.map)
