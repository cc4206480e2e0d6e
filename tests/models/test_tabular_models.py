"""Tree models from cards (issue 13, first step): safe loading, and tree-shap against shap's
TreeExplainer called directly, on data whose target depends on two known features."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from seewhy.core.errors import CheckpointError, UnsafeCheckpointError, UsageError
from seewhy.methods.tabular import TreeShap
from seewhy.models.tabular import load_tabular

COLUMNS = ["a", "b", "c", "d", "e"]
pd = pytest.importorskip("pandas")
shap = pytest.importorskip("shap")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 5))
    y = 3.0 * x[:, 0] - 2.0 * x[:, 1] + 0.05 * rng.normal(size=1500)
    label = (x[:, 0] - x[:, 1] > 0).astype(int)
    return x, y, label


def lightgbm_file(folder: Path, x: np.ndarray, y: np.ndarray, objective: str) -> Path:
    lgb = pytest.importorskip("lightgbm")
    ds = lgb.Dataset(x, y, feature_name=COLUMNS)
    booster = lgb.train(
        {"objective": objective, "verbose": -1, "num_leaves": 15, "seed": 0}, ds, 60
    )
    path = folder / f"lgb_{objective}.txt"
    booster.save_model(str(path))
    return path


def xgboost_file(folder: Path, x: np.ndarray, y: np.ndarray, suffix: str) -> Path:
    xgb = pytest.importorskip("xgboost")
    booster = xgb.train(
        {"max_depth": 4, "eta": 0.3, "seed": 0}, xgb.DMatrix(x, y, feature_names=COLUMNS), 60
    )
    path = folder / f"xgb{suffix}"
    booster.save_model(str(path))
    return path


def forest_file(folder: Path, x: np.ndarray, y: np.ndarray) -> Path:
    ensemble = pytest.importorskip("sklearn.ensemble")
    sio = pytest.importorskip("skops.io")
    forest = ensemble.RandomForestRegressor(n_estimators=30, max_depth=6, random_state=0)
    forest.fit(pd.DataFrame(x, columns=COLUMNS), y)
    path = folder / "forest.skops"
    sio.dump(forest, str(path))
    return path


def card(arch: str, task: str = "regression", columns: list[str] | None = None) -> dict:
    return {"arch": arch, "task": task, "columns": columns or COLUMNS, "name": "m"}


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost-json", "xgboost-ubj", "sklearn"])
def test_the_two_deciding_features_lead_and_values_equal_shap_direct(
    kind: str, data: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y, _ = data
    if kind == "lightgbm":
        arch = f"lightgbm:{lightgbm_file(tmp_path, x, y, 'regression').name}"
    elif kind.startswith("xgboost"):
        arch = f"xgboost:{xgboost_file(tmp_path, x, y, '.' + kind.split('-')[1]).name}"
    else:
        arch = f"sklearn:{forest_file(tmp_path, x, y).name}"
    model = load_tabular(card(arch), tmp_path)  # no --trust-checkpoint needed
    rows = x[:200]
    for background in (None, x[1000:1100]):
        got = TreeShap()(model, rows, background=background)
        assert got.algorithm == ("tree_path_dependent" if background is None else "interventional")
        order = np.argsort(-np.abs(got.values).mean(axis=0))
        assert [COLUMNS[i] for i in order[:2]] == ["a", "b"]
        # additivity: base + sum = the model's own prediction
        np.testing.assert_allclose(got.output, model.predict(rows), atol=1e-4)
        # the same as shap's TreeExplainer called directly
        data_in = rows if kind == "lightgbm" else pd.DataFrame(rows, columns=COLUMNS)
        if background is None:
            direct = shap.TreeExplainer(model.estimator).shap_values(data_in)
        else:
            direct = shap.TreeExplainer(
                model.estimator, data=background, feature_perturbation="interventional"
            ).shap_values(data_in)
        np.testing.assert_allclose(got.values, np.asarray(direct), rtol=1e-6, atol=1e-8)


def test_a_binary_classifier_is_explained_in_margin_space(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, _, label = data
    path = lightgbm_file(tmp_path, x, label, "binary")
    model = load_tabular(card(f"lightgbm:{path.name}", "classification"), tmp_path)
    got = TreeShap()(model, x[:100], target=1)
    assert (got.class_index == 1).all()
    margin = model.estimator.predict(x[:100], raw_score=True)
    np.testing.assert_allclose(got.output, margin, atol=1e-4)
    # pred: each row's predicted class; the negative class is explained by the negated margin
    pred = TreeShap()(model, x[:100])
    np.testing.assert_array_equal(pred.class_index, (margin > 0).astype(int))
    assert 0 < pred.class_index.sum() < 100
    np.testing.assert_allclose(pred.output, np.abs(margin), atol=1e-4)
    np.testing.assert_allclose(
        pred.values, got.values * np.where(margin > 0, 1.0, -1.0)[:, None], atol=1e-9
    )
    proba = model.predict(x[:100])
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-margin)), atol=1e-6)


def test_a_pickle_is_refused_without_trust_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # loading it would create the marker file
            return (Path.touch, (marker,))

    (tmp_path / "model.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(
        UnsafeCheckpointError, match=r"model.pkl is a pkl file: loading it runs code"
    ):
        load_tabular(card("sklearn:model.pkl"), tmp_path)
    assert not marker.exists()


def test_columns_that_differ_from_the_models_are_named(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y, _ = data
    path = lightgbm_file(tmp_path, x, y, "regression")
    with pytest.raises(UsageError, match=r"the card lacks e and adds sqft"):
        load_tabular(card(f"lightgbm:{path.name}", columns=[*COLUMNS[:4], "sqft"]), tmp_path)
    with pytest.raises(UsageError, match=r"xgboost model is read from \.json or \.ubj"):
        load_tabular(card("xgboost:model.txt"), tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tabular(card("lightgbm:nothere.txt"), tmp_path)
    model = load_tabular(card(f"lightgbm:{path.name}"), tmp_path)
    with pytest.raises(UsageError, match=r"row 1: column 'b' holds 'x', not a number"):
        model.matrix([{"a": 1, "b": "x", "c": 0, "d": 0, "e": 0}])
    m = model.matrix([{"a": 1, "b": "", "c": 0, "d": 2.5, "e": None}])
    assert np.isnan(m[0, 1]) and np.isnan(m[0, 4]) and m[0, 3] == 2.5
