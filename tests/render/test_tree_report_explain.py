"""report.html of a ``seewhy explain`` run with a tree model: the section of what drives each
tree model (``importance[]``), its figure inlined and its features' numbers, every name escaped;
a dataset run keeps it in its overview instead."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from PIL import Image

from seewhy.render.report import render_report

EVIL = "<script>alert(1)</script>"


def _summary(dataset: bool) -> dict:
    summary = {
        "schema": "seewhy/1",
        "models": [
            {"name": "prices", "arch": "lightgbm:p.txt", "kind": "tree", "task": "regression"}
        ],
        "samples": [{"id": "r1", "image_path": ""}],
        "results": [],
        "agreement": [],
        "checks": [],
        "cohorts": [],
        "importance": [
            {
                "model": "prices",
                "method": "tree-shap",
                "rows": 6,
                "algorithm": "tree_path_dependent",
                "features": [
                    {"name": "water_share", "score": 0.0123, "abs_score": 0.0456},
                    {"name": EVIL, "score": -0.5, "abs_score": 0.75},
                ],
                "figure": "figures/prices__tree-shap.png",
            }
        ],
    }
    if dataset:
        summary["dataset"] = {"rows": 1, "overview": {}}
    return summary


def test_an_explain_run_shows_what_drives_its_tree_model(tmp_path: Path) -> None:
    fig = tmp_path / "figures" / "prices__tree-shap.png"
    fig.parent.mkdir(parents=True)
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(fig)
    (tmp_path / "summary.json").write_text(json.dumps(_summary(dataset=False)))
    html = render_report(tmp_path).read_text()
    section = html[html.index("<h2 id='importance'>") :]
    section = section[: section.index("<h2", 5)] if "<h2" in section[5:] else section
    assert "prices · tree-shap over 6 rows" in section
    assert base64.b64encode(fig.read_bytes()).decode()[:200] in section
    # the larger mean |SHAP| first; numbers as recorded, the evil name escaped
    assert section.index("&lt;script&gt;") < section.index("water_share")
    assert "0.75" in section and "0.0456" in section
    assert EVIL not in html


def test_a_dataset_run_has_no_separate_section(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(_summary(dataset=True)))
    html = render_report(tmp_path).read_text()
    assert "<h2 id='importance'>" not in html
