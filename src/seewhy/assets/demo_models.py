"""The two small CNNs of the bundled demo (trained by ``scripts/make_demo.py``).

Both read 128x128 X-ray-like images (gray, fed as 3 channels) and end in a module called
``features`` whose 32-channel 16x16 output the CAMs read. They are kept cheap on purpose: a
strided first convolution (no full-resolution feature maps) and 32 channels at ``features``, so
that Score-CAM's one forward per channel stays fast on a laptop CPU. The plain CNN's maps are
sharp (a 1x1 last layer); the residual model's are broader.
"""

from __future__ import annotations

from torch import Tensor, nn


def _block(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """conv -> batch-norm -> ReLU; a 3x3 kernel is padded to keep the size."""
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=1 if kernel == 3 else 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]


class XrayCNN(nn.Module):
    """A plain conv-bn-relu stack (strided stem, two max-poolings), global average pooling and a
    linear head; ``features`` ends at 32 x 16 x 16 for a 128 x 128 input (about 12k weights).

    The last block is a 1x1 convolution, so each cell of ``features`` sees only its own
    neighbourhood (a 21 px receptive field): its CAMs are sharp, unlike the residual model's.
    """

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(3, 16, stride=2),
            *_block(16, 24),
            nn.MaxPool2d(2),
            *_block(24, 32),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class Residual(nn.Module):
    """Two conv 3x3 + batch-norm with an identity shortcut, then ReLU (He et al., 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_block(channels, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


class XrayResNet(nn.Module):
    """A small residual design in the ConvNeXt manner: a 4x4 patchify stem (stride 4), a
    residual block, a 2x2 stride-2 downsampling convolution, a residual block, global average
    pooling and a linear head; ``features`` ends at 32 x 16 x 16 for a 128 x 128 input (about
    33k weights).

    Non-overlapping downsampling keeps each cell of ``features`` centred where an upsampled CAM
    puts it (a stride-2 3x3 convolution with padding 1 shifts the grid by half a stride, and
    three of them shift a CAM by 3.5 px).
    """

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(3, 24, kernel=4, stride=4),
            Residual(24),
            *_block(24, 32, kernel=2, stride=2),
            Residual(32),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def xray_cnn(num_classes: int = 2) -> nn.Module:
    """Factory for model cards: ``arch = "seewhy.assets.demo_models:xray_cnn"``.

    Args:
        num_classes: Outputs of the linear head.

    Returns:
        An untrained :class:`XrayCNN`.
    """
    return XrayCNN(num_classes)


def xray_resnet(num_classes: int = 2) -> nn.Module:
    """Factory for model cards: ``arch = "seewhy.assets.demo_models:xray_resnet"``.

    Args:
        num_classes: Outputs of the linear head.

    Returns:
        An untrained :class:`XrayResNet`.
    """
    return XrayResNet(num_classes)
