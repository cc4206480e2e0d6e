"""Tree models in a run (issue 13): a LightGBM, XGBoost or scikit-learn model beside the image
models, on the same manifest rows.

A tree model reads a row's columns (the card's ``columns``), not its image, so its rows are
read here rather than by the DataLoader; it predicts many rows per call, and ``tree-shap``
(:class:`~seewhy.methods.tabular.TreeShap`) explains the rows the run explains. What it
leaves has the torch models' shape: prediction records for the cohorts, ``results[]`` whose
``attributions[]`` carry ``features`` instead of a map, cohort entries with the mean signed and
mean absolute SHAP value per feature, and beeswarm + bar figures. With an image model in the
same run, :func:`side_by_side` puts a cohort's region shares next to the tree model's top
features, with the agreement of the two models' predictions on its rows.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import MethodNotApplicableError, UsageError
from seewhy.methods.tabular import (
    TREE_METHOD,
    check_target,
    n_classes,
    shap_values,
    tree_target,
)

__all__ = [
    "TREE_METHOD",
    "check_target",
    "n_classes",
    "shap_values",
    "tree_target",
]

if TYPE_CHECKING:
    import numpy as np

    from seewhy.core.trees import TabularModel
    from seewhy.data.samples import Sample
    from seewhy.jobs.cohorts import Row
    from seewhy.methods.tabular import TreeShap, TreeShapResult

CHUNK = 4096
"""Rows per predict / explain call (the progress bar moves per chunk)."""
IMPORTANCE_ROWS = 2000
"""Rows (drawn by the seed) behind a tree model's whole-table importance figure."""
SIDE_BY_SIDE_FEATURES = 5
"""How many of the tree model's features a side-by-side entry lists."""


def is_tree(model: Any) -> bool:
    """Whether ``model`` is a tabular tree model (not a torch model)."""
    from seewhy.core.trees import TabularModel

    return isinstance(model, TabularModel)


def split_methods(
    names: Sequence[str], torch_models: Sequence[Any], trees: Sequence[TabularModel]
) -> tuple[list[str], list[str]]:
    """(the torch models' methods, the tree models' methods) of a run (SPEC section 5).

    No method named: ``gradcam`` for torch models, ``tree-shap`` for tree models. ``shap``
    (the alias of ``expected-gradients``) is the SHAP that fits each model: expected gradients
    on a torch model, ``tree-shap`` on a tree model.

    Raises:
        MethodNotApplicableError: a tree model and no SHAP method among ``names`` (the others
            need a torch model's gradients or layers); a torch model and only ``tree-shap``.
    """
    from seewhy.methods.registry import for_trees

    if not names:
        return (["gradcam"] if torch_models else []), ([TREE_METHOD] if trees else [])
    torch_names = [n for n in names if not for_trees(n)]
    shap = any(for_trees(n) or n == "expected-gradients" for n in names)
    # on tree models alone, a torch method applies to nothing (expected-gradients is shap)
    stray = [n for n in torch_names if n != "expected-gradients"] if not torch_models else []
    if trees and (stray or not shap):
        t = trees[0]
        named = stray or list(names)
        verb = "needs" if len(named) == 1 else "need"
        fix = TREE_METHOD if not torch_models else ",".join([*names, TREE_METHOD])
        raise MethodNotApplicableError(
            f"model {t.name} is a {t.kind} tree model: {', '.join(named)} {verb} a torch "
            f"model's gradients or layers; explain it with {TREE_METHOD} (--method {fix})"
        )
    if torch_models and not torch_names:
        m = torch_models[0]
        raise MethodNotApplicableError(
            f"{TREE_METHOD} explains tree models, and model {m.name} is a torch model: add a "
            f"method for it (--method gradcam,{TREE_METHOD}; shap means expected gradients "
            "on a torch model)"
        )
    return (torch_names if torch_models else []), ([TREE_METHOD] if trees else [])


def check_run(trees: Sequence[TabularModel], target: str, samples: Sequence[Sample]) -> None:
    """Refuse, before any work, what no row of the run can do: a target a tree model cannot
    explain, ``--target true`` without true values, a column of a model's that the manifest
    lacks altogether.

    Raises:
        UsageError: naming the flag or the columns.
    """
    if not trees:
        return
    for t in trees:
        check_target(t, target)
    if str(target).strip() == "true" and any(s.truth is None for s in samples):
        raise UsageError(
            "--target true explains each row's true class: name its column with --target-col"
        )
    if not samples:
        return
    image = next((s for s in samples if not s.row), None)
    if image is not None:  # an image file given: it has no columns to read
        t = trees[0]
        raise UsageError(
            f"model {t.name} is a {t.kind} tree model: it explains a manifest's rows (columns "
            f"{', '.join(t.columns)}), not images like {image.id}; pass --data MANIFEST, a "
            "CSV/Parquet table with those columns"
        )
    have = {str(k) for s in samples[:1] for k in s.row}
    have |= {k.replace(" ", "_") for k in have}
    for t in trees:
        lacking = [c for c in t.columns if c not in have]
        if lacking:
            raise UsageError(
                f"model {t.name} takes columns the manifest lacks: {', '.join(lacking)}; its "
                f"columns are {', '.join(t.columns)} (the card's columns, else the model's own)"
            )


def stamp(model: TabularModel, sample: Sample, truth: Any) -> list[Any]:
    """What a row's tree records depend on: its true value and its feature cells as written."""
    return [
        None if truth is None else str(truth),
        [None if sample.row.get(c) is None else str(sample.row.get(c)) for c in model.columns],
    ]


@dataclass
class TreeRows:
    """The rows a tree model can read: their samples, features ``x`` ``[N, F]`` and true
    values; ``failed``: id -> why a row cannot be read (a missing column, a non-number)."""

    samples: list[Sample]
    x: np.ndarray
    truth: list[Any]
    failed: dict[str, str] = field(default_factory=dict)


def read_rows(
    model: TabularModel, samples: Sequence[Sample], truth_of: Callable[[Sample], Any]
) -> TreeRows:
    """Each row's features in the model's column order; a row that cannot be read (a
    missing column, a value that is not a number, a bad true value, a row another manifest
    lacks) fails alone."""
    import numpy as np

    from seewhy.data.samples import MISSING_ROW

    ok: list[Sample] = []
    rows: list[np.ndarray] = []
    truth: list[Any] = []
    failed: dict[str, str] = {}
    for s in samples:
        try:
            if s.row.get(MISSING_ROW):
                raise UsageError(str(s.row[MISSING_ROW]))
            t = truth_of(s)
            rows.append(model.vector(s.row))
        except UsageError as exc:
            failed[s.id] = str(exc)
            continue
        ok.append(s)
        truth.append(t)
    x = np.stack(rows) if rows else np.empty((0, len(model.columns)))
    return TreeRows(ok, x, truth, failed)


def predictions(model: TabularModel, x: np.ndarray) -> list[dict[str, Any]]:
    """The summary ``prediction`` of each row: ``{"value"}`` for regressors, ``{"label",
    "index", "score"}`` (the top class and its probability) for classifiers."""
    import numpy as np

    out: list[dict[str, Any]] = []
    for start in range(0, len(x), CHUNK):
        y = np.asarray(model.predict(x[start : start + CHUNK]), dtype=np.float64)
        for row in y:
            if model.task == "classification":
                best = int(np.argmax(row))
                out.append({"label": model.label(best), "index": best, "score": float(row[best])})
            else:
                out.append({"value": float(np.ravel(row)[0])})
    return out


def finite(pred: Mapping[str, Any]) -> bool:
    """Whether a prediction's number is finite (a NaN output fails its row)."""
    v = pred.get("value", pred.get("score"))
    return isinstance(v, (int, float)) and math.isfinite(v)


def explained(model: TabularModel, result: TreeShapResult, k: int, target: str) -> str:
    """What row ``k``'s values explain, as ``results[].explained`` names it: a regressor's
    output by its name (the card's one label, as image regressors name it: ``price`` /
    ``-price``), else ``value`` / ``-value``; a classifier's explained class by its label."""
    if model.task == "regression" or result.class_index is None:
        name = model.labels[0] if model.task == "regression" and model.labels else "value"
        return f"-{name}" if tree_target(model, target) == "-value" else name
    return model.label(int(result.class_index[k]))


def explained_words(model: TabularModel, target: str, what: str) -> str:
    """What a tree model's values explain, in a cohort's words: ``what`` (the output's name)
    for a regressor; for a classifier ``its class's score`` when each row explains its own
    class (``pred``, ``true``), else the fixed class's (``class hi's score``)."""
    if model.task == "regression":
        return what
    t = tree_target(model, target)
    if t in ("pred", "true"):
        return "its class's score"
    label = model.label(int(t)) if t.lstrip("-").isdigit() else t
    return f"class {label}'s score"


def attribution(
    model: TabularModel,
    method: TreeShap,
    result: TreeShapResult,
    x: np.ndarray,
    k: int,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Row ``k``'s ``attributions[]`` entry: per column its value (``None`` when blank) and
    SHAP value, the base value and which TreeExplainer algorithm ran; ``notes``: what the
    user asked for and did not get (:func:`background_note`)."""
    cells, values = x[k].tolist(), result.values[k].tolist()  # Python floats, at once
    entry: dict[str, Any] = {
        "method": TREE_METHOD,
        "params": method.params(),
        "features": [
            {"name": c, "value": None if math.isnan(v) else v, "score": s}
            for c, v, s in zip(model.columns, cells, values, strict=True)
        ],
        "expected_value": float(result.expected_value[k]),
        "algorithm": result.algorithm,
        "background": int(result.background),
        "signed": True,
    }
    if notes:
        entry["notes"] = list(notes)
    return entry


MIN_BACKGROUND = 2
"""The fewest background rows interventional tree SHAP runs on: against one row (the row
explained itself, when it is the only one) every value would be 0; below it the path-dependent
algorithm runs, as expected gradients fall back to the zero baseline below 2 rows."""


def background_rows(rows: TreeRows, n: int | None, seed: int) -> tuple[list[str], Any]:
    """The interventional background: ``n`` of the readable rows drawn by ``seed`` (ids and
    features); none (the path-dependent algorithm) when ``n`` is not given or 0, or when fewer
    than :data:`MIN_BACKGROUND` rows can be drawn (:func:`background_note` says so)."""
    if not n or len(rows.samples) < MIN_BACKGROUND or n < MIN_BACKGROUND:
        return [], None
    pick = sorted(random.Random(seed).sample(range(len(rows.samples)), min(n, len(rows.samples))))
    return [rows.samples[i].id for i in pick], rows.x[pick]


def background_note(model: TabularModel, rows: TreeRows, n: int | None) -> str | None:
    """Why ``--n-background n`` did not run interventional (fewer than
    :data:`MIN_BACKGROUND` rows to draw), ``None`` when it did or was not asked for."""
    if not n or min(n, len(rows.samples)) >= MIN_BACKGROUND:
        return None
    if n < MIN_BACKGROUND:
        return (
            f"--n-background {n}: interventional tree SHAP needs a background of at least "
            f"{MIN_BACKGROUND} rows, so the path-dependent algorithm ran instead (give "
            f"--n-background {MIN_BACKGROUND} or more, or leave it out)"
        )
    got = len(rows.samples)
    return (
        f"--n-background {n}: model {model.name} has {got} row{'' if got == 1 else 's'} to draw "
        f"a background from and interventional tree SHAP needs at least {MIN_BACKGROUND}, so "
        "the path-dependent algorithm ran instead (explain more rows, or leave out "
        "--n-background)"
    )


def matrices(
    records: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(SHAP values, feature values), ``[N, F]`` each, from rows' ``features`` lists (a
    missing value is NaN)."""
    import numpy as np

    values = np.zeros((len(records), len(columns)))
    data = np.full((len(records), len(columns)), np.nan)
    where = {c: j for j, c in enumerate(columns)}
    for i, r in enumerate(records):
        for f in r.get("features", []):
            j = where.get(f["name"])
            if j is None:
                continue
            values[i, j] = float(f["score"])
            if f.get("value") is not None:
                with contextlib.suppress(TypeError, ValueError):
                    data[i, j] = float(f["value"])
    return values, data


def summary_figure(
    path: Path, values: np.ndarray, data: np.ndarray, names: Sequence[str], title: str
) -> bool:
    """The beeswarm + bar figure (``render.figures.tree_shap_figure``); False when it cannot
    be drawn (the run goes on without it)."""
    try:
        from seewhy.render.figures import tree_shap_figure

        tree_shap_figure(path, values, data, list(names), title)
    except Exception:
        return False
    return True


def importance(
    model: TabularModel,
    method: TreeShap,
    rows: TreeRows,
    *,
    target: str,
    background: np.ndarray | None,
    seed: int,
    figure: Path | None,
    known: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """What drives the model over the whole table: ``tree-shap`` on up to
    :data:`IMPORTANCE_ROWS` rows drawn by ``seed``; the mean signed and mean absolute value per
    feature, and the beeswarm + bar figure when ``figure`` is given. ``known``: row id -> its
    ``attributions[]`` entry, already computed by the run with the same settings (every row
    explained): those rows' values are read, not computed again."""
    from seewhy.jobs.cohorts import mean_features

    n = len(rows.samples)
    pick = sorted(random.Random(seed).sample(range(n), min(n, IMPORTANCE_ROWS)))
    x = rows.x[pick]
    ids = [rows.samples[i].id for i in pick]
    if known is not None and all(i in known for i in ids):
        values, _ = matrices([known[i] for i in ids], model.columns)
        algorithm = str(known[ids[0]].get("algorithm")) if ids else "tree_path_dependent"
    else:
        result = shap_values(
            model,
            method,
            x,
            target=target,
            truth=[rows.truth[i] for i in pick],
            background=background,
        )
        values, algorithm = result.values, result.algorithm
    scores = {c: [float(v) for v in values[:, j]] for j, c in enumerate(model.columns)}
    entry: dict[str, Any] = {
        "model": model.name,
        "method": TREE_METHOD,
        "rows": len(pick),
        "algorithm": algorithm,
        "features": mean_features(scores),
    }
    if figure is not None and summary_figure(
        figure,
        values,
        x,
        model.columns,
        f"{model.name} · {TREE_METHOD} · {len(pick)} rows",
    ):
        entry["figure"] = figure
    return entry


def agreement(task_a: str, task_b: str, a: Sequence[Row], b: Sequence[Row]) -> dict[str, Any]:
    """How much two models' predictions on the same rows agree: regressors the mean absolute
    difference and Pearson's r (``None`` when either is constant or fewer than 2 rows);
    classifiers the share of rows with the same predicted label. ``{}`` for a regressor beside
    a classifier (nothing to compare)."""
    if len(a) != len(b):
        raise ValueError("the two models' rows differ in number")
    if task_a != task_b:
        return {}
    out: dict[str, Any] = {"rows": len(a)}
    if not a:
        return out
    if task_a == "regression":
        pa = [float(r.value) for r in a if r.value is not None]
        pb = [float(r.value) for r in b if r.value is not None]
        out["mean_abs_difference"] = sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)
        out["correlation"] = _pearson(pa, pb)
    else:
        out["same_prediction"] = sum(x.label == y.label for x, y in zip(a, b, strict=True)) / len(a)
    return out


TOP_FEATURES = 0.1
"""The share of features (at least one) whose overlap ``top_iou`` gives for two tree models
on a row, by |SHAP| (as an image pair's ``top_iou`` is of their maps' top 10% of pixels)."""


def row_agreement(
    sample: str, a: str, b: str, ra: Mapping[str, Any], rb: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The ``agreement[]`` entry of two tree models' results on one row (SPEC section 7), as
    ``seewhy explain`` writes one for two image models: ``same_prediction`` (the same label;
    two regressors also get ``prediction_difference``, the absolute difference of their
    values), ``rank_correlation`` (Spearman's rho of the SHAP values of the features both
    read, by name), ``top_iou`` (the overlap of their top :data:`TOP_FEATURES` features by
    |SHAP|) and ``same_top_feature``. ``None`` when they share no feature."""
    import torch

    from seewhy.checks.agreement import rank_correlation, top_iou

    def scores(r: Mapping[str, Any]) -> dict[str, float]:
        found = [x for x in r.get("attributions", []) if x.get("method") == TREE_METHOD]
        return {f["name"]: float(f["score"]) for f in (found[0]["features"] if found else [])}

    sa, sb = scores(ra), scores(rb)
    shared = [n for n in sa if n in sb]
    if not shared:
        return None
    pa, pb = ra["prediction"], rb["prediction"]
    va = torch.tensor([sa[n] for n in shared], dtype=torch.float64)
    vb = torch.tensor([sb[n] for n in shared], dtype=torch.float64)
    entry: dict[str, Any] = {
        "sample": sample,
        "models": [a, b],
        "method": TREE_METHOD,
        "same_prediction": "label" in pa and pa.get("label") == pb.get("label"),
        "rank_correlation": round(rank_correlation(va, vb), 4),
        "top_iou": round(top_iou(va.abs(), vb.abs(), TOP_FEATURES), 4),
        "same_top_feature": int(va.abs().argmax()) == int(vb.abs().argmax()),
        "features": len(shared),
    }
    if "value" in pa and "value" in pb:
        entry["prediction_difference"] = abs(float(pa["value"]) - float(pb["value"]))
    return entry


def _pearson(a: Sequence[float], b: Sequence[float]) -> float | None:
    n = len(a)
    if n < 2:
        return None
    ma, mb = sum(a) / n, sum(b) / n
    sa = math.sqrt(sum((x - ma) ** 2 for x in a))
    sb = math.sqrt(sum((y - mb) ** 2 for y in b))
    if sa == 0 or sb == 0:
        return None
    return sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)) / (sa * sb)


def side_by_side(
    cohorts: Sequence[Mapping[str, Any]],
    images: Sequence[Any],
    trees: Sequence[TabularModel],
    explained_by: Mapping[str, Mapping[str, Mapping[str, Any]]],
    rows_by: Mapping[str, Mapping[str, Row]],
) -> list[dict[str, Any]]:
    """``side_by_side[]``: for each image model's cohort and method, and each tree model, the
    cohort's region shares (or its description) beside the tree model's mean SHAP values over
    the same rows, and the agreement of the two models' predictions on them.

    Args:
        cohorts: the run's ``cohorts[]`` entries.
        images: the run's torch models.
        trees: the run's tree models.
        explained_by: model -> row id -> its streamed record (``attributions[]``).
        rows_by: model -> row id -> its prediction.
    """
    from seewhy.jobs.cohorts import mean_features

    names = {m.name for m in images}
    out = []
    for c in cohorts:
        if c.get("model") not in names:
            continue
        image = {
            k: c[k]
            for k in ("model", "method", "region_share", "region_share_lower", "region_area")
            if k in c
        }
        if c.get("description"):
            image["description"] = c["description"]
        ids = list(c.get("sample_ids", []))
        for t in trees:
            scores: dict[str, list[float]] = {}
            for i in ids:
                rec = explained_by.get(t.name, {}).get(i)
                a = None if rec is None else next(iter(rec.get("attributions", [])), None)
                for f in [] if a is None else a.get("features", []):
                    scores.setdefault(f["name"], []).append(float(f["score"]))
            both = [
                i for i in ids if i in rows_by.get(c["model"], {}) and i in rows_by.get(t.name, {})
            ]
            image_task = next(m.task for m in images if m.name == c["model"])
            out.append(
                {
                    "cohort": c["name"],
                    "title": c.get("title", c["name"]),
                    "rows": len(ids),
                    "image": image,
                    "tree": {
                        "model": t.name,
                        "method": TREE_METHOD,
                        "explained": len(scores and next(iter(scores.values()))),
                        "features": mean_features(scores)[:SIDE_BY_SIDE_FEATURES],
                    },
                    "agreement": agreement(
                        image_task,
                        t.task,
                        [rows_by[c["model"]][i] for i in both],
                        [rows_by[t.name][i] for i in both],
                    ),
                }
            )
    return out
