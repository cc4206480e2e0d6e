"""The parts behind the second tree review's fixes (issue 13), each on its own: the cohort
words of a fixed class, a labelled regressor's explained name, the background too small for
interventional SHAP, two tree models' agreement on a row, the refusals of `seewhy check` and of
an image given to a tree model, and a tree row's `figure`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from seewhy.cli import app
from seewhy.core.errors import UsageError
from seewhy.core.trees import TabularModel
from seewhy.data.samples import Sample
from seewhy.data.summary import new_summary, validate_summary
from seewhy.jobs.check import refuse_tree_specs
from seewhy.jobs.trees import (
    TreeRows,
    background_note,
    background_rows,
    check_run,
    explained_words,
    row_agreement,
)

lgb = pytest.importorskip("lightgbm")
pytest.importorskip("shap")

COLUMNS = ["a", "b", "c"]


def _model(task: str, labels: list[str] | None = None) -> TabularModel:
    return TabularModel("m", "lightgbm", Path("m.txt"), task, list(COLUMNS), labels)


def _rows(n: int) -> TreeRows:
    samples = [Sample(id=f"r{i}", image_path="", row={}) for i in range(n)]
    return TreeRows(samples, np.arange(3.0 * n).reshape(n, 3), [None] * n)


def _result(model: str, scores: list[float], **prediction: Any) -> dict[str, Any]:
    features = [{"name": c, "value": 0.0, "score": s} for c, s in zip(COLUMNS, scores, strict=True)]
    return {
        "model": model,
        "prediction": prediction,
        "attributions": [{"method": "tree-shap", "features": features}],
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    here = tmp_path_factory.mktemp("tree_review2_parts")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = 2.0 * x[:, 0] - x[:, 1]
    params = {"objective": "regression", "verbose": -1, "num_leaves": 8, "seed": 0}
    lgb.train(params, lgb.Dataset(x, y, feature_name=COLUMNS), 10).save_model(str(here / "m.txt"))
    (here / "m.toml").write_text('arch = "lightgbm:m.txt"\ntask = "regression"\n')
    (here / "named.toml").write_text(
        'name = "prices"\narch = "lightgbm:m.txt"\ntask = "regression"\nlabels = ["price"]\n'
    )
    lines = ["id," + ",".join(COLUMNS)] + [
        f"r{i}," + ",".join(str(v) for v in r) for i, r in enumerate(x[:6])
    ]
    (here / "rows.csv").write_text("\n".join(lines) + "\n")
    return here


def _cli(cwd: Path, *args: str) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(old)
    return result.exit_code, result.output


# -- words --------------------------------------------------------------------------------------
def test_cohort_words_name_the_class_a_fixed_target_explains() -> None:
    clf = _model("classification", ["lo", "mid", "hi"])
    assert explained_words(clf, "pred", "klass") == "its class's score"
    assert explained_words(clf, "true", "klass") == "its class's score"
    assert explained_words(clf, "hi", "klass") == "class hi's score"
    assert explained_words(clf, "1", "klass") == "class mid's score"
    assert explained_words(_model("regression", ["price"]), "-value", "price") == "price"


# -- background ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "rows", "interventional", "says"),
    [
        (None, 10, False, None),
        (0, 10, False, None),
        (5, 10, True, None),
        (20, 10, True, None),
        (5, 1, False, "has 1 row to draw"),
        (1, 10, False, "at least 2 rows"),
    ],
)
def test_fewer_than_two_background_rows_run_path_dependent_and_say_so(
    n: int | None, rows: int, interventional: bool, says: str | None
) -> None:
    table = _rows(rows)
    ids, x = background_rows(table, n, seed=0)
    assert (x is not None) == interventional and len(ids) == (
        min(n or 0, rows) if x is not None else 0
    )
    note = background_note(_model("regression"), table, n)
    if says is None:
        assert note is None
    else:
        assert note is not None and says in note and "path-dependent" in note
        assert f"--n-background {n}" in note


# -- agreement ----------------------------------------------------------------------------------
def test_two_tree_rows_agree_by_their_features() -> None:
    a = _result("x", [0.5, -0.2, 0.1], label="hi", index=2, score=0.9)
    same = row_agreement("r1", "x", "y", a, _result("y", [0.5, -0.2, 0.1], label="hi"))
    assert same is not None
    assert (same["same_prediction"], same["rank_correlation"], same["top_iou"]) == (True, 1.0, 1.0)
    assert same["same_top_feature"] and same["features"] == 3 and same["method"] == "tree-shap"
    # the other order of features, another label, another top feature (by |SHAP|)
    other = row_agreement("r1", "x", "y", a, _result("y", [0.1, -0.2, -0.9], label="lo"))
    assert other is not None
    assert (other["same_prediction"], other["same_top_feature"], other["top_iou"]) == (
        False,
        False,
        0.0,
    )
    assert other["rank_correlation"] == pytest.approx(0.5)
    # regressors: same_prediction is about labels (as for image regressors), plus the difference
    ra, rb = _result("x", [1.0, 2.0, 3.0], value=4.0), _result("y", [1.0, 2.0, 3.0], value=3.5)
    reg = row_agreement("r1", "x", "y", ra, rb)
    assert reg is not None and reg["same_prediction"] is False
    assert reg["prediction_difference"] == pytest.approx(0.5)
    # no feature in common: nothing to compare
    rb["attributions"][0]["features"] = [{"name": "z", "value": 0.0, "score": 1.0}]
    assert row_agreement("r1", "x", "y", ra, rb) is None


def test_a_tree_agreement_entry_is_a_valid_summary_entry() -> None:
    s = new_summary()
    s["models"] = [
        {"name": n, "arch": "lightgbm:m.txt", "task": "classification", "columns": COLUMNS,
         "kind": "tree"}
        for n in ("x", "y")
    ]  # fmt: skip
    s["samples"] = [{"id": "r1", "image_path": ""}]
    a = _result("x", [0.5, -0.2, 0.1], label="hi", index=2, score=0.9)
    b = _result("y", [0.4, -0.1, 0.1], label="hi", index=2, score=0.8)
    s["results"] = [
        {**a, "sample": "r1", "explained": "hi"},
        {**b, "sample": "r1", "explained": "hi"},
    ]
    s["agreement"] = [row_agreement("r1", "x", "y", a, b)]
    assert validate_summary(json.loads(json.dumps(s))) == []


# -- refusals -----------------------------------------------------------------------------------
def test_check_refuses_a_tree_model_by_its_card_or_arch_string(folder: Path) -> None:
    with pytest.raises(UsageError, match=r"model prices is a lightgbm tree model: seewhy check"):
        refuse_tree_specs([str(folder / "named.toml")])
    with pytest.raises(UsageError, match=r"model m is a lightgbm tree model"):
        refuse_tree_specs([str(folder / "m.toml")])
    with pytest.raises(UsageError, match=r"model xgboost:m.json is a xgboost tree model"):
        refuse_tree_specs(["timm:resnet18", "xgboost:m.json"])
    refuse_tree_specs(["timm:resnet18"])  # a torch model: nothing to refuse


def test_an_image_given_to_a_tree_model_names_data(folder: Path) -> None:
    import seewhy

    model = seewhy.load_model(folder / "m.toml")
    with pytest.raises(UsageError, match=r"not images like one\.png; pass --data MANIFEST"):
        check_run([model], "value", [Sample(id="one.png", image_path="one.png")])


# -- commands -----------------------------------------------------------------------------------
def test_a_positional_manifest_and_a_labelled_regressor(folder: Path, tmp_path: Path) -> None:
    """`seewhy explain rows.csv -m named.toml`: the rows read as --data (no image column),
    explained as 'price'; each row's figure under `figure` and `features_figure`, which the
    report shows as a tree row's (its features, no missing map)."""
    out = tmp_path / "out"
    code, output = _cli(
        folder, "explain", "rows.csv", "-m", "named.toml", "--sample", "2", "--out", str(out),
        "--quiet",
    )  # fmt: skip
    assert code == 0, output
    s = json.loads((out / "summary.json").read_text())
    assert validate_summary(s) == []
    assert [r["explained"] for r in s["results"]] == ["price", "price"]
    for r in s["results"]:
        (a,) = r["attributions"]
        assert a["figure"] == a["features_figure"] and (out / a["figure"]).is_file()
    html = (out / "report.html").read_text()
    assert "feature importances" in html and "figure missing" not in html
    assert "algorithm tree_path_dependent" in html  # shown as a tree row, not an image's


def test_one_row_with_a_background_runs_path_dependent_with_a_note(
    folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, output = _cli(
        folder, "explain", "--data", "rows.csv", "-m", "m.toml", "--sample", "1",
        "--n-background", "5", "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    assert "path-dependent algorithm ran instead" in " ".join(output.split())
    s = json.loads((out / "summary.json").read_text())
    ((r,),) = [s["results"]]
    (a,) = r["attributions"]
    assert a["algorithm"] == "tree_path_dependent" and a["background"] == 0
    assert "has 1 row to draw" in a["notes"][0]
    assert any(abs(f["score"]) > 1e-6 for f in a["features"])
    assert s["importance"][0]["notes"] == a["notes"]
    assert "has 1 row to draw" in (out / "report.html").read_text()  # the report says so too
