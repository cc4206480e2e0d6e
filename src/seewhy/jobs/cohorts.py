"""Cohorts of a dataset run (SPEC section 8), its metrics, and a cohort's story in words.

Plain Python over the prediction records (no torch): a prediction pass over every row comes
first, these functions pick the rows worth looking at, and only those are explained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One row's prediction: ``value`` for regressors, ``label`` and ``score`` for
    classifiers; ``truth`` the manifest's true value (a number) or label (a class name)."""

    id: str
    value: float | None = None
    label: str | None = None
    score: float | None = None
    truth: float | str | None = None

    @property
    def residual(self) -> float | None:
        """prediction - truth (regression with a true value), else ``None``."""
        if self.value is None or not isinstance(self.truth, (int, float)):
            return None
        return float(self.value) - float(self.truth)


@dataclass(frozen=True)
class Cohort:
    """A named group of rows: ``name`` for files and scripts, ``title`` for people."""

    name: str
    title: str
    ids: list[str]


COHORTS = ("top", "bottom", "highest_error", "lowest_error", "misclassified", "class:<label>")
"""The cohorts a dataset run picks (SPEC section 8)."""


def decile_count(n: int) -> int:
    """How many rows a decile holds: ``ceil(n / 10)`` (at least one of a non-empty table)."""
    return math.ceil(n / 10) if n else 0


def pick_cohorts(
    rows: Sequence[Row], task: str, size: int, what: str = "the output"
) -> list[Cohort]:
    """The cohorts of ``rows`` (SPEC section 8), each at most ``size`` rows, most extreme first,
    ties broken by id.

    Regression: ``top`` / ``bottom`` are the decile of rows (the ``ceil(n/10)`` rows) with the
    highest / lowest true value when every row has one, else the highest / lowest prediction;
    ``highest_error`` / ``lowest_error`` are the rows with the largest / smallest absolute
    residual (rows with a true value), at most half of them each, so the two never share a
    row. Classification: ``misclassified`` (rows with a true
    label that the prediction misses, the most confident first) and ``class:<label>`` per
    predicted class (most confident first).

    Args:
        what: the output in words for the titles (``price``).
    """
    if task == "regression":
        return _regression(rows, size, what)
    return _classification(rows, size)


def _regression(rows: Sequence[Row], size: int, what: str) -> list[Cohort]:
    valued = [r for r in rows if r.value is not None and math.isfinite(r.value)]
    truthful = [r for r in valued if isinstance(r.truth, (int, float)) and math.isfinite(r.truth)]
    by_truth = bool(valued) and len(truthful) == len(valued)
    source = truthful if by_truth else valued
    n = min(decile_count(len(source)), size)

    def key(r: Row) -> float:
        return float(r.truth) if by_truth else float(r.value)  # type: ignore[arg-type]

    word = f"true {what}" if by_truth else f"predicted {what}"
    out = []
    if source:
        top = sorted(source, key=lambda r: (-key(r), r.id))[:n]
        bottom = sorted(source, key=lambda r: (key(r), r.id))[:n]
        out += [
            Cohort("top", f"top decile of {word}", [r.id for r in top]),
            Cohort("bottom", f"bottom decile of {word}", [r.id for r in bottom]),
        ]
    if truthful:
        # at most half the rows each: with ``size`` alone the two would share rows in a table
        # of under 2 x size rows (the worst-predicted row among the "lowest" errors)
        k = min(size, len(truthful) // 2)
        errors = [(abs(r.residual or 0.0), r.id) for r in truthful]
        low = sorted(errors, key=lambda e: (e[0], e[1]))[:k]
        taken = {i for _, i in low}  # tied errors: a row is in one of the two, never both
        high = sorted((e for e in errors if e[1] not in taken), key=lambda e: (-e[0], e[1]))[:k]
        out += [
            Cohort("highest_error", "highest absolute error", [i for _, i in high]),
            Cohort("lowest_error", "lowest absolute error", [i for _, i in low]),
        ]
    return out


def _classification(rows: Sequence[Row], size: int) -> list[Cohort]:
    def confident(r: Row) -> tuple[float, str]:
        return (-(r.score if r.score is not None else 0.0), r.id)

    out = []
    judged = [r for r in rows if r.truth is not None and r.label is not None]
    if judged:
        wrong = sorted((r for r in judged if str(r.truth) != r.label), key=confident)[:size]
        out.append(Cohort("misclassified", "misclassified", [r.id for r in wrong]))
    labels = sorted({r.label for r in rows if r.label is not None})
    for label in labels:
        members = sorted((r for r in rows if r.label == label), key=confident)[:size]
        out.append(Cohort(f"class:{label}", f"predicted {label}", [r.id for r in members]))
    return out


def metrics(rows: Sequence[Row], task: str, labels: Sequence[str] = ()) -> dict[str, Any]:
    """The ``metrics`` of one model (SPEC section 7) over the rows with a true value:
    regression ``r2``, ``mae``, ``rmse``; classification ``accuracy`` and ``confusion``
    (``labels`` and ``matrix``, rows true, columns predicted). ``rows`` counts them; a
    figure that needs a true value is absent without one."""
    if task == "regression":
        pairs = [
            (float(r.truth), float(r.value))
            for r in rows
            if isinstance(r.truth, (int, float))
            and r.value is not None
            and math.isfinite(float(r.truth))
            and math.isfinite(r.value)
        ]
        out: dict[str, Any] = {"rows": len(pairs)}
        if not pairs:
            return out
        mean = sum(t for t, _ in pairs) / len(pairs)
        ss_res = sum((p - t) ** 2 for t, p in pairs)
        ss_tot = sum((t - mean) ** 2 for t, _ in pairs)
        out["mae"] = sum(abs(p - t) for t, p in pairs) / len(pairs)
        out["rmse"] = math.sqrt(ss_res / len(pairs))
        if ss_tot > 0:
            out["r2"] = 1.0 - ss_res / ss_tot
        return out
    judged = [r for r in rows if r.truth is not None and r.label is not None]
    out = {"rows": len(judged)}
    if not judged:
        return out
    names = list(
        dict.fromkeys([*labels, *(str(r.truth) for r in judged), *(r.label for r in judged)])
    )
    index = {n: i for i, n in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for r in judged:
        matrix[index[str(r.truth)]][index[str(r.label)]] += 1
    out["accuracy"] = sum(str(r.truth) == r.label for r in judged) / len(judged)
    out["confusion"] = {"labels": names, "matrix": matrix}
    return out


def mean_shares(shares: Sequence[Sequence[float] | None]) -> list[float] | None:
    """The mean of per-row shares (rows without one left out), ``None`` when none has one."""
    have = [s for s in shares if s is not None]
    if not have:
        return None
    return [sum(col) / len(have) for col in zip(*have, strict=True)]


def describe(
    title: str,
    names: Sequence[str],
    raises: Sequence[float] | None,
    lowers: Sequence[float] | None,
    area: Sequence[float],
    what: str,
    *,
    neutral: bool = False,
) -> str:
    """A cohort's regions in words: the class most over-represented in what raises ``what``
    (its share of the raising attribution against its share of the area), and in what lowers
    it; e.g. ``top decile of true price: water raises price (0.60 of the raising attribution
    on 0.23 of the area)``. ``neutral``: a map without a direction (a gradient's magnitude,
    EigenCAM) says where the attribution lies, not what it does (``attention on water``)."""
    if neutral:
        best = None if raises is None else _most_enriched(raises, area)
        if raises is None or best is None:
            return f"{title}: no region takes more of the attribution than of the area"
        return (
            f"{title}: attention on {names[best]} ({raises[best]:.2f} of the attribution on "
            f"{area[best]:.2f} of the area)"
        )
    parts = []
    for verb, shares, kind in (("raises", raises, "raising"), ("lowers", lowers, "lowering")):
        if shares is None:
            continue
        best = _most_enriched(shares, area)
        if best is None:
            continue
        parts.append(
            f"{names[best]} {verb} {what} ({shares[best]:.2f} of the {kind} attribution on "
            f"{area[best]:.2f} of the area)"
        )
    if not parts:
        return f"{title}: no region takes more of the attribution than of the area"
    return f"{title}: " + "; ".join(parts)


def describe_features(
    title: str, features: Sequence[dict[str, Any]], what: str, *, lowering: bool = False
) -> str:
    """A cohort's features in words (a tree model's mean SHAP values): the feature that
    raises ``what`` most on average and the one that lowers it most, each with its mean
    signed value; e.g. ``top decile of true price: water_share raises price most (mean SHAP
    +0.021); road_share lowers it most (-0.008)``. ``lowering``: the values explain ``-value``
    (what lowers the output), so the verbs turn round."""
    up = max(features, key=lambda f: f["score"], default=None)
    down = min(features, key=lambda f: f["score"], default=None)
    if lowering:
        up, down = down, up
    sign = -1.0 if lowering else 1.0
    parts = []
    if up is not None and sign * up["score"] > 0:
        parts.append(f"{up['name']} raises {what} most (mean SHAP {sign * up['score']:+.3g})")
    if down is not None and sign * down["score"] < 0:
        verb = "lowers it most" if parts else f"lowers {what} most"
        parts.append(f"{down['name']} {verb} ({sign * down['score']:+.3g})")
    if not parts:
        return f"{title}: no feature moves {what} on average"
    return f"{title}: " + "; ".join(parts)


ENRICHED = 1.1
"""A class stands out in a cohort's words when its share of the attribution is at least this
many times its share of the area."""


def _most_enriched(shares: Sequence[float], area: Sequence[float]) -> int | None:
    """The class whose share most exceeds its area share (by ratio), among classes present
    and over-represented (at least :data:`ENRICHED` times); ``None`` when none is."""
    best, ratio = None, ENRICHED
    for k, (s, a) in enumerate(zip(shares, area, strict=True)):
        if a > 0 and s / a >= ratio:
            best, ratio = k, s / a
    return best


def true_value(
    value: Any, column: str, task: str, labels: Sequence[str], classes: int
) -> float | str:
    """A row's true value from its ``column`` cell: a finite number for regressors, a class
    name for classifiers (a class index is named by ``labels``; ``classes`` outputs).

    Raises:
        UsageError: a blank or NaN cell, a regressor's value that is not a finite number, a
            class the model does not have.
    """
    from seewhy.core.errors import UsageError

    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        raise UsageError(f"the target column '{column}' is blank (or NaN)")
    if task == "regression":
        try:
            number = float(str(value).strip())
        except (TypeError, ValueError):
            raise UsageError(
                f"the target column '{column}' holds {value!r}, not a number"
            ) from None
        if not math.isfinite(number):
            raise UsageError(f"the target column '{column}' is {value!r}")
        return number
    from seewhy.core.targets import numbers_hint, true_index

    text = str(value).strip()
    index = true_index(text, labels)
    if index is not None and 0 <= index < classes:
        return labels[index] if labels else str(index)
    known = ", ".join(labels) if labels else f"0..{classes - 1}"
    raise UsageError(
        f"the target column '{column}' holds {text!r}, which is not one of the "
        f"model's classes ({known}){numbers_hint(labels)}; fix the card's labels or the column"
    )


def mean_features(scores: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Per feature, the mean signed attribution (``score``) and the mean absolute one
    (``abs_score``) over the rows that have it; largest ``abs_score`` first, ties by name."""
    out = [
        {
            "name": k,
            "score": sum(v) / len(v),
            "abs_score": sum(abs(x) for x in v) / len(v),
        }
        for k, v in scores.items()
        if v
    ]
    return sorted(out, key=lambda f: (-f["abs_score"], f["name"]))
