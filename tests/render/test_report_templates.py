"""report.html from Jinja2 templates: every section, escaping, one template per section."""

from __future__ import annotations

import ast
import base64
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.data import summary as summary_module
from seewhy.render import report
from seewhy.render.report import render_report

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SECTION_TEMPLATES = {
    "report.html.j2",
    "header.html.j2",
    "models.html.j2",
    "errors.html.j2",
    "agreement.html.j2",
    "checks.html.j2",
    "cohorts.html.j2",
    "sample_card.html.j2",
    "overview.html.j2",
    "dataset_cohorts.html.j2",
    "explained.html.j2",
    "sort_script.html.j2",
}


def png(path: Path, rgb: tuple[int, int, int]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 6, 3), rgb, np.uint8)).save(path)
    return path.read_bytes()


def render(out: Path, data: dict[str, Any], errors: list[dict[str, Any]] | None = None) -> str:
    (out / "summary.json").write_text(json.dumps(data))
    if errors is not None:
        (out / "errors.jsonl").write_text("".join(json.dumps(e) + "\n" for e in errors))
    return render_report(out).read_text(encoding="utf-8")


def full_summary() -> dict[str, Any]:
    """A summary with every section the report shows."""
    return {
        "schema": "seewhy/1",
        "command": "seewhy dataset rows.csv",
        "device": "cpu",
        "models": [
            {
                "name": "convnext",
                "arch": "timm:convnextv2_atto",
                "checkpoint": "ck.pth",
                "task": "classification",
                "labels": ["fracture", "normal"],
                "layer": "stages.3",
            },
            {"name": "price", "arch": "timm:resnet18", "task": "regression", "layer": "auto"},
        ],
        "samples": [
            {"id": "xray-1", "image_path": "a.png", "target": "fracture"},
            {"id": "tile-7", "image_path": "b.png", "target": 310000.0},
        ],
        "results": [
            {
                "sample": "xray-1",
                "model": "convnext",
                "prediction": {"label": "fracture", "index": 0, "score": 0.9312},
                "explained": "fracture",
                "attributions": [
                    {"method": "gradcam", "map": "m.npy", "figure": "figures/xray-1/g.png"},
                    {"method": "ig", "map": "i.npy", "figure": "figures/xray-1/i.png"},
                ],
            },
            {
                "sample": "tile-7",
                "model": "price",
                "prediction": {"value": 321987.0},
                "explained": "value",
                "attributions": [
                    {
                        "method": "gradcam",
                        "map": "p.npy",
                        "figure": "figures/tile-7/g.png",
                        "region_share": {"water": 0.625},
                    }
                ],
            },
        ],
        "agreement": [
            {
                "sample": "xray-1",
                "models": ["convnext", "price"],
                "method": "gradcam",
                "same_prediction": True,
                "rank_correlation": 0.71234,
                "top_iou": 0.25,
            }
        ],
        "checks": [
            {
                "model": "convnext",
                "method": "gradcam",
                "randomization_similarity": 0.1234,
                "verdict": "pass",
                "reasons": [],
            },
            {
                "model": "convnext",
                "method": "ig",
                "randomization_similarity": 0.9876,
                "verdict": "fail",
                "reasons": ["map does not depend on the weights"],
            },
        ],
        "cohorts": [
            {
                "name": "top",
                "model": "price",
                "method": "gradcam",
                "sample_ids": ["tile-7", "tile-8", "tile-9"],
                "mean_map": "maps/cohorts/top.npy",
                "figure": "figures/cohorts/top.png",
                "region_share": {"water": 0.5},
            }
        ],
    }


def test_every_section_is_there_with_its_numbers(tmp_path: Path) -> None:
    figs = {
        rel: png(tmp_path / rel, rgb)
        for rel, rgb in [
            ("figures/xray-1/g.png", (255, 0, 0)),
            ("figures/xray-1/i.png", (0, 255, 0)),
            ("figures/tile-7/g.png", (0, 0, 255)),
            ("figures/cohorts/top.png", (255, 0, 255)),
        ]
    }
    errors = [{"id": "broken-3", "path": "c.png", "reason": "cannot decode"}]
    html = render(tmp_path, full_summary(), errors)

    # header: the run's counts, verdicts and run information
    assert (
        "2 sample(s) · 2 model(s) · 3 explanation(s) · 1 failed sample(s) · "
        "1 check(s) pass · 1 check(s) fail · schema seewhy/1"
    ) in html
    assert "<tr><td>command</td><td>seewhy dataset rows.csv</td></tr>" in html
    # contents: one link per section, in page order, and one per sample card
    links = re.findall(r"<li><a href='#([\w-]+)'>([^<]+)</a></li>", html)
    assert links == [
        ("checks", "Can these maps be trusted?"),
        ("models", "Models"),
        ("errors", "Failed samples"),
        ("agreement", "Agreement between models"),
        ("cohorts", "Cohorts"),
        ("samples", "Samples"),
        ("sample-0", "xray-1"),
        ("sample-1", "tile-7"),
    ]
    headings = re.findall(r"<h2 id='(\w+)'", html)
    assert headings == ["checks", "models", "errors", "agreement", "cohorts", "samples"]
    # models
    assert (
        "<tr><td>convnext</td><td>timm:convnextv2_atto</td><td>ck.pth</td>"
        "<td>classification</td><td>fracture, normal</td><td>stages.3</td></tr>"
    ) in html
    # failed samples
    assert "Failed samples (1)</h2>" in html
    assert "<tr><td>broken-3</td><td>c.png</td><td>cannot decode</td></tr>" in html
    # agreement
    assert (
        "<tr><td>xray-1</td><td>convnext vs price</td><td>gradcam</td><td>yes</td>"
        "<td class='num'>0.712</td><td class='num'>0.25</td></tr>"
    ) in html
    # checks, first: the verdict coloured, reasons joined beside it, then the figures
    assert (
        "<th>verdict</th><th>model</th><th>method</th><th>reasons</th><th>randomization ρ</th>"
        in html
    )
    assert (
        "<tr><td><span class='verdict-pass'>pass</span></td><td>convnext</td><td>gradcam</td>"
        "<td>-</td><td class='num'>0.123</td></tr>"
    ) in html
    assert (
        "<tr><td><span class='verdict-fail'>fail</span></td><td>convnext</td><td>ig</td>"
        "<td>map does not depend on the weights</td><td class='num'>0.988</td></tr>"
    ) in html
    # cohorts: members counted and listed, shares, the mean map's figure
    assert (
        "<tr><td>top</td><td class='num'>3</td><td>tile-7, tile-8, tile-9</td>"
        "<td>water: 0.5</td><td>-</td><td>-</td></tr>"
    ) in html
    assert "<figcaption>cohort top: mean map</figcaption>" in html
    # sample cards: one per sample, predictions in summary.prediction_text's words
    assert html.count("<section class='sample'") == 2
    assert "<h3>xray-1</h3>" in html and "<h3>tile-7</h3>" in html
    assert "<p class='muted'>image: a.png · true target: fracture</p>" in html
    assert "<p class='muted'>image: b.png · true target: 3.1e+05</p>" in html
    assert "<td>convnext</td><td>fracture (0.93)</td><td>fracture</td>" in html
    assert "<h4>price: value 3.22e+05 <span class='muted'>(explained: value)</span></h4>" in html
    assert "<p>region share: water: 0.625</p>" in html
    # every figure inlined exactly once, in page order (cohort first, then the cards)
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    order = ["figures/cohorts/top.png", "figures/xray-1/g.png", "figures/xray-1/i.png"]
    assert [base64.b64decode(u) for u in uris] == [
        figs[r] for r in [*order, "figures/tile-7/g.png"]
    ]
    assert "figure missing" not in html


def test_a_summary_without_optional_sections_shows_only_models_and_samples(
    tmp_path: Path,
) -> None:
    html = render(tmp_path, {"schema": "seewhy/1"})
    assert re.findall(r"<h2 id='(\w+)'", html) == ["models", "samples"]
    assert "Samples (0)</h2>" in html and "<details>" not in html
    assert "0 sample(s) · 0 model(s) · 0 explanation(s) · schema seewhy/1" in html
    assert html.startswith("<!doctype html>\n<html lang='en'>")
    assert html.rstrip().endswith("</body></html>")


def test_user_text_is_escaped_in_every_section(tmp_path: Path) -> None:
    png(tmp_path / "figures/x/m.png", (9, 9, 9))
    method = f"ig(steps={EVIL})"
    data = full_summary() | {
        EVIL: EVIL,  # run information: key and value
        "models": [{"name": EVIL, "arch": "a", "task": "t", "labels": [EVIL], "layer": "l"}],
        "samples": [{"id": EVIL, "image_path": EVIL, "text": EVIL}],
        "results": [
            {
                "sample": EVIL,
                "model": EVIL,
                "prediction": {"label": EVIL, "index": 0, "score": 0.5},
                "explained": EVIL,
                "attributions": [
                    {
                        "method": method,
                        "map": "m.npy",
                        "figure": "figures/x/m.png",
                        "tokens": [{"token": EVIL, "score": 1.0}],
                        "features": [{"name": EVIL, "score": 1.0}],
                    },
                    {"method": method, "map": "n.npy", "figure": f"figures/{EVIL}.png"},
                ],
            }
        ],
        "agreement": [
            {
                "sample": EVIL,
                "models": [EVIL, "b"],
                "method": method,
                "same_prediction": True,
                "rank_correlation": 1.0,
                "top_iou": 1.0,
            }
        ],
        "checks": [
            {
                "model": EVIL,
                "method": method,
                "collapse_layer": EVIL,
                "verdict": EVIL,
                "reasons": [EVIL],
                "flagged_samples": [{"sample": EVIL, "flags": [EVIL]}],
            }
        ],
        "cohorts": [{"name": EVIL, "sample_ids": [EVIL], "mean_map": f"maps/{EVIL}.npy"}],
    }
    html = render(tmp_path, data, [{"id": EVIL, "path": EVIL, "reason": EVIL}])
    assert html.count("<script") == 1 and EVIL not in html  # only the inline sort script
    # run info (2), model name + label (2), error row (3), agreement (4), checks (5),
    # cohort (3), card: nav link, h3, facts, text, table (3), h4 (3), captions (4: alt and
    # figcaption of one figure, the missing one's caption and path), tokens, features
    assert html.count(ESCAPED) >= 35
    assert f"<td>ig(steps={ESCAPED})</td>" in html  # a method's settings
    assert f"<h3>{ESCAPED}</h3>" in html  # a sample id
    assert (
        f"<td>{ESCAPED}</td><td>{ESCAPED} / ig(steps={ESCAPED}): {ESCAPED}</td>" in html
    )  # a case
    assert f"<span class=''>{ESCAPED}</span>" in html  # an unknown verdict: no CSS class
    assert f"alt='{ESCAPED} · {ESCAPED} · ig(steps={ESCAPED})'" in html
    assert f"figure missing: figures/{ESCAPED}.png (file not found)" in html
    assert f"cohort {ESCAPED}: mean map in maps/{ESCAPED}.npy" in html
    # element ids and links are generated, never taken from the data
    assert re.findall(r"id='([^']*)'", html) == [
        "checks",
        "models",
        "errors",
        "agreement",
        "cohorts",
        "samples",
        "sample-0",
    ]


def test_quotes_and_template_syntax_in_the_data_stay_text(tmp_path: Path) -> None:
    data = full_summary() | {
        "samples": [{"id": "{{ 7 * 7 }}", "image_path": "x'y\"z&.png", "text": "{% raw %}"}],
        "results": [],
    }
    html = render(tmp_path, data)
    assert "<h3>{{ 7 * 7 }}</h3>" in html and "49" not in html
    assert "<p>text: {% raw %}</p>" in html
    assert "image: x&#x27;y&quot;z&amp;.png" in html


def test_one_template_per_section_ships_in_the_package() -> None:
    folder = resources.files("seewhy.render") / "templates"
    names = {p.name for p in folder.iterdir() if p.name.endswith(".j2")}
    assert names >= SECTION_TEMPLATES
    skeleton = (folder / "report.html.j2").read_text(encoding="utf-8")
    for name in sorted(SECTION_TEMPLATES - {"report.html.j2"}):
        assert skeleton.count(f'{{% include "{name}" %}}') == 1, name
    # the page's head and style live in the skeleton, its one script (inline, no src) in
    # sort_script.html.j2, and there is no external URL
    assert "<style>" in skeleton and "<script" not in skeleton and "http" not in skeleton
    script = (folder / "sort_script.html.j2").read_text(encoding="utf-8")
    assert script.count("<script>") == 1 and "src=" not in script and "http" not in script
    assert skeleton.count('{% include "sort_script.html.j2" %}') == 1


def test_the_environment_escapes_and_refuses_undefined_names() -> None:
    import jinja2

    env = report._environment()
    assert env.autoescape is True and env.undefined is jinja2.StrictUndefined
    assert env.from_string("<b>{{ x }}</b>").render(x=EVIL) == f"<b>{ESCAPED}</b>"
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("models.html.j2").render()


def test_report_py_builds_no_html_and_reuses_the_summary_module() -> None:
    source = Path(report.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    docstrings = {  # bare string statements: module, class, function and attribute docs
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    markup = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and re.search(r"<[a-zA-Z/!]", node.value)
    ]
    assert markup == []
    # one schema constant and one prediction formatter in the codebase: summary.py's
    assert report.SCHEMA is summary_module.SCHEMA and report.prediction_text is (
        summary_module.prediction_text
    )
    assert '"seewhy/1"' not in source and "def _prediction" not in source


def test_jinja2_is_imported_only_when_a_report_is_rendered() -> None:
    code = (
        "import sys, seewhy.cli, seewhy.render.report\n"
        "print('jinja2' in sys.modules, 'markupsafe' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]
