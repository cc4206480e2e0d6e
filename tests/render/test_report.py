"""report.html: self-contained, escaped, complete, robust to missing pieces."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.core.errors import UsageError
from seewhy.render.report import render_report

EVIL = "<script>alert(1)</script>"
QUOTED = "dir/\"quoted\" & 'single'.png"
URI = "data:image/png;base64,"


def png(path: Path, value: int = 0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 6, 3), value, np.uint8)).save(path)
    return path.read_bytes()


def summary(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": "seewhy/1",
        "models": [],
        "samples": [],
        "results": [],
        "agreement": [],
        "checks": [],
        "cohorts": [],
    }
    return base | sections


def write(out: Path, data: dict[str, Any], errors: list[Any] | None = None) -> str:
    (out / "summary.json").write_text(json.dumps(data))
    if errors is not None:
        (out / "errors.jsonl").write_text(
            "".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in errors)
        )
    return render_report(out).read_text(encoding="utf-8")


def inlined(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(re.escape(URI) + r"([A-Za-z0-9+/=]+)", html)]


def test_report_inlines_figures_and_escapes_user_text(tmp_path: Path) -> None:
    fig_a = png(tmp_path / "figures/s1/m__gradcam.png", 10)
    fig_b = png(tmp_path / "figures/s2/m__gradcam.png", 20)
    comparison = png(tmp_path / "figures/s1/comparison.png", 30)  # found without a reference
    tokens = png(tmp_path / "figures/s2/m__gradcam__tokens.png", 40)  # found beside its figure
    data = summary(
        models=[
            {
                "name": EVIL,
                "arch": "timm:x",
                "checkpoint": 'a"b.pth',
                "task": "classification",
                "labels": [EVIL, "ok"],
                "layer": "auto",
                "metadata": {"val_acc": 0.93},
            }
        ],
        samples=[
            {"id": "s1", "image_path": QUOTED, "target": EVIL},
            {"id": "s2", "image_path": "b.png", "text": EVIL},
        ],
        results=[
            {
                "sample": "s1",
                "model": EVIL,
                "prediction": {"label": EVIL, "index": 0, "score": 0.9},
                "explained": EVIL,
                "attributions": [
                    {"method": "gradcam", "map": "m.npy", "figure": "figures/s1/m__gradcam.png"},
                    {"method": EVIL, "map": "x.npy", "figure": "figures/s1/gone.png"},
                ],
            },
            {
                "sample": "s2",
                "model": EVIL,
                "prediction": {"value": 123.456},
                "explained": "value",
                "attributions": [
                    {
                        "method": "gradcam",
                        "map": "m.npy",
                        "figure": "figures/s2/m__gradcam.png",
                        "tokens": [{"token": EVIL, "score": 0.5}, {"token": "b", "score": -1.0}],
                        "modality_share": {"image": 0.75, "text": 0.25},
                        "features": [{"name": EVIL, "score": -2.5}],
                    }
                ],
            },
        ],
        checks=[
            {
                "model": EVIL,
                "method": "gradcam",
                "randomization_similarity": 0.8123,
                "verdict": "fail",
                "reasons": [f"map does not depend on weights {EVIL}"],
            }
        ],
    )
    html = write(tmp_path, data, [{"id": "bad", "path": "bad.png", "reason": f"not {EVIL}"}])
    # every sample, every figure that exists (and only those), each once
    assert "s1" in html and "s2" in html
    assert sorted(inlined(html)) == sorted([fig_a, fig_b, comparison, tokens])
    assert html.count("figure missing") >= 1 and "figures/s1/gone.png (file not found)" in html
    # user text escaped everywhere it appears, attribute values included
    assert EVIL not in html and html.count("<script") == 1  # only the inline sort script
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10
    assert QUOTED not in html and '"quoted"' not in html
    assert "dir/&quot;quoted&quot; &amp; &#x27;single&#x27;.png" in html
    assert 'a"b.pth' not in html and "a&quot;b.pth" in html
    # self-contained: no URL, no script
    assert "http://" not in html and "https://" not in html and "src='data:" in html
    assert re.findall(r"src='(?!data:image/png;base64,)", html) == []
    # the tables
    assert "<h2 id='errors' class='bad'>Failed samples (1)</h2>" in html
    assert "<td>bad</td><td>bad.png</td><td>not &lt;script&gt;" in html
    assert "randomization ρ" in html and "<td class='num'>0.812</td>" in html
    assert "<span class='verdict-fail'>fail</span>" in html
    assert "val_acc: 0.93" in html and "123.5" in html and "image: 0.75, text: 0.25" in html


def test_agreement_table_and_the_referenced_comparison_figure(tmp_path: Path) -> None:
    figure = png(tmp_path / "figures/s1/other-name.png", 50)
    data = summary(
        samples=[{"id": "s1", "image_path": "a.png"}],
        agreement=[
            {
                "sample": "s1",
                "models": ["a", "b"],
                "method": "gradcam",
                "same_prediction": False,
                "rank_correlation": 0.81234,
                "top_iou": 0.5,
                "comparison_figure": "figures/s1/other-name.png",
            }
        ],
    )
    html = write(tmp_path, data)
    assert inlined(html) == [figure]
    assert (
        "<tr><td>s1</td><td>a vs b</td><td>gradcam</td><td>NO</td>"
        "<td class='num'>0.812</td><td class='num'>0.5</td></tr>"
    ) in html
    assert "Failed samples" not in html  # no errors.jsonl: no table


def test_only_pngs_inside_the_output_folder_are_inlined(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    png(tmp_path / "secret.png", 99)  # a real PNG, but outside the output folder
    (out / "figures").mkdir()
    (out / "figures/fake.png").write_text("not a png")
    data = summary(
        samples=[{"id": "s1", "image_path": "a.png"}],
        results=[
            {
                "sample": "s1",
                "model": "m",
                "prediction": {"label": "a", "index": 0, "score": 1.0},
                "explained": "a",
                "attributions": [
                    {"method": "x", "map": "x.npy", "figure": "../secret.png"},
                    {"method": "y", "map": "y.npy", "figure": str(tmp_path / "secret.png")},
                    {"method": "z", "map": "z.npy", "figure": "figures/fake.png"},
                ],
            }
        ],
    )
    html = write(out, data)
    assert URI not in html
    assert html.count("outside the output folder") == 2 and "not a PNG file" in html


def test_results_of_unlisted_samples_and_bad_error_lines_are_still_shown(tmp_path: Path) -> None:
    data = summary(
        results=[
            {
                "sample": "orphan",
                "model": "m",
                "prediction": {"label": "a", "index": 0, "score": 1.0},
                "explained": "a",
                "attributions": [],
            }
        ]
    )
    html = write(tmp_path, data, [{"id": "e1", "path": "p", "reason": "r"}, "{broken", "[1, 2]"])
    assert "<h3>orphan</h3>" in html
    assert "Failed samples (3)" in html
    assert "errors.jsonl line 2" in html and "errors.jsonl line 3" in html
    assert "not a JSON object: [1, 2]" in html


def test_rerendering_replaces_the_report_atomically(tmp_path: Path) -> None:
    write(tmp_path, summary(samples=[{"id": "first", "image_path": "a.png"}]))
    html = write(tmp_path, summary(samples=[{"id": "second", "image_path": "a.png"}]))
    assert "second" in html and "first" not in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "summary.json"]


def test_a_folder_without_a_valid_summary_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"summary\.json not found"):
        render_report(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(UsageError, match="not readable JSON"):
        render_report(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"schema": "other/2"}))
    with pytest.raises(UsageError, match="schema 'other/2', expected 'seewhy/1'"):
        render_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_noisy_figures_go_in_as_webp_and_flat_ones_stay_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # an X-ray-like texture (a gradient with grain) that PNG cannot pack
    grain = np.linspace(40, 200, 400)[None, :] + rng.normal(0, 12, (300, 400))
    noisy = np.clip(grain, 0, 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    flat = np.zeros((300, 400, 3), np.uint8)
    flat[100:200, 50:350] = (200, 30, 30)  # a chart-like figure: PNG packs it well
    Image.fromarray(flat).save(tmp_path / "flat.png")
    (tmp_path / "figures/s1").mkdir(parents=True)
    (tmp_path / "noisy.png").rename(tmp_path / "figures/s1/m__gradcam.png")
    (tmp_path / "flat.png").rename(tmp_path / "figures/s1/m__eigencam.png")
    data = summary(
        samples=[{"id": "s1", "image_path": "s1.png"}],
        results=[
            {
                "sample": "s1",
                "model": "m",
                "attributions": [
                    {"method": "gradcam", "figure": "figures/s1/m__gradcam.png"},
                    {"method": "eigencam", "figure": "figures/s1/m__eigencam.png"},
                ],
            }
        ],
    )
    html = write(tmp_path, data)
    webps = re.findall(r"data:image/webp;base64,([A-Za-z0-9+/=]+)", html)
    assert len(webps) == 1 and inlined(html) == [
        (tmp_path / "figures/s1/m__eigencam.png").read_bytes()
    ]
    packed = base64.b64decode(webps[0])
    assert len(packed) < (tmp_path / "figures/s1/m__gradcam.png").stat().st_size / 2
    import io

    with Image.open(io.BytesIO(packed)) as img:
        shown = np.asarray(img.convert("RGB")).astype(float)
    assert shown.shape == noisy.shape
    assert np.abs(shown - noisy).mean() < 8  # lossy, but the same picture (grain sd 12)
