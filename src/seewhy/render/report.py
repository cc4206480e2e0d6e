"""report.html: one self-contained page (inline PNGs, inline CSS, no script, no URL).

Everything that comes from the user (ids, labels, paths, model names, reasons) is escaped.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from seewhy.core.atomic import atomic_write

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1500px}
h1{margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ccc;padding:.25rem .6rem;
text-align:left;font-size:.9rem} th{background:#f3f3f3}
.sample{border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1rem 0}
.sample img{max-width:100%;display:block;margin:.4rem 0}
.missing{color:#a00;font-style:italic} .bad{color:#a00;font-weight:bold} .muted{color:#666}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _img(out: Path, rel: str | None, alt: str) -> str:
    if not rel:
        return '<p class="missing">figure missing</p>'
    path = out / rel
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return f'<p class="missing">figure missing: {_e(rel)}</p>'
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _prediction(p: dict[str, Any]) -> str:
    if "label" in p:
        return f"{p['label']} ({float(p.get('score', 0)):.3f})"
    if "value" in p:
        return f"{float(p['value']):.4g}"
    return "?"


def _errors(out: Path) -> list[dict[str, Any]]:
    path = out / "errors.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def render_report(out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` from ``summary.json`` (and ``errors.jsonl``)."""
    out = Path(out_dir)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>seewhy report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>seewhy report</h1>",
        f"<p class='muted'>{len(summary.get('samples', []))} sample(s), "
        f"{len(summary.get('models', []))} model(s), schema {_e(summary.get('schema'))}</p>",
        "<h2>Models</h2>",
        _table(
            ["name", "arch", "checkpoint", "task", "labels", "layer"],
            [
                [
                    m.get("name"),
                    m.get("arch"),
                    m.get("checkpoint") or "-",
                    m.get("task"),
                    ", ".join(map(str, m.get("labels") or [])) or "-",
                    m.get("layer"),
                ]
                for m in summary.get("models", [])
            ],
        ),
    ]
    agreement = summary.get("agreement", [])
    if agreement:
        parts.append("<h2>Agreement between models</h2>")
        parts.append(
            _table(
                [
                    "sample",
                    "models",
                    "method",
                    "same prediction",
                    "rank correlation",
                    "top-10% IoU",
                ],
                [
                    [
                        a["sample"],
                        " vs ".join(a["models"]),
                        a.get("method", ""),
                        "yes" if a["same_prediction"] else "NO",
                        f"{a['rank_correlation']:.3f}",
                        f"{a['top_iou']:.3f}",
                    ]
                    for a in agreement
                ],
            )
        )
    checks = summary.get("checks", [])
    if checks:
        parts.append("<h2>Trust checks</h2>")
        parts.append(
            _table(
                ["model", "method", "verdict", "reasons"],
                [[c["model"], c["method"], c["verdict"], "; ".join(c["reasons"])] for c in checks],
            )
        )
    errors = _errors(out)
    if errors:
        parts.append(f"<h2 class='bad'>Failed samples ({len(errors)})</h2>")
        parts.append(
            _table(
                ["id", "path", "reason"],
                [[e.get("id"), e.get("path"), e.get("reason")] for e in errors],
            )
        )
    parts.append("<h2>Samples</h2>")
    results = summary.get("results", [])
    for s in summary.get("samples", []):
        sid = s["id"]
        parts.append(
            f"<div class='sample'><h3>{_e(sid)}</h3>"
            f"<p class='muted'>{_e(s.get('image_path', ''))}</p>"
        )
        comparison = next(
            (
                a.get("comparison_figure")
                for a in agreement
                if a["sample"] == sid and a.get("comparison_figure")
            ),
            None,
        )
        if comparison is None and (out / "figures" / sid / "comparison.png").is_file():
            comparison = f"figures/{sid}/comparison.png"
        if comparison:
            parts.append(_img(out, comparison, f"{sid} comparison"))
        for r in (r for r in results if r["sample"] == sid):
            parts.append(
                f"<p><b>{_e(r['model'])}</b>: prediction "
                f"{_e(_prediction(r.get('prediction', {})))}, explained "
                f"{_e(r.get('explained', ''))}</p>"
            )
            for a in r.get("attributions", []):
                parts.append(_img(out, a.get("figure"), f"{sid} {r['model']} {a.get('method')}"))
        parts.append("</div>")
    parts.append("</body></html>")
    return atomic_write(out / "report.html", "\n".join(parts))
