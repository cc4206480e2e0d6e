"""report.html of a `seewhy dataset` run, from a hand-built output folder: the overview (counts,
metrics, confusion, overview figures, predictions.csv), a section per cohort (description,
mean map, region and features tables, a gallery of thumbnails linking the full figures), the
explained rows as one linked table instead of a card each, every value escaped."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.render import report
from seewhy.render.figures import explanation_figure
from seewhy.render.report import render_report

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
GREEN, MAGENTA, ORANGE, CYAN = (0, 255, 0), (255, 0, 255), (255, 140, 0), (0, 200, 255)
THUMB_SOURCE = (480, 120)
"""Size of the solid member figures: their thumbnails are THUMB_WIDTH x 60."""


def solid(path: Path, size: tuple[int, int], rgb: tuple[int, int, int]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.full((h, w, 3), rgb, np.uint8)).save(path)
    return path.read_bytes()


def build_output(out: Path) -> dict[str, Any]:
    """A dataset run's output folder as the interface describes it (issue 12): two models (a
    regressor and a classifier), three cohorts, five explained rows, two failed rows."""
    rng = np.random.default_rng(0)
    image = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    heat = rng.random((16, 16)).astype(np.float32)
    real = explanation_figure(  # a real 4-panel figure: the thumbnail must be far smaller
        out / "figures/row10/m__gradcam.png", image=image, heatmap=heat, title="row10", details=[]
    )
    solid(out / "figures/row9/m__gradcam.png", THUMB_SOURCE, GREEN)
    solid(out / "figures/evil/m__gradcam.png", THUMB_SOURCE, MAGENTA)
    solid(out / "figures/row100/m__gradcam.png", THUMB_SOURCE, GREEN)
    solid(out / "javascript:x.png", (8, 8), GREEN)  # a file whose name looks like a scheme
    overview = solid(out / "overview/m__predictions.png", (300, 200), ORANGE)
    mean_fig = solid(out / "cohorts/m__gradcam__top.png", (320, 160), CYAN)
    np.save(out / "cohorts/m__gradcam__top.npy", heat)
    (out / "predictions.csv").write_text("id,model,truth,prediction\nrow9,m,98000,99000\n")
    (out / "errors.jsonl").write_text(
        json.dumps({"id": "row3", "path": "img/3.png", "reason": "missing image"})
        + "\n"
        + json.dumps({"id": EVIL, "path": EVIL, "reason": f"corrupt {EVIL}"})
        + "\n"
    )
    truths = {"row9": 98000.0, "row10": 512000.0, "row100": 1.5e6, EVIL: 250000.0, "row7": None}
    preds = {"row9": 99000.0, "row10": 498000.0, "row100": 1.4e6, EVIL: 260000.0, "row7": 7.0}
    figure_of = {
        "row9": "figures/row9/m__gradcam.png",
        "row10": "figures/row10/m__gradcam.png",
        "row100": "figures/row100/m__gradcam.png",
        EVIL: "figures/evil/m__gradcam.png",
        "row7": "../outside.png",
    }

    def member(sid: str) -> dict[str, Any]:
        truth, pred = truths[sid], preds[sid]
        return {
            "id": sid,
            "target": truth,
            "prediction": pred,
            "residual": None if truth is None else pred - truth,
            "figure": figure_of[sid],
            "map": f"maps/{sid}/m__gradcam.npy",
        }

    summary = {
        "schema": "seewhy/1",
        "command": "seewhy dataset houses.csv",
        "models": [
            {"name": "m", "arch": "resnet18", "task": "regression", "layer": "layer4"},
            {"name": "c", "arch": "resnet18", "task": "classification", "labels": ["a", "b"]},
        ],
        "samples": [
            {"id": sid, "image_path": f"img/{sid}.png", "target": truths[sid]} for sid in truths
        ],
        "results": [
            {
                "sample": sid,
                "model": "m",
                "prediction": {"value": preds[sid]},
                "explained": "value",
                "attributions": [
                    {"method": "gradcam", "map": f"maps/{sid}/m.npy", "figure": figure_of[sid]}
                ],
            }
            for sid in truths
        ],
        "agreement": [],
        "checks": [],
        "dataset": {
            "manifests": ["houses.csv", "extra.parquet"],
            "id_col": "id",
            "target_col": "price",
            "rows": 200,
            "predicted": 198,
            "explained": 5,
            "failed": 2,
            "explain": "cohorts",
            "cohort_size": 32,
            "check_sample": 0,
            "region_names": ["soil", "vegetation", "water", "road"],
            "predictions": "predictions.csv",
            "overview": {"m": "overview/m__predictions.png", "c": "overview/missing.png"},
        },
        "metrics": {
            "m": {"rows": 198, "r2": 0.9123, "mae": 1234.0, "rmse": 2000.0},
            "c": {
                "rows": 10,
                "accuracy": 0.8,
                "confusion": {"labels": ["a", EVIL], "matrix": [[5, 1], [1, 3]]},
            },
        },
        "cohorts": [
            {
                "name": "top",
                "title": "top decile of price",
                "model": "m",
                "method": "gradcam",
                "sample_ids": ["row100", "row10", "row9"],
                "members": [member("row100"), member("row10"), member("row9")],
                "mean_map": "cohorts/m__gradcam__top.npy",
                "figure": "cohorts/m__gradcam__top.png",
                "signed": False,
                "region_share": {"soil": 0.3, "vegetation": 0.05, "water": 0.6, "road": 0.05},
                "region_share_lower": {"soil": 0.5, "vegetation": 0.2, "water": 0.05, "road": 0.25},
                "region_area": {"soil": 0.5, "vegetation": 0.2, "water": 0.23, "road": 0.07},
                "description": "top decile of price: water raises the price (0.60 of the raising "
                "attribution on 0.23 of the area)",
            },
            {
                "name": EVIL,
                "title": f"highest error {EVIL}",
                "model": "m",
                "method": "gradcam",
                "sample_ids": [EVIL, "row7"],
                "members": [
                    member(EVIL),
                    member("row7"),
                    {"id": "js", "figure": "javascript:x.png"},
                    {"id": "nofig", "prediction": 1.0},
                ],
                "description": f"described {EVIL}",
                "features": [
                    {"name": "sqft", "score": 0.12, "abs_score": 0.2},
                    {"name": EVIL, "score": -0.5, "abs_score": 0.5},
                ],
            },
            {  # an older record: ids only, the figures found in results
                "name": "bottom",
                "model": "m",
                "method": "gradcam",
                "sample_ids": ["row9"],
            },
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return {
        "summary": summary,
        "real": real.read_bytes(),
        "overview": overview,
        "mean_fig": mean_fig,
    }


@pytest.fixture(scope="module")
def dataset_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("dataset")
    built = build_output(out)
    path = render_report(out)
    return built | {"out": out, "path": path, "html": path.read_text(encoding="utf-8")}


def section(html: str, anchor: str) -> str:
    """The page from the element with id ``anchor`` up to the next h2 or cohort section."""
    start = html.index(f"id='{anchor}'")
    ends = [html.find(m, start + 1) for m in ("<h2 ", "<section class='cohort'")]
    return html[start : min([e for e in ends if e > 0] or [len(html)])]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_overview_shows_counts_metrics_confusion_figures_and_the_predictions_link(
    dataset_report: dict[str, Any],
) -> None:
    html = dataset_report["html"]
    part = section(html, "overview")
    assert (
        "<tr><td class='num'>200</td><td class='num'>198</td><td class='num'>5</td>"
        "<td class='num'>2</td></tr>"
    ) in part
    assert "Some rows failed" in part
    assert "manifests: houses.csv, extra.parquet · id column: id · target column: price" in part
    assert "regions: soil, vegetation, water, road" in part
    assert "<a href='predictions.csv'>predictions.csv</a>" in part
    # metrics: one row per model, the columns both have (rows) or either has
    assert (
        "<th>model</th><th>rows</th><th>r2</th><th>mae</th><th>rmse</th><th>accuracy</th>"
    ) in part
    assert (
        "<tr><td>m</td><td class='num'>198</td><td class='num'>0.9123</td>"
        "<td class='num'>1234</td><td class='num'>2000</td><td>-</td></tr>"
    ) in part
    assert (
        "<tr><td>c</td><td class='num'>10</td><td>-</td><td>-</td><td>-</td>"
        "<td class='num'>0.8</td></tr>"
    ) in part
    # the classifier's confusion matrix: rows true, columns predicted, labels escaped
    assert f"<th>true \\ predicted</th><th>a</th><th>{ESCAPED}</th>" in part
    assert "<tr><td>a</td><td class='num'>5</td><td class='num'>1</td></tr>" in part
    assert f"<tr><td>{ESCAPED}</td><td class='num'>1</td><td class='num'>3</td></tr>" in part
    # the regressor's overview figure inlined; the classifier's is missing and says so
    assert f"src='data:image/png;base64,{b64(dataset_report['overview'])}'" in part
    assert "figure missing: overview/missing.png (file not found)" in part
    # the sections, in order, in the contents and the page
    assert re.findall(r"<h2 id='([^']*)'", html) == [
        "overview",
        "models",
        "errors",
        "cohorts",
        "explained",
    ]


def thumbnails(part: str) -> list[tuple[str | None, str, str]]:
    """(href or None, alt, src) of each gallery image in ``part``."""
    found = []
    for m in re.finditer(
        r"<figure class='thumb'>(?:<a href='([^']*)'>)?<img alt='([^']*)' src='([^']*)'>", part
    ):
        found.append((m.group(1), m.group(2), m.group(3)))
    return found


def decode(uri: str) -> tuple[Image.Image, int]:
    mime, data = uri.split(",", 1)
    assert mime in ("data:image/webp;base64", "data:image/jpeg;base64")
    raw = base64.b64decode(data)
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img, len(raw)


def test_cohort_gallery_thumbnails_are_small_data_uris_linking_the_full_figures(
    dataset_report: dict[str, Any],
) -> None:
    html, out = dataset_report["html"], dataset_report["out"]
    part = section(html, "cohort-0")
    assert "<h3>top decile of price</h3>" in part
    assert "cohort top · model m · method gradcam · 3 member(s)" in part
    assert "water raises the price (0.60 of the raising attribution on 0.23 of the area)" in part
    thumbs = thumbnails(part)
    assert [(href, alt) for href, alt, _ in thumbs] == [
        ("figures/row100/m__gradcam.png", "row100 · top decile of price"),
        ("figures/row10/m__gradcam.png", "row10 · top decile of price"),
        ("figures/row9/m__gradcam.png", "row9 · top decile of price"),
    ]
    for href, _, _ in thumbs:
        assert href is not None and (out / href).is_file()  # the link reaches the full figure
    real, real_bytes = decode(thumbs[1][2])
    assert real.size == (report.THUMB_WIDTH, round(400 * report.THUMB_WIDTH / 1400))
    assert real_bytes < len(dataset_report["real"]) / 10
    assert b64(dataset_report["real"]) not in html  # the full figure is linked, not inlined
    green, _ = decode(thumbs[2][2])
    assert green.size == (report.THUMB_WIDTH, 60)
    pixels = np.asarray(green.convert("RGB")).astype(int)
    assert np.abs(pixels - GREEN).max() <= 8
    assert thumbs[0][2] == thumbs[2][2]  # the same picture: one encoding, reused
    # captions: the id, then target, prediction and residual to 6 significant digits
    assert (
        "<figcaption><b>row10</b><br>target 512000 · prediction 498000 · residual -14000"
        "</figcaption>"
    ) in part
    assert "<b>row100</b><br>target 1.5e+06 · prediction 1.4e+06 · residual -100000" in part
    # the mean map's figure inlined
    assert f"src='data:image/png;base64,{b64(dataset_report['mean_fig'])}'" in part
    assert "alt='top decile of price: mean map of 3 member(s)'" in part


def test_region_table_lists_raises_lowers_area_and_their_ratio_largest_first(
    dataset_report: dict[str, Any],
) -> None:
    part = section(dataset_report["html"], "cohort-0")
    assert (
        "<th>class</th><th>raises (share)</th><th>lowers (share)</th>"
        "<th>area (share of pixels)</th><th>raises ÷ area</th>"
    ) in part
    rows = re.findall(r"<tr><td>(\w+)</td>((?:<td class='num'>[^<]*</td>){4})</tr>", part)
    values = [(name, re.findall(r">([^<]*)<", cells)[::2]) for name, cells in rows]
    assert values == [
        ("water", ["0.6", "0.05", "0.23", f"{0.6 / 0.23:.3g}"]),
        ("soil", ["0.3", "0.5", "0.5", "0.6"]),
        ("vegetation", ["0.05", "0.2", "0.2", "0.25"]),
        ("road", ["0.05", "0.25", "0.07", f"{0.05 / 0.07:.3g}"]),
    ]


def test_hostile_ids_and_paths_stay_text_and_links_stay_inside_the_folder(
    dataset_report: dict[str, Any],
) -> None:
    html = dataset_report["html"]
    assert EVIL not in html and html.count("<script") == 1  # only the inline sort script
    assert html.rstrip().endswith("</script>\n</body></html>")
    part = section(html, "cohort-1")
    assert f"<h3>highest error {ESCAPED}</h3>" in part
    assert f"cohort {ESCAPED} · model m" in part and f"<p>described {ESCAPED}</p>" in part
    assert f"<figcaption><b>{ESCAPED}</b><br>target 250000" in part
    assert f"alt='{ESCAPED} · highest error {ESCAPED}'" in part
    # the index links the sections by generated anchors, never by the data
    assert f"<td><a href='#cohort-1'>highest error {ESCAPED}</a></td>" in html
    assert re.findall(r"<section class='cohort' id='([^']*)'", html) == [
        "cohort-0",
        "cohort-1",
        "cohort-2",
    ]
    # a figure outside the folder is neither read nor linked; a scheme-like name is a path
    assert "figure missing: ../outside.png (outside the output folder)" in part
    assert "outside.png'" not in part
    hrefs = [href for href, _, _ in thumbnails(part)]
    assert hrefs == ["figures/evil/m__gradcam.png", "javascript%3Ax.png"]
    assert "href='javascript:" not in html
    # a member without a figure (--no-figures) is a caption, not a missing figure
    assert "<p class='muted'>no figure</p><figcaption><b>nofig</b><br>prediction 1" in part
    assert html.count("figure missing") == 2  # the outside one and the classifier's overview
    # the fusion features: mean score coloured by sign, largest |score| first
    assert (
        f"<tr><td>{ESCAPED}</td><td class='num'><span class='lowers'>-0.5</span></td>"
        "<td class='num'>0.5</td></tr><tr><td>sqft</td>"
        "<td class='num'><span class='raises'>0.12</span></td><td class='num'>0.2</td></tr>"
    ) in part


def test_a_cohort_with_ids_only_finds_its_figures_in_the_results(
    dataset_report: dict[str, Any],
) -> None:
    part = section(dataset_report["html"], "cohort-2")
    assert "<h3>bottom</h3>" in part and "1 member(s)" in part
    assert [(h, a) for h, a, _ in thumbnails(part)] == [
        ("figures/row9/m__gradcam.png", "row9 · bottom")
    ]
    assert "<b>row9</b><br>prediction 99000</figcaption>" in part


def test_explained_rows_are_one_linked_table_not_a_card_each(
    dataset_report: dict[str, Any],
) -> None:
    html = dataset_report["html"]
    assert "class='sample'" not in html and "id='samples'" not in html
    part = section(html, "explained")
    assert part.startswith("id='explained'>Explained rows (5)</h2>")
    assert (
        "<tr><td>row10</td><td>m</td><td>gradcam</td><td class='num'>512000</td>"
        "<td class='num'>498000</td><td class='num'>-14000</td>"
        "<td><a href='figures/row10/m__gradcam.png'>figure</a></td></tr>"
    ) in part
    assert (
        "<tr><td>row7</td><td>m</td><td>gradcam</td><td>-</td><td class='num'>7</td>"
        "<td>-</td><td>-</td></tr>"
    ) in part
    assert f"<tr><td>{ESCAPED}</td>" in part


def test_the_explained_table_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_output(tmp_path)
    monkeypatch.setattr(report, "EXPLAINED_ROWS", 2)
    html = render_report(tmp_path).read_text(encoding="utf-8")
    part = section(html, "explained")
    assert part.count("<tr><td") == 2 and "... 3 more in summary.json" in part


def test_explain_reports_keep_their_sample_cards(tmp_path: Path) -> None:
    summary = build_output(tmp_path)["summary"]
    for key in ("dataset", "metrics"):
        del summary[key]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    html = render_report(tmp_path).read_text(encoding="utf-8")
    assert "id='overview'" not in html and "id='explained'" not in html
    assert html.count("<section class='sample'") == 5
    assert "class='gallery'" not in html and "<h2 id='cohorts'>Cohorts</h2>" in html
    assert "<tr><td>top</td><td class='num'>3</td><td>row100, row10, row9</td>" in html


def test_the_sort_script_is_inline_and_comes_after_every_table(
    dataset_report: dict[str, Any],
) -> None:
    html = dataset_report["html"]
    script = html[html.index("<script>") :]
    assert "</table>" not in script and "src=" not in script and "http" not in script
    assert 'querySelectorAll("table")' in script and 'classList.contains("num")' in script
