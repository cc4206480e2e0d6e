"""The output folder (SPEC section 7): paths, atomic writes, resume, summary.json schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seewhy.core.atomic import atomic_path, atomic_write

SCHEMA = "seewhy/1"


def _file_part(name: str) -> str:
    from seewhy.data.samples import safe_id

    return safe_id(name)


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
        atomic_write(self.summary_path, json.dumps(summary, indent=2, default=_jsonable))

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


def new_summary() -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "models": [],
        "samples": [],
        "results": [],
        "agreement": [],
        "checks": [],
        "cohorts": [],
    }


def done_results(summary: dict[str, Any], root: Path) -> set[tuple[str, str, str]]:
    """(sample, model, method) triples already finished, with their map and figure on disk."""
    out = set()
    for r in summary.get("results", []):
        for a in r.get("attributions", []):
            files = [a.get("map"), a.get("figure")]
            if all(f and (root / f).is_file() for f in files):
                out.add((r["sample"], r["model"], a["method"]))
    return out


# -- schema ---------------------------------------------------------------------------------
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "models": {"name": str, "arch": str, "task": str, "layer": str},
    "samples": {"id": str, "image_path": str},
    "results": {
        "sample": str,
        "model": str,
        "prediction": dict,
        "explained": str,
        "attributions": list,
    },
    "agreement": {
        "sample": str,
        "models": list,
        "same_prediction": bool,
        "rank_correlation": (int, float),
        "top_iou": (int, float),
    },
    "checks": {"model": str, "method": str, "verdict": str, "reasons": list},
    "cohorts": {"name": str, "sample_ids": list},
}


def validate_summary(summary: Any) -> list[str]:
    """Problems with a summary.json document against the ``seewhy/1`` schema (empty = valid)."""
    problems: list[str] = []
    if not isinstance(summary, dict):
        return ["summary is not a JSON object"]
    if summary.get("schema") != SCHEMA:
        problems.append(f"schema is {summary.get('schema')!r}, expected {SCHEMA!r}")
    for section, fields in _REQUIRED.items():
        items = summary.get(section)
        if not isinstance(items, list):
            problems.append(f"'{section}' is missing or not a list")
            continue
        for i, item in enumerate(items):
            problems.extend(_check(f"{section}[{i}]", item, fields))
    for i, r in enumerate(summary.get("results", []) or []):
        pred = r.get("prediction", {}) if isinstance(r, dict) else {}
        if not (("label" in pred and "index" in pred and "score" in pred) or "value" in pred):
            problems.append(f"results[{i}].prediction needs label/index/score or value")
        for j, a in enumerate(r.get("attributions", []) if isinstance(r, dict) else []):
            problems.extend(
                _check(
                    f"results[{i}].attributions[{j}]", a, {"method": str, "map": str, "figure": str}
                )
            )
    ids = {s.get("id") for s in summary.get("samples", []) or [] if isinstance(s, dict)}
    names = {m.get("name") for m in summary.get("models", []) or [] if isinstance(m, dict)}
    for i, r in enumerate(summary.get("results", []) or []):
        if isinstance(r, dict) and r.get("sample") not in ids:
            problems.append(f"results[{i}].sample {r.get('sample')!r} is not in samples[]")
        if isinstance(r, dict) and r.get("model") not in names:
            problems.append(f"results[{i}].model {r.get('model')!r} is not in models[]")
    return problems


def _check(where: str, item: Any, fields: dict[str, type | tuple[type, ...]]) -> Iterator[str]:
    if not isinstance(item, dict):
        yield f"{where} is not an object"
        return
    for key, kind in fields.items():
        if key not in item:
            yield f"{where} lacks '{key}'"
        elif not isinstance(item[key], kind):
            yield f"{where}.{key} has type {type(item[key]).__name__}"
