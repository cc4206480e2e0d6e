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
        t = Table(title="agreement between models")
        for col in ("sample", "models", "method", "same prediction", "rank corr.", "top-10% IoU"):
            t.add_column(col)
        for a in agreement:
            t.add_row(
                str(a["sample"]),
                " vs ".join(a["models"]),
                str(a.get("method", "")),
                "yes" if a["same_prediction"] else "NO",
                f"{a['rank_correlation']:.2f}",
                f"{a['top_iou']:.2f}",
            )
        console.print(t)
    console.print(f"report: {out / 'report.html'}")
    if failed:
        console.print(f"[yellow]{failed} sample(s) failed; see {out / 'errors.jsonl'}[/yellow]")
