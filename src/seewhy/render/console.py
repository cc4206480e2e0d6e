"""The short console summary after a run (rich tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seewhy.data.summary import prediction_text

MAX_ROWS = 40
"""Rows per console table; a longer run says how many more there are (all are in the report)."""


def print_summary(
    summary: dict[str, Any],
    out: Path,
    failed: int,
    console: Any | None = None,
    *,
    footer: bool = True,
) -> None:
    """Predictions per sample and model, the agreement between models, and where the files are.

    Args:
        summary: the run's summary.json content.
        out: the output folder.
        failed: how many samples failed (listed in errors.jsonl).
        console: a ``rich.console.Console`` (default: standard output).
        footer: end with where the report is and how many samples failed (off when the
            checks' table follows and says it).
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    results = summary.get("results", [])
    table = Table(title="seewhy: predictions")
    for col in ("sample", "model", "prediction", "explained"):
        table.add_column(col)
    for r in results[:MAX_ROWS]:
        p = r.get("prediction", {})
        pred = prediction_text(p)
        table.add_row(str(r["sample"]), str(r["model"]), pred, str(r.get("explained", "")))
    console.print(table)
    _more(console, len(results), out)
    agreement = summary.get("agreement", [])
    if agreement:
        # One row per sample and model pair; methods side by side (rank correlation / IoU).
        methods = list(dict.fromkeys(str(a.get("method", "")) for a in agreement))
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for a in agreement:
            key = (str(a["sample"]), " vs ".join(a["models"]))
            row = rows.setdefault(key, {"same": a["same_prediction"]})
            row[str(a.get("method", ""))] = f"{a['rank_correlation']:.2f} / {a['top_iou']:.2f}"
        pairs = list(dict.fromkeys(pair for _, pair in rows))
        title = "agreement between models (rank correlation / top-10% IoU)"
        if len(pairs) == 1:  # one pair: name it in the title, not on every row
            title = f"agreement, {pairs[0]} (rank correlation / top-10% IoU)"
        t = Table(title=title)
        t.add_column("sample")
        if len(pairs) > 1:
            t.add_column("models")
        t.add_column("same pred.", no_wrap=True)
        for m in methods:
            t.add_column(m, no_wrap=True)
        for (sample, pair), row in list(rows.items())[:MAX_ROWS]:
            cells = [sample, *([pair] if len(pairs) > 1 else [])]
            cells += ["yes" if row["same"] else "NO", *[row.get(m, "-") for m in methods]]
            t.add_row(*cells)
        console.print(t)
        _more(console, len(rows), out)
    if not footer:
        return
    console.print(f"report: {out / 'report.html'}")
    if failed:
        console.print(f"[yellow]{failed} sample(s) failed; see {out / 'errors.jsonl'}[/yellow]")


def _more(console: Any, rows: int, out: Path) -> None:
    if rows > MAX_ROWS:
        console.print(f"... and {rows - MAX_ROWS} more rows in {out / 'report.html'}")


def print_checks(
    summary: dict[str, Any], out: Path, failed: int, console: Any | None = None
) -> None:
    """The trust checks: one row per model and method, the verdict first, its reasons beside
    it, then the cases to distrust and where the report is.

    Args:
        summary: the run's summary.json content (its ``checks[]``).
        out: the output folder.
        failed: how many samples failed (listed in errors.jsonl).
        console: a ``rich.console.Console`` (default: standard output).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    checks = summary.get("checks", [])
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}
    table = Table(title="seewhy: can these maps be trusted?", show_lines=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("model")
    table.add_column("method")
    table.add_column("reasons")
    for c in checks[:MAX_ROWS]:
        verdict = str(c.get("verdict", "-"))
        style = colour.get(verdict, "")
        cell = f"[bold {style}]{verdict.upper()}[/]" if style else escape(verdict)
        reasons = c.get("reasons") or []
        table.add_row(
            cell,
            escape(str(c.get("model", ""))),
            escape(str(c.get("method", ""))),
            escape("\n".join(str(r) for r in reasons) or "-"),
        )
    console.print(table)
    _more(console, len(checks), out)
    flagged: dict[str, set[str]] = {}
    for c in checks:
        for f in c.get("flagged_samples", []):
            flagged.setdefault(str(f.get("sample")), set()).update(map(str, f.get("flags", [])))
    if flagged:
        shown = list(flagged.items())[:MAX_ROWS]
        t = Table(title="cases to distrust")
        t.add_column("sample")
        t.add_column("flags")
        for sid, why in shown:
            t.add_row(escape(sid), escape(", ".join(sorted(why))))
        console.print(t)
        _more(console, len(flagged), out)
    console.print(f"report: {out / 'report.html'}")
    if failed:
        console.print(f"[yellow]{failed} sample(s) failed; see {out / 'errors.jsonl'}[/yellow]")


def print_dataset(
    summary: dict[str, Any], out: Path, failed: int, console: Any | None = None
) -> None:
    """A dataset run: the metrics per model, then one row per cohort with its words, then the
    checks' verdicts when a sample was checked, and where the files are."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    info = summary.get("dataset", {})
    console.print(
        f"seewhy dataset: {info.get('rows', 0)} rows, {info.get('predicted', 0)} predicted, "
        f"{info.get('explained', 0)} explained, {info.get('failed', 0)} failed"
    )
    metrics = summary.get("metrics", {})
    if metrics:
        table = Table(title="metrics")
        for col in ("model", "rows", "r2", "mae", "rmse", "accuracy"):
            table.add_column(col, justify="right" if col != "model" else "left")
        for name, m in metrics.items():
            cells = [escape(str(name)), str(m.get("rows", "-"))]
            for key in ("r2", "mae", "rmse", "accuracy"):
                v = m.get(key)
                cells.append("-" if not isinstance(v, (int, float)) else f"{v:.4g}")
            table.add_row(*cells)
        console.print(table)
    cohorts = summary.get("cohorts", [])
    if cohorts:
        t = Table(title="cohorts")
        for col in ("cohort", "model", "method", "rows", "what the maps say"):
            t.add_column(col)
        for c in cohorts[:MAX_ROWS]:
            t.add_row(
                escape(str(c.get("title", c.get("name")))),
                escape(str(c.get("model", ""))),
                escape(str(c.get("method", ""))),
                str(len(c.get("sample_ids", []))),
                escape(str(c.get("description", "-"))),
            )
        console.print(t)
        _more(console, len(cohorts), out)
    if summary.get("checks"):
        print_checks(summary, out, failed, console)
        return
    console.print(f"predictions: {out / 'predictions.csv'}")
    console.print(f"report: {out / 'report.html'}")
    if failed:
        console.print(f"[yellow]{failed} row(s) failed; see {out / 'errors.jsonl'}[/yellow]")
