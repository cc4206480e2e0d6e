"""The console summary: what a user reads in the terminal after a run."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console

from seewhy.render.console import MAX_ROWS, print_summary


def result(sample: str, model: str, label: str, score: float) -> dict[str, Any]:
    return {
        "sample": sample,
        "model": model,
        "prediction": {"label": label, "index": 0, "score": score},
        "explained": label,
    }


def agreement(sample: str, models: list[str], method: str, r: float, iou: float) -> dict[str, Any]:
    return {
        "sample": sample,
        "models": models,
        "method": method,
        "same_prediction": r > 0,
        "rank_correlation": r,
        "top_iou": iou,
    }


def render(summary: dict[str, Any], failed: int = 0) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None)
    print_summary(summary, Path("out"), failed, console=console)
    return buffer.getvalue()


def test_one_pair_is_named_in_the_title_and_rows_fit_80_columns() -> None:
    summary = {
        "results": [result("s1", "convnext", "fracture", 0.91), result("s1", "effnet", "x", 0.5)],
        "agreement": [
            agreement("s1", ["convnext", "effnet"], "gradcam", 0.8123, 0.61),
            agreement("s1", ["convnext", "effnet"], "scorecam", -0.25, 0.0),
        ],
    }
    text = render(summary)
    assert "agreement, convnext vs effnet" in text
    row = next(line for line in text.splitlines() if line.startswith("│ s1 ") and "/" in line)
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells == ["s1", "yes", "0.81 / 0.61", "-0.25 / 0.00"]
    assert "fracture (0.91)" in text and "report: out/report.html" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_several_pairs_get_a_models_column_and_long_runs_are_cut() -> None:
    n = MAX_ROWS + 5
    summary = {
        "results": [result(f"s{i}", "a", "normal", 0.9) for i in range(n)],
        "agreement": [agreement("s0", ["a", "b"], "gradcam", -0.5, 0.1)]
        + [agreement(f"s{i}", ["a", "c"], "gradcam", 0.5, 0.2) for i in range(n)],
    }
    text = render(summary, failed=2)
    assert "agreement between models" in text and "a vs b" in text and "NO" in text
    assert text.count("... and 5 more rows in out/report.html") == 1
    assert "... and 6 more rows in out/report.html" in text  # n + 1 pairs
    assert sum(line.startswith("│ s") for line in text.splitlines()) == 2 * MAX_ROWS
    assert "2 sample(s) failed; see out/errors.jsonl" in text
