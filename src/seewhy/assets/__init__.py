"""The bundled demo: two small trained models (cards + safetensors) and sample X-ray-like images.

Made by ``scripts/make_demo.py``; no torch import here.
"""

from __future__ import annotations

from pathlib import Path

LABELS = ("normal", "fracture")


def demo_dir() -> Path:
    """The folder holding the demo's cards, weights and ``samples/``."""
    return Path(__file__).resolve().parent / "demo"


def demo_cards() -> list[Path]:
    """The demo's model cards."""
    return [demo_dir() / "xray_cnn.toml", demo_dir() / "xray_resnet.toml"]


def demo_manifest() -> Path:
    """``samples/manifest.csv``: id, image_path, label, mask_path."""
    return demo_dir() / "samples" / "manifest.csv"


def demo_samples() -> list[Path]:
    """The sample images, in manifest order."""
    folder = demo_dir() / "samples"
    return sorted(p for p in folder.glob("*.png") if not p.stem.endswith("_mask"))
