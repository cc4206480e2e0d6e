import torch
from torch import nn

from seewhy.data.summary import prediction
from seewhy.models.model import Model


def test_prediction_agrees_with_the_pred_target_when_probabilities_tie() -> None:
    model = Model(nn.Identity(), labels=["a", "b", "c"])
    row = torch.tensor([0.0, 1e-8, 0.0])  # softmax rounds these to equal float32 values
    pred, lines = prediction(model, row)
    assert pred["index"] == int(row.argmax()) == 1 and pred["label"] == "b"
    assert lines[0].startswith("b:")


def test_prediction_for_classifiers_multilabel_and_regressors() -> None:
    pred, _ = prediction(Model(nn.Identity(), labels=["a", "b"]), torch.tensor([0.0, 2.0]))
    assert pred["index"] == 1 and abs(pred["score"] - 1 / (1 + torch.e**-2)) < 1e-6
    multi, _ = prediction(Model(nn.Identity(), task="multilabel"), torch.tensor([0.0, 2.0]))
    assert abs(multi["score"] - float(torch.sigmoid(torch.tensor(2.0)))) < 1e-6
    value, lines = prediction(Model(nn.Identity(), task="regression"), torch.tensor([3.5]))
    assert value == {"value": 3.5} and lines == ["predicted value: 3.5"]
