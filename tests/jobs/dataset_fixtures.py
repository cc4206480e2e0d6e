"""Satellite-like tiles with ground truth for `seewhy dataset`, and a price regressor trained on
them in a few seconds.

Each tile is 64x64 RGB with a label map (uint8 class ids: 0 soil, 1 vegetation, 2 water, 3 road)
made of bare soil with ponds (ellipses), fields and parks (rectangles and ellipses) and roads
(straight stripes 3-5 px wide), every class in its own colour plus pixel noise. Every tile holds
every class on at least MIN_SHARE of its pixels, so each class's area share is positive in every
cohort.

The price (in millions of dollars, so that float32 keeps 1e-5 of it) is

    price = 0.30 + 0.20 * water_share + 0.16 * vegetation_share - 0.20 * road_share + noise

so water and vegetation raise it and roads lower it. The model (``tiles_model.py``) is a small
CNN, global average pool, a linear head WITHOUT bias, plus the fixed price of bare soil (BASE):

    price(x) = BASE + mean over positions of c(position),  c = w . features(x)[:, position]

A tile of bare soil costs BASE, so a trained model has c ~ 0 on soil, c > 0 on water and
vegetation, c < 0 on roads: the split of the price between the pixels is pinned (with a bias
in the head, any constant could move from the bias to every pixel and the signs of c would be
arbitrary). Grad-CAM at ``features`` (post-ReLU, 32x32) is max(c, 0) up to the constant
1/(32*32) (target ``value``) and max(-c, 0) (``-value``, from the same pass): what raises and
what lowers the price, position by position, upsampled to the tile.

The card's mean is the colour of soil, so the zero baseline of integrated gradients is a field
of bare soil too: IG's signed map is each pixel's contribution against soil, the same c.

``TILES_SLOW=seconds`` makes every forward sleep that long, so a test can kill a run midway.
"""

from __future__ import annotations

import csv
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REGION_NAMES = ("soil", "vegetation", "water", "road")
SOIL, VEGETATION, WATER, ROAD = range(4)
COLOURS = np.array(
    [[150, 110, 70], [50, 140, 60], [40, 80, 180], [128, 128, 128]], dtype=np.float32
)
NOISE = 12.0  # per-pixel, per-channel gaussian noise (0..255 scale)
SIZE = 64
MIN_SHARE = 0.03

BASE = 0.30
WATER_GAIN = 0.20
VEGETATION_GAIN = 0.16
ROAD_LOSS = 0.20
PRICE_NOISE = 0.002

MEAN = [float(c) / 255 for c in COLOURS[SOIL]]
STD = [0.25, 0.25, 0.25]

MODEL_PY = textwrap.dedent(
    '''
    """The valuation team's tile model: a small CNN, average pool, linear head; forward
    returns (price, features). TILES_SLOW=seconds sleeps in every forward."""
    import os
    import time

    import torch
    from torch import nn

    BASE = 0.30  # the price of a tile of bare soil ($M)


    class TilesNet(nn.Module):
        def __init__(self, width=8):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
                nn.Conv2d(2 * width, 2 * width, 1), nn.ReLU(),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(2 * width, 1, bias=False)

        def forward(self, x):
            slow = float(os.environ.get("TILES_SLOW") or 0)
            if slow:
                time.sleep(slow)
            feats = self.pool(self.features(x)).flatten(1)
            return BASE + self.head(feats), feats


    def build():
        torch.manual_seed(0)
        return TilesNet()
    '''
)

CARD = textwrap.dedent(
    f"""\
    name = "tiles"
    arch = "tiles_model.py:build"
    checkpoint = "tiles.pt"
    task = "regression"
    labels = ["price"]
    layer = "features"
    output = 0

    [preprocess]
    size = {SIZE}
    mean = [{", ".join(f"{m:.6f}" for m in MEAN)}]
    std = [{", ".join(str(s) for s in STD)}]
    crop_pct = 1.0
    """
)


# -- tiles --------------------------------------------------------------------------------------
def _ellipse(labels: np.ndarray, rng: np.random.Generator, cls: int, rmin: int, rmax: int) -> None:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cy, cx = rng.integers(0, SIZE, 2)
    ry, rx = rng.integers(rmin, rmax + 1, 2)
    labels[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = cls


def _rect(labels: np.ndarray, rng: np.random.Generator, cls: int, smin: int, smax: int) -> None:
    h, w = rng.integers(smin, smax + 1, 2)
    y, x = rng.integers(0, SIZE - h + 1), rng.integers(0, SIZE - w + 1)
    labels[y : y + h, x : x + w] = cls


def _stripe(labels: np.ndarray, rng: np.random.Generator, cls: int) -> None:
    width = int(rng.integers(3, 6))
    at = int(rng.integers(0, SIZE - width + 1))
    if rng.random() < 0.5:
        labels[at : at + width, :] = cls
    else:
        labels[:, at : at + width] = cls


def label_map(rng: np.random.Generator) -> np.ndarray:
    """A 64x64 uint8 label map with every class on at least MIN_SHARE of the pixels."""
    while True:
        labels = np.full((SIZE, SIZE), SOIL, dtype=np.uint8)
        for _ in range(rng.integers(1, 4)):
            (_rect if rng.random() < 0.5 else _ellipse)(labels, rng, VEGETATION, 5, 22)
        for _ in range(rng.integers(1, 3)):
            _ellipse(labels, rng, WATER, 4, 16)
        for _ in range(rng.integers(1, 4)):
            _stripe(labels, rng, ROAD)
        shares = np.bincount(labels.ravel(), minlength=4) / labels.size
        if shares.min() >= MIN_SHARE:
            return labels


def render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The tile's RGB pixels (uint8 HxWx3): each class's colour plus noise."""
    rgb = COLOURS[labels] + rng.normal(0.0, NOISE, (*labels.shape, 3))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def shares(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels.ravel(), minlength=4) / labels.size


def price(labels: np.ndarray, rng: np.random.Generator) -> float:
    s = shares(labels)
    value = BASE + WATER_GAIN * s[WATER] + VEGETATION_GAIN * s[VEGETATION] - ROAD_LOSS * s[ROAD]
    return float(value + rng.normal(0.0, PRICE_NOISE))


def normalise(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 (or NxHxWx3) -> float32 NCHW as the card's [preprocess] gives the model."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


# -- the model ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TilesModel:
    """The trained model on disk: ``folder`` holds tiles_model.py, tiles.pt and tiles.toml."""

    folder: Path
    card: Path
    r2: float  # on held-out tiles
    seconds: float  # time to generate the tiles and train

    def load(self) -> object:
        """The model, as the valuation team would load it (no seewhy), in eval mode."""
        import importlib.util

        import torch

        spec = importlib.util.spec_from_file_location(
            "tiles_model_direct", self.folder / "tiles_model.py"
        )
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        net = mod.build()
        net.load_state_dict(torch.load(self.folder / "tiles.pt", weights_only=True))
        return net.eval()

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Prices for a batch of uint8 NxHxWx3 tiles, run directly (no seewhy)."""
        import torch

        net = self.load()
        with torch.no_grad():
            out, _ = net(torch.from_numpy(normalise(rgb)))  # type: ignore[operator]
        return out[:, 0].double().numpy()


def _tile_batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.stack([label_map(rng) for _ in range(n)])
    rgb = np.stack([render(m, rng) for m in labels])
    y = np.array([price(m, rng) for m in labels])
    return rgb, labels, y


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1.0 - np.sum((y - pred) ** 2) / np.sum((y - np.mean(y)) ** 2))


def train(
    folder: Path, n_train: int = 512, steps: int = 300, batch: int = 32, seed: int = 1
) -> TilesModel:
    """Writes tiles_model.py, trains it on generated tiles, saves tiles.pt and tiles.toml."""
    import importlib.util

    import torch

    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiles_model.py").write_text(MODEL_PY)
    (folder / "tiles.toml").write_text(CARD)
    spec = importlib.util.spec_from_file_location("tiles_model_train", folder / "tiles_model.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    # trained on random 32x32 crops priced by their own composition (4x cheaper than whole
    # tiles; the model averages over positions, so a crop is priced the same way as a tile)
    rgb, labels, _ = _tile_batch(n_train, seed)
    x_all = torch.from_numpy(normalise(rgb))
    lab_all = torch.from_numpy(labels.astype(np.int64))
    gains = torch.tensor([0.0, VEGETATION_GAIN, WATER_GAIN, -ROAD_LOSS])
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = mod.build()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-2, total_steps=steps)
    crop = SIZE // 2
    for _ in range(steps):
        idx = torch.randint(0, n_train, (batch,), generator=gen)
        oy, ox = (int(v) for v in torch.randint(0, SIZE - crop + 1, (2,), generator=gen))
        xb = x_all[idx, :, oy : oy + crop, ox : ox + crop].contiguous()
        lb = lab_all[idx, oy : oy + crop, ox : ox + crop]
        yb = BASE + gains[lb].mean(dim=(1, 2))
        pred, _ = net(xb)
        loss = (((pred[:, 0] - yb) / 0.02) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    torch.save(net.state_dict(), folder / "tiles.pt")

    rgb_test, _, y_test = _tile_batch(256, seed + 1000)
    with torch.no_grad():
        pred_test = net(torch.from_numpy(normalise(rgb_test)))[0][:, 0].double().numpy()
    return TilesModel(
        folder=folder,
        card=folder / "tiles.toml",
        r2=r2_score(y_test, pred_test),
        seconds=time.perf_counter() - start,
    )


# -- a manifest of tiles ------------------------------------------------------------------------
@dataclass(frozen=True)
class Tiles:
    """A folder of tiles with its manifests (paths relative to the folder)."""

    folder: Path
    ids: list[str]
    truth: dict[str, float]  # id -> price
    area: dict[str, np.ndarray]  # id -> pixel share per class (REGION_NAMES order)

    def rgb(self, ids: list[str] | None = None) -> np.ndarray:
        from PIL import Image

        return np.stack(
            [
                np.asarray(Image.open(self.folder / "tiles" / f"{i}.png").convert("RGB"))
                for i in ids or self.ids
            ]
        )


def write_tiles(folder: Path, n: int, seed: int = 7, head: int = 40) -> Tiles:
    """n tiles under folder/tiles, label maps under folder/labels, and the manifests:
    all.csv (id, image_path, regions, price), prices.csv (id, price) with images.csv
    (id, image_path, regions) to join on id, and head.csv (the first ``head`` rows of all.csv).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "tiles").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    rows = []
    truth: dict[str, float] = {}
    area: dict[str, np.ndarray] = {}
    for k in range(n):
        tid = f"t{k:03d}"
        labels = label_map(rng)
        Image.fromarray(render(labels, rng)).save(folder / "tiles" / f"{tid}.png")
        Image.fromarray(labels).save(folder / "labels" / f"{tid}.png")
        truth[tid] = round(price(labels, rng), 6)
        area[tid] = shares(labels)
        rows.append((tid, f"tiles/{tid}.png", f"labels/{tid}.png", truth[tid]))
    _write_csv(folder / "all.csv", ["id", "image_path", "regions", "price"], rows)
    # the price table lists its rows in another order than the image table: the join is by id
    _write_csv(folder / "prices.csv", ["id", "price"], [(r[0], r[3]) for r in reversed(rows)])
    _write_csv(folder / "images.csv", ["id", "image_path", "regions"], [r[:3] for r in rows])
    _write_csv(folder / "head.csv", ["id", "image_path", "regions", "price"], rows[:head])
    return Tiles(folder=folder, ids=[r[0] for r in rows], truth=truth, area=area)


def write_parquet(csv_path: Path, parquet_path: Path) -> Path:
    """A CSV manifest as Parquet (ids kept as strings, prices as float64)."""
    import pandas as pd

    pd.read_csv(csv_path, dtype={"id": str}).to_parquet(parquet_path, index=False)
    return parquet_path


def _write_csv(path: Path, header: list[str], rows: list[tuple[object, ...]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# -- built once per process (each test module's session fixtures call these) -----------------
MIN_R2 = 0.95
_BUILT: dict[str, object] = {}


def trained_model(factory: pytest.TempPathFactory) -> TilesModel:
    """The trained tile regressor, built once per process (pytest worker), its R² on held-out
    tiles checked."""
    if "model" not in _BUILT:
        model = train(factory.mktemp("tiles_model"))
        print(
            f"tiles model: R² {model.r2:.4f} on 256 held-out tiles, built in {model.seconds:.1f} s"
        )
        if model.r2 < MIN_R2:
            pytest.fail(f"the tile regressor reached R² {model.r2:.3f} < {MIN_R2}")
        _BUILT["model"] = model
    return _BUILT["model"]  # type: ignore[return-value]


def tiles_folder(factory: pytest.TempPathFactory) -> Tiles:
    """120 tiles with label maps and manifests, written once per process (read only: runs
    write under their own --out)."""
    if "tiles" not in _BUILT:
        _BUILT["tiles"] = write_tiles(factory.mktemp("tiles"), 120)
    return _BUILT["tiles"]  # type: ignore[return-value]
