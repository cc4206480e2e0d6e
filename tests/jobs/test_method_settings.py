"""Method settings in brackets: ``--method 'scorecam(precision=float32),gradcam'``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import invoke
from torch import nn

from seewhy import explain
from seewhy.core.errors import UsageError
from seewhy.methods.registry import parse_method_spec, parse_method_specs, split_method_specs


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_specs_split_on_commas_outside_brackets_and_values_are_typed() -> None:
    specs = split_method_specs("scorecam(precision=float32, layer=features), GradCAM ,eigencam")
    assert specs == ["scorecam(precision=float32, layer=features)", "GradCAM", "eigencam"]
    name, settings = parse_method_spec("ScoreCAM(precision='float32', layer=features)")
    assert (name, settings) == ("scorecam", {"precision": "float32", "layer": "features"})
    from seewhy.methods.registry import _value

    assert [_value(v) for v in ("32", "0.5", "true", "None", '"a,b"', "x")] == [
        32,
        0.5,
        True,
        None,
        "a,b",
        "x",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("scorecam(precison=float32)", r"no setting 'precison'; did you mean 'precision'\?"),
        ("gradcam(steps=3)", r"method 'gradcam' has no setting 'steps'"),
        ("scorecam(precision)", r"settings are name=value"),
        ("scorecam(precision=float32", r"one pair of brackets"),
        ("scorcam(precision=float32)", r"unknown method 'scorcam'"),
    ],
)
def test_bad_specs_are_one_line_usage_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_method_spec(spec)


def test_the_same_method_twice_with_other_settings_is_refused() -> None:
    assert parse_method_specs(["gradcam,GradCAM"]) == [("gradcam", {})]
    with pytest.raises(UsageError, match="given twice with different settings"):
        parse_method_specs(["scorecam(precision=float32),scorecam"])


def test_the_api_takes_bracket_settings_over_shared_ones(small_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    (e,) = explain(small_cnn, x, "scorecam(precision=float32)", layer="features", precision="auto")
    assert e.params["precision"] == "float32" and e.params["forward_dtype"] == "float32"
    (same,) = explain(small_cnn, x, ["scorecam"], layer="features", precision="float32")
    torch.testing.assert_close(e.map, same.map)


def test_cli_settings_reach_the_method_and_summary_and_a_change_recomputes(
    project: Path,
) -> None:
    base = ["explain", "img0.png", "-m", "small.toml", "--out", "out", "--quiet"]
    spec = "scorecam(precision=float32),gradcam"
    assert invoke(project, *base, "--method", spec)[0] == 0
    (res,) = summary_of(project / "out")["results"]
    params = {a["method"]: a["params"] for a in res["attributions"]}
    assert params["scorecam"]["precision"] == "float32"
    assert params["scorecam"]["forward_dtype"] == "float32"
    assert set(params) == {"scorecam", "gradcam"}
    first = np.load(project / "out" / res["attributions"][0]["map"])
    path = project / "out" / res["attributions"][0]["map"]
    stamp = path.stat().st_mtime_ns
    assert invoke(project, *base, "--method", spec)[0] == 0  # the same request: skipped
    assert path.stat().st_mtime_ns == stamp
    assert invoke(project, *base, "--method", "scorecam(precision=auto),gradcam")[0] == 0
    (res,) = summary_of(project / "out")["results"]
    assert {a["method"]: a["params"] for a in res["attributions"]}["scorecam"][
        "precision"
    ] == "auto"
    assert path.stat().st_mtime_ns != stamp  # another setting: recomputed
    assert np.load(path).shape == first.shape


def test_cli_a_misspelt_setting_exits_2_before_any_work(project: Path) -> None:
    args = ["explain", "img0.png", "-m", "small.toml", "--out", "bad", "--quiet"]
    code, output = invoke(project, *args, "--method", "scorecam(precison=float32)")
    assert code == 2 and "did you mean 'precision'" in output
    assert not (project / "bad").exists()
