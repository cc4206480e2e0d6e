"""The bundled demo: two small trained models (cards + safetensors) and X-ray-like samples.

Everything under ``demo/`` is made by ``scripts/make_demo.py`` (generated images, models trained
on CPU) and shipped as package data:

- ``xray_cnn.toml`` / ``xray_resnet.toml``: model cards (SPEC section 3) whose ``arch`` is a
  factory in :mod:`seewhy.assets.demo_models`, with ``*.safetensors`` weights beside them;
- ``samples/manifest.csv`` (``id,image_path,label,mask_path``, paths relative to it): twelve
  128x128 8-bit grayscale PNGs, six ``normal`` and six ``fracture``. A fracture's mask marks
  its crack (dilated by 2 px); a normal image's mask is empty (there is nothing to point at),
  so localisation checks use the fracture samples only.

No torch import here: ``seewhy --help`` stays light.
"""

from __future__ import annotations

import csv
from pathlib import Path

LABELS = ("normal", "fracture")


def demo_dir() -> Path:
    """The folder holding the demo's cards, weights and ``samples/``.

    Returns:
        ``<package>/assets/demo`` as an absolute path.
    """
    return Path(__file__).resolve().parent / "demo"


def demo_cards() -> list[Path]:
    """The demo's model cards.

    Returns:
        ``[xray_cnn.toml, xray_resnet.toml]`` in ``demo_dir()``.
    """
    return [demo_dir() / "xray_cnn.toml", demo_dir() / "xray_resnet.toml"]


def demo_manifest() -> Path:
    """The samples' manifest.

    Returns:
        ``samples/manifest.csv`` with columns ``id, image_path, label, mask_path``.
    """
    return demo_dir() / "samples" / "manifest.csv"


def demo_samples() -> list[Path]:
    """The sample images.

    Returns:
        Absolute paths of the twelve sample PNGs, in manifest order.
    """
    manifest = demo_manifest()
    with manifest.open(newline="") as f:
        return [manifest.parent / row["image_path"] for row in csv.DictReader(f)]
