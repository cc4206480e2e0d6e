"""``Inputs`` (named input tensors) and ``Model`` (the type methods receive)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seewhy.core.errors import ModelOutputError, UsageError
from seewhy.core.inputs import Inputs, check_batch_size
from seewhy.core.model import Model


def batch() -> Inputs:
    image = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2)
    ids = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])
    return Inputs({"image": image, "input_ids": ids})


def test_a_tensor_is_the_one_entry_case() -> None:
    x = torch.zeros(2, 3, 5, 7)
    inputs = Inputs.of(x)
    assert list(inputs) == ["image"] and inputs.image is x
    assert inputs.batch_size == 2 and inputs.image_size == (5, 7)
    assert Inputs.of(inputs) is inputs


def test_slicing_taking_repeating_and_joining_act_on_every_entry() -> None:
    b = batch()
    part = b[1:3]
    assert part["input_ids"].tolist() == [[3, 4], [5, 6]]
    assert torch.equal(part.image, b.image[1:3])
    taken = b.take([3, 0, 3])
    assert taken["input_ids"][:, 0].tolist() == [7, 1, 7]
    assert torch.equal(taken.image[1], b.image[0])
    rep = b[:2].repeat(3)
    assert rep["input_ids"][:, 0].tolist() == [1, 1, 1, 3, 3, 3]
    assert torch.equal(Inputs.cat(list(b.chunks(3)))["input_ids"], b["input_ids"])
    assert [c.batch_size for c in b.chunks(3)] == [3, 1]
    masked = b.replace(image=torch.zeros_like(b.image))
    assert float(masked.image.abs().sum()) == 0 and masked["input_ids"] is b["input_ids"]


def test_moving_casts_floating_entries_only() -> None:
    moved = batch().to("cpu", torch.float64)
    assert moved.image.dtype == torch.float64
    assert moved["input_ids"].dtype == torch.long  # token ids stay integers


def test_bad_batches_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="batch size"):
        Inputs({"image": torch.zeros(2, 3, 4, 4), "features": torch.zeros(3, 5)})
    with pytest.raises(UsageError, match="features"):
        Inputs({"features": [1.0, 2.0]})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="no inputs"):
        Inputs({})
    with pytest.raises(UsageError, match="no image"):
        _ = Inputs({"features": torch.zeros(3, 5)}).image
    for bad in (0, -1, True, 2.5):
        with pytest.raises(UsageError, match="batch_size"):
            check_batch_size(bad)  # type: ignore[arg-type]


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0]))

    def forward(self, pixel_values: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.w * pixel_values.flatten(1).sum(1), features.sum(1)], dim=1)


def test_model_forward_maps_named_inputs_to_the_modules_arguments() -> None:
    model = Model(TwoInputs(), inputs={"image": "pixel_values", "tabular": {"arg": "features"}})
    inputs = Inputs({"image": torch.ones(2, 1, 2, 2), "tabular": torch.tensor([[1.0], [5.0]])})
    out = model.forward(inputs)
    assert out.tolist() == [[8.0, 1.0], [8.0, 5.0]]


def test_model_of_wraps_a_module_once_and_refuses_other_things() -> None:
    module = nn.Linear(3, 2)
    model = Model.of(module)
    assert model.module is module and model.task == "classification" and model.layer == "auto"
    assert Model.of(model) is model
    with pytest.raises(UsageError, match=r"nn\.Module"):
        Model.of("resnet18")  # type: ignore[arg-type]


def test_model_knows_its_device_and_dtype_and_moves_a_batch_there() -> None:
    model = Model.of(nn.Linear(3, 2).to(torch.float64))
    assert model.dtype == torch.float64 and model.device.type == "cpu"
    x = model.to_input(torch.zeros(2, 3))
    assert x["image"].dtype == torch.float64
    bare = Model.of(nn.Identity())  # no parameters: float32 and the batch as it is
    assert (
        bare.dtype == torch.float32
        and bare.to_input(torch.zeros(1, 2)).image.dtype == torch.float32
    )


def test_model_forward_refuses_nan_outputs() -> None:
    class NaN(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(1, keepdim=True) * float("nan")

    with pytest.raises(ModelOutputError, match=r"rows \[0, 1\]"):
        Model.of(NaN()).forward(torch.ones(2, 3))


def test_model_targets_parse_against_its_task_and_labels() -> None:
    model = Model.of(nn.Identity())
    model.labels = ["cat", "dog"]
    (t,) = model.targets("dog")
    assert t.name == "dog" and int(t.indices(torch.zeros(1, 2))[0]) == 1
    assert [x.name for x in model.targets("all", num_outputs=2)] == ["cat", "dog"]
    with pytest.raises(UsageError, match="one target at a time"):
        model.target("all")
