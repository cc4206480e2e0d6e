"""The two small CNNs of the bundled demo (trained by ``scripts/make_demo.py``).

Both read 128x128 X-ray-like images (gray, fed as 3 channels) and end in a module called
``features`` whose 16x16 output the CAMs read.
"""

from __future__ import annotations

from torch import Tensor, nn


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class XrayCNN(nn.Module):
    """Plain conv-bn-relu stack, three poolings, global average pooling, linear head."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(3, 16),
            nn.MaxPool2d(2),
            *_block(16, 32),
            nn.MaxPool2d(2),
            *_block(32, 48),
            nn.MaxPool2d(2),
            *_block(48, 48),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(48, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_block(ch, ch), nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch)
        )
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


class XrayResNet(nn.Module):
    """A small residual design: strided stem and downsampling, a residual block per scale."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            Residual(16),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            Residual(32),
            nn.Conv2d(32, 40, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(40),
            nn.ReLU(),
            Residual(40),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(40, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def xray_cnn(num_classes: int = 2) -> nn.Module:
    """Factory for model cards: ``arch = "seewhy.assets.demo_models:xray_cnn"``."""
    return XrayCNN(num_classes)


def xray_resnet(num_classes: int = 2) -> nn.Module:
    """Factory for model cards: ``arch = "seewhy.assets.demo_models:xray_resnet"``."""
    return XrayResNet(num_classes)
