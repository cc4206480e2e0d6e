"""The output folder (SPEC section 7): paths, atomic writes, resume.

What summary.json holds (its schema) is :mod:`seewhy.data.summary`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seewhy.core.atomic import atomic_path, atomic_write
from seewhy.data.summary import SCHEMA, new_summary


def _file_part(name: str) -> str:
    from seewhy.data.samples import safe_id

    return safe_id(name)


INDENT_RESULTS = 2000
"""summary.json is indented up to this many results, compact beyond."""


class OutputFolder:
    """``OUT/``: figures/, maps/, summary.json, errors.jsonl, report.html.

    summary.json is rewritten atomically after every sample, so an interrupted run leaves a
    valid summary; a rerun reads it back and skips (sample, model, method) results whose files
    exist.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.summary_path = self.root / "summary.json"
        self.errors_path = self.root / "errors.jsonl"
        self.report_path = self.root / "report.html"

    def figure(self, sample: str, model: str, method: str, suffix: str = "") -> Path:
        name = f"{_file_part(model)}__{_file_part(method)}{suffix}.png"
        return self.root / "figures" / sample / name

    def map(self, sample: str, model: str, method: str) -> Path:
        return self.root / "maps" / sample / f"{_file_part(model)}__{_file_part(method)}.npy"

    def comparison(self, sample: str) -> Path:
        return self.root / "figures" / sample / "comparison.png"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # -- summary -------------------------------------------------------------------------
    def load_summary(self) -> dict[str, Any]:
        """The existing summary (for resuming), or an empty one."""
        if self.summary_path.is_file():
            try:
                data = json.loads(self.summary_path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("schema") == SCHEMA:
                    return data
            except (OSError, json.JSONDecodeError):
                pass  # unreadable: start afresh; the old file is replaced atomically
        return new_summary()

    def save_summary(self, summary: dict[str, Any]) -> None:
        """summary.json, indented for reading; a large one (over :data:`INDENT_RESULTS`
        results, a dataset run's whole table) on compact lines, which json writes several
        times faster."""
        results = summary.get("results")
        large = isinstance(results, list) and len(results) > INDENT_RESULTS
        text = (
            json.dumps(summary, separators=(",", ":"), default=_jsonable)
            if large
            else json.dumps(summary, indent=2, default=_jsonable)
        )
        atomic_write(self.summary_path, text)

    def save_map(self, path: Path, array: Any) -> None:
        import numpy as np

        with atomic_path(path, suffix=".tmp") as tmp, tmp.open("wb") as f:
            np.save(f, np.asarray(array, dtype=np.float32))

    # -- errors ----------------------------------------------------------------------------
    def errors(self) -> list[dict[str, Any]]:
        if not self.errors_path.is_file():
            return []
        out = []
        for line in self.errors_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def write_errors(self, errors: list[dict[str, Any]]) -> None:
        """Rewrite errors.jsonl atomically (one JSON object per line); remove it when empty."""
        if not errors:
            self.errors_path.unlink(missing_ok=True)
            return
        atomic_write(self.errors_path, "".join(json.dumps(e) + "\n" for e in errors))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def done_results(summary: dict[str, Any], root: Path) -> set[tuple[str, str, str]]:
    """(sample, model, method) triples already finished, with their map and figure on disk."""
    out = set()
    for r in summary.get("results", []):
        for a in r.get("attributions", []):
            files = [a.get("map"), a.get("figure")]
            if all(f and (root / f).is_file() for f in files):
                out.add((r["sample"], r["model"], a["method"]))
    return out
