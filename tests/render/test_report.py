"""report.html: self-contained, escaped, complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from seewhy.render.report import render_report

EVIL = "<script>alert(1)</script>"


def test_report_inlines_figures_and_escapes_user_text(tmp_path: Path) -> None:
    (tmp_path / "figures" / "s1").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "figures/s1/m__gradcam.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "figures/s1/comparison.png")
    summary = {
        "schema": "seewhy/1",
        "models": [
            {
                "name": "m",
                "arch": "timm:x",
                "checkpoint": 'a"b.pth',
                "task": "classification",
                "labels": [EVIL, "ok"],
                "layer": "auto",
            }
        ],
        "samples": [{"id": "s1", "image_path": 'dir/"quoted".png'}],
        "results": [
            {
                "sample": "s1",
                "model": "m",
                "prediction": {"label": EVIL, "index": 0, "score": 0.9},
                "explained": EVIL,
                "attributions": [
                    {
                        "method": "gradcam",
                        "map": "maps/s1/m__gradcam.npy",
                        "figure": "figures/s1/m__gradcam.png",
                    },
                    {"method": "eigencam", "map": "x.npy", "figure": "figures/s1/gone.png"},
                ],
            }
        ],
        "agreement": [],
        "checks": [],
        "cohorts": [],
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "errors.jsonl").write_text(
        json.dumps({"id": "bad", "path": "bad.png", "reason": f"not an image {EVIL}"}) + "\n"
    )
    html = render_report(tmp_path).read_text()
    assert EVIL not in html and "&lt;script&gt;" in html
    assert '"quoted"' not in html and "&quot;quoted&quot;" in html
    assert html.count("data:image/png;base64,") == 2  # figure + comparison; the missing one not
    assert "figure missing" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "bad.png" in html and "Failed samples (1)" in html
