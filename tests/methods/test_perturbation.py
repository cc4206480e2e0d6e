"""Occlusion and RISE: captum's numbers, hand-computed maps, slow reference loops, ground truth,
forward counts, seeds, targets resolved on the clean input, and the model left as found."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seewhy.methods.perturbation as perturbation
from model_state import assert_same, snapshot
from seewhy import explain
from seewhy.core import engine as engine_module
from seewhy.core.errors import MethodNotApplicableError, UsageError
from seewhy.core.inputs import Inputs
from seewhy.core.model import Model
from seewhy.core.targets import ClassTarget, PredictedClass
from seewhy.methods.base import row_seeds
from seewhy.methods.perturbation import RISE, Occlusion
from seewhy.methods.registry import available_methods, create_method

GEN = torch.Generator().manual_seed


def test_both_are_registered_with_their_settings() -> None:
    assert {"occlusion", "rise"} <= set(available_methods())
    occ = create_method("occlusion", window=8, precision="auto")
    assert occ == Occlusion(window=8, precision="auto")
    assert create_method("rise", masks=10).params() == {
        "precision": "float32",
        "masks": 10,
        "grid": 7,
        "p": 0.5,
    }


# -- occlusion -------------------------------------------------------------------------------


def test_default_window_and_stride_scale_with_the_image() -> None:
    occ = Occlusion()
    assert occ.geometry(224, 224) == (32, 16)
    assert occ.geometry(224, 300) == (32, 16)  # the shorter side
    assert occ.geometry(32, 32) == (4, 2)
    assert occ.geometry(7, 9) == (1, 1)
    assert occ.geometry(3, 3) == (1, 1)  # never below one pixel
    assert Occlusion(window=10).geometry(224, 224) == (10, 5)
    assert Occlusion(window=64, stride=48).geometry(32, 40) == (32, 32)  # clipped


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts: one every ``stride`` until a window reaches the edge."""
    out = [0]
    while out[-1] + window < size:
        out.append(out[-1] + stride)
    return out


def occlusion_reference(
    f: nn.Module, x: torch.Tensor, column: int, window: int, stride: int, mean: bool = False
) -> torch.Tensor:
    """Slow occlusion: one forward per window, the change averaged per pixel ``[B, H, W]``."""
    b, _, h, w = x.shape
    total = torch.zeros(b, h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    fill = x.mean(dim=(2, 3), keepdim=True) if mean else torch.zeros(b, x.shape[1], 1, 1)
    with torch.no_grad():
        clean = f(x)[:, column].double()
        for top in _starts(h, window, stride):
            for left in _starts(w, window, stride):
                y = x.clone()
                rows, cols = slice(top, top + window), slice(left, left + window)
                y[:, :, rows, cols] = fill.expand_as(y)[:, :, rows, cols]
                change = clean - f(y)[:, column].double()
                total[:, rows, cols] += change[:, None, None]
                count[rows, cols] += 1
    return (total / count).float()


def linear_model(shape: tuple[int, int, int], classes: int = 2) -> nn.Module:
    c, h, w = shape
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(classes, c * h * w, generator=GEN(3)))
        model[1].bias.copy_(torch.tensor([0.5, -2.0][:classes]))
    return model.eval()


@pytest.mark.parametrize("baseline", ["zeros", "mean"])
def test_occlusion_of_a_linear_model_by_hand(baseline: str) -> None:
    # f = w . x + b, so f(x) - f(occluded) = sum over the window of w * (x - fill): a pixel's
    # attribution is the mean of that over its windows. 10 x 12, window 4, stride 3: rows start
    # at 0, 3, 6 and columns at 0, 3, 6, 9 (the last window cut to 3 columns by the edge).
    x = torch.randn(2, 3, 10, 12, generator=GEN(1))
    model = linear_model((3, 10, 12))
    w = model[1].weight[1].view(3, 10, 12)
    e = Occlusion(window=4, stride=3, baseline=baseline)(model, x, 1)
    fill = x.mean(dim=(2, 3), keepdim=True) if baseline == "mean" else torch.zeros(1)
    contrib = (w * (x - fill)).sum(1).double()  # [B, H, W] per-pixel share of the change
    want = torch.zeros(2, 10, 12, dtype=torch.float64)
    count = torch.zeros(10, 12, dtype=torch.float64)
    for top in (0, 3, 6):
        for left in (0, 3, 6, 9):
            box = (slice(None), slice(top, top + 4), slice(left, left + 4))
            want[box] += contrib[box].sum(dim=(1, 2))[:, None, None]
            count[box[1:]] += 1
    want = (want / count).float()
    torch.testing.assert_close(e.map, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e.raw["image"], want[:, None].expand(2, 3, 10, 12))
    slow = occlusion_reference(model, x, 1, 4, 3, mean=baseline == "mean")
    torch.testing.assert_close(e.map, slow, atol=1e-5, rtol=1e-5)
    assert e.signed and e.input_signed == {"image": True} and e.target == "1"
    assert e.params["window"] == 4 and e.params["stride"] == 3 and e.params["windows"] == 12
    assert e.params["forwards_per_image"] == 13 and e.params["forward_dtype"] == "float32"
    assert e.target_indices is not None and e.target_indices.tolist() == [1, 1]
    assert e.output is not None
    torch.testing.assert_close(e.output, model(x))


@pytest.mark.parametrize("kind", ["class", "regression"])
def test_occlusion_equals_captum(small_cnn: nn.Module, kind: str) -> None:
    from captum.attr import Occlusion as CaptumOcclusion

    with torch.no_grad():  # changes of order 0.1-1, so that the tolerance means something
        small_cnn.fc.weight.mul_(100)
    x = torch.randn(2, 3, 32, 32, generator=GEN(2))
    # window 6, stride 4: 8 starts per side, the last window cut to 4 pixels by the edge
    occ = Occlusion(window=6, stride=4)
    if kind == "class":
        e = occ(small_cnn, x, 2)
        column = 2
    else:
        e = occ(Model(small_cnn, task="regression"), x, "value")
        column = 0
    want = CaptumOcclusion(small_cnn).attribute(
        x, sliding_window_shapes=(3, 6, 6), strides=(3, 4, 4), baselines=0, target=column
    )
    assert e.params["windows"] == 64
    torch.testing.assert_close(e.raw["image"], want, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(e.map, want[:, 0], atol=2e-5, rtol=1e-4)
    assert float(want.abs().max()) > 0.1  # not vacuous
    if kind == "regression":  # -value: what lowers the output, the same map negated
        down = occ(Model(small_cnn, task="regression"), x, "-value")
        assert down.target == "-value"
        torch.testing.assert_close(down.map, -e.map, atol=1e-6, rtol=0)


def test_other_inputs_go_along_with_their_rows() -> None:
    # f(image, scale) = scale * sum(w * image): each row is occluded with its own scale.
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = linear_model((1, 6, 6), classes=1)

        def forward(self, image: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.inner(image) * scale

    model = Model(Scaled().eval(), task="regression")
    x = torch.randn(3, 1, 6, 6, generator=GEN(5))
    scale = torch.tensor([[1.0], [-2.0], [0.5]])
    e = Occlusion(window=3, stride=2)(model, Inputs({"image": x, "scale": scale}), "value")
    plain = occlusion_reference(linear_model((1, 6, 6), classes=1), x, 0, 3, 2)
    torch.testing.assert_close(e.map, plain * scale[:, :, None], atol=1e-5, rtol=1e-5)


def test_occlusion_under_bfloat16_subtracts_scores_of_one_precision(
    small_cnn: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window over a region that is already zero changes nothing: its change must be 0 under
    # bfloat16 too (clean and occluded scores from the same bfloat16 forwards).
    monkeypatch.setattr(engine_module, "bf16_native", lambda device: True)
    x = torch.randn(2, 3, 32, 32, generator=GEN(6))
    x[:, :, :16, :16] = 0
    e = Occlusion(window=8, stride=4, precision="auto")(small_cnn, x, 0)
    exact = Occlusion(window=8, stride=4)(small_cnn, x, 0)
    assert e.params["forward_dtype"] == "bfloat16" and e.params["forwards_per_image"] == 51
    assert float(e.map[:, :8, :8].abs().max()) <= 1e-6  # covered by the zero window only
    corr = torch.corrcoef(torch.stack([e.map.flatten(), exact.map.flatten()]))[0, 1]
    assert float(corr) >= 0.9


# -- RISE ------------------------------------------------------------------------------------


def rise_reference(
    f: nn.Module,
    x: torch.Tensor,
    column: int,
    seed: int,
    masks: int,
    grid: int,
    p: float,
    score: str,
    sign: float = 1.0,
) -> torch.Tensor:
    """Slow RISE of one image ``[C, H, W]``: the documented draws, one mask and forward at a
    time, the paper's sum (centred for regression)."""
    _, h, w = x.shape
    ch, cw = math.ceil(h / grid), math.ceil(w / grid)
    gen = torch.Generator().manual_seed(seed)
    grids = torch.rand((masks, grid, grid), generator=gen) < p
    dy = torch.randint(0, ch, (masks,), generator=gen)
    dx = torch.randint(0, cw, (masks,), generator=gen)
    scores, maps = [], []
    with torch.no_grad():
        for k in range(masks):
            up = F.interpolate(
                grids[k][None, None].float(),
                size=((grid + 1) * ch, (grid + 1) * cw),
                mode="bilinear",
                align_corners=False,
            )[0, 0]
            m = up[int(dy[k]) : int(dy[k]) + h, int(dx[k]) : int(dx[k]) + w]
            out = f((x * m)[None])[0].double()
            if score == "softmax":
                s = torch.softmax(out, 0)[column]
            elif score == "sigmoid":
                s = torch.sigmoid(sign * out[column])
            else:
                s = sign * out[column]
            scores.append(s)
            maps.append(m.double())
    s = torch.stack(scores)
    if score == "value":
        s = s - s.mean()
    stacked = torch.stack(maps)
    return ((s[:, None, None] * stacked).sum(0) / stacked.sum(0)).float()


def TinyCNN(classes: int) -> nn.Module:
    """conv -> batch norm (non-trivial statistics, folded by the engine) -> ReLU -> head."""
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(6)
    with torch.no_grad():
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        norm,
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, classes),
    ).eval()


@pytest.mark.parametrize("score", ["softmax", "sigmoid", "value"])
def test_rise_equals_a_slow_reference(score: str) -> None:
    classes = 3 if score == "softmax" else 1
    module = TinyCNN(classes)
    x = torch.randn(2, 3, 18, 22, generator=GEN(7))  # cells 5 x 6: not a divisor of the sides
    seeds = [11, 4242]
    rise = RISE(masks=48, grid=4, p=0.4)
    if score == "softmax":
        e, column, signs = rise(module, x, ClassTarget(1), seeds=seeds, batch_size=13), 1, [1, 1]
    elif score == "sigmoid":  # a binary classifier: pred is 1 where the logit is > 0
        with torch.no_grad():  # centre the logits: one row positive, one negative
            module[-1].bias -= module(x)[:, 0].mean()
            signs = [1 if float(v) > 0 else -1 for v in module(x)[:, 0]]
        assert sorted(signs) == [-1, 1]
        e, column = rise(module, x, "pred", seeds=seeds, batch_size=13), 0
        assert e.target_indices is not None
        assert e.target_indices.tolist() == [(v + 1) // 2 for v in signs]
    else:
        model = Model(module, task="regression")
        e, column, signs = rise(model, x, "-value", seeds=seeds, batch_size=13), 0, [-1, -1]
    assert e.params["score"] == score and e.params["cell"] == [5, 6]
    assert e.params["forwards_per_image"] == 49
    assert e.signed == (score == "value") and e.input_signed == {"image": score == "value"}
    for i, seed in enumerate(seeds):
        want = rise_reference(module, x[i], column, seed, 48, 4, 0.4, score, signs[i])
        torch.testing.assert_close(e.map[i], want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(e.raw["image"], e.map[:, None].expand(2, 3, 18, 22))


def test_rise_of_a_negated_class_reads_one_minus_its_probability() -> None:
    # map(c) + map(-c) = sum_k (p_k + 1 - p_k) M_k / sum_k M_k = 1 at every pixel.
    module = TinyCNN(3)
    x = torch.randn(2, 3, 16, 16, generator=GEN(14))
    rise = RISE(masks=24, grid=3)
    sums = []
    for cls in (0, 2):
        pos = ClassTarget(cls).resolve(module(x))
        up = rise(module, x, pos, seeds=[1, 2])
        down = rise(module, x, pos.opposite(), seeds=[1, 2])
        assert down.target == f"-{cls}" and down.params["score"] == "softmax"
        sums.append(up.map + down.map)
    for total in sums:
        torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=1e-5)


def test_rise_of_a_model_that_ignores_its_input_is_flat() -> None:
    # The paper's sum_k s_k M_k / (N p) draws the masks' random coverage pattern here, and two
    # unrelated models explained with the same seeds then "agree" through it (an outside review
    # measured a rank correlation of 0.99995). E[s | pixel kept] is the constant itself.
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(x.shape[0], 3) + 0 * x.mean()

    e = RISE(masks=30, grid=4)(Constant(), torch.randn(2, 3, 16, 16, generator=GEN(3)), 0)
    want = torch.softmax(torch.tensor([0.3, -0.2, 0.1]), 0)[0]
    torch.testing.assert_close(e.map, torch.full_like(e.map, float(want)), atol=1e-6, rtol=1e-6)


class RegionMean(nn.Module):
    """Output: the mean of the rows 4..9, columns 14..21 of the image (the ground truth)."""

    def __init__(self, classifier: bool = False) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, 4:10, 14:22].mean(dim=(1, 2, 3))
        if self.classifier:  # logits [8 (s - 0.35), 0]: the class-0 probability rises with s
            return torch.stack([8 * (s - 0.35), torch.zeros_like(s)], dim=1)
        return s[:, None]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_rise_is_highest_in_the_region_the_model_reads(task: str) -> None:
    x = 0.5 + 0.5 * torch.rand(1, 3, 24, 24, generator=GEN(8))  # positive: keeping raises s
    model = Model(RegionMean(classifier=task == "classification"), task=task)
    (e,) = explain(
        model, x, ["rise(masks=600,grid=6)"], target=0 if task != "regression" else "value"
    )
    heat = e.map[0]
    inside = torch.zeros(24, 24, dtype=torch.bool)
    inside[4:10, 14:22] = True
    peak = int(heat.argmax())
    assert inside.flatten()[peak]
    assert float(heat[inside].mean()) > float(heat[~inside].mean()) + 0.5 * float(heat.std())
    if task == "regression":  # centred and signed: -value is the same map negated
        (down,) = explain(model, x, ["rise(masks=600,grid=6)"], target="-value")
        torch.testing.assert_close(down.map, -heat[None], atol=1e-6, rtol=1e-5)
        # what keeping a pixel adds to the expected output: positive over the region, about
        # zero far from it (sampling noise only)
        assert float(heat[inside].min()) > 0
        assert float(heat[:, :6].abs().max()) < 0.25 * float(heat[inside].mean())


def test_rise_batched_equals_per_sample_given_the_sample_ids(small_cnn: nn.Module) -> None:
    x = torch.randn(3, 3, 16, 16, generator=GEN(9))
    ids = ["a", "b", "c"]
    spec = ["rise(masks=32,grid=4)"]
    (together,) = explain(small_cnn, x, spec, sample_ids=ids, seed=7, batch_size=8)
    (chunked,) = explain(small_cnn, x, spec, sample_ids=ids, seed=7, batch_size=2)
    torch.testing.assert_close(chunked.map, together.map, atol=1e-6, rtol=1e-5)
    for i, sid in enumerate(ids):
        (alone,) = explain(small_cnn, x[i : i + 1], spec, sample_ids=[sid], seed=7)
        torch.testing.assert_close(alone.map, together.map[i : i + 1], atol=1e-6, rtol=1e-5)
    # the seed matters: another run seed, other masks
    (other,) = explain(small_cnn, x, spec, sample_ids=ids, seed=8)
    assert float((other.map - together.map).abs().max()) > 1e-3


# -- forwards --------------------------------------------------------------------------------


class Counting(nn.Module):
    """Records each forward's batch size (in a class attribute: the engine's copy shares it)."""

    sizes: ClassVar[list[int]] = []

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Counting.sizes.append(int(x.shape[0]))
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("spec", "per_image"),
    [("occlusion(window=4,stride=2)", 7 * 7), ("rise(masks=64)", 64)],
)
def test_no_forward_exceeds_batch_size_and_none_is_wasted(spec: str, per_image: int) -> None:
    x = torch.randn(2, 3, 16, 16, generator=GEN(10))
    Counting.sizes.clear()
    (e,) = explain(Counting().eval(), x, [spec], batch_size=5)
    sizes = list(Counting.sizes)
    assert max(sizes) <= 5
    # the minimum: each window (mask) of each image needs its own row, plus the clean rows
    assert sum(sizes) == 2 * per_image + 2
    assert len(sizes) == 1 + math.ceil(2 * per_image / 5)  # full chunks
    assert e.params["forwards_per_image"] == per_image + 1


def test_one_clean_pass_and_one_engine_serve_both_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    real = perturbation.ForwardEngine

    class CountedEngine(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(perturbation, "ForwardEngine", CountedEngine)
    x = torch.randn(2, 3, 16, 16, generator=GEN(11))
    Counting.sizes.clear()
    explain(Counting().eval(), x, ["occlusion(window=4,stride=2)", "rise(masks=64)"], batch_size=5)
    assert made == [1]
    assert sum(Counting.sizes) == 2 + 2 * 49 + 2 * 64 and max(Counting.sizes) <= 5


# -- targets ---------------------------------------------------------------------------------

RAMP = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
CLEAN_SUM = float(RAMP.sum())  # 32


class FlipsWhenOccluded(nn.Module):
    """Logit 0: the image's sum; logit 1: 0.9 x the clean ramp's sum. The clean ramp predicts
    class 0; occluding any quadrant (each holds more than a tenth of the sum), or masking the
    ramp, predicts class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1)
        return torch.stack([s, torch.full_like(s, 0.9 * CLEAN_SUM)], dim=1)


def test_occlusion_reads_the_class_picked_on_the_clean_input() -> None:
    model = FlipsWhenOccluded()
    quadrants = [(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8))]
    quadrants += [(slice(4, 8), slice(0, 4)), (slice(4, 8), slice(4, 8))]
    for rows, cols in quadrants:
        y = RAMP.clone()
        y[..., rows, cols] = 0
        assert int(model(y).argmax()) == 1  # re-deciding would read class 1
    (e,) = explain(model, RAMP, ["occlusion(window=4,stride=4)"], target="pred")
    assert e.target_indices is not None and e.target_indices.tolist() == [0]
    want = torch.zeros(8, 8)  # column 0: the change is the occluded quadrant's sum
    for rows, cols in quadrants:
        want[rows, cols] = RAMP[0, 0, rows, cols].sum()
    torch.testing.assert_close(e.map[0], want, atol=1e-5, rtol=1e-5)
    # re-deciding would give clean logit 0 - logit 1 = 3.2 everywhere
    assert float((e.map[0] - 0.1 * CLEAN_SUM).abs().max()) > 1.0


def test_rise_reads_the_class_picked_on_the_clean_input() -> None:
    model = FlipsWhenOccluded()
    (e,) = explain(model, RAMP, ["rise(masks=40,grid=2)"], target=PredictedClass(), seed=3)
    assert e.target_indices is not None and e.target_indices.tolist() == [0]
    (seed,) = row_seeds(3, ["0"])  # explain seeds row 0 from (seed, its id "0")
    want = rise_reference(model, RAMP[0], 0, seed, 40, 2, 0.5, "softmax")
    torch.testing.assert_close(e.map[0], want, atol=1e-6, rtol=1e-5)
    redecided = rise_reference(model, RAMP[0], 1, seed, 40, 2, 0.5, "softmax")
    assert float((e.map[0] - redecided).abs().max()) > 0.05


# -- the model left as found -----------------------------------------------------------------


SPECS = ["occlusion(window=8,stride=4)", "rise(masks=32,grid=4)"]


def test_model_left_as_found(small_cnn: nn.Module) -> None:
    model = small_cnn.train()  # training mode, a frozen weight, a .grad
    model.features[0].weight.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    x = torch.randn(2, 3, 16, 16, generator=GEN(12))
    before = snapshot(model)
    got = explain(model, x, SPECS, batch_size=7)
    assert_same(before, snapshot(model))
    assert model.training
    # and taken in eval mode: equal to the maps of the model in eval mode
    ref = explain(model.eval(), x, SPECS, batch_size=7)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a.map, b.map, atol=1e-6, rtol=1e-5)


class RaisesMidRun(nn.Module):
    """Runs its first forward (the clean pass), then raises on every later one."""

    calls: ClassVar[list[int]] = []

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        RaisesMidRun.calls.append(1)
        if len(RaisesMidRun.calls) > 1:
            raise RuntimeError("boom mid-run")
        return self.fc(self.norm(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("spec", SPECS)
def test_model_left_as_found_when_it_raises_mid_run(spec: str) -> None:
    model = RaisesMidRun().train()
    model.conv.bias.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 3.0)
    before = snapshot(model)
    RaisesMidRun.calls.clear()
    with pytest.raises(RuntimeError, match="boom mid-run"):
        explain(model, torch.randn(2, 3, 16, 16, generator=GEN(13)), [spec])
    assert len(RaisesMidRun.calls) >= 2  # the clean pass ran; a perturbed forward raised
    assert_same(before, snapshot(model))
    assert model.training and model.conv.weight.requires_grad


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Occlusion(window=0), "window must be an integer >= 1"),
        (lambda: Occlusion(window=4, stride=8), "stride 8 is larger than the window 4"),
        (lambda: Occlusion(baseline="blur"), "baseline 'blur'"),
        (lambda: Occlusion(precision="fp8"), "precision 'fp8'"),
        (lambda: RISE(masks=0), "masks must be an integer >= 1"),
        (lambda: RISE(grid=True), "grid must be an integer"),
        (lambda: RISE(p=0), r"p \(the probability"),
        (lambda: RISE(p=1.5), r"in \(0, 1\]"),
        (lambda: RISE(precision="bf16"), "precision 'bf16'"),
    ],
)
def test_bad_settings_say_what_to_do(make: object, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        make()  # type: ignore[operator]


def test_a_batch_without_an_image_grid_is_refused() -> None:
    with pytest.raises(MethodNotApplicableError, match=r"image batch \[B, C, H, W\]"):
        RISE(masks=4)(nn.Linear(4, 2), torch.randn(2, 4))
