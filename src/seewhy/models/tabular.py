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
    estimator = _load(kind, path, suffix)
    own = _feature_names(kind, estimator)
    columns = [str(c) for c in card.get("columns", None) or own or []]
    if not columns:
        raise UsageError(
            f"{path}: the model does not record its feature names; list them in the card as "
            'columns = ["a", "b", ...]'
        )
    if own and list(own) != columns:
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
    labels = card.get("labels")
    return TabularModel(
        name=name or str(card.get("name") or path.stem),
        kind=kind,
        path=path,
        task=task,
        columns=columns,
        labels=[str(x) for x in labels] if labels else None,
        estimator=estimator,
    )


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"this model card needs {module.split('.')[0]}: pip install 'seewhy[tabular]'"
        ) from exc


def _load(kind: str, path: Path, suffix: str) -> Any:
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
        if unknown:
            raise CheckpointError(
                f"{path} holds types that are not scikit-learn's ({', '.join(unknown[:5])}); "
                "skops would have to run their code. Pass --trust-checkpoint if you trust it"
            )
        return sio.load(str(path), trusted=untrusted)
    except (CheckpointError, UsageError):
        raise
    except Exception as exc:
        raise CheckpointError(f"cannot load {kind} model {path}: {exc}") from exc


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
