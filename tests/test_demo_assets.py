"""The bundled demo: models that are right, maps that point at the fracture, a small footprint,
and `seewhy demo` end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from seewhy import explain, load_model
from seewhy.assets import demo_cards, demo_dir, demo_manifest, demo_samples
from seewhy.data.output import validate_summary


def rows() -> list[dict[str, str]]:
    with demo_manifest().open() as f:
        return list(csv.DictReader(f))


def test_assets_are_small_and_complete() -> None:
    size = sum(p.stat().st_size for p in demo_dir().rglob("*") if p.is_file())
    assert size < 5_000_000
    assert len(rows()) == 12 and len(demo_samples()) == 12
    assert sorted(r["label"] for r in rows()) == ["fracture"] * 6 + ["normal"] * 6


def test_models_classify_the_samples_and_point_at_the_crack() -> None:
    base = demo_manifest().parent
    paths = [base / r["image_path"] for r in rows()]
    truth = [["normal", "fracture"].index(r["label"]) for r in rows()]
    for card in demo_cards():
        model = load_model(card, device="cpu")
        assert float(model.metadata["accuracy"]) >= 0.95
        (e,) = explain(model, paths, ["gradcam"], target="pred")
        assert e.output is not None
        assert (e.output.argmax(1).tolist() == truth) or sum(
            int(a == b) for a, b in zip(e.output.argmax(1).tolist(), truth, strict=True)
        ) >= 11
        hits = 0
        for i, r in enumerate(rows()):
            if r["label"] != "fracture":
                continue
            near = near_crack(np.asarray(Image.open(base / r["mask_path"])) > 0, 16)
            heat = e.map[i].numpy()
            peak = int(heat.argmax())
            # The CAM grid is 8 px: the peak lies within two cells of the crack, and the band
            # around the crack holds far more of the map than its share of the image.
            energy = heat[near].sum() / heat.sum()
            hits += bool(near.flat[peak]) and energy > 2 * near.mean()
        assert hits >= 5, card.name


def near_crack(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of the mask."""
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    d2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
    return d2.min(axis=-1) <= radius**2


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
    html = (tmp_path / "demo" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 12 * 2 * 3 + 12
    assert torch.__version__  # the demo ran offline on whatever torch is installed
