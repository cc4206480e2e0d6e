"""summary.json (SPEC section 7): the one schema constant, an empty summary, the validator,
and the one way a prediction is written in words (figures, comparison and report alike)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seewhy.core.model import Model

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


_TREE_MODEL: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "arch": str,
    "task": str,
    "columns": list,
}


def validate_summary(summary: Any) -> list[str]:
    """Problems with a summary.json document against the ``seewhy/1`` schema (empty = valid)."""
    problems: list[str] = []
    if not isinstance(summary, dict):
        return ["summary is not a JSON object"]
    if summary.get("schema") != SCHEMA:
        problems.append(f"schema is {summary.get('schema')!r}, expected {SCHEMA!r}")
    trees = {
        m.get("name")
        for m in summary.get("models", []) or []
        if isinstance(m, dict) and m.get("kind") == "tree"
    }
    for section, fields in _REQUIRED.items():
        items = summary.get(section)
        if not isinstance(items, list):
            problems.append(f"'{section}' is missing or not a list")
            continue
        for i, item in enumerate(items):
            if section == "models" and isinstance(item, dict) and item.get("kind") == "tree":
                fields = _TREE_MODEL  # a tree model has columns, not a layer
            problems.extend(_check(f"{section}[{i}]", item, fields))
    for i, r in enumerate(summary.get("results", []) or []):
        pred = r.get("prediction", {}) if isinstance(r, dict) else {}
        if not (("label" in pred and "index" in pred and "score" in pred) or "value" in pred):
            problems.append(f"results[{i}].prediction needs label/index/score or value")
        tree = isinstance(r, dict) and r.get("model") in trees
        for j, a in enumerate(r.get("attributions", []) if isinstance(r, dict) else []):
            # a tree model's attribution is its features, not a map
            need: dict[str, type | tuple[type, ...]] = (
                {"method": str, "features": list} if tree else {"method": str, "map": str}
            )
            problems.extend(_check(f"results[{i}].attributions[{j}]", a, need))
            if isinstance(a, dict) and "figure" in a and not isinstance(a["figure"], str):
                problems.append(f"results[{i}].attributions[{j}].figure is not a string")
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


def upsert(items: list[dict[str, Any]], entry: dict[str, Any], *keys: str) -> None:
    """Replace the item of ``items`` that matches ``entry`` on ``keys``, or append it."""
    for i, item in enumerate(items):
        if all(item.get(k) == entry.get(k) for k in keys):
            items[i] = entry
            return
    items.append(entry)


def prediction(model: Model, output: Any, top_k: int = 3) -> tuple[dict[str, Any], list[str]]:
    """The summary's ``prediction`` for one sample's output row, and readable lines.

    Classifiers with one output are binary (SPEC section 3): the score is the sigmoid of the
    logit, the label the positive one when the logit is above 0 (probability above 0.5), as the
    ``pred`` target decides. Multilabel models score each output by its sigmoid; the label is the
    top-scoring one. Other classifiers: the softmax.
    """
    import torch

    from seewhy.core.targets import PredictedClass

    row = output.float().flatten()
    if model.task == "regression":
        if row.numel() == 1:
            value = float(row[0])
            return {"value": value}, [f"predicted value: {value:.4g}"]
        values = {model.label(i): float(v) for i, v in enumerate(row)}
        first = next(iter(values.values()))
        return {"value": first, "values": values}, [f"{k}: {v:.4g}" for k, v in values.items()]
    # The class the 'pred' target explains (binary: by threshold; else the top raw output).
    best = int(PredictedClass(multilabel=model.task == "multilabel").indices(row[None])[0])
    if model.task == "classification" and row.numel() == 1:
        positive = float(torch.sigmoid(row[0]))
        chance = {1: positive, 0: 1.0 - positive}
        lines = [f"{model.label(i)}: {chance[i]:.3f}" for i in (best, 1 - best)]
        return {"label": model.label(best), "index": best, "score": chance[best]}, lines
    probs = torch.sigmoid(row) if model.task == "multilabel" else torch.softmax(row, dim=0)
    # Rank by the raw output, as the 'pred' target does: probabilities can tie in float32.
    order = row.argsort(descending=True, stable=True).tolist()
    lines = [f"{model.label(i)}: {float(probs[i]):.3f}" for i in order[:top_k]]
    return {"label": model.label(best), "index": int(best), "score": float(probs[best])}, lines
