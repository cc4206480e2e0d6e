"""The registry's refusals read as sentences: what is wrong, then what there is."""

from __future__ import annotations

import pytest

from seewhy.core.errors import UsageError
from seewhy.methods.registry import create_method, method_class, parse_method_spec


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda: parse_method_spec("ig(zzzz=1)"), "has no setting 'zzzz'. It takes: baseline,"),
        (
            lambda: parse_method_spec("ig(step=1)"),
            "has no setting 'step'; did you mean 'steps'? It takes: baseline,",
        ),
        (lambda: create_method("ig", qqqq=1), "no method takes the setting 'qqqq'. Settings: "),
        (lambda: method_class("qqqqq"), "unknown method 'qqqqq'. Available: gradcam,"),
        (lambda: method_class("gradcm"), "did you mean 'gradcam'"),
    ],
)
def test_a_refusal_ends_its_sentence_before_the_list(call: object, said: str) -> None:
    with pytest.raises(UsageError) as err:
        call()  # type: ignore[operator]
    text = str(err.value)
    assert said in text and text.endswith(".") and "\n" not in text
    assert "' It takes" not in text and "' Available" not in text and "' Settings" not in text
