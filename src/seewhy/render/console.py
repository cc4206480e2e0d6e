"""The short console summary after a run (a rich table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_summary(summary: dict[str, Any], out: Path, failed: int) -> None:
    """Predictions per sample and model, the agreement lines, and where the files are."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="seewhy: predictions", show_lines=False)
    table.add_column("sample")
    table.add_column("model")
    table.add_column("prediction")
    table.add_column("explained")
    for r in summary.get("results", []):
        p = r.get("prediction", {})
        pred = f"{p['label']} ({p['score']:.2f})" if "label" in p else f"{p.get('value', 0):.4g}"
        table.add_row(str(r["sample"]), str(r["model"]), pred, str(r.get("explained", "")))
    console.print(table)
    agreement = summary.get("agreement", [])
    if agreement:
        # One row per sample and model pair; methods side by side (rank correlation / IoU).
        methods = list(dict.fromkeys(str(a.get("method", "")) for a in agreement))
        t = Table(title="agreement between models (rank correlation / top-10% IoU)")
        for col in ("sample", "models", "same prediction", *methods):
            t.add_column(col)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for a in agreement:
            key = (str(a["sample"]), " vs ".join(a["models"]))
            row = rows.setdefault(key, {"same": a["same_prediction"]})
            row[str(a.get("method", ""))] = f"{a['rank_correlation']:.2f} / {a['top_iou']:.2f}"
        for (sample, pair), row in rows.items():
            t.add_row(
                sample, pair, "yes" if row["same"] else "NO", *[row.get(m, "-") for m in methods]
            )
        console.print(t)
    console.print(f"report: {out / 'report.html'}")
    if failed:
        console.print(f"[yellow]{failed} sample(s) failed; see {out / 'errors.jsonl'}[/yellow]")
