"""The bundled demo: models that are right, maps that point at the fracture, a small footprint,
and `seewhy demo` end to end.

The models are rebuilt here the direct way (factory + ``safetensors.torch.load_file``) and the
samples preprocessed as the cards say (resize, /255, normalise), so that a wrong mean/std in a
card or a drifted factory fails here, independently of ``seewhy.models``; ``load_model`` must
then agree with the direct way.
"""

from __future__ import annotations

import csv
import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from seewhy import load_model
from seewhy.assets import demo_cards, demo_dir, demo_manifest, demo_samples
from seewhy.data.summary import validate_summary
from seewhy.methods.registry import create_method

LABELS = ["normal", "fracture"]


def rows() -> list[dict[str, str]]:
    with demo_manifest().open() as f:
        return list(csv.DictReader(f))


def read_card(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def build(card_path: Path) -> torch.nn.Module:
    """The card's model, the direct way."""
    card = read_card(card_path)
    module_name, factory = card["arch"].split(":")
    module = getattr(importlib.import_module(module_name), factory)(len(card["labels"]))
    module.load_state_dict(load_file(str(card_path.parent / card["checkpoint"])))
    return module.eval()


def batch(card_path: Path) -> torch.Tensor:
    """The 12 samples preprocessed as the card says: resize, /255, normalise."""
    pre = read_card(card_path)["preprocess"]
    size = int(pre["size"])
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1)
    images = []
    for r in rows():
        img = Image.open(demo_manifest().parent / r["image_path"]).convert("RGB")
        img = img.resize((size, size), Image.Resampling.BILINEAR)
        images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return (torch.stack(images).float() / 255 - mean) / std


def near(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within ``radius`` of the mask (the mask dilated by a disc)."""
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    d2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
    return d2.min(axis=-1) <= radius**2


def test_assets_are_small_and_complete() -> None:
    size = sum(p.stat().st_size for p in demo_dir().rglob("*") if p.is_file())
    assert size < 5_000_000
    assert len(rows()) == 12
    assert demo_samples() == [demo_manifest().parent / r["image_path"] for r in rows()]
    assert sorted(r["label"] for r in rows()) == ["fracture"] * 6 + ["normal"] * 6
    for r in rows():
        img = Image.open(demo_manifest().parent / r["image_path"])
        assert (img.mode, img.size) == ("L", (128, 128))
        mask = np.asarray(Image.open(demo_manifest().parent / r["mask_path"])) > 0
        # Fractures: the crack band (0.5-6% of the image); normal images: an empty mask.
        share = mask.mean()
        assert 0.005 < share < 0.06 if r["label"] == "fracture" else share == 0, r["id"]


def test_cards_and_metadata() -> None:
    assert [c.name for c in demo_cards()] == ["xray_cnn.toml", "xray_resnet.toml"]
    for path in demo_cards():
        card = read_card(path)
        assert card["labels"] == LABELS and card["task"] == "classification"
        assert card["arch"] == f"seewhy.assets.demo_models:{path.stem}"
        with safe_open(str(path.parent / card["checkpoint"]), "pt") as f:
            meta = f.metadata()
        assert float(meta["accuracy"]) >= 0.95
        assert json.loads(meta["class_names"]) == LABELS
        assert int(meta["epoch"]) >= 1
        n_weights = sum(
            v.numel() for v in load_file(str(path.parent / card["checkpoint"])).values()
        )
        assert n_weights < 300_000


@pytest.mark.parametrize("card_path", demo_cards(), ids=lambda p: p.stem)
def test_model_classifies_the_samples_and_gradcam_points_at_the_crack(card_path: Path) -> None:
    module, x = build(card_path), batch(card_path)
    truth = torch.tensor([LABELS.index(r["label"]) for r in rows()])
    layer = read_card(card_path)["layer"]
    e = create_method("gradcam", layer=layer)(module, x, "pred")
    assert e.output is not None
    pred = e.output.argmax(1)
    assert int((pred == truth).sum()) >= 11
    # load_model reads the card to the same model and preprocessing.
    loaded = load_model(card_path, device="cpu")
    images = [Image.open(demo_manifest().parent / r["image_path"]) for r in rows()]
    with torch.no_grad():
        assert torch.allclose(loaded.module(loaded.preprocess(images)), e.output, atol=1e-4)
    base = demo_manifest().parent
    hits = 0
    for i, r in enumerate(rows()):
        if r["label"] != "fracture":
            continue
        mask = np.asarray(Image.open(base / r["mask_path"])) > 0
        heat = e.map[i].numpy()
        # The CAM grid is 8 px: the mask dilated by one cell is "at the crack" ...
        band = near(mask, 8)
        peak_in_band = bool(band.flat[int(heat.argmax())])
        # ... and the band holds far more of the map than its share of the image.
        energy = float(heat[band].sum() / heat.sum())
        hits += int(pred[i]) == 1 and peak_in_band and energy > 3 * band.mean()
    assert hits >= 5, (card_path.stem, hits)


@pytest.mark.slow
def test_seewhy_demo_end_to_end(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "seewhy.cli", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert validate_summary(summary) == []
    assert len(summary["results"]) == 12 * 2
    assert {a["method"] for r in summary["results"] for a in r["attributions"]} == {
        "gradcam",
        "eigencam",
        "scorecam",
    }
    assert len(summary["agreement"]) == 12 * 3
    # the trust checks: one verdict per model x method, with the figures and reasons
    checks = {(c["model"], c["method"]): c for c in summary["checks"]}
    assert set(checks) == {
        (m, x) for m in ("xray_cnn", "xray_resnet") for x in ("gradcam", "eigencam", "scorecam")
    }
    for c in checks.values():
        assert c["verdict"] in ("pass", "warn", "fail") and c["reasons"]
        assert c["samples"] == 12 and c["mask_samples"] == 6  # normal images have empty masks
        assert c["energy_in_mask"] > 3 * c["mask_area"]  # the maps find the cracks
        assert len(c["curves"]["deletion"]) == 21
        assert (tmp_path / "demo" / c["figure"]).is_file()
    # EigenCAM reads activations only: randomizing the head leaves it exactly as it was
    for m in ("xray_cnn", "xray_resnet"):
        assert checks[m, "eigencam"]["curves"]["randomization"][0]["rank_correlation"] == (
            pytest.approx(1.0)
        )
        assert checks[m, "gradcam"]["curves"]["randomization"][0]["rank_correlation"] < 0.5
    html = (tmp_path / "demo" / "report.html").read_text()
    assert html.index("Can these maps be trusted?") < html.index("<h2 id='models'>")
    figures = html.count("data:image/png;base64,") + html.count("data:image/webp;base64,")
    assert figures == 12 * 2 * 3 + 12 + 2 * 3
    # noisy scans go in as WebP: the whole report stays a few MB (27 MB as PNGs)
    assert len(html) < 8_000_000
