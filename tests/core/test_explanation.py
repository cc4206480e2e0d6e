"""``Explanation``: raw attributions, per-input signs and per-sample extras survive ``concat``."""

from __future__ import annotations

import torch

from seewhy.core.explanation import Explanation


def part(rows: list[int], tokens: list[list[str]]) -> Explanation:
    n = len(rows)
    values = torch.tensor(rows, dtype=torch.float32)
    return Explanation(
        method="m",
        attributions={"image": values.view(n, 1, 1).expand(n, 2, 2), "text": values[:, None]},
        target="pred",
        output=values[:, None],
        target_indices=torch.tensor(rows),
        extras={"opposite": -values.view(n, 1, 1).expand(n, 2, 2), "opposite_target": "-value"},
        raw={"image": values.view(n, 1, 1, 1).expand(n, 3, 4, 4)},
        input_signed={"image": False, "text": True},
        per_sample={"tokens": tokens},
    )


def test_concat_keeps_raw_signs_and_ragged_per_sample_extras() -> None:
    joined = Explanation.concat([part([1, 2], [["a"], ["b", "c"]]), part([3], [["d", "e", "f"]])])
    assert len(joined) == 3
    assert joined.raw["image"].shape == (3, 3, 4, 4)
    assert joined.raw["image"][:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert joined.per_sample["tokens"] == [["a"], ["b", "c"], ["d", "e", "f"]]
    assert joined.extras["opposite"][:, 0, 0].tolist() == [-1.0, -2.0, -3.0]
    assert joined.extras["opposite_target"] == "-value"
    assert joined.target_indices is not None and joined.target_indices.tolist() == [1, 2, 3]
    assert joined.is_signed("text") and not joined.is_signed("image")


def test_normalized_follows_each_inputs_sign() -> None:
    e = Explanation(
        method="m",
        attributions={"text": torch.tensor([[2.0, -4.0]])},
        target="t",
        input_signed={"text": True},
    )
    assert e.normalized("text").flatten().tolist() == [0.5, -1.0]  # signed: divided by max |.|
    img = Explanation(method="m", attributions={"image": torch.tensor([[[1.0, 3.0]]])}, target="t")
    assert img.normalized().flatten().tolist() == [0.0, 1.0]  # unsigned: min-max
