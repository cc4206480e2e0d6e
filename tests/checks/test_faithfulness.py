"""Deletion and insertion curves (Petsiuk et al. 2018): golden AUCs and blur, hand-weighted
pixel models with hand-computed curve points, a slow loop reference, batching, quantus."""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import pytest
import torch
from torch import nn

from model_state import assert_same, snapshot
from multimodal_models import image_tabular_model
from seewhy.checks.faithfulness import (
    Curves,
    auc,
    blurred,
    deletion_insertion,
    forwards_per_sample,
    random_order,
)
from seewhy.core.errors import UsageError
from seewhy.core.inputs import Inputs
from seewhy.core.model import Model
from seewhy.core.targets import ResolvedTarget, SampleClasses

SIDE = 16
HW = SIDE * SIDE
KEYS = [(2, 3), (2, 12), (5, 7), (7, 1), (9, 9), (11, 14), (13, 4), (14, 10)]
"""The pixels the hand-weighted models read (row, column), in row-major order."""


def key_weights(values: list[float]) -> torch.Tensor:
    w = torch.zeros(SIDE, SIDE)
    for (r, c), v in zip(KEYS, values, strict=True):
        w[r, c] = v
    return w


class PixelLinear(nn.Module):
    """Two logits ``[z, -z]``, ``z = sum(weight * image[:, 0]) + bias``: class 0's softmax
    probability is ``sigmoid(2 z)``, and only the weighted pixels count."""

    def __init__(self, weight: torch.Tensor, bias: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def z(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * self.weight).sum((1, 2)) + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.z(x)
        return torch.stack([z, -z], dim=1)


class PixelRegressor(PixelLinear):
    """The value ``z`` itself, ``[B]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z(x)


def key_images(n: int, seed: int = 0) -> torch.Tensor:
    """``[n, 1, 16, 16]``: faint noise, the key pixels at 1."""
    x = 0.1 * torch.randn(n, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))
    for r, c in KEYS:
        x[:, 0, r, c] = 1.0
    return x


def resolved(model: Model, x: torch.Tensor | Inputs, spec: str = "pred") -> ResolvedTarget:
    with torch.no_grad():
        return model.target(spec).resolve(model.forward(Inputs.of(x)))


WEIGHTS = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # sum 36


@pytest.fixture
def linear() -> Model:
    return Model.of(PixelLinear(key_weights(WEIGHTS), bias=-20.0))


# -- auc and the blur ---------------------------------------------------------------------------
def test_auc_golden_values() -> None:
    curves = torch.tensor(
        [
            [1.0] * 11,  # constant 1
            [1 - i / 10 for i in range(11)],  # linear 1 -> 0
        ]
    )
    assert auc(curves).tolist() == pytest.approx([1.0, 0.5], abs=1e-7)
    # 3 points, dx = 1/2: (0 + 1) / 2 * 1/2 + (1 + 0.5) / 2 * 1/2 = 0.25 + 0.375
    assert float(auc(torch.tensor([[0.0, 1.0, 0.5]]))[0]) == pytest.approx(0.625, abs=1e-7)
    assert float(auc(torch.tensor([[0.2, 0.6]]))[0]) == pytest.approx(0.4, abs=1e-7)
    out = auc(torch.tensor([[1.0, math.nan, 0.0], [1.0, 1.0, 1.0]]))
    assert math.isnan(float(out[0])) and float(out[1]) == pytest.approx(1.0)
    with pytest.raises(UsageError, match="n >= 2"):
        auc(torch.tensor([[1.0]]))


def test_blur_golden_values_and_scipy() -> None:
    const = torch.full((1, 2, 9, 12), 0.7)
    assert torch.allclose(blurred(const, 1.5), const, atol=1e-6)  # reflect pad, sum-1 kernel
    delta = torch.zeros(1, 1, 15, 15)
    delta[0, 0, 7, 7] = 1.0
    # sigma 1: radius 3; the centre is the 1-d kernel's centre weight squared
    k = [math.exp(-0.5 * i * i) for i in range(-3, 4)]
    centre, side = 1 / sum(k), k[4] / sum(k)
    out = blurred(delta, 1.0)
    assert float(out[0, 0, 7, 7]) == pytest.approx(centre**2, abs=1e-7)
    assert float(out[0, 0, 7, 8]) == pytest.approx(centre * side, abs=1e-7)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(out[0, 0, 7, 11]) == 0.0  # beyond the radius

    # scipy's "mirror" is torch's "reflect"; its radius int(truncate * sigma + 0.5) is ours,
    # ceil(3 sigma), where 3 sigma is a whole number
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.randn(2, 3, 20, 24, generator=torch.Generator().manual_seed(3))
    for sigma in (1.0, 2.0):
        want = ndimage.gaussian_filter(
            x.double().numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0
        )
        assert torch.allclose(blurred(x, sigma).double(), torch.from_numpy(want), atol=1e-6)
    # default: max(H, W) / 16 = 1.5 px
    assert torch.equal(blurred(x), blurred(x, 1.5))
    with pytest.raises(UsageError, match="blur_sigma"):
        blurred(x, 0.0)


# -- the hand-weighted pixel model ----------------------------------------------------------------
def test_exact_order_beats_random_order(linear: Model) -> None:
    x = key_images(4)
    curves = deletion_insertion(
        linear, Inputs.of(x), key_weights(WEIGHTS).expand(4, -1, -1), resolved(linear, x)
    )
    assert curves.deletion.shape == (4, 51)
    a = curves.aucs()
    # the map is the model's own weights: the 8 keys go in the first 2 steps (5 px a step)
    assert a["deletion_auc"].max() < 0.05
    assert a["insertion_auc"].min() > 0.95
    assert (a["deletion_auc"] <= a["deletion_auc_random"] - 0.2).all()
    assert (a["insertion_auc"] >= a["insertion_auc_random"] + 0.2).all()
    # both curves run between p(x) ~ 1 and p(blurred) ~ 0
    assert curves.deletion[:, 0].min() > 0.999 and curves.deletion[:, -1].max() < 1e-3


def test_curve_points_by_hand(linear: Model) -> None:
    x = key_images(1)
    b = blurred(x)[0, 0]
    w = key_weights(WEIGHTS)
    target = resolved(linear, x)

    def p(z: float) -> float:  # class 0 of softmax([z, -z])
        return 1 / (1 + math.exp(-2 * z))

    # 64 steps of 4 px: point 1 removes the 4 heaviest keys (weights 8, 7, 6, 5)
    curves = deletion_insertion(linear, Inputs.of(x), w[None], target, steps=64)
    top, rest = KEYS[:4], KEYS[4:]
    z_del = sum(float(w[k] * b[k]) for k in top) + sum(float(w[k]) for k in rest) - 20
    z_ins = sum(float(w[k]) for k in top) + sum(float(w[k] * b[k]) for k in rest) - 20
    assert float(curves.deletion[0, 1]) == pytest.approx(p(z_del), abs=1e-6)
    assert float(curves.insertion[0, 1]) == pytest.approx(p(z_ins), abs=1e-6)
    assert -10 < z_del < 10  # a point in the sigmoid's slope, not a saturated 0 or 1

    # a flat map: ties go in row-major order; 16 steps take one image row each, so point 6
    # has removed rows 0..5: the keys (2, 3), (2, 12), (5, 7) (weights 8, 7, 6)
    flat = deletion_insertion(linear, Inputs.of(x), torch.zeros(1, SIDE, SIDE), target, steps=16)
    gone = KEYS[:3]
    z6 = sum(float(w[k] * b[k]) for k in gone) + sum(float(w[k]) for k in KEYS[3:]) - 20
    assert float(flat.deletion[0, 6]) == pytest.approx(p(z6), abs=1e-6)
    assert float(flat.deletion[0, 2]) == pytest.approx(float(flat.deletion[0, 0]), abs=1e-6)


def test_regressor_signed_value_and_negated_value() -> None:
    values = [5.0, 4.0, 3.0, 2.0, -1.0, -1.0, -2.0, -1.0]
    model = Model(module=PixelRegressor(key_weights(values), bias=0.5), task="regression")
    x = key_images(2, seed=1)
    gain = key_weights(values) * (x - blurred(x))[:, 0]  # what each pixel adds to f(x) - f(b)
    assert (gain.sum((1, 2)) > 5).all()  # the image scores above its blurred copy
    # value: f(x) > f(b), curves from 1 to 0; -value: f(x) < f(b), from -1 to 0
    for spec, sign in (("value", 1.0), ("-value", -1.0)):
        maps = sign * gain  # what each pixel adds to the signed target
        target = resolved(model, x, spec)
        assert target.output_signs.tolist() == [sign, sign]
        curves = deletion_insertion(model, Inputs.of(x), maps, target, steps=64)
        for name in ("deletion", "deletion_random"):
            c = getattr(curves, name)
            assert c[:, 0].tolist() == [sign, sign] and c[:, -1].tolist() == [0.0, 0.0]
        for name in ("insertion", "insertion_random"):
            c = getattr(curves, name)
            assert c[:, 0].tolist() == [0.0, 0.0] and c[:, -1].tolist() == [sign, sign]
        # point 1 (4 px) removes the 4 pixels that raise the signed target most: the curve
        # falls by their share of |f(x) - f(b)|
        for i in range(2):
            flat = maps[i].flatten().double()
            top = flat.topk(4).values.sum()
            want = (flat.sum() - top) / flat.sum().abs()
            assert float(curves.deletion[i, 1]) == pytest.approx(float(want), abs=1e-5)
            assert float(curves.deletion[i, 1]) < float(curves.deletion[i, 0]) - 0.5
        a = curves.aucs()
        assert (a["deletion_auc"] <= a["deletion_auc_random"] - 0.2).all()
        assert (a["insertion_auc"] >= a["insertion_auc_random"] + 0.2).all()


def test_regressor_without_a_difference_gives_nan() -> None:
    # f reads no pixel: f(x) == f(blurred), the normalised curve is undefined
    model = Model(module=PixelRegressor(torch.zeros(SIDE, SIDE), bias=2.0), task="regression")
    x = key_images(2)
    curves = deletion_insertion(
        model, Inputs.of(x), torch.rand(2, SIDE, SIDE), resolved(model, x, "value"), steps=4
    )
    for score in curves.aucs().values():
        assert torch.isnan(score).all()


# -- against a slow loop ------------------------------------------------------------------------
def reference(
    model: Model,
    inputs: Inputs,
    maps: torch.Tensor,
    target: ResolvedTarget,
    steps: int,
    seeds: list[int],
    score: str,
) -> torch.Tensor:
    """``[B, 4, steps + 1]``: each point's image built and run on its own, from the paper."""
    model.module.eval()
    image = inputs.image
    blur = blurred(image)
    _, _, h, w = image.shape
    hw = h * w
    out = torch.zeros(image.shape[0], 4, steps + 1, dtype=torch.float64)
    for i in range(image.shape[0]):
        values = maps[i].flatten().tolist()
        by_map = sorted(range(hw), key=lambda p: (-values[p], p))
        randomly = random_order(h, w, seeds[i]).tolist()
        col, sign = int(target.output_columns[i]), float(target.output_signs[i])

        def f(img: torch.Tensor, i: int = i, col: int = col, sign: float = sign) -> float:
            row = inputs[i : i + 1].replace(image=img[None])
            with torch.no_grad():
                o = model.forward(row)[0].double()
            if score == "softmax":
                return float(torch.softmax(o, 0)[col])
            if score == "sigmoid":
                return float(torch.sigmoid(sign * o[col]))
            return sign * float(o[col])

        for c, (order, insertion) in enumerate(
            [(by_map, False), (by_map, True), (randomly, False), (randomly, True)]
        ):
            for t in range(steps + 1):
                k = round(t * hw / steps)
                chosen = torch.zeros(hw, dtype=torch.bool)
                chosen[order[:k]] = True
                chosen = chosen.view(1, h, w)
                img = (
                    torch.where(chosen, image[i], blur[i])
                    if insertion
                    else torch.where(chosen, blur[i], image[i])
                )
                out[i, c, t] = f(img)
        if score == "value":
            fx, fb = f(image[i]), f(blur[i])
            out[i] = (out[i] - fb) / abs(fx - fb)
    return out


def stacked(curves: Curves) -> torch.Tensor:
    return torch.stack(
        [curves.deletion, curves.insertion, curves.deletion_random, curves.insertion_random], 1
    ).double()


class OneLogit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.head = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("case", ["softmax", "binary", "regression-multimodal"])
def test_matches_slow_reference(case: str, small_cnn: nn.Module) -> None:
    gen = torch.Generator().manual_seed(7)
    image = torch.randn(2, 3, SIDE, SIDE, generator=gen)
    if case == "softmax":
        model, inputs, spec, score = Model.of(small_cnn), Inputs.of(image), "pred", "softmax"
    elif case == "binary":
        model, inputs, spec, score = Model.of(OneLogit()), Inputs.of(image), "pred", "sigmoid"
    else:
        model = image_tabular_model()
        features = torch.randn(2, 3, generator=gen)
        inputs, spec, score = Inputs({"image": image, "tabular": features}), "-value", "value"
    if case == "binary":  # one sample per class: class 0 reads sigmoid(-logit)
        with torch.no_grad():
            target = SampleClasses((0, 1)).resolve(model.forward(inputs))
        assert target.output_signs.tolist() == [-1.0, 1.0]
    else:
        target = resolved(model, inputs, spec)
    maps = torch.randn(2, SIDE, SIDE, generator=gen)
    maps[0, :4] = 0.25  # ties
    seeds = [31, 8]
    curves = deletion_insertion(model, inputs, maps, target, steps=5, batch_size=5, seeds=seeds)
    want = reference(model, inputs, maps, target, 5, seeds, score)
    assert torch.allclose(stacked(curves), want, atol=1e-5)
    assert (stacked(curves).amax(dim=2) - stacked(curves).amin(dim=2)).min() > 1e-3


# -- batching, seeds, NaN maps, the model's state -------------------------------------------------
def test_chunked_equals_unchunked_and_batched_equals_per_sample(small_cnn: nn.Module) -> None:
    model = Model.of(small_cnn)
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    maps = torch.randn(2, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    target = resolved(model, x)
    kw = {"steps": 5, "seeds": [5, 6]}
    one = stacked(deletion_insertion(model, Inputs.of(x), maps, target, batch_size=1, **kw))
    big = stacked(deletion_insertion(model, Inputs.of(x), maps, target, batch_size=64, **kw))
    assert torch.allclose(one, big, atol=1e-6, rtol=0)
    alone = deletion_insertion(
        model, Inputs.of(x[1:2]), maps[1:2], target.rows(slice(1, 2)), steps=5, seeds=[6]
    )
    assert torch.allclose(stacked(alone)[0], big[1], atol=1e-6, rtol=0)
    # another seed: another random order (the map's order stays)
    other = stacked(deletion_insertion(model, Inputs.of(x), maps, target, steps=5, seeds=[5, 9]))
    assert torch.allclose(other[:, :2], big[:, :2], atol=1e-6, rtol=0)
    assert (other[1, 2:] - big[1, 2:]).abs().max() > 1e-4


def test_forward_count_and_batch_size() -> None:
    class Counting(PixelLinear):
        rows: ClassVar[list[int]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Counting.rows.append(int(x.shape[0]))
            return super().forward(x)

    model = Model.of(Counting(key_weights(WEIGHTS), bias=-20.0))
    x = key_images(3)
    target = resolved(model, x)
    Counting.rows.clear()
    deletion_insertion(
        model, Inputs.of(x), torch.rand(3, SIDE, SIDE), target, steps=10, batch_size=7
    )
    assert forwards_per_sample(10) == 38 and forwards_per_sample(50) == 198
    assert sum(Counting.rows) == 3 * 38
    assert max(Counting.rows) == 7


def test_nan_map_gives_nan_for_its_sample_only(linear: Model) -> None:
    x = key_images(2)
    maps = key_weights(WEIGHTS).expand(2, -1, -1).clone()
    maps[0, 5, 5] = math.nan
    target = resolved(linear, x)
    curves = deletion_insertion(linear, Inputs.of(x), maps, target, steps=8)
    for name, score in curves.aucs().items():
        assert math.isnan(float(score[0])), name
        assert math.isfinite(float(score[1])), name
    alone = deletion_insertion(
        linear, Inputs.of(x[1:]), maps[1:], target.rows(slice(1, 2)), steps=8, seeds=[1]
    )
    assert torch.allclose(stacked(curves)[1], stacked(alone)[0], atol=1e-6)


def test_leaves_the_model_as_it_was(small_cnn: nn.Module) -> None:
    model = Model.of(small_cnn)
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(5))
    maps = torch.randn(2, SIDE, SIDE, generator=torch.Generator().manual_seed(6))
    target = resolved(model, x)
    model.module.train().requires_grad_(True)
    model.module(x).sum().backward()  # .grad set (and the batch-norm statistics moved)
    before = snapshot(model.module)
    got = stacked(deletion_insertion(model, Inputs.of(x), maps, target, steps=4))
    assert_same(before, snapshot(model.module))
    assert model.module.training
    # the curves are the eval-mode model's (dropout off, running statistics)
    frozen = Model.of(copy.deepcopy(model.module).eval())
    want = reference(frozen, Inputs.of(x), maps, target, 4, [0, 1], "softmax")
    assert torch.allclose(got, want, atol=1e-5)


def test_bad_arguments(linear: Model) -> None:
    x = key_images(2)
    inputs, maps, target = Inputs.of(x), torch.rand(2, SIDE, SIDE), resolved(linear, x)
    with pytest.raises(UsageError, match="steps must be an integer >= 1"):
        deletion_insertion(linear, inputs, maps, target, steps=0)
    with pytest.raises(UsageError, match=r"maps must be \[B, H, W\]"):
        deletion_insertion(linear, inputs, maps[:, :8], target)
    with pytest.raises(UsageError, match="image input 'image'"):
        deletion_insertion(linear, Inputs({"features": torch.rand(2, 3)}), maps, target)
    with pytest.raises(UsageError, match="ResolvedTarget for the batch's 2"):
        deletion_insertion(linear, inputs, maps, target.rows(slice(0, 1)))
    with pytest.raises(UsageError, match="seeds has 1 values"):
        deletion_insertion(linear, inputs, maps, target, seeds=[1])
    with pytest.raises(UsageError, match="precision 'fp8'"):
        deletion_insertion(linear, inputs, maps, target, precision="fp8")


# -- quantus ------------------------------------------------------------------------------------
def test_deletion_agrees_with_quantus_pixel_flipping(linear: Model) -> None:
    """quantus 0.6.0's PixelFlipping is the deletion curve (points 1..steps) when its
    perturbation puts the blurred copy's values in, ``H * W / steps`` pixels a step, and the
    map has no ties (its numpy argsort is not stable)."""
    quantus = pytest.importorskip("quantus")
    import numpy as np

    x = key_images(3)
    maps = key_weights(WEIGHTS) + 1e-3 * torch.rand(3, SIDE, SIDE, generator=torch.Generator())
    target = resolved(linear, x)
    steps = 16
    ours = deletion_insertion(linear, Inputs.of(x), maps, target, steps=steps).deletion
    flat_blur = blurred(x).reshape(3, -1).numpy()

    def to_blur(arr: np.ndarray, indices: np.ndarray, **_: object) -> np.ndarray:
        out = arr.copy()
        rows = np.arange(arr.shape[0])[:, None]
        out[rows, indices] = flat_blur[rows, indices]
        return out

    metric = quantus.PixelFlipping(
        features_in_step=HW // steps,
        perturb_func=to_blur,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    theirs = metric(
        model=linear.module.eval(),
        x_batch=x.numpy(),
        y_batch=target.class_indices.numpy(),
        a_batch=maps[:, None].numpy(),
        device="cpu",
        softmax=True,
        channel_first=True,
    )
    assert torch.allclose(ours[:, 1:], torch.tensor(theirs, dtype=torch.float32), atol=1e-5)


def test_random_order_removes_blobs_not_speckle() -> None:
    """The random order is a seeded permutation whose first pixels form contiguous regions,
    as a map's order does (a pixel permutation would scatter them)."""
    h, w = 48, 64
    order = random_order(h, w, 7)
    assert sorted(order.tolist()) == list(range(h * w))
    assert torch.equal(order, random_order(h, w, 7))
    assert not torch.equal(order, random_order(h, w, 8))
    for o in (order, torch.randperm(h * w, generator=torch.Generator().manual_seed(7))):
        top = torch.zeros(h * w, dtype=torch.bool)
        top[o[: h * w // 10]] = True
        top = top.view(h, w)
        right = (top[:, :-1] & top[:, 1:]).sum() / top[:, :-1].sum()
        contiguous = float(right)
        if o is order:
            assert contiguous > 0.6  # a neighbour of a removed pixel is mostly removed too
        else:
            assert contiguous < 0.2  # speckle: about 10%
