"""The model-parameter randomization test (Adebayo et al. 2018) and its similarity measures."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
import torchvision
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from model_state import assert_same, snapshot
from seewhy.api import explain
from seewhy.checks.agreement import rank_correlation
from seewhy.checks.randomization import randomizable_blocks, randomization, randomize_
from seewhy.checks.similarity import rank_correlations, ssim
from seewhy.core.errors import UsageError
from seewhy.core.model import Model
from seewhy.core.targets import SampleClasses

# -- similarity ----------------------------------------------------------------------------------


def unit(m: torch.Tensor) -> np.ndarray:
    x = m.double().numpy()
    return (x - x.min()) / (x.max() - x.min())


def reference_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Loop oracle from Wang et al. 2004: per position where the (clipped) 2-D Gaussian window
    fits, weighted means, population variances and covariance; the mean of the SSIM map."""
    x, y = unit(a), unit(b)
    h, w = x.shape

    def taps(n: int) -> np.ndarray:
        r = min(5, (n - 1) // 2)
        t = np.exp(-0.5 * np.arange(-r, r + 1) ** 2 / 1.5**2)
        return t / t.sum()

    win = np.outer(taps(h), taps(w))
    kh, kw = win.shape
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            px, py = x[i : i + kh, j : j + kw], y[i : i + kh, j : j + kw]
            mx, my = (win * px).sum(), (win * py).sum()
            vx = (win * (px - mx) ** 2).sum()
            vy = (win * (py - my) ** 2).sum()
            cxy = (win * (px - mx) * (py - my)).sum()
            values.append(
                ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(values))


def noisy_pair(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g).cumsum(-1)  # some structure, not pure noise
    return 3 * a - 1, a + 0.8 * torch.rand(shape, generator=g) * a.mean()


def test_ssim_equals_skimage_with_wang_settings() -> None:
    a, b = noisy_pair((4, 40, 33), seed=0)
    ours = ssim(a, b)
    theirs = [
        structural_similarity(
            unit(a[i]),
            unit(b[i]),
            data_range=1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(4)
    ]
    assert ours.tolist() == pytest.approx(theirs, abs=1e-10)
    assert min(theirs) > 0.3 and max(theirs) < 0.99  # a discriminating pair, not trivially 1
    # the min-max normalisation makes SSIM blind to a positive affine change of either map
    assert ssim(5 * a.double() + 2, b).tolist() == pytest.approx(ours.tolist(), abs=1e-12)


def test_ssim_of_small_maps_uses_a_clipped_window() -> None:
    a, b = noisy_pair((3, 7, 12), seed=1)  # 7 rows < 11 taps: 7 rows of the window are used
    assert ssim(a, b).tolist() == pytest.approx(
        [reference_ssim(a[i], b[i]) for i in range(3)], abs=1e-12
    )
    c, d = noisy_pair((2, 15, 14), seed=2)  # the full 11 x 11 window: the same oracle
    assert ssim(c, d).tolist() == pytest.approx(
        [reference_ssim(c[i], d[i]) for i in range(2)], abs=1e-12
    )


def test_ssim_of_identical_constant_and_nan_maps() -> None:
    a, _ = noisy_pair((3, 20, 20), seed=3)
    assert ssim(a, a).tolist() == [1.0, 1.0, 1.0]
    flat = torch.full((1, 9, 9), 4.0)
    assert ssim(flat, flat).tolist() == [1.0]  # both all zeros after normalisation
    broken = a.clone()
    broken[1, 3, 4] = math.nan
    out = ssim(a, broken)
    assert out[0].item() == 1.0 and math.isnan(out[1].item()) and out[2].item() == 1.0
    with pytest.raises(UsageError, match="one shape"):
        ssim(a, a[:, :10])


def test_rank_correlations_equal_scipy_and_the_per_map_function() -> None:
    a, b = noisy_pair((5, 16, 16), seed=4)
    a, b = (a * 4).round(), (b * 4).round()  # many ties
    b[2] = 7.0  # a constant map: 0, as agreement.rank_correlation
    ours = rank_correlations(a, b)
    per_map = [rank_correlation(a[i], b[i]) for i in range(5)]
    assert ours.tolist() == pytest.approx(per_map, abs=1e-12)
    assert ours[2].item() == 0.0  # scipy: NaN and a warning
    for i in (0, 1, 3, 4):
        assert ours[i].item() == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten())[0])
    assert min(per_map[:2] + per_map[3:]) > -0.5 and max(per_map) < 0.99
    assert rank_correlations(a, a).tolist() == [1.0] * 5
    assert rank_correlations(a, -a).tolist() == pytest.approx([-1.0] * 5, abs=1e-12)
    a[4, 0, 0] = math.inf
    assert math.isnan(rank_correlations(a, b)[4].item())


# -- blocks --------------------------------------------------------------------------------------


def test_blocks_of_resnet18_keep_its_stages_whole() -> None:
    resnet = torchvision.models.resnet18(weights=None)
    assert randomizable_blocks(resnet) == [
        "fc",
        "layer4",
        "layer3",
        "layer2",
        "layer1",
        "bn1",
        "conv1",
    ]
    layers = randomizable_blocks(resnet, "layers")
    own = [m for m in resnet.modules() if len(list(m.parameters(recurse=False))) > 0]
    assert len(layers) == len(own) == 41  # conv1, bn1, 8 blocks x 4, 3 downsamples x 2, fc
    assert layers[0] == "fc" and layers[-1] == "conv1" and layers[1] == "layer4.1.bn2"
    with pytest.raises(UsageError, match="choose 'blocks' or 'layers'"):
        randomizable_blocks(resnet, "modules")


class Stage(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class TimmLike(nn.Module):
    """timm's layout: a stem, one ``stages`` Sequential, a parameterless pool, a head; and a
    parameter of the model's own (as a ViT's ``pos_embed``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 1, 1))
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stages = nn.Sequential(Stage(4), nn.Identity(), Stage(4), Stage(4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stages(self.stem(x) + self.pos_embed)).flatten(1))


def test_blocks_expand_a_single_trunk_of_stages() -> None:
    assert randomizable_blocks(TimmLike()) == [
        "head",
        "stages.3",
        "stages.2",
        "stages.0",
        "stem",
        "",  # the model's own parameters, at the input end
    ]
    import timm

    convnext = timm.create_model("convnext_atto", pretrained=False)
    assert randomizable_blocks(convnext) == [
        "head",
        "stages.3",
        "stages.2",
        "stages.1",
        "stages.0",
        "stem.1",
        "stem.0",
    ]
    mobilenet = torchvision.models.mobilenet_v3_small(weights=None)
    blocks = randomizable_blocks(mobilenet)
    assert blocks[:2] == ["classifier.3", "classifier.0"]
    assert blocks[2:] == [f"features.{i}" for i in range(12, -1, -1)]


# -- randomize_ ----------------------------------------------------------------------------------


class Scaled(nn.Module):
    """A parameter with no reset_parameters: re-initialised with noise of its own std."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(-3.0, 3.0, 4000))
        self.norm = nn.BatchNorm1d(3)


def test_randomize_is_seeded_resets_norms_and_leaves_the_global_rng() -> None:
    base = Scaled()
    with torch.no_grad():
        base.norm.weight.fill_(2.0)
        base.norm.running_mean.fill_(5.0)
    std = float(base.gain.detach().std())
    rng = torch.get_rng_state()
    first, second, other = Scaled(), Scaled(), Scaled()
    for m, seed in ((first, 0), (second, 0), (other, 1)):
        m.load_state_dict(base.state_dict())
        randomize_(m, torch.Generator().manual_seed(seed))
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(first.gain, second.gain) and not torch.equal(first.gain, other.gain)
    assert float(first.gain.detach().mean()) == pytest.approx(0.0, abs=0.1)
    assert float(first.gain.detach().std()) == pytest.approx(std, rel=0.05)
    assert first.norm.weight.tolist() == [1.0] * 3 and first.norm.running_mean.tolist() == [0.0] * 3
    # recurse=False ("layers", and the model's own parameters): its own tensors only, and a
    # parent's reset_parameters (which may reset its children) is not used
    model, trained = TimmLike(), TimmLike()
    trained.load_state_dict(model.state_dict())
    randomize_(model, torch.Generator().manual_seed(0), recurse=False)
    changed = [
        k for k, v in model.state_dict().items() if not torch.equal(v, trained.state_dict()[k])
    ]
    assert changed == ["pos_embed"]
    assert float(model.pos_embed.detach().std()) == pytest.approx(1.0, abs=0.9)  # std 0 -> 1


# -- the check on models -------------------------------------------------------------------------


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Edge magnitude of the channel mean [B, H, W]: an "explanation" blind to the model."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gray = x.mean(dim=1, keepdim=True)
    gx = nn.functional.conv2d(gray, kx.view(1, 1, 3, 3), padding=1)
    gy = nn.functional.conv2d(gray, kx.t().reshape(1, 1, 3, 3), padding=1)
    return (gx.square() + gy.square()).sqrt()[:, 0]


def squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 32 x 32 images with a bright 8 x 8 square: class 0 on the left, 1 on the right."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    rows = torch.randint(2, 22, (n,), generator=g)
    cols = torch.randint(0, 7, (n,), generator=g) + 2 + 17 * y
    for i in range(n):
        x[i, :, rows[i] : rows[i] + 8, cols[i] : cols[i] + 8] += 1.5
    return x, y


class TinyCNN(nn.Module):
    """Three conv blocks (one with batch-norm), global pool, a linear head; ``unused`` is a
    parameterised module that forward never calls (registered first: randomized last)."""

    def __init__(self, unused: bool = False) -> None:
        super().__init__()
        if unused:
            self.unused = nn.Linear(4, 4)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


STEPS = ["head", "features.7", "features.4", "features.1", "features.0"]


@pytest.fixture(scope="module")
def trained() -> TinyCNN:
    """TinyCNN (with ``unused``) trained for 40 Adam steps: 100% on held-out squares.

    One thread: about 1 s, and the same weights whatever the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = TinyCNN(unused=True)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(40):
            x, y = squares(48, seed=100 + step)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    x, y = squares(200, seed=7)
    with torch.no_grad():
        assert float((model(x).argmax(1) == y).float().mean()) >= 0.95
    return model


def gradcam_of(x: torch.Tensor, y: torch.Tensor) -> Callable[[Model], list[torch.Tensor]]:
    target = SampleClasses(per_sample=tuple(y.tolist()))  # the true class, at every step
    return lambda m: [e.map for e in explain(m, x, methods=["gradcam", "gradcam++"], target=target)]


def test_a_model_blind_map_never_changes() -> None:
    x, _ = squares(4, seed=1)
    model = Model(module=TinyCNN())
    for mode in ("cascade", "independent"):
        (result,) = randomization(model, lambda m: [sobel(x)], mode=mode)
        assert result.layers == STEPS
        assert result.rank_correlation.tolist() == [[1.0] * 4] * 5
        assert result.ssim.tolist() == [[1.0] * 4] * 5
        assert result.similarity().tolist() == [1.0] * 4
        assert result.collapse_layer() is None


def test_gradcam_collapses_under_cascading_randomization(trained: TinyCNN) -> None:
    x, y = squares(16, seed=3)
    model = Model(module=trained)
    lines: list[str] = []
    results = randomization(model, gradcam_of(x, y), seed=0, progress=lines.append)
    assert lines[0] == "randomization cascade 1/6: head" and len(lines) == 6
    gradcam, plusplus = results
    assert gradcam.layers == [*STEPS, "unused"]
    # observed (seed 0, mean over 16 samples, steps head .. features.0, unused):
    # Grad-CAM rank correlation 0.02 0.06 0.09 0.07 0.19 0.19 (the head's weights are its
    # channel weights), SSIM 0.09 .. 0.10; Grad-CAM++ 0.59 0.47 0.39 0.36 0.38 0.38, SSIM
    # 0.52 .. 0.20
    ranks = [gradcam.rank_correlation.mean(dim=1), plusplus.rank_correlation.mean(dim=1)]
    assert float(ranks[0].max()) < 0.3 and float(gradcam.similarity().mean()) < 0.3
    assert float(ranks[1][0]) > 0.5 > float(ranks[1][-1]) and float(ranks[1][1:].max()) < 0.5
    assert float(gradcam.ssim[-1].mean()) < 0.15 and float(plusplus.ssim[-1].mean()) < 0.3
    assert torch.equal(gradcam.similarity(), gradcam.rank_correlation[-1])
    assert gradcam.collapse_layer() == "head" and plusplus.collapse_layer() == "features.7"
    assert plusplus.collapse_layer(threshold=0.9) == "head"
    assert gradcam.collapse_layer(threshold=-0.5) is None
    again = randomization(model, gradcam_of(x, y), seed=0)
    other = randomization(model, gradcam_of(x, y), seed=1)
    for a, b in zip(results, again, strict=True):
        assert torch.equal(a.rank_correlation, b.rank_correlation) and torch.equal(a.ssim, b.ssim)
    for a, b in zip(results, other, strict=True):
        assert not torch.equal(a.rank_correlation, b.rank_correlation)
    assert (gradcam.rank_correlation - other[0].rank_correlation).abs().max() > 0.05


def test_independent_steps_differ_by_their_own_block_only(trained: TinyCNN) -> None:
    x, y = squares(6, seed=4)
    model = Model(module=trained)
    cascade = randomization(model, gradcam_of(x, y), granularity="blocks", seed=2)
    (gradcam, _) = randomization(model, gradcam_of(x, y), mode="independent", seed=2)
    assert gradcam.mode == "independent" and gradcam.layers == [*STEPS, "unused"]
    # every block before it was randomized and restored: the unused module's step is the
    # trained model exactly
    assert gradcam.rank_correlation[-1].tolist() == [1.0] * 6
    assert gradcam.ssim[-1].tolist() == [1.0] * 6
    assert float(gradcam.rank_correlation[1].mean()) < 0.8  # the last conv, alone
    # the head is the first step in both modes, randomized with the same draws
    assert torch.equal(gradcam.rank_correlation[0], cascade[0].rank_correlation[0])
    # cascade: the unused step changes nothing after features.0
    assert torch.equal(cascade[0].rank_correlation[-1], cascade[0].rank_correlation[-2])


def test_the_users_model_is_left_as_it_was() -> None:
    torch.manual_seed(1)
    module = TinyCNN().train()
    x, y = squares(4, seed=5)
    nn.functional.cross_entropy(module(x), y).backward()  # .grad set, running stats moved
    before = snapshot(module)
    model = Model(module=module)
    for mode in ("cascade", "independent"):
        randomization(model, gradcam_of(x, y), mode=mode, granularity="layers")
    assert_same(before, snapshot(module))
    assert module.training and all(p.requires_grad for p in module.parameters())

    calls = []

    def failing(m: Model) -> Sequence[torch.Tensor]:
        calls.append(m)
        if len(calls) == 3:
            raise RuntimeError("out of memory")
        return gradcam_of(x, y)(m)

    with pytest.raises(RuntimeError, match="out of memory"):
        randomization(model, failing)
    assert calls[0] is model and calls[1].module is not module
    assert_same(before, snapshot(module))


def test_maps_of_runs_once_per_step_and_once_for_the_trained_model() -> None:
    x, _ = squares(2, seed=6)
    model = Model(module=TinyCNN(unused=True))
    calls: list[Model] = []

    def maps_of(m: Model) -> list[torch.Tensor]:
        calls.append(m)
        return [sobel(x), sobel(x)]

    results = randomization(model, maps_of, granularity="layers")
    assert (
        len(results) == 2 and len(results[0].layers) == 6
    )  # unused, 3 convs, the batch-norm, head
    assert len(calls) == 6 + 1
    assert sum(c is model for c in calls) == 1
    calls.clear()
    randomization(model, maps_of, trained=[sobel(x), sobel(x)])
    assert len(calls) == 6  # blocks: head, features.7/.4/.1/.0, unused


class Locked(TinyCNN):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


def test_refusals_say_what_to_do() -> None:
    x, _ = squares(2, seed=6)
    model = Model(module=TinyCNN())
    with pytest.raises(UsageError, match="choose 'cascade' or 'independent'"):
        randomization(model, lambda m: [sobel(x)], mode="each")
    with pytest.raises(UsageError, match="cannot be deep-copied"):
        randomization(Model(module=Locked()), lambda m: [sobel(x)])
    with pytest.raises(UsageError, match="no parameters to randomize"):
        randomization(Model(module=nn.ReLU()), lambda m: [sobel(x)])
    answers = iter([[sobel(x), sobel(x)], [sobel(x)]])
    with pytest.raises(UsageError, match="returned 1 maps after randomizing 'head'"):
        randomization(model, lambda m: next(answers))


def test_a_cached_reference_gives_the_same_figures() -> None:
    """``Reference`` (the trained maps' ranks and SSIM statistics computed once) equals
    rank_correlations and ssim pair by pair, ties, constant and NaN maps included."""
    from seewhy.checks.similarity import Reference, rank_correlations, ssim

    gen = torch.Generator().manual_seed(3)
    a = torch.rand(5, 20, 24, generator=gen, dtype=torch.float64)
    a[1] = (a[1] * 4).round()  # ties
    a[2] = 0.7  # constant
    a[3, 0, 0] = float("nan")
    ref = Reference(a)
    for k in range(3):
        b = torch.rand(5, 20, 24, generator=gen, dtype=torch.float64)
        b[0] = a[0] + 0.05 * k
        b[4, 3, 3] = float("inf") if k == 2 else b[4, 3, 3]
        for fast, slow in (
            (ref.rank_correlations(b), rank_correlations(a, b)),
            (ref.ssim(b), ssim(a, b)),
        ):
            assert torch.equal(fast.isnan(), slow.isnan())
            assert torch.allclose(fast.nan_to_num(9), slow.nan_to_num(9), atol=1e-12)
