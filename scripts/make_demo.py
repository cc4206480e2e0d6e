"""Make the bundled demo: generate X-ray-like images, train two small models, save assets.

Run from the repo root: ``.venv/bin/python scripts/make_demo.py [--out DIR]`` (about 3 minutes
of CPU time, 2 threads; seeded: a rerun on the same torch build gives the same images, cards
and weights; only the order of the safetensors header's metadata keys may change).
Writes src/seewhy/assets/demo/: two model cards, their safetensors weights (metadata: accuracy,
epoch, class_names), and samples/ (12 images, their masks, manifest.csv); then
``pytest tests/test_demo_assets.py`` checks them.

The images: a dark field, a bright bone shaft with soft edges and noise; a FRACTURE is a thin
dark crack across the shaft at a random height — the only thing that decides the class. Side
markers ("L"/"R" in a random corner) and text strips along the border are distractors that occur
in both classes. Masks mark the crack (dilated by 2 px) for fractures and are empty for normal
images (nothing to point at). The last fracture sample has a faint crack on purpose (see
``make_samples``): a case where the models are unsure or disagree.
"""

from __future__ import annotations

import argparse
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
N_TRAIN, N_TEST, BATCH = 2400, 600, 64
EPOCHS = {"xray_cnn": 8, "xray_resnet": 4}  # the plain CNN learns more slowly


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


def make_image(
    rng: np.random.Generator, fracture: bool, depth: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HxW) and its mask (bool HxW).

    ``depth`` is how much of the bone's brightness the crack removes (default: random in
    0.6-0.8); a small one makes a faint crack that the models are unsure about.
    """
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
        drawn = rng.uniform(0.6, 0.8)  # drawn either way: the rest of the image stays the same
        img[crack] -= brightness * (drawn if depth is None else depth)
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
    return np.array(pil), mask


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    """Adam with a one-cycle schedule, batches of 64; each image is flipped left/right and
    up/down at random (neither direction decides the class). Channels-last memory: about a
    third faster on CPU; the saved weights are made contiguous again."""
    g = torch.Generator().manual_seed(seed)
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    per_epoch = len(x) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(per_epoch):
            idx = order[i * BATCH : (i + 1) * BATCH]
            batch = x[idx].contiguous(memory_format=torch.channels_last)
            for dim in (-1, -2):
                flip = (torch.rand(len(idx), generator=g) < 0.5)[:, None, None, None]
                batch = torch.where(flip, batch.flip(dim), batch)
            loss = nn.functional.cross_entropy(model(batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"  epoch {epoch + 1}: loss {total / per_epoch:.3f}", flush=True)
    model.eval()


@torch.no_grad()
def fracture_probability(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """P(fracture) per image of a normalised batch."""
    return model(x).softmax(1)[:, 1]


def card(name: str, factory: str, acc: float) -> str:
    """The model card (SPEC section 3) of one demo model."""
    return (
        f'# The demo model "{name}", trained by scripts/make_demo.py'
        f" (held-out accuracy {acc:.3f}).\n"
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


def normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] -> the models' input: [N, 3, H, W], (x / 255 - MEAN) / STD."""
    x = torch.from_numpy(images).float().div(255)[:, None].repeat(1, 3, 1, 1)
    return (x - MEAN) / STD


def make_samples(models: list[nn.Module]) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """The 12 bundled samples: (image, mask, label), normal and fracture in turn.

    The last fracture is made faint on purpose: its crack depth is lowered step by step until
    the two models disagree or one of them is unsure (P(fracture) < 0.8), so that the demo
    shows a case to distrust. Each sample has its own seed, so this search changes no other.
    """
    out = []
    for i in range(12):
        fracture = i % 2 == 1
        img, mask = make_image(np.random.default_rng([7, i]), fracture)
        if i == 11:
            for depth in (0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1):
                faint, mask = make_image(np.random.default_rng([7, i]), fracture, depth)
                probs = [float(fracture_probability(m, normalise(faint[None]))) for m in models]
                print(
                    f"  faint crack depth {depth}: P(fracture) = "
                    + ", ".join(f"{p:.2f}" for p in probs),
                    flush=True,
                )
                img = faint
                if min(probs) < 0.8 or (max(probs) >= 0.5) != (min(probs) >= 0.5):
                    break
        out.append((img, mask, int(fracture)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder (default: %(default)s)")
    out = parser.parse_args().out
    torch.manual_seed(0)
    torch.set_num_threads(2)
    start = time.time()
    rng = np.random.default_rng(1)
    y_train = np.arange(N_TRAIN) % 2
    x_train = normalise(np.stack([make_image(rng, bool(y))[0] for y in y_train]))
    rng = np.random.default_rng(2)
    y_test = np.arange(N_TEST) % 2
    x_test = normalise(np.stack([make_image(rng, bool(y))[0] for y in y_test]))
    print(f"generated {N_TRAIN} + {N_TEST} images in {time.time() - start:.1f}s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    models = []
    for name, factory in (("xray_cnn", xray_cnn), ("xray_resnet", xray_resnet)):
        torch.manual_seed(0)
        model = factory()
        t = time.time()
        train(model, x_train, torch.from_numpy(y_train).long(), EPOCHS[name], seed=0)
        pred = (fracture_probability(model, x_test) > 0.5).long().numpy()
        acc = float((pred == y_test).mean())
        print(
            f"{name}: held-out accuracy {acc:.4f} on {N_TEST} images ({time.time() - t:.0f}s)",
            flush=True,
        )
        meta = {
            "accuracy": f"{acc:.4f}",
            "epoch": str(EPOCHS[name]),
            "class_names": json.dumps(LABELS),
            "trained_on": f"{N_TRAIN} generated images (scripts/make_demo.py)",
            "evaluated_on": f"{N_TEST} held-out generated images",
        }
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        weights = out / f"{name}.safetensors"
        save_file(state, str(weights), metadata=meta)
        weights.chmod(0o644)  # save_file makes it private; package data must be readable
        (out / f"{name}.toml").write_text(card(name, factory.__name__, acc))
        models.append(model)
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    rows = []
    for i, (img, mask, label) in enumerate(make_samples(models)):
        sid = f"xray_{i:02d}"
        Image.fromarray(img).save(samples / f"{sid}.png", optimize=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            samples / f"{sid}_mask.png", optimize=True
        )
        probs = [float(fracture_probability(m, normalise(img[None]))) for m in models]
        print(f"  {sid} {LABELS[label]:8s} P(fracture): " + ", ".join(f"{p:.2f}" for p in probs))
        rows.append(
            {
                "id": sid,
                "image_path": f"{sid}.png",
                "label": LABELS[label],
                "mask_path": f"{sid}_mask.png",
            }
        )
    with (samples / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "image_path", "label", "mask_path"])
        w.writeheader()
        w.writerows(rows)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"assets: {size / 1e6:.2f} MB in {out}; total {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
