"""Tabular tree models from a card (issue 13): LightGBM, XGBoost and scikit-learn, loaded as
saved, without running code unless the user says so.

A card names the file and its format in ``arch``::

    arch = "lightgbm:model.txt"        # LightGBM's text format
    arch = "xgboost:model.json"        # XGBoost's own JSON or UBJSON (.ubj) format
    arch = "sklearn:model.skops"       # skops: loads without running code
    arch = "sklearn:model.pkl"         # pickle / joblib: runs code, so --trust-checkpoint only
    task = "regression"                # or classification
    columns = ["sqft_living", "grade", "waterfront"]
    labels = ["price"]

The libraries are imported only when such a card is used; a missing one names the extra
(``pip install 'seewhy[tabular]'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seewhy.core.errors import CheckpointError, UnsafeCheckpointError, UsageError
from seewhy.core.trees import TabularModel

KINDS = ("lightgbm", "xgboost", "sklearn")
SAFE_SUFFIXES = {
    "lightgbm": (".txt", ".model"),
    "xgboost": (".json", ".ubj"),
    "sklearn": (".skops",),
}
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def is_tabular_arch(arch: str) -> bool:
    """Whether an arch string names a tabular tree model (``lightgbm:``, ``xgboost:``,
    ``sklearn:``)."""
    kind, sep, _ = arch.partition(":")
    return bool(sep) and kind.strip().lower() in KINDS


def is_tabular_spec(spec: str | Path) -> bool:
    """Whether a ``--model`` value names a tree model: an arch string such as
    ``lightgbm:m.txt``, or a card whose ``arch`` is one (a card that cannot be read: no, the
    loader then says why)."""
    text = str(spec)
    if not text.lower().endswith(".toml"):
        return is_tabular_arch(text)
    import tomllib

    try:
        card = tomllib.loads(Path(text).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return is_tabular_arch(str(card.get("arch") or ""))


def load_tabular(
    card: Mapping[str, Any],
    base: Path,
    *,
    trust_checkpoint: bool = False,
    name: str | None = None,
) -> TabularModel:
    """A :class:`TabularModel` from a card's fields (``arch``, ``task``, ``columns``,
    ``labels``); relative paths are relative to ``base`` (the card's folder).

    Raises:
        UsageError: an unknown format, a missing extra, no ``columns``, columns that differ
            from the model's own feature names (both named), an unknown task.
        CheckpointError: a pickle or joblib file without ``trust_checkpoint`` (it would run
            code when loaded), a file that does not exist or does not load.
    """
    arch = str(card.get("arch", ""))
    kind, _, file = arch.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise UsageError(f"arch {arch!r}: a tabular model is one of {', '.join(KINDS)}:FILE")
    path = Path(file)
    path = path if path.is_absolute() else base / path
    task = str(card.get("task", "regression"))
    if task not in ("regression", "classification"):
        raise UsageError(
            f'task {task!r}: a tree model\'s card says task = "regression" or "classification"'
        )
    suffix = path.suffix.lower()
    if suffix in UNSAFE_SUFFIXES:
        if not trust_checkpoint:
            raise UnsafeCheckpointError(
                f"{path} is a {suffix[1:]} file: loading it runs code stored in it. Save the "
                f"model with skops (.skops) or the library's own format "
                f"({', '.join(s for k in KINDS for s in SAFE_SUFFIXES[k])}), or pass "
                "--trust-checkpoint if you trust the file"
            )
    elif suffix not in SAFE_SUFFIXES[kind]:
        raise UsageError(
            f"{path}: a {kind} model is read from {' or '.join(SAFE_SUFFIXES[kind])} "
            f"(or a pickle with --trust-checkpoint)"
        )
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist; check the card's arch")
    estimator = _load(kind, path, suffix, trust_checkpoint)
    _check_estimator(kind, estimator, path, task)
    own = _feature_names(kind, estimator)
    columns = [str(c) for c in card.get("columns", None) or own or []]
    if not columns:
        raise UsageError(
            f"{path}: the model does not record its feature names; list them in the card as "
            'columns = ["a", "b", ...]'
        )
    if own and [_stored(kind, c) for c in own] != [_stored(kind, c) for c in columns]:
        missing = [c for c in own if c not in columns]
        extra = [c for c in columns if c not in own]
        detail = (
            f"the card lacks {', '.join(missing) or '-'} and adds {', '.join(extra) or '-'}"
            if missing or extra
            else "the same names in another order"
        )
        raise UsageError(
            f"the card's columns differ from the features model {path.name} was trained on "
            f"({', '.join(own)}): {detail}; fix the card's columns"
        )
    given = card.get("labels")
    model = TabularModel(
        name=name or str(card.get("name") or path.stem),
        kind=kind,
        path=path,
        task=task,
        columns=columns,
        labels=None,
        estimator=estimator,
    )
    model.labels = _labels(model, [str(x) for x in given] if given else None)
    return model


def _stored(kind: str, name: str) -> str:
    """A feature name as the library stores it: LightGBM writes spaces as underscores."""
    return name.replace(" ", "_") if kind == "lightgbm" else name


def _check_estimator(kind: str, est: Any, path: Path, task: str) -> None:
    """Refuse, when loading, what seewhy cannot read as a tree model: a scikit-learn file
    holding no tree model, a LightGBM model with pandas categorical features, a card whose task
    is not the model's (a classifier's objective under task = "regression" ...)."""
    # forests and gradient boosting, trees, LGBM's sklearn API, histogram gradient boosting
    fitted = ("estimators_", "tree_", "booster_", "_predictors")
    if kind == "sklearn" and not (
        any(hasattr(est, a) for a in fitted) or callable(getattr(est, "get_booster", None))
    ):
        raise UsageError(
            f"{path} holds a {type(est).__name__}, not a fitted tree model: tree-shap explains "
            "decision trees, random forests, extra trees and gradient boosting (scikit-learn's "
            "own and histogram-based, XGBoost's or LightGBM's scikit-learn models)"
        )
    outputs = _n_outputs(kind, est)
    if outputs > 1:
        raise UsageError(
            f"{path} holds a {type(est).__name__} fitted on {outputs} outputs: seewhy explains "
            "a single-output tree model; fit one model per output and give each its own card"
        )
    if kind == "lightgbm" and getattr(est, "pandas_categorical", None):
        raise UsageError(
            f"{path} was trained with pandas categorical features: seewhy reads numeric "
            "columns; train on the categories' integer codes (and give those in the manifest)"
        )
    own = _model_task(kind, est)
    if own is not None and own != task:
        raise UsageError(
            f"{path} is a {own} model ({_objective(kind, est)}), but its card says task = "
            f'"{task}"; write task = "{own}"'
        )


def _n_outputs(kind: str, est: Any) -> int:
    """How many outputs a regressor predicts (scikit-learn's ``n_outputs_``, XGBoost's
    ``num_target``); a classifier's classes are one output. 1 when the model does not say."""
    import json

    try:
        if kind == "sklearn":
            return int(getattr(est, "n_outputs_", 1) or 1)
        if kind == "xgboost":
            config = json.loads(est.save_config())
            return int(config["learner"]["learner_model_param"].get("num_target", 1))
    except Exception:  # a model that does not record it: one output
        return 1
    return 1


def _objective(kind: str, est: Any) -> str:
    """The model's objective as its library names it (``binary``, ``multi:softprob`` ...)."""
    import json

    try:
        if kind == "lightgbm":
            return str(est.params.get("objective") or est.dump_model(num_iteration=0)["objective"])
        if kind == "xgboost":
            config = json.loads(est.save_config())
            return str(config["learner"]["objective"]["name"])
    except Exception:  # an objective it does not record: the card's task stands
        return ""
    return type(est).__name__


def _model_task(kind: str, est: Any) -> str | None:
    """``classification`` or ``regression`` as the model itself says, ``None`` when unknown."""
    objective = _objective(kind, est).split()[0] if _objective(kind, est) else ""
    if kind == "sklearn":
        return "classification" if hasattr(est, "classes_") else "regression"
    if objective.startswith(("binary", "multi", "cross_entropy", "xentropy")):
        return "classification"
    if objective.startswith(
        ("regression", "reg:", "huber", "fair", "quantile", "mape", "l1", "l2")
    ):
        return "regression"
    return None


def _labels(model: TabularModel, given: list[str] | None) -> list[str] | None:
    """The class names of a classifier: the card's, checked against the model's own classes
    (a scikit-learn model's ``classes_``, in their order) and their number; one positive label
    of a binary model becomes ``[not L, L]`` (SPEC section 3). Regressors keep the card's."""
    import numpy as np

    if model.task != "classification":
        return given
    own = getattr(model.estimator, "classes_", None)
    own_names = None if own is None else [str(c) for c in own]
    try:
        width = int(model.predict(np.zeros((1, len(model.columns))))[0].shape[-1])
    except Exception as exc:
        raise UsageError(
            f"{model.path}: the model does not predict a row of {len(model.columns)} features "
            f"({' '.join(str(exc).split())[:200]})"
        ) from None
    if given and len(given) == 1 and width == 2:
        given = [f"not {given[0]}", given[0]]
    if given is None:
        return own_names
    if own_names is not None and given != own_names:
        raise UsageError(
            f"the card's labels ({', '.join(given)}) are not the classes model "
            f"{model.path.name} was fitted on, in its order ({', '.join(own_names)}); list "
            "those in the card, or leave labels out"
        )
    if len(given) != width:
        raise UsageError(
            f"the card lists {len(given)} labels ({', '.join(given)}), but model "
            f"{model.path.name} scores {width} classes; fix the card's labels"
        )
    return given


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"this model card needs {module.split('.')[0]}: pip install 'seewhy[tabular]'"
        ) from exc


def _load(kind: str, path: Path, suffix: str, trust: bool = False) -> Any:
    try:
        if suffix in UNSAFE_SUFFIXES:  # trusted by the user
            joblib = _need("joblib")
            return joblib.load(path)
        if kind == "lightgbm":
            lgb = _need("lightgbm")
            return lgb.Booster(model_file=str(path))
        if kind == "xgboost":
            xgb = _need("xgboost")
            booster = xgb.Booster()
            booster.load_model(str(path))
            return booster
        sio = _need("skops.io")
        untrusted = sio.get_untrusted_types(file=str(path))
        unknown = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
        if unknown and not trust:
            raise CheckpointError(
                f"{path} holds types that are not scikit-learn's ({', '.join(unknown[:5])}); "
                "skops would have to run their code. Pass --trust-checkpoint if you trust it"
            )
        return sio.load(str(path), trusted=untrusted)
    except (CheckpointError, UsageError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(f"cannot load {kind} model {path}: {first}") from exc


def _feature_names(kind: str, est: Any) -> list[str] | None:
    """The feature names the model was trained on, when it recorded them."""
    names: Any
    if kind == "lightgbm":
        names = est.feature_name()
        if names and all(str(n).startswith("Column_") for n in names):
            return None  # LightGBM's defaults for an unnamed array
    elif kind == "xgboost":
        names = est.feature_names
    else:
        names = getattr(est, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]
