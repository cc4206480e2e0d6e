"""report.html: one self-contained page from an output folder's summary.json and errors.jsonl.

The page comes from the Jinja2 templates in ``render/templates/``: ``report.html.j2`` is the
skeleton (head, style, contents) and includes one template per section (``header``,
``overview``, ``models``, ``errors``, ``agreement``, ``checks``, ``cohorts`` or
``dataset_cohorts``, ``side_by_side``, ``sample_card`` or ``explained``) and
``sort_script``; ``macros.html.j2`` holds the table and figure markup they share. This module
only prepares plain data for them (strings, numbers, lists and dicts): no HTML is written here.
A new section is a new template and a new key in the data.

A dataset run (summary.json has ``dataset``) gets an overview (row counts, metrics, confusion
matrices, the overview figures, a link to predictions.csv), a section per cohort (description,
mean map, region and features tables, a gallery of its members: thumbnails THUMB_WIDTH pixels
wide linking the full figures in ``figures/``) and, instead of a card per explained row (there
may be thousands), one table that links each row's figure; explain and check reports are as
before.

Tree models (``kind: tree`` in ``models[]``, method ``tree-shap``) have no maps: their
attributions are features with SHAP values, and no ``map`` or ``figure``. Their rows in the
explained table list their three strongest features instead of a link, their cohorts show the
SHAP figure (bars and beeswarm), a features table (mean SHAP, signed; mean |SHAP|) and a members
table instead of a gallery, and the overview shows what drives each over the whole table
(``dataset.importance``) beside its predictions, and whether the models' predictions agree
(``prediction_agreement``). A run with an image model and a tree model gets a section that sets
them side by side per cohort (``side_by_side``): the image model's regions beside the tree
model's strongest features, and how far their predictions agree on the cohort's rows.

Self-contained: every figure is inlined as a base64 data URI, the CSS is inline, the one script
(sorting a table by the header clicked) is inline, and there is no external URL, so the file
reads the same offline, mailed or archived. A figure goes in as its PNG, or as a WebP (quality
90) where that is under half the PNG's size: the image panels of noisy scans barely compress
losslessly, and the demo's report shrinks from 27 MB to 4.5 MB; the PNGs in ``figures/`` stay
as they are. Links (a gallery's thumbnails, predictions.csv) are relative paths to files inside
the output folder, percent-encoded.

Safe: autoescaping is on for every template, and nothing from the user or the run (ids, labels,
paths, model names, texts, reasons) is ever marked safe. Values are escaped with
:func:`html.escape` (quotes included, so attribute values are safe too); element ids are
generated, never taken from the data. Only PNG files inside the output folder are inlined: a
figure path that points outside it, or at something that is not a PNG, is shown as missing
instead of being read into the page. A missing figure never stops the report.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from seewhy.core.atomic import atomic_write
from seewhy.core.errors import UsageError
from seewhy.data.summary import SCHEMA, prediction_text

WEBP_QUALITY = 90
WEBP_FROM_BYTES = 32_768  # smaller PNGs (charts, tiny figures) go in as they are
THUMB_WIDTH = 240
"""Pixels a cohort gallery's thumbnail is wide (the full figure is a link away)."""
THUMB_QUALITY = 80
"""Quality of the thumbnails' lossy encoding (WebP, or JPEG where Pillow lacks WebP)."""
EXPLAINED_ROWS = 1000
"""Rows the explained rows' table of a dataset run lists (predictions.csv has them all)."""
CONFUSION_TABLE_MAX = 30
"""Classes up to which a dataset run's confusion matrix is also a table (beyond, the figure)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEMPLATES = "templates"  # the package folder (beside this file) that holds the .j2 files
_SECTIONS = ("schema", "models", "samples", "results", "agreement", "checks", "cohorts")
_VERDICTS = ("pass", "warn", "fail")

Cell = dict[str, Any]
"""A table cell for ``macros.html.j2``: ``text``, ``num`` (right-aligned, sorted as a number),
``span`` (the CSS class of a ``<span>`` around the text, or None for plain text) and optionally
``href`` (a link around the text)."""
Table = dict[str, Any]
"""A table for ``macros.html.j2``: ``headers`` (strings) and ``rows`` (lists of cells)."""
Figure = dict[str, Any]
"""A figure for ``macros.html.j2``: ``caption``, ``uri`` (a data URI, or None when the figure
could not be shown) and ``missing`` (what went wrong, after "figure missing")."""


# -- small helpers --------------------------------------------------------------------------
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


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any, digits: int = 3, href: str | None = None) -> Cell:
    """A value's cell: its :func:`_fmt` text, right-aligned when it is a number; with ``href``
    (a link made by :meth:`_Figures.href` or a generated anchor), the text links there."""
    return {"text": _fmt(value, digits), "num": _is_number(value), "span": None, "href": href}


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A table of values, each made a cell by :func:`_cell`."""
    return {"headers": [str(h) for h in headers], "rows": [[_cell(c) for c in r] for r in rows]}


def _items(summary: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects of a summary section (anything else in it is skipped)."""
    value = summary.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# -- figures --------------------------------------------------------------------------------
class _Figures:
    """Inlines the PNGs of one output folder; counts what it could not show."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.missing = 0
        self._thumbs: dict[str, str] = {}

    def resolve(self, rel: Any) -> Path | None:
        """The file ``rel`` names, when it is a path inside the output folder."""
        if not isinstance(rel, str) or not rel.strip():
            return None
        path = (self.root / rel).resolve()
        return path if path.is_relative_to(self.root) else None

    def exists(self, rel: Any) -> bool:
        path = self.resolve(rel)
        return path is not None and path.is_file()

    def figure(self, rel: Any, caption: str) -> Figure:
        """The figure ``rel`` names with its PNG inlined, or why it is missing."""
        data, why = self._read(rel)
        if data is None:
            self.missing += 1
            where = f": {rel} ({why})" if isinstance(rel, str) and rel.strip() else ""
            return {"caption": caption, "uri": None, "missing": where}
        return {"caption": caption, "uri": _data_uri(data), "missing": ""}

    def href(self, rel: Any) -> str | None:
        """A relative link to the file ``rel`` names, when it is a file inside the output
        folder: its path from the folder, percent-encoded (so no scheme such as ``javascript:``
        can survive in it), or None."""
        from urllib.parse import quote

        path = self.resolve(rel)
        if path is None or not path.is_file():
            return None
        return quote(path.relative_to(self.root).as_posix())

    def thumbnail(self, rel: Any, caption: str) -> Figure:
        """The figure ``rel`` names as a small inlined image (THUMB_WIDTH pixels wide, WebP or
        JPEG), or why it is missing. A figure several cohorts share is encoded once."""
        data, why = self._read(rel)
        if data is None:
            self.missing += 1
            where = f": {rel} ({why})" if isinstance(rel, str) and rel.strip() else ""
            return {"caption": caption, "uri": None, "missing": where}
        key = str(rel)
        if key not in self._thumbs:
            self._thumbs[key] = _thumbnail_uri(data)
        return {"caption": caption, "uri": self._thumbs[key], "missing": ""}

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


# -- sections (data for header / models / errors / agreement / checks / cohorts .html.j2) ------
def _header(summary: dict[str, Any], errors: list[dict[str, Any]]) -> dict[str, Any]:
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
    extra = [
        (k, v)
        for k, v in summary.items()
        if k not in _SECTIONS and isinstance(v, (str, int, float, bool, type(None)))
    ]
    # run information a job recorded beside the sections (command, time, device)
    return {"facts": " · ".join(facts), "run": _table(["run", ""], extra) if extra else None}


def _models(summary: dict[str, Any]) -> Table:
    known = ("name", "arch", "checkpoint", "task", "labels", "layer")
    models = _items(summary, "models")
    extra = any(k not in known for m in models for k in m)  # e.g. checkpoint metadata
    rows = []
    for m in models:
        labels = _shortened(m.get("labels"))
        row = [
            m.get("name"),
            m.get("arch"),
            m.get("checkpoint") or "-",
            m.get("task"),
            labels or "-",
            m.get("layer"),
        ]
        if extra:  # a tree model's kind and columns, checkpoint metadata
            row.append({k: _shortened(v) for k, v in m.items() if k not in known} or "-")
        rows.append(row)
    return _table([*known, *(["more"] if extra else [])], rows)


def _shortened(value: Any, limit: int = 20) -> Any:
    """A list of more than ``limit`` items as its first ``limit`` and a count of the rest
    (a model's labels, a tree model's columns); anything else as it is."""
    if isinstance(value, list) and len(value) > limit:
        return [*value[:limit], f"... ({len(value) - limit} more)"]
    return value


def _errors(errors: list[dict[str, Any]]) -> Table:
    return _table(
        ["id", "path", "reason"], [[e.get("id"), e.get("path"), e.get("reason")] for e in errors]
    )


def _agreement(items: list[dict[str, Any]]) -> Table:
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


_CHECK_FIGURES = (
    ("randomization_similarity", "randomization ρ"),
    ("collapse_layer", "collapses at"),
    ("deletion_auc", "deletion AUC"),
    ("deletion_auc_random", "(random order)"),
    ("insertion_auc", "insertion AUC"),
    ("insertion_auc_random", "(random order)"),
    ("pointing_game", "pointing game"),
    ("energy_in_mask", "energy in mask"),
    ("mask_area", "(mask area)"),
    ("border_share", "border share"),
    ("border_area", "(border area)"),
)
"""The figures the checks table shows, in order, with their column names (SPEC section 6);
the rest are in summary.json."""


def _checks(items: list[dict[str, Any]], figures: _Figures) -> dict[str, Any]:
    """The "Can these maps be trusted?" section: one row per model x method, the verdict
    first and its reasons beside it, the figures after; the cases to distrust; each check's
    curves figure."""
    shown = [(k, name) for k, name in _CHECK_FIGURES if any(c.get(k) is not None for c in items)]
    rows = []
    spans = []
    for c in items:
        verdict = str(c.get("verdict", "-"))
        css = f"verdict-{verdict}" if verdict in _VERDICTS else ""
        reasons = c.get("reasons")
        text = "; ".join(map(str, reasons)) if isinstance(reasons, list) else reasons
        rows.append(
            [verdict, c.get("model"), c.get("method"), text or "-", *[c.get(k) for k, _ in shown]]
        )
        spans.append(css)
    table = _table(["verdict", "model", "method", "reasons", *[n for _, n in shown]], rows)
    for row, css in zip(table["rows"], spans, strict=True):
        row[0]["span"] = css  # the verdict, coloured
    distrust: dict[str, list[str]] = {}
    for c in items:
        for f in c.get("flagged_samples") or []:
            if isinstance(f, dict):
                flags = ", ".join(map(str, f.get("flags", [])))
                why = f"{c.get('model')} / {c.get('method')}: {flags}"
                distrust.setdefault(str(f.get("sample")), []).append(why)
    cases = _table(["sample", "why"], [[k, "; ".join(v)] for k, v in distrust.items()])
    plots = [
        figures.figure(
            c["figure"],
            f"{c.get('model')} / {c.get('method')}: deletion, insertion and randomization",
        )
        for c in items
        if c.get("figure")
    ]
    return {"table": table, "cases": cases if distrust else None, "figures": plots}


def _cohorts(items: list[dict[str, Any]], figures: _Figures) -> dict[str, Any]:
    """The cohorts' table, then per cohort its mean map's figure or a note where it is."""
    rows = []
    pictures: list[dict[str, Any]] = []
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
                what = "SHAP values" if c.get("method") == TREE_METHOD else "mean map"
                caption = f"cohort {c.get('name')}: {what}"
                pictures.append({"figure": figures.figure(ref, caption)})
                break
        else:
            if isinstance(mean_map, str) and mean_map:
                pictures.append({"figure": None, "name": str(c.get("name")), "where": mean_map})
    headers = ["cohort", "samples", "ids", "raises (region share)", "lowers", "region area"]
    return {"table": _table(headers, rows), "pictures": pictures}


# -- sample cards (data for sample_card.html.j2) ----------------------------------------------
TOP_WORDS = 6
"""Words the strongest-words table lists (by |score|)."""
TOP_FEATURES = 20
"""Features the features table lists (by |score|), as many as the feature figure shows."""


def _scored(items: list[Any]) -> list[tuple[dict[str, Any], float]]:
    """The objects of ``items`` that have a finite number ``score``, with it (-0.0 as 0.0), in
    their order."""
    return [
        (t, float(t["score"]) + 0.0)
        for t in items
        if isinstance(t, dict) and _is_number(t.get("score")) and math.isfinite(t["score"])
    ]


def _score_cell(score: float) -> Cell:
    """A score's cell, coloured by its sign (red raises, blue lowers; 0 plain)."""
    span = "raises" if score > 0 else "lowers" if score < 0 else None
    return {"text": _fmt(score), "num": True, "span": span}


def _tokens(tokens: list[Any], key: str = "token") -> list[dict[str, str]]:
    """Token (or word) importances as coloured text (red raises, blue lowers); no script
    needed. ``key`` names each item's text."""
    pairs = [(str(t.get(key, "")), score) for t, score in _scored(tokens)]
    if not pairs:
        return []
    m = max(abs(s) for _, s in pairs) or 1.0
    return [
        {
            "token": token,
            "rgb": "214,39,40" if score >= 0 else "31,119,180",  # red raises, blue lowers
            "alpha": f"{0.8 * min(1.0, abs(score) / m):.2f}",
            "score": _fmt(score),
        }
        for token, score in pairs
    ]


def _top_words(words: list[Any]) -> Table | None:
    """The TOP_WORDS words of largest |score|: word, score (coloured by sign) and the sum of
    the absolute attributions of its pieces where recorded."""
    ranked = sorted(_scored(words), key=lambda p: -abs(p[1]))[:TOP_WORDS]
    if not ranked:
        return None
    table = _table(["word", "score", "|attribution|"], [])
    table["rows"] = [
        [_cell(w.get("word")), _score_cell(score), _cell(w.get("abs_score", "-"))]
        for w, score in ranked
    ]
    return table


def _features(features: list[Any]) -> Table | None:
    """The TOP_FEATURES features of largest |score|: name, value, score (coloured by sign); a
    last row counts the rest."""
    ranked = sorted(_scored(features), key=lambda p: -abs(p[1]))
    if not ranked:
        return None
    table = _table(["feature", "value", "score"], [])
    table["rows"] = [
        [
            _cell(f.get("name")),
            {"text": _fmt(f.get("value"), 6), "num": _is_number(f.get("value")), "span": None},
            _score_cell(score),
        ]
        for f, score in ranked[:TOP_FEATURES]
    ]
    if len(ranked) > TOP_FEATURES:
        table["rows"].append(
            [_cell(f"... ({len(ranked) - TOP_FEATURES} more)"), _cell(""), _cell("")]
        )
    return table


def _shares(share: dict[str, Any]) -> list[dict[str, str]]:
    """Each input's share of the attribution, in percent: ``{"name", "percent"}``."""
    return [
        {
            "name": str(k),
            "percent": f"{100 * v:.0f}%" if _is_number(v) and math.isfinite(v) else _fmt(v),
        }
        for k, v in share.items()
    ]


def _attribution_extras(a: dict[str, Any], figures: _Figures) -> list[dict[str, Any]]:
    """What an explanation has beside its figure, each a ``kind`` the card template knows, in
    this order: the modality shares; the text's words (or tokens) coloured by score; the tables
    of the strongest words and of the tabular features (side by side); the token and feature
    figures (side by side where they fit); the region shares."""
    extras: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    pictures: list[dict[str, Any]] = []
    share = a.get("modality_share")
    if isinstance(share, dict) and share:
        extras.append({"kind": "modality_share", "shares": _shares(share), "text": _fmt(share)})
    words = a.get("words")
    tokens = a.get("tokens")
    if isinstance(words, list) and words and (spans := _tokens(words, "word")):
        extras.append({"kind": "tokens", "label": "words", "sep": " ", "tokens": spans})
        if (top := _top_words(words)) is not None:
            tables.append({"kind": "table", "caption": "strongest words", "table": top})
    elif isinstance(tokens, list) and tokens and (spans := _tokens(tokens)):
        extras.append({"kind": "tokens", "label": "tokens", "sep": "", "tokens": spans})
    features = a.get("features")
    if isinstance(features, list) and features and (table := _features(features)) is not None:
        caption = "features (largest |score| first)"
        tables.append({"kind": "table", "caption": caption, "table": table})
    token_fig = a.get("tokens_figure")
    figure = a.get("figure")
    if token_fig is None and isinstance(figure, str) and figure.endswith(".png"):
        guess = figure[: -len(".png")] + "__tokens.png"
        token_fig = guess if figures.exists(guess) else None
    if token_fig is not None:
        caption = f"{a.get('method')}: token importances"
        pictures.append({"kind": "figure", "figure": figures.figure(token_fig, caption)})
    feature_fig = a.get("features_figure")
    if feature_fig is not None:
        caption = f"{a.get('method')}: feature importances"
        pictures.append({"kind": "figure", "figure": figures.figure(feature_fig, caption)})
    combined = a.get("combined_figure")
    if isinstance(combined, str) and combined:
        caption = f"{a.get('method')}: image, words, features and shares together"
        pictures.insert(0, {"kind": "figure", "figure": figures.figure(combined, caption)})
    extras += tables + pictures
    region = a.get("region_share")
    if isinstance(region, dict) and region:
        extras.append({"kind": "region_share", "text": _fmt(region)})
    return extras


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
    trees: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    sid = str(sample.get("id"))
    facts = [f"image: {sample.get('image_path', '-')}"]
    if sample.get("target") is not None:
        facts.append(f"true target: {_fmt(sample['target'], 4)}")
    mine = [r for r in results if str(r.get("sample")) == sid]
    table = _table(
        ["model", "prediction", "explained"],
        [[r.get("model"), prediction_text(r.get("prediction")), r.get("explained")] for r in mine],
    )
    comparison = _comparison_ref(sid, agreement, figures)
    models = []
    for r in mine:
        model = r.get("model")
        explanations = []
        attributions = r.get("attributions")
        for a in attributions if isinstance(attributions, list) else []:
            if not isinstance(a, dict):
                continue
            caption = f"{sid} · {model} · {a.get('method')}"
            tree = _is_tree(a, model, trees)
            explanations.append(
                {
                    # a tree attribution has features, no map: no figure is missing
                    "figure": None if tree else figures.figure(a.get("figure"), caption),
                    "note": _tree_note(a) if tree else None,
                    "extras": _attribution_extras(a, figures),
                }
            )
        models.append(
            {
                "name": str(model),
                "prediction": prediction_text(r.get("prediction")),
                "explained": str(r.get("explained", "-")),
                "explanations": explanations,
            }
        )
    return {
        "anchor": anchor,  # generated: ids from the data never reach an attribute
        "id": sid,
        "facts": " · ".join(facts),
        "text": str(sample["text"]) if sample.get("text") else None,
        "results": table if mine else None,
        "comparison": (
            figures.figure(comparison, f"{sid}: model comparison") if comparison else None
        ),
        "models": models,
    }


# -- dataset runs (data for overview / dataset_cohorts / explained .html.j2) -------------------
_METRICS = ("rows", "r2", "mae", "rmse", "accuracy")
"""The metrics the overview's table shows first, in this order; other numbers follow."""


def _overview(
    dataset: dict[str, Any],
    metrics: dict[str, Any],
    figures: _Figures,
    agreement: list[dict[str, Any]] | None = None,
    importance: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The "Overview" section of a dataset run: the row counts, how the run was set up, the
    metrics per model (and each classifier's confusion matrix), the overview figure per model
    (a tree model's SHAP figure over the whole table beside it), whether the models' predictions
    agree, and the link to predictions.csv."""
    counts = _table(
        ["rows", "predicted", "explained", "failed"],
        [[dataset.get(k, "-") for k in ("rows", "predicted", "explained", "failed")]],
    )
    setup = [
        ("manifests", dataset.get("manifests")),
        ("id column", dataset.get("id_col")),
        ("target column", dataset.get("target_col")),
        ("explained", dataset.get("explain")),
        ("cohort size", dataset.get("cohort_size")),
        ("checked rows", dataset.get("check_sample")),
        ("regions", dataset.get("region_names")),
    ]
    facts = " · ".join(f"{k}: {_fmt(v)}" for k, v in setup if v not in (None, "", []))
    per_model = {str(k): v for k, v in metrics.items() if isinstance(v, dict)}
    names = [k for k in _METRICS if any(k in m for m in per_model.values())]
    names += list(
        dict.fromkeys(
            k
            for m in per_model.values()
            for k, v in m.items()
            if k not in _METRICS and _is_number(v)
        )
    )
    table = None
    if per_model:
        table = _table(["model"], [])
        table["headers"] += names
        table["rows"] = [
            [_cell(model), *[_cell(m.get(k, "-"), 4) for k in names]]
            for model, m in per_model.items()
        ]
    confusions: list[dict[str, Any]] = []
    for model, m in per_model.items():
        confusion = m.get("confusion")
        if not isinstance(confusion, dict):
            continue
        labels, matrix = confusion.get("labels"), confusion.get("matrix")
        if not (isinstance(labels, list) and isinstance(matrix, list)):
            continue
        if len(labels) > CONFUSION_TABLE_MAX:
            confusions.append({"model": model, "table": None, "classes": len(labels)})
            continue
        rows = [
            [label, *(row if isinstance(row, list) else [])]
            for label, row in zip(labels, matrix, strict=False)
        ]
        table_c = _table(["true \\ predicted", *map(str, labels)], rows)
        confusions.append({"model": model, "table": table_c, "classes": len(labels)})
    predictions = dataset.get("predictions") or "predictions.csv"
    return {
        "counts": counts,
        "failed": _is_number(dataset.get("failed")) and dataset["failed"] > 0,
        "facts": facts,
        "metrics": table,
        "confusions": confusions,
        "figures": _overview_figures(dataset, figures),
        "agreement": _agreement_table(agreement or []),
        "predictions": {"href": figures.href(predictions), "name": str(predictions)},
        "importance": [
            {
                "model": str(i.get("model")),
                "rows": i.get("rows"),
                "table": _tree_features(i.get("features")),
            }
            for i in importance or []
            if isinstance(i, dict) and _tree_features(i.get("features")) is not None
        ],
    }


def _overview_figures(dataset: dict[str, Any], figures: _Figures) -> list[list[Figure]]:
    """The overview's figures, a list per model: its predictions figure, then (a tree model)
    what drives it over the whole table (``dataset.importance``), shown side by side."""
    overview, importance = dataset.get("overview"), dataset.get("importance")
    overview = overview if isinstance(overview, dict) else {}
    importance = importance if isinstance(importance, dict) else {}
    counts = dataset.get("importance_rows")
    counts = counts if isinstance(counts, dict) else {}
    rows: dict[str, list[Figure]] = {}
    for model, ref in overview.items():
        rows.setdefault(str(model), []).append(
            figures.figure(ref, f"{model}: predictions over the dataset")
        )
    for model, ref in importance.items():
        n = counts.get(model)
        over = f" over {_fmt(n)} rows" if _is_number(n) else ""
        rows.setdefault(str(model), []).append(figures.figure(ref, f"what drives {model}{over}"))
    return list(rows.values())


def _number_text(value: Any) -> str:
    """A target, prediction or residual as a caption shows it: 6 significant digits."""
    return _fmt(value, 6)


def _members(cohort: dict[str, Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A cohort's members as recorded; for a cohort without ``members``, its ``sample_ids``
    with the figure and prediction of the cohort's model and method from ``results``."""
    members = cohort.get("members")
    if isinstance(members, list):
        return [m for m in members if isinstance(m, dict)]
    ids = cohort.get("sample_ids")
    found: list[dict[str, Any]] = []
    for sid in ids if isinstance(ids, list) else []:
        member: dict[str, Any] = {"id": sid}
        for r in results:
            if str(r.get("sample")) != str(sid) or r.get("model") != cohort.get("model"):
                continue
            prediction = r.get("prediction")
            if isinstance(prediction, dict):
                member["prediction"] = prediction.get("value", prediction.get("label"))
            for a in r.get("attributions") or []:
                if isinstance(a, dict) and a.get("method") == cohort.get("method"):
                    member["figure"] = a.get("figure")
        found.append(member)
    return found


def _regions(cohort: dict[str, Any], order: list[str]) -> Table | None:
    """The region table of a cohort: per class its share of what raises, of what lowers, of the
    pixels, and raises / area (above 1: the attribution gathers there); largest raises first."""
    shares: dict[str, dict[str, Any]] = {}
    for key in ("region_share", "region_share_lower", "region_area"):
        value = cohort.get(key)
        shares[key] = {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}
    if not any(shares.values()):
        return None
    names = list(dict.fromkeys([*order, *(k for v in shares.values() for k in v)]))
    names = [n for n in names if any(n in v for v in shares.values())]
    raises, lowers, area = (
        shares[k] for k in ("region_share", "region_share_lower", "region_area")
    )

    def ratio(name: str) -> Any:
        r, a = raises.get(name), area.get(name)
        return float(r) / float(a) if _is_number(r) and _is_number(a) and a > 0 else "-"

    names.sort(key=lambda n: -raises[n] if _is_number(raises.get(n)) else math.inf)
    return _table(
        ["class", "raises (share)", "lowers (share)", "area (share of pixels)", "raises ÷ area"],
        [[n, raises.get(n, "-"), lowers.get(n, "-"), area.get(n, "-"), ratio(n)] for n in names],
    )


def _cohort_features(features: Any) -> Table | None:
    """A fusion model's mean attribution per tabular feature over the cohort, largest |score|
    first (coloured by sign), with the mean absolute attribution beside it."""
    ranked = sorted(
        _scored(features if isinstance(features, list) else []), key=lambda p: -abs(p[1])
    )
    if not ranked:
        return None
    table = _table(["feature", "mean score", "mean |score|"], [])
    table["rows"] = [
        [_cell(f.get("name")), _score_cell(score), _cell(f.get("abs_score", "-"))]
        for f, score in ranked[:TOP_FEATURES]
    ]
    if len(ranked) > TOP_FEATURES:
        table["rows"].append(
            [_cell(f"... ({len(ranked) - TOP_FEATURES} more)"), _cell(""), _cell("")]
        )
    return table


def _dataset_cohorts(
    items: list[dict[str, Any]],
    results: list[dict[str, Any]],
    region_names: list[str],
    figures: _Figures,
    trees: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The cohorts of a dataset run: an index table linking to one section per cohort, each
    with its description, a gallery of its members (thumbnails linking to the full figures),
    its mean map's figure, its region table and its features table. A tree model's cohort
    (tree-shap) has no maps: its SHAP figure (bars and beeswarm), its features table and a
    table of its members instead."""
    index = []
    sections = []
    for i, c in enumerate(items):
        anchor = f"cohort-{i}"  # generated: names from the data never reach an attribute
        name = str(c.get("name", "-"))
        title = str(c.get("title") or name)
        gallery = []
        members = _members(c, results)
        index.append(
            [
                _cell(title, href=f"#{anchor}"),
                _cell(c.get("model")),
                _cell(c.get("method")),
                _cell(len(members)),
                _cell(c.get("description") or "-"),
            ]
        )
        if c.get("method") == TREE_METHOD or str(c.get("model")) in trees:
            sections.append(_tree_cohort(c, anchor, title, name, members, figures))
            continue
        for m in members:
            sid = str(m.get("id", "-"))
            numbers = [
                f"{label} {_number_text(m[key])}"
                for key, label in (
                    ("target", "target"),
                    ("prediction", "prediction"),
                    ("residual", "residual"),
                    ("score", "score"),
                )
                if m.get(key) is not None
            ]
            ref = m.get("figure")
            gallery.append(
                {
                    "id": sid,
                    "numbers": " · ".join(numbers),
                    # no figure recorded (--no-figures): nothing is missing, the card says so
                    "thumb": figures.thumbnail(ref, f"{sid} · {title}") if ref else None,
                    "href": figures.href(ref),
                }
            )
        picture = None
        note = None
        ref = c.get("figure")
        if isinstance(ref, str) and ref:
            picture = figures.figure(ref, f"{title}: mean map of {len(members)} member(s)")
        elif isinstance(c.get("mean_map"), str) and c.get("mean_map"):
            note = str(c["mean_map"])
        sections.append(
            {
                "anchor": anchor,
                "title": title,
                "name": name,
                "model": str(c.get("model", "-")),
                "method": str(c.get("method", "-")),
                "count": len(members),
                "explained": None,
                "description": str(c["description"]) if c.get("description") else None,
                "gallery": gallery,
                "figure": picture,
                "mean_map": note,
                "regions": _regions(c, region_names),
                "features": _cohort_features(c.get("features")),
                "features_caption": "features: mean attribution over the members",
                "members": None,
            }
        )
    table = _table(["cohort", "model", "method", "members", "description"], [])
    table["rows"] = index
    return {"table": table, "sections": sections}


def _tree_cohort(
    c: dict[str, Any],
    anchor: str,
    title: str,
    name: str,
    members: list[dict[str, Any]],
    figures: _Figures,
) -> dict[str, Any]:
    """A tree model's cohort section (data for dataset_cohorts.html.j2): its SHAP figure, its
    features table and its members' table; no gallery, no mean map, no regions."""
    explained = c.get("explained")
    rows = f"{_fmt(explained)} explained row(s)" if _is_number(explained) else "its rows"
    ref = c.get("figure")
    picture = None
    if isinstance(ref, str) and ref:
        picture = figures.figure(ref, f"{title}: what drives {c.get('model')} over {rows}")
    return {
        "anchor": anchor,
        "title": title,
        "name": name,
        "model": str(c.get("model", "-")),
        "method": str(c.get("method", "-")),
        "count": len(members),
        "explained": _fmt(explained) if _is_number(explained) else None,
        "description": str(c["description"]) if c.get("description") else None,
        "gallery": [],
        "figure": picture,
        "mean_map": None,
        "regions": None,
        "features": _tree_features(c.get("features")),
        "features_caption": (
            "features: mean SHAP value over the explained members (+ raises, "
            f"{MINUS} lowers the output) and mean |SHAP value|"
        ),
        "members": _member_table(members),
    }


def _explained(
    samples: list[dict[str, Any]],
    results: list[dict[str, Any]],
    figures: _Figures,
    trees: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The explained rows of a dataset run as one table (id, model, method, truth, prediction,
    residual, a link to the figure) instead of a card each: at most EXPLAINED_ROWS rows. A tree
    model's row has no figure: its last cell lists its TREE_ROW_FEATURES strongest features."""
    truth = {str(s.get("id")): s.get("target") for s in samples}
    rows = []
    tree_rows = 0
    for r in results:
        sid = str(r.get("sample"))
        prediction = r.get("prediction")
        value = prediction.get("value") if isinstance(prediction, dict) else None
        target = truth.get(sid)
        residual: Any = "-"
        if _is_number(value) and _is_number(target):
            residual = float(value) - float(target)
        shown = value if _is_number(value) else prediction_text(prediction)
        for a in r.get("attributions") or []:
            if not isinstance(a, dict):
                continue
            if _is_tree(a, r.get("model"), trees):
                tree_rows += 1
                last = _cell(_top_features_text(a.get("features")))
            else:
                href = figures.href(a.get("figure"))
                last = _cell("figure" if href else "-", href=href)
            rows.append(
                [
                    _cell(sid),
                    _cell(r.get("model")),
                    _cell(a.get("method")),
                    _cell(target, 6),
                    _cell(shown, 6),
                    _cell(residual, 6),
                    last,
                ]
            )
    last_header = "figure / top features" if tree_rows else "figure"
    table = _table(["id", "model", "method", "truth", "prediction", "residual", last_header], [])
    table["rows"] = rows[:EXPLAINED_ROWS]
    return {
        "table": table,
        "total": len(rows),
        "more": max(0, len(rows) - EXPLAINED_ROWS),
        "trees": tree_rows > 0,
        "figures": tree_rows < len(rows),
    }


# -- tree models (data for dataset_cohorts / explained / overview / side_by_side .html.j2) ------
TREE_METHOD = "tree-shap"
"""The method name of a tree model's attributions and cohorts."""
TREE_ROW_FEATURES = 3
"""Features a tree model's row shows in the explained rows' table (by |SHAP|)."""
MINUS = "\u2212"
"""The minus sign of signed SHAP values (the sort script reads it as a minus)."""


def _tree_models(summary: dict[str, Any]) -> frozenset[str]:
    """The names of the summary's tree models (``kind: tree``)."""
    return frozenset(
        str(m.get("name")) for m in _items(summary, "models") if m.get("kind") == "tree"
    )


def _is_tree(a: dict[str, Any], model: Any, trees: frozenset[str]) -> bool:
    """Whether attribution ``a`` is a tree model's: features and no map (its ``figure`` is
    its feature figure), from a tree model, by tree-shap, or with a features list (an image
    attribution always has a map)."""
    if a.get("map"):
        return False
    return (
        str(model) in trees or a.get("method") == TREE_METHOD or isinstance(a.get("features"), list)
    )


def _shap_text(value: float, signed: bool = False) -> str:
    """A SHAP value as the tables show it: one decimal from 1 to 1e6 (``41.2``, ``12.0``),
    else 3 significant digits (``0.0123``); ``signed`` puts ``+`` before a positive value, and
    a negative one always has a minus sign (U+2212)."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size == 0:
        return "0"
    text = f"{size:.3g}" if size < 1 or size >= 1e6 else f"{size:.1f}"
    return (MINUS if value < 0 else "+" if signed else "") + text


def _shap_cell(value: Any, signed: bool) -> Cell:
    """A SHAP value's cell: :func:`_shap_text`, coloured by its sign when ``signed`` (red
    raises, blue lowers); ``-`` when it is not a finite number."""
    if not (_is_number(value) and math.isfinite(value)):
        return _cell("-")
    number = float(value) + 0.0  # -0.0 as 0
    span = None
    if signed:
        span = "raises" if number > 0 else "lowers" if number < 0 else None
    return {"text": _shap_text(number, signed), "num": True, "span": span}


def _top_features_text(features: Any, count: int = TREE_ROW_FEATURES) -> str:
    """A tree row's strongest features in words: ``water_frac +41.2, sqft +12.0, road_frac
    \u22129.1`` (largest |SHAP| first), or ``-`` when it has none."""
    ranked = sorted(
        _scored(features if isinstance(features, list) else []), key=lambda p: -abs(p[1])
    )
    return (
        ", ".join(f"{f.get('name')} {_shap_text(score, True)}" for f, score in ranked[:count])
        or "-"
    )


def _tree_features(features: Any, limit: int = TOP_FEATURES) -> Table | None:
    """A tree model's features over some rows: name, mean SHAP value (signed, coloured) and
    mean |SHAP value|, largest mean |SHAP| first (as recorded: ``abs_score``, else ``|score|``);
    a last row counts what is beyond ``limit``."""

    def size(f: dict[str, Any]) -> float:
        for value in (f.get("abs_score"), f.get("score")):
            if _is_number(value) and math.isfinite(value):
                return abs(float(value))
        return -1.0

    items = [f for f in features if isinstance(f, dict)] if isinstance(features, list) else []
    ranked = sorted((f for f in items if size(f) >= 0), key=lambda f: -size(f))
    if not ranked:
        return None
    table = _table(["feature", "mean SHAP", "mean |SHAP|"], [])
    table["rows"] = [
        [
            _cell(f.get("name")),
            _shap_cell(f.get("score"), True),
            _shap_cell(f.get("abs_score"), False),
        ]
        for f in ranked[:limit]
    ]
    if len(ranked) > limit:
        table["rows"].append([_cell(f"... ({len(ranked) - limit} more)"), _cell(""), _cell("")])
    return table


def _tree_note(a: dict[str, Any]) -> str | None:
    """What a tree attribution adds to its features: the base value it starts from, the
    algorithm, the background rows of an interventional one, and its notes (a background too
    small for interventional SHAP)."""
    parts = []
    if _is_number(a.get("expected_value")):
        parts.append(f"base value (the model's mean output) {_number_text(a['expected_value'])}")
    if a.get("algorithm"):
        parts.append(f"algorithm {a['algorithm']}")
    if _is_number(a.get("background")) and a["background"] > 0:
        parts.append(f"{_fmt(a['background'])} background row(s)")
    notes = a.get("notes")
    parts += [str(n) for n in notes if n] if isinstance(notes, list) else []
    return " · ".join(parts) or None


def _member_table(members: list[dict[str, Any]]) -> Table | None:
    """A tree cohort's members, in place of a gallery: id, then what was recorded of target,
    prediction, residual and score (6 significant digits)."""
    if not members:
        return None
    keys = [
        k for k in ("target", "prediction", "residual", "score") if any(k in m for m in members)
    ]
    table = _table(["id", *keys], [])
    table["rows"] = [
        [_cell(m.get("id", "-")), *[_cell(m.get(k), 6) for k in keys]] for m in members
    ]
    return table


def _share_text(value: Any) -> str:
    """A share as a percentage (``0.83`` -> ``83%``)."""
    return f"{100 * value:.0f}%" if _is_number(value) and math.isfinite(value) else _fmt(value)


def _agreement_words(agreement: Any, rows: Any) -> str | None:
    """How far two models' predictions agree on some rows, in words: ``the two models'
    predictions on these 12 rows: mean |difference| 3.1, correlation 0.93`` (regression) or
    ``same prediction on 83% of 12 rows`` (classification)."""
    if not isinstance(agreement, dict):
        return None
    rows = agreement.get("rows", rows)
    these = f"these {_fmt(rows)} rows" if rows is not None else "these rows"
    if _is_number(agreement.get("same_prediction")):
        of = f"{_fmt(rows)} rows" if rows is not None else "the rows"
        return f"same prediction on {_share_text(agreement['same_prediction'])} of {of}"
    if "mean_abs_difference" in agreement or "correlation" in agreement:
        corr = agreement.get("correlation")
        corr_text = _fmt(corr) if _is_number(corr) else "not defined"
        return (
            f"the two models' predictions on {these}: mean |difference| "
            f"{_fmt(agreement.get('mean_abs_difference'))}, correlation {corr_text}"
        )
    return None


def _side_by_side(items: list[dict[str, Any]], region_names: list[str]) -> list[dict[str, Any]]:
    """The "Image model beside tree model" blocks: per cohort the image model's regions (or
    its description, or a note that it has no region maps) beside the tree model's strongest
    features, and how far the two models' predictions agree on the cohort's rows."""
    blocks = []
    for i, entry in enumerate(items):
        image = entry.get("image")
        image = image if isinstance(image, dict) else {}
        tree = entry.get("tree")
        tree = tree if isinstance(tree, dict) else {}
        description = image.get("description")
        blocks.append(
            {
                "anchor": f"pair-{i}",  # generated: names from the data never reach an attribute
                "title": str(entry.get("title") or entry.get("cohort") or "-"),
                "cohort": str(entry.get("cohort", "-")),
                "rows": _fmt(entry.get("rows")),
                "image": {
                    "model": str(image.get("model", "-")),
                    "method": str(image.get("method", "-")),
                    "regions": _regions(image, region_names),
                    "description": str(description) if description else None,
                },
                "tree": {
                    "model": str(tree.get("model", "-")),
                    "method": str(tree.get("method", "-")),
                    "features": _tree_features(tree.get("features")),
                },
                "agreement": _agreement_words(entry.get("agreement"), entry.get("rows")),
            }
        )
    return blocks


def _agreement_table(items: list[dict[str, Any]]) -> Table | None:
    """The overview's "Do the models agree?" table: per pair of models the rows both
    predicted, and what was measured of mean |difference|, correlation and the share of
    equal predictions."""
    if not items:
        return None
    measures = [
        (k, name)
        for k, name in (
            ("mean_abs_difference", "mean |difference|"),
            ("correlation", "correlation"),
            ("same_prediction", "same prediction"),
        )
        if any(k in a for a in items)
    ]
    table = _table(["models", "rows", *[name for _, name in measures]], [])
    for a in items:
        models = a.get("models")
        pair = " vs ".join(map(str, models)) if isinstance(models, list) else models
        row = [_cell(pair), _cell(a.get("rows"))]
        for k, _ in measures:
            value = a.get(k)
            if k == "same_prediction" and _is_number(value):
                row.append({"text": _share_text(value), "num": True, "span": None})
            else:
                row.append(_cell(value, 4 if k != "same_prediction" else 3))
        table["rows"].append(row)
    return table


# -- the page -------------------------------------------------------------------------------
def _importance(items: list[dict[str, Any]], figures: _Figures) -> list[dict[str, Any]]:
    """``importance[]`` of an explain run: per tree model, its summary figure and its
    features' mean SHAP and mean |SHAP| over the rows explained."""
    out = []
    for item in items:
        rows = item.get("rows")
        count = f" over {rows} rows" if _is_number(rows) else ""
        title = f"{item.get('model')} · {item.get('method', 'tree-shap')}{count}"
        ref = item.get("figure")
        out.append(
            {
                "title": title,
                "figure": figures.figure(ref, f"SHAP values of {item.get('model')}")
                if ref
                else None,
                "table": _tree_features(item.get("features")),
            }
        )
    return out


def _page(out: Path) -> dict[str, Any]:
    """Everything report.html.j2 shows, as plain data."""
    summary = _load_summary(out)
    errors = _load_errors(out)
    figures = _Figures(out)
    agreement = _items(summary, "agreement")
    checks = _items(summary, "checks")
    cohorts = _items(summary, "cohorts")
    results = _items(summary, "results")
    pairs = _items(summary, "side_by_side")
    trees = _tree_models(summary)
    samples = _items(summary, "samples")
    listed = {str(s.get("id")) for s in samples}
    for r in results:  # a result whose sample is not listed still gets its card
        sid = str(r.get("sample"))
        if sid not in listed:
            listed.add(sid)
            samples.append({"id": sid})

    dataset = summary.get("dataset")
    dataset = dataset if isinstance(dataset, dict) else None
    metrics = summary.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}

    sections = [("checks", "Can these maps be trusted?")] if checks else []
    if dataset is not None:
        sections.append(("overview", "Overview"))
    sections.append(("models", "Models"))
    if errors:
        sections.append(("errors", "Failed samples"))
    if agreement:
        sections.append(("agreement", "Agreement between models"))
    if cohorts:
        sections.append(("cohorts", "Cohorts"))
    importance = _items(summary, "importance") if dataset is None else []
    if importance:
        sections.append(("importance", "What drives each tree model"))
    if pairs:
        sections.append(("side-by-side", "Image model beside tree model"))
    if dataset is not None:
        # a dataset run may explain thousands of rows: a table links their figures, and the
        # cohorts' galleries show them, instead of a card each
        sections.append(("explained", "Explained rows"))
    else:
        sections.append(("samples", "Samples"))
    region_names = dataset.get("region_names") if dataset is not None else None
    region_names = [str(n) for n in region_names] if isinstance(region_names, list) else []
    page = {
        "header": _header(summary, errors),
        "sections": [{"anchor": a, "title": t} for a, t in sections],
        "overview": (
            _overview(
                dataset,
                metrics,
                figures,
                _items(summary, "prediction_agreement"),
                _items(summary, "importance"),
            )
            if dataset is not None
            else None
        ),
        "models": _models(summary),
        "errors": _errors(errors) if errors else None,
        "error_count": len(errors),
        "agreement": _agreement(agreement) if agreement else None,
        "checks": _checks(checks, figures) if checks else None,
        "cohorts": _cohorts(cohorts, figures) if cohorts and dataset is None else None,
        "dataset_cohorts": (
            _dataset_cohorts(cohorts, results, region_names, figures, trees)
            if cohorts and dataset is not None
            else None
        ),
        "side_by_side": _side_by_side(pairs, region_names) if pairs else None,
        "importance": _importance(importance, figures) if importance else None,
        "explained": (
            _explained(samples, results, figures, trees) if dataset is not None else None
        ),
        "samples": (
            [
                _sample_card(f"sample-{i}", s, results, agreement, figures, trees)
                for i, s in enumerate(samples)
            ]
            if dataset is None
            else []
        ),
    }
    page["missing"] = figures.missing  # counted while the figures above were read
    return page


def render_report(out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` (atomically) from ``summary.json`` and ``errors.jsonl``.

    Sections: trust checks; a dataset run's overview; run information and the models; failed
    samples; agreement between models; cohorts; an image model beside a tree model per cohort;
    then a card per sample with each model's prediction and explained target, the comparison
    figure and every explanation figure (inlined PNGs), or, in a dataset run, one table of the
    explained rows linking their figures (a tree model's rows: their strongest features). Every
    table sorts by the header clicked.

    Args:
        out_dir: an output folder of ``seewhy explain``, ``dataset`` or ``check``.

    Returns:
        The path of report.html.

    Raises:
        UsageError: summary.json is missing, unreadable or not of schema ``seewhy/1``.
    """
    out = Path(out_dir)
    page = _page(out)
    env = _environment()
    html = env.get_template("report.html.j2").render(page)
    return atomic_write(out / "report.html", html)


def _environment() -> Any:
    """The templates' Jinja2 environment: autoescaping on, undefined names an error."""
    from html import escape

    from jinja2 import Environment, PackageLoader, StrictUndefined
    from markupsafe import Markup

    def finalize(value: Any) -> Any:
        """Every ``{{ value }}``: escaped with :func:`html.escape` before autoescaping sees it.

        The result is the same safe text autoescaping would make, with :func:`html.escape`'s
        entities (``&quot;``, ``&#x27;``). Only markup the templates made themselves (a macro's
        output, escaped already) passes as it is; the data is plain strings and numbers, never
        markup, and nothing in it is marked safe unescaped.
        """
        if isinstance(value, Markup):
            return value
        return Markup(escape(str(value), quote=True))

    return Environment(
        loader=PackageLoader("seewhy.render", TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=finalize,
        trim_blocks=True,  # a line that holds only a {% tag %} leaves nothing in the page
        lstrip_blocks=True,
        keep_trailing_newline=True,  # each section's template ends its last line
    )


def _thumbnail_uri(png: bytes) -> str:
    """A PNG shrunk to THUMB_WIDTH pixels wide (never enlarged) as a lossy data URI: WebP, or
    JPEG where Pillow was built without WebP; transparency goes onto white."""
    import io

    from PIL import Image, features

    with Image.open(io.BytesIO(png)) as img:
        rgba = img.convert("RGBA")
    if rgba.width > THUMB_WIDTH:
        height = max(1, round(rgba.height * THUMB_WIDTH / rgba.width))
        rgba = rgba.resize((THUMB_WIDTH, height), Image.Resampling.LANCZOS, reducing_gap=2.0)
    rgb = Image.new("RGB", rgba.size, (255, 255, 255))
    rgb.paste(rgba, mask=rgba.getchannel("A"))
    buf = io.BytesIO()
    if features.check("webp"):
        mime = "image/webp"
        rgb.save(buf, format="WEBP", quality=THUMB_QUALITY, method=4)
    else:
        mime = "image/jpeg"
        rgb.save(buf, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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
