"""summary.json (SPEC section 7): the one schema constant, an empty summary, the validator,
and the one way a prediction is written in words (figures, comparison and report alike)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SCHEMA = "seewhy/1"
"""The ``schema`` value of every summary.json this version writes and reads."""


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


# -- validation ---------------------------------------------------------------------------------
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


def prediction_text(pred: Any, digits: int = 2) -> str:
    """A summary ``prediction`` in a few words: ``fracture (0.93)``, ``value 3.2e+05``, or
    ``price 3.2e+05, rooms 4`` for a regressor with named outputs; ``-`` when there is none."""
    if not isinstance(pred, dict):
        return "-"
    if "label" in pred:
        score = pred.get("score")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            return f"{pred['label']} ({score:.{digits}f})"
        return str(pred["label"])
    values = pred.get("values")
    if isinstance(values, dict) and values:
        return ", ".join(f"{k} {_number(v)}" for k, v in values.items())
    if "value" in pred:
        return f"value {_number(pred['value'])}"
    return "-"


def _number(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
