"""summary.json is indented for reading, and written compact when it holds a whole table of
results (json's C encoder does not indent: several times faster); both read back the same."""

from __future__ import annotations

import json
from pathlib import Path

from seewhy.data.output import INDENT_RESULTS, OutputFolder


def _summary(n: int) -> dict:
    return {
        "schema": "seewhy/1",
        "results": [
            {"sample": f"r{i}", "features": [{"name": "a", "value": 1.5, "score": -0.25}]}
            for i in range(n)
        ],
    }


def test_small_summaries_are_indented_large_ones_compact(tmp_path: Path) -> None:
    small, large = _summary(3), _summary(INDENT_RESULTS + 1)
    out = OutputFolder(tmp_path / "small")
    out.root.mkdir()
    out.save_summary(small)
    text = out.summary_path.read_text()
    assert text.count("\n") > 3 * 5 and json.loads(text) == small
    out = OutputFolder(tmp_path / "large")
    out.root.mkdir()
    out.save_summary(large)
    text = out.summary_path.read_text()
    assert "\n" not in text and '"score":-0.25' in text
    assert json.loads(text) == large
    assert out.load_summary() == large
