"""The registry: settings no method takes are refused, with the closest one."""

from __future__ import annotations

import pytest

from seewhy import explain
from seewhy.core.errors import UsageError
from seewhy.methods.registry import all_settings, create_method, method_settings


def test_a_setting_no_method_takes_is_refused_with_did_you_mean() -> None:
    with pytest.raises(UsageError, match=r"'precison'; did you mean 'precision'\?"):
        create_method("scorecam", precison="float32")
    with pytest.raises(UsageError, match=r"'layr'; did you mean 'layer'\?"):
        create_method("gradcam", layr="features")


def test_a_shared_setting_goes_to_the_methods_that_take_it() -> None:
    assert method_settings("gradcam++") == {"layer"}
    assert {"layer", "precision"} <= all_settings()
    grad = create_method("gradcam", layer="x", precision="float32")  # precision is Score-CAM's
    assert grad.params() == {"layer": "x"}
    assert create_method("scorecam", precision="float32").params()["precision"] == "float32"


def test_explain_refuses_a_misspelt_setting_before_any_work(small_cnn: object) -> None:
    import torch

    with pytest.raises(UsageError, match="did you mean 'precision'"):
        explain(small_cnn, torch.zeros(1, 3, 16, 16), ["scorecam"], precisoin="float32")  # type: ignore[arg-type]
