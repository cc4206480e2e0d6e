"""Make the bundled demo: generate X-ray-like images, train two small models, save assets.

Run from the repo root: ``.venv/bin/python scripts/make_demo.py`` (about 5 minutes on 2 CPU
cores, deterministic). Writes src/seewhy/assets/demo/: two model cards, their safetensors
weights (with accuracy metadata), and samples/ (12 images, their masks, manifest.csv).

The images: a dark field, a bright bone shaft with soft edges and noise; a FRACTURE is a thin
dark crack across the shaft at a random height — the only thing that decides the class. Side
markers ("L"/"R" in a random corner) and text strips along the border are distractors that occur
in both classes. Masks mark the crack (dilated by 2 px) for fractures and are empty for normal
images (nothing to point at).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from safetensors.torch import save_file
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seewhy.assets.demo_models import xray_cnn, xray_resnet  # noqa: E402

OUT = ROOT / "src" / "seewhy" / "assets" / "demo"
SIZE = 128
LABELS = ["normal", "fracture"]
MEAN, STD = 0.25, 0.3


def _glyph(draw_on: np.ndarray, letter: str, y: int, x: int, value: float) -> None:
    """A blocky 'L' or 'R' side marker, 12x8 px."""
    g = np.zeros((12, 8), dtype=bool)
    g[:, :2] = True
    if letter == "L":
        g[-2:, :] = True
    else:
        g[:2, :] = True
        g[5:7, :] = True
        g[:7, -2:] = True
        for i in range(5):
            g[7 + i, 2 + i : 4 + i] = True
    draw_on[y : y + 12, x : x + 8][g] = value


def make_image(rng: np.random.Generator, fracture: bool) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HxW) and its mask (bool HxW)."""
    img = 0.08 + 0.03 * rng.standard_normal((SIZE, SIZE))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cx = rng.uniform(48, 80)
    tilt = rng.uniform(-0.15, 0.15)
    width = rng.uniform(11, 15)
    centre = cx + tilt * (yy - SIZE / 2)
    dist = np.abs(xx - centre)
    bone = np.clip((width - dist) / 2.5, 0, 1) * ((yy > 8) & (yy < SIZE - 8))
    brightness = rng.uniform(0.65, 0.85)
    cortex = np.exp(-((dist - width + 2.5) ** 2) / 4.0) * 0.12 * bone
    img += bone * brightness + cortex
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    if fracture:
        y0 = rng.uniform(30, SIZE - 30)
        slope = rng.uniform(-0.5, 0.5)
        thick = rng.uniform(1.2, 2.0)
        line = np.abs(yy - (y0 + slope * (xx - cx))) < thick
        crack = line & (bone > 0.3)
        img[crack] -= brightness * rng.uniform(0.6, 0.8)
        near = np.abs(yy - (y0 + slope * (xx - cx))) < thick + 2
        mask = near & (dist < width + 2) & ((yy > 8) & (yy < SIZE - 8))
    # distractors, independent of the class
    corner = rng.integers(4)
    y = 6 if corner < 2 else SIZE - 18
    x = 6 if corner % 2 == 0 else SIZE - 14
    _glyph(img, "L" if rng.random() < 0.5 else "R", y, x, rng.uniform(0.8, 1.0))
    if rng.random() < 0.5:
        row = SIZE - 5 if rng.random() < 0.5 else 2
        for start in range(int(rng.integers(20, 40)), SIZE - 20, 7):
            if rng.random() < 0.7:
                img[row : row + 3, start : start + 4] = rng.uniform(0.6, 0.9)
    img += 0.02 * rng.standard_normal((SIZE, SIZE))
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    pil = pil.filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(pil), mask


def dataset(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ys = np.arange(n) % 2
    xs = np.stack([make_image(rng, bool(y))[0] for y in ys])
    x = torch.from_numpy(xs).float().div(255)[:, None].repeat(1, 3, 1, 1)
    return (x - MEAN) / STD, torch.from_numpy(ys).long()


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * (len(x) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x) - 63, 64):
            idx = order[i : i + 64]
            batch = x[idx]
            if torch.rand(1, generator=g) < 0.5:
                batch = batch.flip(-1)  # left/right is not the class
            loss = nn.functional.cross_entropy(model(batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        print(f"  epoch {epoch + 1}: loss {total / (len(x) // 64):.3f}", flush=True)
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def card(name: str, factory: str, acc: float) -> str:
    return (
        f'# The demo model "{name}", trained by scripts/make_demo.py (held-out accuracy {acc:.3f}).\n'
        f'name = "{name}"\n'
        f'arch = "seewhy.assets.demo_models:{factory}"\n'
        f'checkpoint = "{name}.safetensors"\n'
        'task = "classification"\n'
        f"labels = {json.dumps(LABELS)}\n"
        'layer = "features"\n\n'
        "[preprocess]\n"
        f"size = {SIZE}\n"
        f"mean = [{MEAN}, {MEAN}, {MEAN}]\n"
        f"std = [{STD}, {STD}, {STD}]\n"
    )


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    start = time.time()
    x_train, y_train = dataset(3000, seed=1)
    x_test, y_test = dataset(600, seed=2)
    print(f"generated data in {time.time() - start:.1f}s", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, factory, epochs in (("xray_cnn", xray_cnn, 6), ("xray_resnet", xray_resnet, 6)):
        torch.manual_seed(0)
        model = factory()
        t = time.time()
        train(model, x_train, y_train, epochs, seed=0)
        acc = accuracy(model, x_test, y_test)
        print(f"{name}: held-out accuracy {acc:.3f} ({time.time() - t:.0f}s)", flush=True)
        meta = {"accuracy": f"{acc:.4f}", "epoch": str(epochs), "class_names": json.dumps(LABELS),
                "trained_on": "3000 generated images (scripts/make_demo.py)"}
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(OUT / f"{name}.safetensors"), metadata=meta)
        (OUT / f"{name}.toml").write_text(card(name, factory.__name__, acc))
    samples = OUT / "samples"
    samples.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    rows = []
    for i in range(12):
        fracture = i % 2 == 1
        img, mask = make_image(rng, fracture)
        sid = f"xray_{i:02d}"
        Image.fromarray(img).save(samples / f"{sid}.png", optimize=True)
        Image.fromarray((mask * 255).astype(np.uint8)).save(samples / f"{sid}_mask.png",
                                                            optimize=True)
        rows.append({"id": sid, "image_path": f"{sid}.png", "label": LABELS[int(fracture)],
                     "mask_path": f"{sid}_mask.png"})
    with (samples / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "image_path", "label", "mask_path"])
        w.writeheader()
        w.writerows(rows)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"assets: {size / 1e6:.2f} MB in {OUT}; total {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
