"""A tabular tree model (LightGBM, XGBoost, scikit-learn): a model that is not an
``nn.Module``. Built from a card by :mod:`seewhy.models.tabular`; explained by
:mod:`seewhy.methods.tabular` (shap's TreeExplainer)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seewhy.core.errors import UsageError


@dataclass
class TabularModel:
    """A tree model over named columns: what it predicts, and the estimator as loaded.

    Attributes:
        name: the card's name.
        kind: ``lightgbm``, ``xgboost`` or ``sklearn``.
        path: the model file.
        task: ``regression`` or ``classification``.
        columns: the features, in the order the model takes them.
        labels: class names (classifiers) or the output's name (regressors).
        estimator: the loaded booster or estimator.
    """

    name: str
    kind: str
    path: Path
    task: str
    columns: list[str]
    labels: list[str] | None = None
    estimator: Any = field(default=None, repr=False)

    @property
    def arch(self) -> str:
        """The arch string it was read from: ``lightgbm:/path/model.txt``."""
        return f"{self.kind}:{self.path}"

    def label(self, index: int) -> str:
        """The name of class (or output) ``index``: its label, else the index as text."""
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)

    def describe(self) -> dict[str, Any]:
        """The ``models[]`` entry of summary.json."""
        return {
            "name": self.name,
            "arch": self.arch,
            "kind": "tree",
            "library": self.kind,
            "task": self.task,
            "labels": self.labels,
            "columns": list(self.columns),
            "checkpoint": str(self.path),
        }

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """The float64 feature matrix ``[N, F]`` of ``rows`` in :attr:`columns` order.

        Raises:
            UsageError: a row without one of the columns, or a value that is not a number
                (blank cells are NaN: tree models route missing values).
        """
        import numpy as np

        out = np.empty((len(rows), len(self.columns)), dtype=np.float64)
        for i, row in enumerate(rows):
            try:
                out[i] = self.vector(row)
            except UsageError as exc:
                raise UsageError(f"row {i + 1}: {exc}") from None
        return out

    def vector(self, row: Mapping[str, Any]) -> Any:
        """One row's features ``[F]`` (float64, blank cells NaN).

        Raises:
            UsageError: the row lacks a column, or a value is not a number.
        """
        import numpy as np

        out: list[float] = []
        for c in self.columns:
            key: Any = c
            if c not in row:  # LightGBM stores a column 'living area' as living_area
                key = next((k for k in row if str(k).replace(" ", "_") == c), None)
            if key is None:
                raise UsageError(
                    f"no column '{c}', which model {self.name} takes; its columns are "
                    f"{', '.join(self.columns)}"
                )
            v = row[key]
            if v is None or (isinstance(v, str) and not v.strip()):
                out.append(math.nan)
                continue
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise UsageError(
                    f"column '{c}' holds {v!r}, not a number (model {self.name})"
                ) from None
            if math.isinf(f):
                raise UsageError(
                    f"column '{c}' holds {v!r}, not a finite number (model {self.name})"
                )
            out.append(f)
        return np.array(out, dtype=np.float64)

    def predict(self, x: Any) -> Any:
        """The model's output ``[N]`` (regression) or ``[N, C]`` class probabilities."""
        import numpy as np

        est = self.estimator
        if self.kind == "xgboost":
            import xgboost as xgb

            data = xgb.DMatrix(x, feature_names=est.feature_names or self.columns)
            if self.task == "classification":  # margins to probabilities, whatever the
                # objective outputs (multi:softmax class indices, binary:logitraw margins)
                margin = np.asarray(est.predict(data, output_margin=True), dtype=np.float64)
                if margin.ndim == 1:
                    return _binary(1.0 / (1.0 + np.exp(-margin)))
                shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
                return shifted / shifted.sum(axis=1, keepdims=True)
            out = est.predict(data)
        elif self.kind == "lightgbm":
            out = est.predict(x)
        elif self.task == "classification":
            out = est.predict_proba(_frame(x, self.columns, est))
        else:
            out = est.predict(_frame(x, self.columns, est))
        out = np.asarray(out, dtype=np.float64)
        if self.task == "classification" and out.ndim == 1:  # binary: P(positive)
            out = _binary(out)
        return out


def _binary(positive: Any) -> Any:
    """``[N]`` probabilities of the positive class to ``[N, 2]`` (negative, positive)."""
    import numpy as np

    return np.stack([1.0 - positive, positive], axis=1)


def _frame(x: Any, columns: list[str], est: Any) -> Any:
    """What a scikit-learn estimator takes: a DataFrame when it was fitted on one (it checks
    the names), else the array."""
    if getattr(est, "feature_names_in_", None) is None:
        return x
    import pandas as pd

    return pd.DataFrame(x, columns=columns)
