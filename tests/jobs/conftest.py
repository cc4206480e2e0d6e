"""A tiny project on disk, as a user would have it: model code, checkpoints, cards, images."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MODELS_PY = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, num_classes=2, width=8):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            return self.fc(self.pool(self.features(x)).flatten(1))


    def small(num_classes=2):
        torch.manual_seed(1)
        return Net(num_classes, 8)


    def wide(num_classes=2):
        torch.manual_seed(2)
        return Net(num_classes, 12)


    class NaNOnBright(Net):
        """Returns NaN for images whose top-left corner is bright (a broken model)."""

        def forward(self, x):
            out = super().forward(x)
            bright = x[:, :, :4, :4].mean(dim=(1, 2, 3)) > 1.5
            return torch.where(bright[:, None], torch.full_like(out, float("nan")), out)


    def nan_on_bright(num_classes=2):
        torch.manual_seed(1)
        return NaNOnBright(num_classes, 8)
    '''
)


def write_card(path: Path, name: str, factory: str, checkpoint: str | None) -> Path:
    lines = [
        f'name = "{name}"',
        f'arch = "models.py:{factory}"',
        'task = "classification"',
        'labels = ["normal", "fracture"]',
        'layer = "features"',
    ]
    if checkpoint:
        lines.insert(2, f'checkpoint = "{checkpoint}"')
    lines += ["", "[preprocess]", "size = 32", "mean = [0.5, 0.5, 0.5]", "std = [0.25, 0.25, 0.25]"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def card_writer() -> object:
    """``write_card(path, name, factory, checkpoint)`` for tests that add a card."""
    return write_card


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp_path with models.py, two checkpoints + cards, and a few images."""
    import importlib.util

    import torch
    from safetensors.torch import save_file

    (tmp_path / "models.py").write_text(MODELS_PY)
    spec = importlib.util.spec_from_file_location("user_models", tmp_path / "models.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in ("small", "wide"):
        net = getattr(mod, name)()
        with torch.no_grad():  # trained-looking weights differ from the factory's init
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        save_file(
            net.state_dict(), str(tmp_path / f"{name}.safetensors"), metadata={"accuracy": "0.93"}
        )
        write_card(tmp_path / f"{name}.toml", name, name, f"{name}.safetensors")
    rng = np.random.default_rng(0)
    for i in range(2):
        arr = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        arr[10:20, 10 + 10 * i : 25 + 10 * i] = 255
        Image.fromarray(arr).save(tmp_path / f"img{i}.png")
    return tmp_path


# -- the tile regressor, its tiles and the tree models: built once per process (pytest worker) --
@pytest.fixture(scope="session")
def tiles_model(tmp_path_factory: pytest.TempPathFactory) -> object:
    from dataset_fixtures import trained_model

    return trained_model(tmp_path_factory)


@pytest.fixture(scope="session")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> object:
    from dataset_fixtures import tiles_folder

    return tiles_folder(tmp_path_factory)


@pytest.fixture(scope="session")
def trees(tmp_path_factory: pytest.TempPathFactory) -> object:
    from tree_fixtures import trained_trees

    return trained_trees(tmp_path_factory)
