"""SHAP for tree models (issue 13): shap's TreeExplainer, the library made for it.

Lundberg et al. 2020, "From local explanations to global understanding with explainable AI for
trees". Two ways of removing a feature:

- ``interventional`` (with a background of rows): a feature absent takes the background's
  values, so the values explain the model's function (the causal reading); its cost grows with
  the background size.
- ``tree_path_dependent`` (no background): the trees' own training counts stand for the
  background; fast, exact for the trees, and what shap uses when it is given no data.

Values are in the model's raw output space: the prediction for regressors, the margin
(log-odds) for classifiers, where SHAP values add up exactly (``expected_value + sum(values) =
raw output``).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from seewhy.core.errors import MethodNotApplicableError, UsageError
from seewhy.methods.registry import register

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from seewhy.core.trees import TabularModel


@dataclass(frozen=True)
class TreeShapResult:
    """SHAP values of one output for ``N`` rows.

    Attributes:
        values: ``[N, F]`` per feature, in the model's columns order.
        expected_value: ``[N]`` the base value (the same for every row of one output).
        output: ``[N]`` the explained raw output (``expected_value + values.sum(1)``).
        class_index: ``[N]`` the class explained per row (classifiers), else ``None``.
        algorithm: ``interventional`` or ``tree_path_dependent``.
        background: how many background rows an interventional explainer used.
    """

    values: np.ndarray
    expected_value: np.ndarray
    output: np.ndarray
    class_index: np.ndarray | None
    algorithm: str
    background: int


TREE_METHOD = "tree-shap"


@register(TREE_METHOD, "treeshap", "tree-explainer")
@dataclass(frozen=True)
class TreeShap:
    """``tree-shap`` (and ``shap`` on a tree model): shap's TreeExplainer.

    It explains a :class:`~seewhy.core.trees.TabularModel` (not an ``nn.Module``): a run gives
    it the tree models and the torch methods the torch models (``for_trees``).

    Args:
        check_additivity: have shap check that the values add up to the output.
    """

    name: ClassVar[str] = "tree-shap"
    for_trees: ClassVar[bool] = True
    """Explains tree models only (torch methods: ``False``)."""
    signed: ClassVar[bool] = True
    depends_on_target: ClassVar[bool] = True
    uses_background: ClassVar[bool] = False
    draws_at_random: ClassVar[bool] = False

    check_additivity: bool = True

    def params(self) -> dict[str, Any]:
        """The settings as they go to summary.json."""
        return asdict(self)

    def __call__(
        self,
        model: TabularModel,
        x: np.ndarray,
        background: np.ndarray | None = None,
        target: str | int = "pred",
        classes: np.ndarray | None = None,
    ) -> TreeShapResult:
        """SHAP values of ``x`` (``[N, F]``) for the target: regressors their output
        (``value``; ``-value`` negates the values and the base, what lowers the output);
        classifiers the predicted class per row (``pred``), a class index or label, or one
        class per row (``classes``, e.g. each row's true class). A binary model with one
        margin explains the positive class, whose margin it is, and the negative class by the
        negated margin."""
        import numpy as np

        shap = _shap()
        target = tree_target(model, target) if classes is None else target
        try:
            if background is not None and len(background) >= 1:
                explainer = shap.TreeExplainer(
                    model.estimator, data=background, feature_perturbation="interventional"
                )
                algorithm, n_background = "interventional", len(background)
            else:
                explainer = shap.TreeExplainer(
                    model.estimator, feature_perturbation="tree_path_dependent"
                )
                algorithm, n_background = "tree_path_dependent", 0
            data = _data(model, x)
            with warnings.catch_warnings():  # shap's notes on output formats: not the user's
                warnings.simplefilter("ignore", UserWarning)
                raw = explainer.shap_values(data, check_additivity=self.check_additivity)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise MethodNotApplicableError(
                f"shap's TreeExplainer cannot explain model {model.name} "
                f"({type(model.estimator).__name__}): {first}"
            ) from exc
        values = np.asarray(raw, dtype=np.float64)
        base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
        n = len(x)
        if values.ndim == 2:  # one output: a regressor, or a binary model's margin
            out_values, out_base = values, np.full(n, base[0])
            if model.task == "classification":
                # the margin is the positive class's; the negative class's is its negation
                picked = classes if classes is not None else self._classes(model, x, 2, target)
                classes = np.asarray(picked, dtype=np.int64)
                sign = np.where(classes == 1, 1.0, -1.0)
                out_values, out_base = out_values * sign[:, None], out_base * sign
            else:
                if str(target).strip() not in ("pred", "value", "-value"):
                    raise UsageError(
                        f"target {target!r}: a tree regressor explains value or -value"
                    )
                classes = None
                if str(target).strip() == "-value":
                    out_values, out_base = -out_values, -out_base
        else:
            if values.shape[0] != n:  # shap < 0.45: a list of [N, F] per class
                values = np.moveaxis(values, 0, -1)
            if classes is None:
                classes = self._classes(model, x, values.shape[-1], target)
            classes = np.asarray(classes, dtype=np.int64)
            out_values = values[np.arange(n), :, classes]
            out_base = base[classes]
        return TreeShapResult(
            values=out_values,
            expected_value=out_base,
            output=out_base + out_values.sum(axis=1),
            class_index=classes,
            algorithm=algorithm,
            background=n_background,
        )

    def _classes(self, model: TabularModel, x: Any, n_classes: int, target: str | int) -> Any:
        import numpy as np

        n = len(x)
        if isinstance(target, int) or str(target).lstrip("-").isdigit():
            index = int(target)
        elif str(target) == "pred":
            return np.asarray(model.predict(x)).argmax(axis=1)
        elif model.labels and str(target) in model.labels:
            index = model.labels.index(str(target))
        else:
            raise UsageError(
                f"target {target!r}: use pred, a class index or one of {model.labels or []}"
            )
        if not 0 <= index < n_classes:
            raise UsageError(f"target {target}: the model has classes 0..{n_classes - 1}")
        return np.full(n, index)


def n_classes(model: TabularModel) -> int:
    """How many classes a tree classifier scores (1 for a regressor)."""
    import numpy as np

    if model.task != "classification":
        return 1
    if model.labels:
        return max(2, len(model.labels))
    return int(model.predict(np.zeros((1, len(model.columns))))[0].shape[-1])


def check_target(model: TabularModel, target: str) -> None:
    """Refuse, before any work, a target a tree model cannot explain (SPEC section 4).

    Raises:
        UsageError: a regressor and anything but ``pred``, ``value``, ``-value``; a
            classifier and a class it lacks, or ``value`` / ``-value``.
    """
    t = tree_target(model, target)
    if model.task == "regression":
        _explainable(model)
        return
    if t == "all":
        raise UsageError(
            f"--target all explains every class at once; a run explains one target: run it "
            f"once per class of model {model.name}, or use --target pred or true"
        )
    if t in ("pred", "true"):
        _explainable(model)
        return
    if t in ("value", "-value"):
        raise UsageError(
            f"--target {t} is for regressors; model {model.name} is a tree classifier: use "
            "pred, true, a class index or a label"
        )
    k = n_classes(model)
    if t.lstrip("-").isdigit():
        if not 0 <= int(t) < k:
            raise UsageError(f"--target {t}: model {model.name} has classes 0..{k - 1}")
        return
    if not model.labels or t not in model.labels:
        names = ", ".join(model.labels) if model.labels else f"0..{k - 1}"
        raise UsageError(f"--target {t}: model {model.name} has no class {t!r} ({names})")
    _explainable(model)


def tree_target(model: TabularModel, target: Any) -> str:
    """The target as a tree model reads it: a regressor's output by its index ``0`` or its
    name (the card's one label) is ``value``; with a leading ``-`` (``-price``), ``-value``.

    Raises:
        UsageError: a regressor's target that is not its output (``value``, ``-value``,
            ``pred``, ``0`` or its name).
    """
    t = str(target).strip()
    if model.task != "regression" or t in ("pred", "value", "-value"):
        return t
    sign, body = ("-", t[1:]) if t.startswith("-") else ("", t)
    if body == "0" or (model.labels and body == model.labels[0]):
        return f"{sign}value"
    raise UsageError(
        f"--target {t}: model {model.name} is a tree regressor with one output; use value or -value"
    )


def _explainable(model: TabularModel) -> None:
    """Refuse, before any work, a model TreeExplainer cannot explain (one row of zeros)."""
    import numpy as np

    TreeShap(check_additivity=False)(model, np.zeros((1, len(model.columns))))


def true_classes(model: TabularModel, truth: Sequence[Any]) -> np.ndarray:
    """Each row's true class index (``--target true``), from its true label."""
    import numpy as np

    labels = list(model.labels or [])
    out = []
    for t in truth:
        text = str(t)
        if text in labels:
            out.append(labels.index(text))
        elif text.lstrip("-").isdigit():
            out.append(int(text))
        else:
            raise UsageError(f"--target true: the row's true label {text!r} is not a class")
    return np.asarray(out, dtype=np.int64)


def shap_values(
    model: TabularModel,
    method: TreeShap,
    x: np.ndarray,
    *,
    target: str,
    truth: Sequence[Any] = (),
    background: np.ndarray | None = None,
) -> TreeShapResult:
    """``tree-shap`` on the rows ``x`` for the run's target (``true``: each row's class)."""
    t = str(target).strip()
    classes = true_classes(model, truth) if t == "true" else None
    index: str | int = int(t) if t.lstrip("-").isdigit() else t
    if t == "true":
        index = "pred"
    return method(model, x, background=background, target=index, classes=classes)


def _data(model: TabularModel, x: Any) -> Any:
    """What the explainer takes: a DataFrame with the columns' names (the feature names
    XGBoost and scikit-learn models check), else the array."""
    if model.kind == "lightgbm":
        return x
    import pandas as pd

    return pd.DataFrame(x, columns=model.columns)


def _shap() -> Any:
    try:
        import shap
    except ImportError as exc:
        raise UsageError("tree-shap needs shap: pip install 'seewhy[tabular]'") from exc
    return shap
