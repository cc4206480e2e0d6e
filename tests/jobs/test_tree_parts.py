"""The parts a tree model adds to runs (issue 13), each on hand values: which methods each model
gets, prediction agreement, cohort words from SHAP values, seewhy.explain and seewhy.load_model
on a tree model, cards, and manifests without images for tree models alone."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from seewhy.core.errors import MethodNotApplicableError, ModelLoadError, UsageError
from seewhy.jobs.cohorts import Row, describe_features
from seewhy.jobs.trees import agreement, split_methods

lgb = pytest.importorskip("lightgbm")
shap = pytest.importorskip("shap")
pd = pytest.importorskip("pandas")

COLUMNS = ["a", "b", "c"]


class _Tree:
    name, kind, task = "prices", "lightgbm", "regression"


class _Torch:
    name, task = "tiles", "regression"


@pytest.fixture(scope="module")
def booster_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = 2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.01 * rng.normal(size=400)
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 8, "seed": 0},
        lgb.Dataset(x, y, feature_name=COLUMNS),
        40,
    )
    booster.save_model(str(folder / "m.txt"))
    (folder / "m.toml").write_text('arch = "lightgbm:m.txt"\ntask = "regression"\n')
    with (folder / "rows.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *COLUMNS])
        for i, r in enumerate(x[:30]):
            w.writerow([f"r{i}", *r])
    np.save(folder / "x.npy", x)
    return folder


def test_each_model_gets_the_methods_that_fit_it() -> None:
    tree, torch_model = _Tree(), _Torch()
    assert split_methods([], [torch_model], [tree]) == (["gradcam"], ["tree-shap"])
    assert split_methods([], [], [tree]) == ([], ["tree-shap"])
    assert split_methods(["gradcam", "tree-shap"], [torch_model], [tree]) == (
        ["gradcam"],
        ["tree-shap"],
    )
    # shap (expected-gradients after its alias) is the SHAP that fits each model
    assert split_methods(["expected-gradients"], [torch_model], [tree]) == (
        ["expected-gradients"],
        ["tree-shap"],
    )
    assert split_methods(["expected-gradients"], [], [tree]) == ([], ["tree-shap"])
    with pytest.raises(MethodNotApplicableError, match=r"--method gradcam,tree-shap\)"):
        split_methods(["gradcam"], [torch_model], [tree])
    with pytest.raises(MethodNotApplicableError, match=r"ig needs .* \(--method tree-shap\)"):
        split_methods(["ig", "tree-shap"], [], [tree])
    with pytest.raises(MethodNotApplicableError, match="model tiles is a torch model"):
        split_methods(["tree-shap"], [torch_model], [])


def test_prediction_agreement_hand_values() -> None:
    a = [Row("1", value=1.0), Row("2", value=2.0), Row("3", value=4.0)]
    b = [Row("1", value=2.0), Row("2", value=2.0), Row("3", value=3.0)]
    got = agreement("regression", "regression", a, b)
    assert got["rows"] == 3
    assert got["mean_abs_difference"] == pytest.approx(2.0 / 3.0)
    # pearson of (1, 2, 4) and (2, 2, 3), both of mean 7/3: deviations (-4, -1, 5)/3 and
    # (-1, -1, 2)/3; cross products 15/9, squares 42/9 and 6/9
    assert got["correlation"] == pytest.approx((15 / 9) / math.sqrt((42 / 9) * (6 / 9)))
    constant = [Row("1", value=5.0), Row("2", value=5.0), Row("3", value=5.0)]
    assert agreement("regression", "regression", a, constant)["correlation"] is None
    c1 = [Row("1", label="x"), Row("2", label="y"), Row("3", label="y"), Row("4", label="x")]
    c2 = [Row("1", label="x"), Row("2", label="x"), Row("3", label="y"), Row("4", label="y")]
    assert agreement("classification", "classification", c1, c2) == {
        "rows": 4,
        "same_prediction": 0.5,
    }
    assert agreement("regression", "classification", a, c1[:3]) == {}


def test_cohort_words_from_shap_values() -> None:
    features = [
        {"name": "water", "score": 0.02, "abs_score": 0.02},
        {"name": "road", "score": -0.01, "abs_score": 0.012},
        {"name": "noise", "score": 0.001, "abs_score": 0.003},
    ]
    assert describe_features("top", features, "price") == (
        "top: water raises price most (mean SHAP +0.02); road lowers it most (-0.01)"
    )
    # -value: the values are of what lowers the price; the verbs turn round
    assert describe_features("top", features, "price", lowering=True) == (
        "top: road raises price most (mean SHAP +0.01); water lowers it most (-0.02)"
    )
    flat = [{"name": "a", "score": 0.0, "abs_score": 0.0}]
    assert describe_features("all", flat, "price") == "all: no feature moves price on average"


def test_seewhy_explain_on_a_tree_model_equals_tree_explainer(booster_folder: Path) -> None:
    import seewhy

    model = seewhy.load_model(booster_folder / "m.toml")
    assert type(model).__name__ == "TabularModel" and model.columns == COLUMNS
    x = np.load(booster_folder / "x.npy")
    frame = pd.DataFrame(x[:20], columns=COLUMNS)
    (e,) = seewhy.explain(model, frame, methods="tree-shap")
    booster = lgb.Booster(model_file=str(booster_folder / "m.txt"))
    ref = shap.TreeExplainer(booster).shap_values(x[:20])
    np.testing.assert_allclose(e.attributions["tabular"].numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e.output[:, 0].numpy(), booster.predict(x[:20]), rtol=1e-6)
    total = e.extras["expected_value"].numpy() + e.attributions["tabular"].numpy().sum(1)
    np.testing.assert_allclose(total, booster.predict(x[:20]), atol=1e-4)
    assert e.extras["algorithm"] == "tree_path_dependent" and e.signed
    # shap means tree-shap here; a background makes it interventional
    (bg,) = seewhy.explain(model, x[:5], methods="shap", background=x[100:130])
    oracle = shap.TreeExplainer(
        booster, data=x[100:130], feature_perturbation="interventional"
    ).shap_values(x[:5])
    np.testing.assert_allclose(bg.attributions["tabular"].numpy(), oracle, rtol=1e-5, atol=1e-6)
    assert bg.extras["algorithm"] == "interventional" and bg.extras["background"] == 30
    # -value: what lowers the output, the negated values
    (low,) = seewhy.explain(model, x[:5], methods="tree-shap", target="-value")
    np.testing.assert_allclose(low.attributions["tabular"].numpy(), -ref[:5], rtol=1e-5, atol=1e-6)


def test_gradient_methods_and_bad_rows_are_refused_on_a_tree_model(booster_folder: Path) -> None:
    import seewhy

    model = seewhy.load_model(booster_folder / "m.toml")
    x = np.load(booster_folder / "x.npy")
    with pytest.raises(MethodNotApplicableError, match="ig needs a torch model's gradients"):
        seewhy.explain(model, x[:3], methods=["ig"])
    with pytest.raises(UsageError, match=r"an array \[N, 3\] in its column order \(a, b, c\)"):
        seewhy.explain(model, x[:3, :2], methods="tree-shap")
    with pytest.raises(UsageError, match="column 'b' holds 'abc', not a number"):
        seewhy.explain(model, [{"a": 1, "b": "abc", "c": 0}], methods="tree-shap")
    with pytest.raises(UsageError, match="tree regressor with one output; use value or -value"):
        seewhy.explain(model, x[:3], methods="tree-shap", target=2)
    from seewhy.api import as_model

    with pytest.raises(MethodNotApplicableError, match="is a lightgbm tree model"):
        as_model(model)


def test_tree_cards_refuse_torch_keys_and_torch_cards_refuse_columns(
    booster_folder: Path, tmp_path: Path
) -> None:
    from seewhy.models.loader import load_any

    card = tmp_path / "bad.toml"
    card.write_text(
        f'arch = "lightgbm:{booster_folder / "m.txt"}"\ncheckpoint = "x.pt"\ntask = "regression"\n'
    )
    with pytest.raises(ModelLoadError, match="checkpoint is for torch models"):
        load_any(card)
    torch_card = tmp_path / "torch.toml"
    torch_card.write_text('arch = "torchvision:resnet18"\ncolumns = ["a"]\n')
    with pytest.raises(ModelLoadError, match="columns is for tree models"):
        load_any(torch_card)
    with pytest.raises(ModelLoadError, match="--checkpoint is for torch models"):
        load_any(f"lightgbm:{booster_folder / 'm.txt'}", checkpoint="w.pt")


def test_tree_models_alone_read_a_manifest_without_images(booster_folder: Path) -> None:
    from seewhy.data.samples import from_manifest

    rows = booster_folder / "rows.csv"
    samples = from_manifest(rows, images=False)
    assert [s.id for s in samples[:3]] == ["r0", "r1", "r2"] and samples[0].image_path == ""
    with pytest.raises(UsageError, match=r"has no column 'image_path' \(--image-col\)"):
        from_manifest(rows)


def test_a_tree_cohort_shows_its_features_escaped(tmp_path: Path) -> None:
    from seewhy.jobs.dataset import CohortView

    view = CohortView(
        {
            "name": "top",
            "title": "top <decile>",
            "model": "m",
            "method": "tree-shap",
            "sample_ids": ["1", "2"],
            "features": [{"name": "<b>x</b>", "score": -0.25, "abs_score": 0.5}],
        },
        tmp_path,
    )
    html = view._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;</td><td>-0.25</td><td>0.5</td>" in html
    assert "top &lt;decile&gt;" in html and "<b>x</b>" not in html


def test_a_regressors_output_by_index_or_name_is_value(
    booster_folder: Path, tmp_path: Path
) -> None:
    import seewhy

    card = tmp_path / "named.toml"
    card.write_text(
        f'arch = "lightgbm:{booster_folder / "m.txt"}"\ntask = "regression"\nlabels = ["price"]\n'
    )
    model = seewhy.load_model(card)
    x = np.load(booster_folder / "x.npy")[:4]
    (value,) = seewhy.explain(model, x, methods="tree-shap", target="value")
    for target in ("0", "price"):
        (same,) = seewhy.explain(model, x, methods="tree-shap", target=target)
        np.testing.assert_array_equal(same.attributions["tabular"], value.attributions["tabular"])
    # -price, as an image regressor takes it: the values negated (it was refused before)
    for target in ("-price",):
        (low,) = seewhy.explain(model, x, methods="tree-shap", target=target)
        np.testing.assert_array_equal(low.attributions["tabular"], -value.attributions["tabular"])
    with pytest.raises(UsageError, match="--target -cost"):
        seewhy.explain(model, x, methods="tree-shap", target="-cost")


def test_a_run_refuses_a_column_the_manifest_lacks_altogether(booster_folder: Path) -> None:
    import seewhy
    from seewhy.data.samples import Sample
    from seewhy.jobs.trees import check_run

    model = seewhy.load_model(booster_folder / "m.toml")
    rows = [Sample(id="1", image_path="", row={"a": 1, "b": 2})]
    with pytest.raises(UsageError, match="takes columns the manifest lacks: c; its columns"):
        check_run([model], "value", rows)
    with pytest.raises(UsageError, match="name its column with --target-col"):
        clf = type(model)(**{**vars(model), "task": "classification", "labels": ["x", "y"]})
        check_run([clf], "true", [Sample(id="1", image_path="", row={"a": 1, "b": 2, "c": 3})])
