"""Tree models beyond the first step (issue 13, second review): scikit-learn's histogram
gradient boosting loaded safely and explained as shap explains it, multi-output regressors
refused by their number of outputs, and the rows ``seewhy.explain`` takes for a tree model
(one dict, a Series, a manifest's path, no rows) with ``tree-shap`` as its default method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seewhy
from seewhy.core.errors import UsageError
from seewhy.methods.tabular import TreeShap
from seewhy.models.tabular import load_tabular

pd = pytest.importorskip("pandas")
shap = pytest.importorskip("shap")
sio = pytest.importorskip("skops.io")
ensemble = pytest.importorskip("sklearn.ensemble")
tree = pytest.importorskip("sklearn.tree")

COLUMNS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def table() -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.uniform(0, 1, (200, 3)), columns=COLUMNS)
    return x, 3.0 * x.a.to_numpy() - 2.0 * x.b.to_numpy() + 0.05 * rng.normal(size=200)


def dumped(folder: Path, estimator: Any, name: str) -> Path:
    path = folder / f"{name}.skops"
    sio.dump(estimator, str(path))
    return path


def card(path: Path, task: str = "regression") -> dict[str, Any]:
    return {"arch": f"sklearn:{path.name}", "task": task, "name": path.stem}


def test_a_hist_gradient_boosting_regressor_loads_safely_and_equals_shap(
    table: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    x, y = table
    est = ensemble.HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(x, y)
    model = load_tabular(card(dumped(tmp_path, est, "hgr")), tmp_path)  # no trust needed
    assert model.columns == COLUMNS
    rows = x.to_numpy()[:25]
    np.testing.assert_allclose(model.predict(rows), est.predict(x[:25]), atol=1e-12)
    got = TreeShap()(model, rows)
    direct = shap.TreeExplainer(est).shap_values(x[:25])
    np.testing.assert_allclose(got.values, direct, atol=1e-9)
    np.testing.assert_allclose(got.output, est.predict(x[:25]), atol=1e-6)  # values add up
    assert abs(got.values[:, 0]).mean() > abs(got.values[:, 2]).mean()  # a decides, c does not


def test_a_hist_gradient_boosting_classifier_explains_its_classes_margins(
    table: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    x, y = table
    label = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    est = ensemble.HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(x, label)
    model = load_tabular(card(dumped(tmp_path, est, "hgc"), "classification"), tmp_path)
    assert model.labels == ["0", "1", "2"]
    rows = x.to_numpy()[:20]
    np.testing.assert_allclose(model.predict(rows), est.predict_proba(x[:20]), atol=1e-12)
    got = TreeShap()(model, rows, target=2)
    direct = np.asarray(shap.TreeExplainer(est).shap_values(x[:20]))
    np.testing.assert_allclose(got.values, direct[:, :, 2], atol=1e-9)
    np.testing.assert_allclose(got.output, est.decision_function(x[:20])[:, 2], atol=1e-6)


def test_a_multi_output_regressor_is_refused_naming_its_outputs(
    table: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    x, y = table
    two = tree.DecisionTreeRegressor(max_depth=3, random_state=0).fit(x, np.c_[y, -y])
    with pytest.raises(UsageError, match=r"fitted on 2 outputs.*one model per output") as err:
        load_tabular(card(dumped(tmp_path, two, "two")), tmp_path)
    assert "\n" not in str(err.value)
    forest = ensemble.RandomForestRegressor(n_estimators=3, random_state=0)
    three = forest.fit(x, np.c_[y, -y, 2 * y])
    with pytest.raises(UsageError, match="fitted on 3 outputs"):
        load_tabular(card(dumped(tmp_path, three, "three")), tmp_path)


def test_a_multi_target_xgboost_model_is_refused(
    table: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    xgb = pytest.importorskip("xgboost")
    x, y = table
    data = xgb.DMatrix(x.to_numpy(), np.c_[y, -y], feature_names=COLUMNS)
    booster = xgb.train({"tree_method": "hist", "max_depth": 2}, data, 3)
    booster.save_model(str(tmp_path / "two.json"))
    with pytest.raises(UsageError, match="fitted on 2 outputs"):
        load_tabular({"arch": "xgboost:two.json", "task": "regression"}, tmp_path)


@pytest.fixture(scope="module")
def forest(table: tuple[Any, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Any:
    x, y = table
    folder = tmp_path_factory.mktemp("forest")
    est = ensemble.RandomForestRegressor(n_estimators=10, max_depth=4, random_state=0)
    return load_tabular(card(dumped(folder, est.fit(x, y), "forest")), folder)


def test_explain_of_a_tree_model_defaults_to_tree_shap(forest: Any, table: Any) -> None:
    x, _ = table
    (e,) = seewhy.explain(forest, x[:4])
    (named,) = seewhy.explain(forest, x[:4], methods="tree-shap")
    assert e.method == "tree-shap"
    assert torch_equal(e.attributions["tabular"], named.attributions["tabular"])


def test_explain_of_a_torch_model_still_defaults_to_gradcam(small_cnn: Any) -> None:
    import torch

    (e,) = seewhy.explain(small_cnn, torch.zeros(1, 3, 16, 16))
    assert e.method == "gradcam"


def test_one_dict_and_one_series_are_one_row(forest: Any, table: Any) -> None:
    x, _ = table
    (whole,) = seewhy.explain(forest, x[:3], methods="tree-shap")
    (one,) = seewhy.explain(forest, {**x.iloc[1].to_dict(), "extra": "ignored"})
    (series,) = seewhy.explain(forest, x.iloc[1])
    for e in (one, series):
        assert tuple(e.attributions["tabular"].shape) == (1, 3)
        assert torch_equal(e.attributions["tabular"][0], whole.attributions["tabular"][1])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_manifest_path_is_read_as_its_rows(
    forest: Any, table: Any, tmp_path: Path, suffix: str
) -> None:
    x, _ = table
    frame = x[:5].copy()
    frame.insert(0, "id", [f"r{i}" for i in range(5)])  # other columns are ignored
    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        pytest.importorskip("pyarrow")
        frame.to_parquet(path)
    (direct,) = seewhy.explain(forest, x[:5])
    for given in (path, str(path)):
        (e,) = seewhy.explain(forest, given)
        got = e.attributions["tabular"].numpy()
        np.testing.assert_allclose(got, direct.attributions["tabular"].numpy(), atol=1e-6)


def test_rows_a_tree_model_does_not_take_are_refused_in_one_line(
    forest: Any, table: Any, tmp_path: Path
) -> None:
    x, _ = table
    with pytest.raises(UsageError, match=r"no rows to explain.*pass at least one row"):
        seewhy.explain(forest, x.iloc[:0])
    with pytest.raises(UsageError, match="no rows to explain"):
        seewhy.explain(forest, [])
    with pytest.raises(UsageError, match=r"'rows\.txt' is not a \.csv or \.parquet.*DataFrame"):
        seewhy.explain(forest, "rows.txt")
    with pytest.raises(UsageError, match=r"manifest .*missing\.csv does not exist"):
        seewhy.explain(forest, tmp_path / "missing.csv")
    with pytest.raises(UsageError, match=r"got a set; a tree model takes rows as a DataFrame"):
        seewhy.explain(forest, {1.0, 2.0})
    with pytest.raises(UsageError, match=r"got shape \[3\]"):
        seewhy.explain(forest, [1.0, 2.0, 3.0])
    for bad in ("rows.txt", [1.0, 2.0, 3.0]):
        with pytest.raises(UsageError) as err:
            seewhy.explain(forest, bad)
        assert "\n" not in str(err.value)


def test_an_empty_background_is_path_dependent(forest: Any, table: Any) -> None:
    x, _ = table
    (e,) = seewhy.explain(forest, x[:2], background=[])
    assert e.extras["algorithm"] == "tree_path_dependent"
    (b,) = seewhy.explain(forest, x[:2], background=x[10:20])
    assert b.extras["algorithm"] == "interventional" and b.extras["background"] == 10


def torch_equal(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.equal(a, b))
