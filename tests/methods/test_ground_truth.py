"""Ground truth: a CNN trained here on generated images whose class is decided by one region;
every method puts most of its positive attribution inside that region."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seewhy import explain

SIDE = 32
REGION = (slice(4, 14), slice(4, 14))  # 10 x 10 of 32 x 32: about 10% of the pixels


def images(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with green distractor blobs outside REGION in both classes; class 1 has a red blob
    inside REGION (and only there): the region decides the class."""
    x = 0.3 * torch.randn(n, 3, SIDE, SIDE, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    for i in range(n):
        for _ in range(2):
            r, c = torch.randint(16, SIDE - 5, (2,), generator=gen).tolist()
            x[i, 1, r : r + 4, c : c + 4] += 2.0
        if y[i] == 1:
            r, c = torch.randint(4, 10, (2,), generator=gen).tolist()
            x[i, 0, r : r + 4, c : c + 4] += 2.0
    return x, y


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    data = [images(64, gen) for _ in range(4)]
    for step in range(60):
        x, y = data[step % len(data)]
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = images(200, gen)
    with torch.no_grad():
        accuracy = float((net(x).argmax(1) == y).float().mean())
    assert accuracy >= 0.95, accuracy  # the model reads the region
    test, labels = images(24, torch.Generator().manual_seed(7))
    positives = test[labels == 1][:6]
    return net, positives


METHODS = [
    "gradcam",
    "gradcam++",
    "hirescam",
    "xgradcam",
    "layercam",
    "scorecam",
    "saliency",
    "inputxgrad",
    "ig",
    "smoothgrad",
    "expected-gradients",
    "occlusion(window=4,stride=2)",
    "rise(masks=1000)",
]


@pytest.mark.parametrize("method", METHODS)
def test_most_positive_attribution_lies_in_the_deciding_region(
    trained: tuple[nn.Module, torch.Tensor], method: str
) -> None:
    net, x = trained
    (e,) = explain(net, x, [method], target=1, layer="features.3", batch_size=64)
    # Signed maps: their positive part; unsigned ones above their median, the background level
    # (RISE's maps sit on an offset: the mean score).
    m = e.map
    if not e.signed:
        m = m - m.flatten(1).median(dim=1).values[:, None, None]
    positive = m.clamp_min(0)
    inside = positive[:, REGION[0], REGION[1]].flatten(1).sum(1)
    share = inside / positive.flatten(1).sum(1).clamp_min(1e-12)
    assert float(share.min()) > 0.5, (method, share.tolist())
