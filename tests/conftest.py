"""Shared fixtures: tiny hand-weighted models and generated images."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class OneConv(nn.Module):
    """conv 1x1 (1 -> 2 channels: x and 2x) -> ReLU -> linear over every position.

    The head weighs each (channel, position) on its own, so gradients differ per position and
    every CAM formula gives a different, hand-computable map (see test_cam_golden.py).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
            self.head.weight.copy_(
                torch.tensor(
                    [
                        [1.0, 0.0, -1.0, 2.0, 0.5, 0.5, 0.0, -1.0],
                        [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(x)).flatten(1))


class SmallCNN(nn.Module):
    """A small random CNN with batch-norm and dropout (so train/eval flags matter)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


@pytest.fixture
def one_conv() -> OneConv:
    return OneConv().eval()


@pytest.fixture
def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN()
    # Non-trivial batch-norm statistics, so eval and train differ.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
