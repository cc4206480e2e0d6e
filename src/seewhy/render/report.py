"""report.html: one self-contained page from an output folder's summary.json and errors.jsonl.

Self-contained: every figure is inlined as a base64 data URI, the CSS is inline, there is no
script and no external URL, so the file reads the same offline, mailed or archived. A figure
goes in as its PNG, or as a WebP (quality 90) where that is under half the PNG's size: the
image panels of noisy scans barely compress losslessly, and the demo's report shrinks from
27 MB to 4.5 MB; the PNGs in ``figures/`` stay as they are.

Safe: everything that comes from the user or the run (ids, labels, paths, model names, texts,
reasons) is HTML-escaped, attribute values included; element ids are generated, never taken from
the data. Only PNG files inside the output folder are inlined: a figure path that points outside
it, or at something that is not a PNG, is shown as missing instead of being read into the page.
A missing figure never stops the report.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from seewhy.core.atomic import atomic_write
from seewhy.core.errors import UsageError

SCHEMA = "seewhy/1"
WEBP_QUALITY = 90
WEBP_FROM_BYTES = 32_768  # smaller PNGs (charts, tiny figures) go in as they are
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SECTIONS = ("schema", "models", "samples", "results", "agreement", "checks", "cohorts")
_VERDICTS = ("pass", "warn", "fail")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;color:#222;
max-width:1500px;padding:0 1rem;line-height:1.4}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
h3{margin:.2rem 0 .4rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ccc;padding:.25rem .6rem;
text-align:left;font-size:.9rem;vertical-align:top} th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
nav ul{columns:4;list-style:none;padding-left:0} nav li{margin:.1rem 0}
.sample{border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1rem 0}
.model{border-top:1px dashed #ddd;margin-top:.8rem;padding-top:.4rem}
figure{margin:.4rem 0} figure img{max-width:100%;display:block}
figcaption{font-size:.85rem;color:#555}
.missing{color:#a00;font-style:italic} .bad{color:#a00;font-weight:bold} .muted{color:#666}
.verdict-pass{color:#176b1d;font-weight:bold} .verdict-warn{color:#9a6100;font-weight:bold}
.verdict-fail{color:#a00;font-weight:bold}
.tokens span{padding:0 .15rem;margin:0 .05rem;border-radius:3px;line-height:1.9}
"""


# -- small helpers --------------------------------------------------------------------------
def _e(value: Any) -> str:
    """HTML-escaped text (quotes included, so it is safe in attribute values too)."""
    return escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    """A cell's text: numbers rounded, booleans as yes/NO, lists joined, mappings as k: v."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v, digits)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v, digits) for v in value) or "-"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Html:
    """Markup built here from escaped parts (so :func:`_table` does not escape it twice)."""

    def __init__(self, markup: str) -> None:
        self.markup = markup


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table of escaped cells; numbers right-aligned; :class:`_Html` cells inserted as is."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for c in row:
            if isinstance(c, _Html):
                cells.append(f"<td>{c.markup}</td>")
            elif _is_number(c):
                cells.append(f"<td class='num'>{_e(_fmt(c))}</td>")
            else:
                cells.append(f"<td>{_e(_fmt(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _items(summary: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects of a summary section (anything else in it is skipped)."""
    value = summary.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _prediction(p: Any) -> str:
    if not isinstance(p, dict):
        return "-"
    if "label" in p:
        score = p.get("score")
        return f"{p['label']} ({_fmt(score)})" if _is_number(score) else str(p["label"])
    if "values" in p and isinstance(p["values"], dict):
        return _fmt(p["values"], 4)
    if "value" in p:
        return _fmt(p["value"], 4)
    return "-"


# -- figures --------------------------------------------------------------------------------
class _Figures:
    """Inlines the PNGs of one output folder; counts what it could not show."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.missing = 0

    def resolve(self, rel: Any) -> Path | None:
        """The file ``rel`` names, when it is a path inside the output folder."""
        if not isinstance(rel, str) or not rel.strip():
            return None
        path = (self.root / rel).resolve()
        return path if path.is_relative_to(self.root) else None

    def exists(self, rel: Any) -> bool:
        path = self.resolve(rel)
        return path is not None and path.is_file()

    def img(self, rel: Any, caption: str) -> str:
        """A ``<figure>`` with the PNG inlined, or a "figure missing" note."""
        data, why = self._read(rel)
        if data is None:
            self.missing += 1
            where = f": {rel} ({why})" if isinstance(rel, str) and rel.strip() else ""
            return (
                f"<p class='missing'>figure missing{_e(where)}</p>"
                f"<p class='muted'>{_e(caption)}</p>"
            )
        uri = _data_uri(data)
        return (
            f"<figure><img alt='{_e(caption)}' src='{uri}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )

    def _read(self, rel: Any) -> tuple[bytes | None, str]:
        """The PNG's bytes, or None and why not."""
        if not isinstance(rel, str) or not rel.strip():
            return None, "no figure recorded"
        path = self.resolve(rel)
        if path is None:
            return None, "outside the output folder"
        try:
            data = path.read_bytes()
        except OSError:
            return None, "file not found"
        if not data.startswith(PNG_SIGNATURE):
            return None, "not a PNG file"
        return data, ""


# -- inputs ---------------------------------------------------------------------------------
def _load_summary(out: Path) -> dict[str, Any]:
    path = out / "summary.json"
    if not path.is_file():
        raise UsageError(
            f"{path} not found; point `seewhy report` at the --out folder of an explain, "
            "dataset or check run"
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{path} is not readable JSON ({exc}); rerun the command that wrote it"
        ) from exc
    if not isinstance(summary, dict) or summary.get("schema") != SCHEMA:
        found = summary.get("schema") if isinstance(summary, dict) else type(summary).__name__
        raise UsageError(
            f"{path} has schema {found!r}, expected {SCHEMA!r}; it was not written by this "
            "version of seewhy: rerun the command that wrote it"
        )
    return summary


def _load_errors(out: Path) -> list[dict[str, Any]]:
    """errors.jsonl's objects; a line that is not one becomes a row that says so."""
    path = out / "errors.jsonl"
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            item = None
            reason = f"unreadable line ({exc.msg}): {line[:200]}"
        else:
            reason = f"not a JSON object: {line[:200]}"
        if isinstance(item, dict):
            rows.append(item)
        else:
            rows.append({"id": "-", "path": f"errors.jsonl line {n}", "reason": reason})
    return rows


# -- sections -------------------------------------------------------------------------------
def _header(summary: dict[str, Any], errors: list[dict[str, Any]]) -> list[str]:
    from seewhy import __version__

    samples, models = _items(summary, "samples"), _items(summary, "models")
    results, checks = _items(summary, "results"), _items(summary, "checks")
    facts = [
        f"{len(samples)} sample(s)",
        f"{len(models)} model(s)",
        f"{sum(len(r.get('attributions') or []) for r in results)} explanation(s)",
    ]
    if errors:
        facts.append(f"{len(errors)} failed sample(s)")
    verdicts = [str(c.get("verdict")) for c in checks]
    for v in _VERDICTS:
        if v in verdicts:
            facts.append(f"{verdicts.count(v)} check(s) {v}")
    facts.append(f"schema {summary.get('schema')}, seewhy {__version__}")
    parts = ["<header><h1>seewhy report</h1>", f"<p class='muted'>{_e(' · '.join(facts))}</p>"]
    extra = [
        (k, v)
        for k, v in summary.items()
        if k not in _SECTIONS and isinstance(v, (str, int, float, bool, type(None)))
    ]
    if extra:  # run information a job recorded beside the sections (command, time, device)
        parts.append(_table(["run", ""], extra))
    parts.append("</header>")
    return parts


def _nav(sections: list[tuple[str, str]], samples: list[tuple[str, str]]) -> str:
    links = "".join(f"<li><a href='#{a}'>{_e(t)}</a></li>" for a, t in sections)
    items = "".join(f"<li><a href='#{a}'>{_e(t)}</a></li>" for a, t in samples)
    return (
        f"<nav><h2>Contents</h2><ul>{links}</ul>"
        + (f"<details><summary>samples</summary><ul>{items}</ul></details>" if items else "")
        + "</nav>"
    )


def _models(summary: dict[str, Any]) -> str:
    known = ("name", "arch", "checkpoint", "task", "labels", "layer")
    models = _items(summary, "models")
    extra = any(k not in known for m in models for k in m)  # e.g. checkpoint metadata
    rows = []
    for m in models:
        labels = m.get("labels")
        if isinstance(labels, list) and len(labels) > 20:
            labels = [*labels[:20], f"... ({len(labels) - 20} more)"]
        row = [
            m.get("name"),
            m.get("arch"),
            m.get("checkpoint") or "-",
            m.get("task"),
            labels or "-",
            m.get("layer"),
        ]
        if extra:
            row.append({k: v for k, v in m.items() if k not in known} or "-")
        rows.append(row)
    return _table([*known, *(["more"] if extra else [])], rows)


def _agreement(items: list[dict[str, Any]]) -> str:
    with_method = any("method" in a for a in items)
    headers = ["sample", "models", *(["method"] if with_method else [])]
    headers += ["same prediction", "rank correlation", "top-10% IoU"]
    rows = []
    for a in items:
        models = a.get("models")
        pair = " vs ".join(map(str, models)) if isinstance(models, list) else models
        rows.append(
            [
                a.get("sample"),
                pair,
                *([a.get("method", "-")] if with_method else []),
                a.get("same_prediction"),
                a.get("rank_correlation"),
                a.get("top_iou"),
            ]
        )
    return _table(headers, rows)


def _checks(items: list[dict[str, Any]]) -> str:
    fixed = ("model", "method", "verdict", "reasons")
    figures = list(dict.fromkeys(k for c in items for k in c if k not in fixed))
    rows = []
    for c in items:
        verdict = str(c.get("verdict", "-"))
        css = f"verdict-{verdict}" if verdict in _VERDICTS else ""
        reasons = c.get("reasons")
        text = "; ".join(map(str, reasons)) if isinstance(reasons, list) else reasons
        rows.append(
            [
                c.get("model"),
                c.get("method"),
                _Html(f"<span class='{css}'>{_e(verdict)}</span>"),
                *[c.get(k) for k in figures],
                text or "-",
            ]
        )
    return _table(["model", "method", "verdict", *figures, "reasons"], rows)


def _cohorts(items: list[dict[str, Any]], figures: _Figures) -> list[str]:
    rows = []
    pictures = []
    for c in items:
        ids = c.get("sample_ids")
        ids = ids if isinstance(ids, list) else []
        shown = ", ".join(map(str, ids[:12]))
        if len(ids) > 12:
            shown += f" ... ({len(ids) - 12} more)"
        mean_map = c.get("mean_map")
        rows.append(
            [
                c.get("name"),
                len(ids),
                shown or "-",
                c.get("region_share", "-"),
                c.get("region_share_lower", "-"),
                c.get("region_area", "-"),
            ]
        )
        for key in ("figure", "mean_map"):
            ref = c.get(key)
            if isinstance(ref, str) and ref.lower().endswith(".png"):
                pictures.append(figures.img(ref, f"cohort {c.get('name')}: mean map"))
                break
        else:
            if isinstance(mean_map, str) and mean_map:
                pictures.append(
                    f"<p class='muted'>cohort {_e(c.get('name'))}: mean map in {_e(mean_map)}</p>"
                )
    headers = ["cohort", "samples", "ids", "raises (region share)", "lowers", "region area"]
    return [_table(headers, rows), *pictures]


def _tokens_html(tokens: Any) -> str:
    """Token importances as coloured text (red raises, blue lowers); no script needed."""
    pairs = [
        (str(t.get("token", "")), float(t["score"]))
        for t in tokens
        if isinstance(t, dict) and _is_number(t.get("score")) and math.isfinite(t["score"])
    ]
    if not pairs:
        return ""
    m = max(abs(s) for _, s in pairs) or 1.0
    spans = []
    for token, score in pairs:
        alpha = 0.8 * min(1.0, abs(score) / m)
        rgb = "214,39,40" if score >= 0 else "31,119,180"  # red raises, blue lowers
        spans.append(
            f"<span style='background:rgba({rgb},{alpha:.2f})' "
            f"title='{_e(_fmt(score))}'>{_e(token)}</span>"
        )
    return "<p class='tokens'>tokens: " + "".join(spans) + "</p>"


def _attribution_extras(a: dict[str, Any], figures: _Figures) -> list[str]:
    parts = []
    share = a.get("modality_share")
    if isinstance(share, dict) and share:
        parts.append(f"<p>modality share: {_e(_fmt(share))}</p>")
    tokens = a.get("tokens")
    if isinstance(tokens, list) and tokens:
        parts.append(_tokens_html(tokens))
    token_fig = a.get("tokens_figure")
    figure = a.get("figure")
    if token_fig is None and isinstance(figure, str) and figure.endswith(".png"):
        guess = figure[: -len(".png")] + "__tokens.png"
        token_fig = guess if figures.exists(guess) else None
    if token_fig is not None:
        parts.append(figures.img(token_fig, f"{a.get('method')}: token importances"))
    features = a.get("features")
    if isinstance(features, list) and features:
        ranked = sorted(
            (f for f in features if isinstance(f, dict) and _is_number(f.get("score"))),
            key=lambda f: -abs(float(f["score"])),
        )
        parts.append(
            "<p>features (largest first)</p>"
            + _table(["feature", "score"], [[f.get("name"), f["score"]] for f in ranked[:15]])
        )
    region = a.get("region_share")
    if isinstance(region, dict) and region:
        parts.append(f"<p>region share: {_e(_fmt(region))}</p>")
    return parts


def _comparison_ref(sid: str, agreement: list[dict[str, Any]], figures: _Figures) -> str | None:
    for a in agreement:
        ref = a.get("comparison_figure")
        if str(a.get("sample")) == sid and isinstance(ref, str) and ref:
            return ref
    fallback = f"figures/{sid}/comparison.png"
    return fallback if figures.exists(fallback) else None


def _sample_card(
    anchor: str,
    sample: dict[str, Any],
    results: list[dict[str, Any]],
    agreement: list[dict[str, Any]],
    figures: _Figures,
) -> list[str]:
    sid = str(sample.get("id"))
    parts = [f"<section class='sample' id='{anchor}'><h3>{_e(sid)}</h3>"]
    facts = [f"image: {sample.get('image_path', '-')}"]
    if sample.get("target") is not None:
        facts.append(f"true target: {_fmt(sample['target'], 4)}")
    parts.append(f"<p class='muted'>{_e(' · '.join(facts))}</p>")
    if sample.get("text"):
        parts.append(f"<p>text: {_e(sample['text'])}</p>")
    mine = [r for r in results if str(r.get("sample")) == sid]
    if mine:
        parts.append(
            _table(
                ["model", "prediction", "explained"],
                [
                    [r.get("model"), _prediction(r.get("prediction")), r.get("explained")]
                    for r in mine
                ],
            )
        )
    comparison = _comparison_ref(sid, agreement, figures)
    if comparison is not None:
        parts.append(figures.img(comparison, f"{sid}: model comparison"))
    for r in mine:
        model = r.get("model")
        parts.append(
            f"<div class='model'><h4>{_e(model)}: {_e(_prediction(r.get('prediction')))}"
            f" <span class='muted'>(explained: {_e(r.get('explained', '-'))})</span></h4>"
        )
        attributions = r.get("attributions")
        for a in attributions if isinstance(attributions, list) else []:
            if not isinstance(a, dict):
                continue
            parts.append(figures.img(a.get("figure"), f"{sid} · {model} · {a.get('method')}"))
            parts.extend(_attribution_extras(a, figures))
        parts.append("</div>")
    parts.append("</section>")
    return parts


# -- the page -------------------------------------------------------------------------------
def render_report(out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` (atomically) from ``summary.json`` and ``errors.jsonl``.

    Sections: run information and the models; failed samples; agreement between models; trust
    checks; cohorts; then a card per sample with each model's prediction and explained target,
    the comparison figure and every explanation figure (inlined PNGs).

    Args:
        out_dir: an output folder of ``seewhy explain``, ``dataset`` or ``check``.

    Returns:
        The path of report.html.

    Raises:
        UsageError: summary.json is missing, unreadable or not of schema ``seewhy/1``.
    """
    out = Path(out_dir)
    summary = _load_summary(out)
    errors = _load_errors(out)
    figures = _Figures(out)
    agreement = _items(summary, "agreement")
    checks = _items(summary, "checks")
    cohorts = _items(summary, "cohorts")
    results = _items(summary, "results")
    samples = _items(summary, "samples")
    listed = {str(s.get("id")) for s in samples}
    for r in results:  # a result whose sample is not listed still gets its card
        sid = str(r.get("sample"))
        if sid not in listed:
            listed.add(sid)
            samples.append({"id": sid})

    sections = [("models", "Models")]
    body: list[str] = ["<h2 id='models'>Models</h2>", _models(summary)]
    if errors:
        sections.append(("errors", "Failed samples"))
        body += [
            f"<h2 id='errors' class='bad'>Failed samples ({len(errors)})</h2>",
            _table(
                ["id", "path", "reason"],
                [[e.get("id"), e.get("path"), e.get("reason")] for e in errors],
            ),
        ]
    if agreement:
        sections.append(("agreement", "Agreement between models"))
        body += ["<h2 id='agreement'>Agreement between models</h2>", _agreement(agreement)]
    if checks:
        sections.append(("checks", "Trust checks"))
        body += ["<h2 id='checks'>Trust checks</h2>", _checks(checks)]
    if cohorts:
        sections.append(("cohorts", "Cohorts"))
        body += ["<h2 id='cohorts'>Cohorts</h2>", *_cohorts(cohorts, figures)]
    sections.append(("samples", "Samples"))
    body.append(f"<h2 id='samples'>Samples ({len(samples)})</h2>")
    anchors = []
    for i, s in enumerate(samples):
        anchor = f"sample-{i}"  # generated: ids from the data never reach an attribute
        anchors.append((anchor, str(s.get("id"))))
        body += _sample_card(anchor, s, results, agreement, figures)
    if figures.missing:
        body.append(f"<p class='missing'>{figures.missing} figure(s) missing</p>")

    page = [
        "<!doctype html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>seewhy report</title>",
        f"<style>{CSS}</style></head><body>",
        *_header(summary, errors),
        _nav(sections, anchors),
        *body,
        "</body></html>",
    ]
    return atomic_write(out / "report.html", "\n".join(page))


def _data_uri(png: bytes) -> str:
    """``png`` as a data URI: the PNG itself, or a WebP of it when that is under half the size
    (lossy, quality ``WEBP_QUALITY``; every current browser shows WebP)."""
    import io

    from PIL import Image, features

    mime, data = "image/png", png
    if len(png) > WEBP_FROM_BYTES and features.check("webp"):
        with Image.open(io.BytesIO(png)) as img:
            buf = io.BytesIO()
            img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB").save(
                buf, format="WEBP", quality=WEBP_QUALITY, method=4
            )
        if buf.tell() < len(png) // 2:
            mime, data = "image/webp", buf.getvalue()
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
