import pytest
import torch

from seewhy.core.errors import TargetError
from seewhy.core.targets import (
    ClassTarget,
    PredictedClass,
    RegressionTarget,
    SampleClasses,
    output_tensor,
    parse_target,
)

OUT = torch.tensor([[1.0, 5.0, -2.0], [4.0, 0.0, 3.0]])


def test_pred_picks_argmax_per_sample() -> None:
    (t,) = parse_target("pred")
    assert isinstance(t, PredictedClass)
    assert t(OUT).tolist() == [5.0, 4.0]
    assert t.indices(OUT).tolist() == [1, 0]


def test_class_index_and_label() -> None:
    (t,) = parse_target("2", labels=["a", "b", "c"])
    assert t(OUT).tolist() == [-2.0, 3.0]
    (u,) = parse_target("b", labels=["a", "b", "c"])
    assert u == ClassTarget(1, "b") and u.name == "b"
    assert u(OUT).tolist() == [5.0, 0.0]
    (v,) = parse_target(0)
    assert v(OUT).tolist() == [1.0, 4.0]


def test_all_gives_one_target_per_class() -> None:
    ts = parse_target("all", labels=["a", "b", "c"])
    assert [t(OUT).tolist() for t in ts] == [[1.0, 4.0], [5.0, 0.0], [-2.0, 3.0]]
    assert len(parse_target("all", num_outputs=5)) == 5


def test_true_uses_per_sample_labels() -> None:
    (t,) = parse_target("true", true_labels=[2, 1])
    assert isinstance(t, SampleClasses)
    assert t(OUT).tolist() == [-2.0, 0.0]
    with pytest.raises(TargetError, match="target-col"):
        parse_target("true")


def test_regression_value_and_minus_value_are_signed() -> None:
    out = torch.tensor([[2.5], [-1.0]])
    (up,) = parse_target("value", task="regression")
    (down,) = parse_target("-value", task="regression")
    assert up(out).tolist() == [2.5, -1.0]
    assert down(out).tolist() == [-2.5, 1.0]
    assert (up.name, down.name) == ("value", "-value")
    # a 1-D output is read as one column
    assert up(torch.tensor([3.0, 4.0])).tolist() == [3.0, 4.0]


def test_multi_output_regression_by_name_and_index() -> None:
    out = torch.tensor([[1.0, 10.0], [2.0, 20.0]])
    (t,) = parse_target("-rent", task="regression", labels=["price", "rent"])
    assert t == RegressionTarget(output=1, sign=-1, output_name="rent")
    assert t(out).tolist() == [-10.0, -20.0]
    (u,) = parse_target("1", task="regression")
    assert u(out).tolist() == [10.0, 20.0]


def test_bad_targets_say_what_to_do() -> None:
    with pytest.raises(TargetError, match="did you mean 'fracture'"):
        parse_target("fractur", labels=["normal", "fracture"])
    with pytest.raises(TargetError, match="regression"):
        parse_target("-value", task="classification")
    with pytest.raises(TargetError, match="out of range"):
        ClassTarget(7)(OUT)


def test_output_tensor_unwraps_common_containers() -> None:
    class HF:
        logits = OUT

    assert output_tensor(HF()) is OUT
    assert output_tensor({"logits": OUT}) is OUT
    assert output_tensor((OUT, None)) is OUT


def test_regression_all_plus_value_and_integer_outputs() -> None:
    out = torch.tensor([[1.0, 10.0, -3.0], [2.0, 20.0, -6.0]])
    names = ["price", "rent", "tax"]
    ts = parse_target("all", task="regression", labels=names)
    assert [t.name for t in ts] == names
    assert [t(out).tolist() for t in ts] == [[1.0, 2.0], [10.0, 20.0], [-3.0, -6.0]]
    (plus,) = parse_target("+value", task="regression", labels=names)
    assert plus.name == "price" and plus(out).tolist() == [1.0, 2.0]
    (two,) = parse_target(2, task="regression", labels=names)
    assert two.name == "tax" and two(out).tolist() == [-3.0, -6.0]
    (neg,) = parse_target("-2", task="regression")
    assert neg.name == "-2" and neg(out).tolist() == [3.0, 6.0]
    (pred,) = parse_target("pred", task="regression", labels=names)
    assert pred(out).tolist() == [1.0, 2.0]  # pred of a regressor: its (first) output
    with pytest.raises(TargetError, match="did you mean 'rent'"):
        parse_target("rnet", task="regression", labels=names)
    with pytest.raises(TargetError, match="out of range"):
        parse_target(5, task="regression")[0](out)


def test_ready_targets_pass_through_and_gradients_flow() -> None:
    t = RegressionTarget(output=1, sign=-1)
    assert parse_target(t) == [t]
    out = OUT.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(t(out).sum(), out)
    assert g.tolist() == [[0.0, -1.0, 0.0], [0.0, -1.0, 0.0]]


# Single-logit binary classifiers (SPEC 3): labels [negative, positive], threshold 0.5 on the
# sigmoid (logit 0), and the negative class explains the negated logit.
BINARY = torch.tensor([[2.0], [-3.0]])


def test_binary_pred_thresholds_the_logit_and_negates_it_for_the_negative_class() -> None:
    (t,) = parse_target("pred")
    assert t.indices(BINARY).tolist() == [1, 0]  # label space: 0 negative, 1 positive
    assert t.columns(BINARY).tolist() == [0, 0]  # the one output column
    assert t.signs(BINARY).tolist() == [1.0, -1.0]
    assert t(BINARY).tolist() == [2.0, 3.0]  # the negative class's score is -logit
    # a 1-D output is one column too, and a logit of exactly 0 (sigmoid 0.5) is negative
    assert t.indices(torch.tensor([0.0, 1e-3])).tolist() == [0, 1]


def test_binary_class_targets_by_index_label_and_per_sample() -> None:
    labels = ["not fracture", "fracture"]
    (neg,) = parse_target("not fracture", labels=labels)
    (pos,) = parse_target(1, labels=labels)
    assert neg == ClassTarget(0, "not fracture") and pos == ClassTarget(1, "fracture")
    assert neg.indices(BINARY).tolist() == [0, 0] and neg.columns(BINARY).tolist() == [0, 0]
    assert neg.signs(BINARY).tolist() == [-1.0, -1.0]
    assert neg(BINARY).tolist() == [-2.0, 3.0]
    assert pos(BINARY).tolist() == [2.0, -3.0] and pos.signs(BINARY).tolist() == [1.0, 1.0]
    (true,) = parse_target("true", true_labels=[0, 1])
    assert true.indices(BINARY).tolist() == [0, 1] and true.columns(BINARY).tolist() == [0, 0]
    assert true(BINARY).tolist() == [-2.0, -3.0]
    with pytest.raises(TargetError, match=r"out of range.*binary"):
        ClassTarget(2)(BINARY)
    with pytest.raises(TargetError, match="out of range"):
        SampleClasses((0, 2))(BINARY)


def test_binary_all_gives_both_classes() -> None:
    ts = parse_target("all", num_outputs=1)
    assert [t.indices(BINARY).tolist() for t in ts] == [[0, 0], [1, 1]]
    assert [t(BINARY).tolist() for t in ts] == [[-2.0, 3.0], [2.0, -3.0]]
    named = parse_target("all", labels=["not fracture", "fracture"], num_outputs=1)
    assert [t.name for t in named] == ["not fracture", "fracture"]
    # one positive label is the binary pair [not LABEL, LABEL]
    (pos,) = parse_target("fracture", labels=["fracture"])
    assert pos == ClassTarget(1, "fracture")
    assert [t.name for t in parse_target("all", labels=["fracture"])] == [
        "not fracture",
        "fracture",
    ]


def test_multilabel_single_column_is_that_label_not_binary() -> None:
    (pred,) = parse_target("pred", task="multilabel")
    assert pred.indices(BINARY).tolist() == [0, 0] and pred.signs(BINARY).tolist() == [1.0, 1.0]
    assert pred(BINARY).tolist() == [2.0, -3.0]
    (zero,) = parse_target(0, task="multilabel", labels=["effusion"])
    assert zero.name == "effusion" and zero(BINARY).tolist() == [2.0, -3.0]
    assert [t(BINARY).tolist() for t in parse_target("all", task="multilabel", num_outputs=1)] == [
        [2.0, -3.0]
    ]
    with pytest.raises(TargetError, match="out of range"):
        parse_target(1, task="multilabel")[0](BINARY)


def test_multilabel_pred_is_the_top_scoring_label() -> None:
    out = torch.tensor([[-4.0, -1.0, -2.0], [0.5, 3.0, 7.0]])  # sigmoid keeps the order
    (pred,) = parse_target("pred", task="multilabel")
    assert pred.indices(out).tolist() == [1, 2] == torch.sigmoid(out).argmax(1).tolist()
    assert pred(out).tolist() == [-1.0, 7.0]


def test_columns_and_signs_of_multiclass_and_regression_targets() -> None:
    (pred,) = parse_target("pred")
    assert pred.columns(OUT).tolist() == pred.indices(OUT).tolist() == [1, 0]
    assert pred.signs(OUT).tolist() == [1.0, 1.0]
    # a two-column model is multi-class, not binary: class 0 is column 0, sign +
    two = torch.tensor([[1.0, -1.0]])
    assert ClassTarget(0)(two).tolist() == [1.0] and ClassTarget(0).signs(two).tolist() == [1.0]
    down = RegressionTarget(output=1, sign=-1)
    out = torch.tensor([[1.0, 10.0], [2.0, 20.0]])
    assert down.indices(out).tolist() == down.columns(out).tolist() == [1, 1]
    assert down.signs(out).tolist() == [-1.0, -1.0]
    # a single-output regressor is not a binary classifier
    (value,) = parse_target("value", task="regression")
    assert value(BINARY).tolist() == [2.0, -3.0]


def test_ready_class_targets_follow_a_multilabel_task() -> None:
    (t,) = parse_target(ClassTarget(0, "effusion"), task="multilabel")
    assert t == ClassTarget(0, "effusion", multilabel=True)
    assert t(BINARY).tolist() == [2.0, -3.0]  # the label's own logit, not the negative class
    assert parse_target(ClassTarget(0))[0](BINARY).tolist() == [-2.0, 3.0]


# ---------------------------------------------------------------------------------------------
# Targets are resolved once, on the clean output.


def test_pred_resolved_on_the_clean_output_is_not_re_decided_on_a_perturbed_one() -> None:
    from seewhy.core.targets import ResolvedTarget

    clean = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 3.0]])
    perturbed = torch.tensor([[0.0, 3.0, 1.0], [4.0, 0.5, 1.0]])  # would pick 1 and 0
    t = PredictedClass().resolve(clean)
    assert isinstance(t, ResolvedTarget) and t.name == "pred"
    assert t.indices(perturbed).tolist() == [0, 2]  # the clean picks
    assert t(perturbed).tolist() == [0.0, 1.0]  # read in the clean columns
    assert PredictedClass()(perturbed).tolist() == [3.0, 4.0]  # what re-deciding would read
    assert t.values.tolist() == [2.0, 3.0]  # the target on the clean output
    assert t.resolve(perturbed) is t  # resolving again changes nothing


def test_a_resolved_target_follows_the_batch_and_flips_its_sign() -> None:
    clean = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 5.0]])
    t = PredictedClass().resolve(clean)
    assert t.rows(slice(1, 3)).indices(clean[1:]).tolist() == [0, 1]
    rep = t.repeat(2)  # as Inputs.repeat lays out rows: a, a, b, b, c, c
    assert rep.output_columns.tolist() == [1, 1, 0, 0, 1, 1]
    with pytest.raises(TargetError, match="resolved for 3 samples"):
        t(torch.zeros(6, 2))
    value = RegressionTarget(output_name="price").resolve(torch.tensor([[2.0], [-1.0]]))
    down = value.opposite()
    assert down.name == "-price" and down(torch.tensor([[5.0], [5.0]])).tolist() == [-5.0, -5.0]
    assert down.values.tolist() == [-2.0, 1.0] and down.regression


def test_binary_pred_is_resolved_by_the_clean_logits_sign() -> None:
    t = PredictedClass().resolve(torch.tensor([[1.5], [-0.5]]))
    flipped = torch.tensor([[-2.0], [2.0]])
    assert t.indices(flipped).tolist() == [1, 0]
    assert t(flipped).tolist() == [-2.0, -2.0]  # class 1 reads +logit, class 0 reads -logit


def test_true_classes_follow_chunks() -> None:
    t = SampleClasses((2, 0, 1))
    assert t.rows(slice(1, 3)).indices(torch.zeros(2, 3)).tolist() == [0, 1]
