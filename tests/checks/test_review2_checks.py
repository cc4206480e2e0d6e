"""A second outside review of the trust checks from Python (``seewhy.check``): one test per
defect found. Each failed on the code as reviewed and passes once the defect is fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import seewhy
from seewhy.core.errors import SeewhyError, UsageError
from seewhy.core.preprocess import Preprocess

FAST = {"steps": 5, "randomization": "none"}


def _cnn(classes: int = 2, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, classes),
    ).eval()


def _images(n: int = 2, side: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(3))


class _Fusion(nn.Module):
    """forward(image, features) -> price [B]: an image+tabular regressor."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus())
        self.mlp = nn.Linear(2, 4)
        self.head = nn.Linear(8, 1)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        a = self.cnn(image).mean((2, 3))
        return self.head(torch.cat([a, self.mlp(features)], dim=1))[:, 0]


def _files(tmp_path: Path) -> tuple[str, str]:
    """A 48x40 image and a 20x20 mask marking its top-left 10x10 pixels."""
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    small = np.zeros((20, 20), dtype=np.uint8)
    small[:10, :10] = 255
    Image.fromarray(small).save(tmp_path / "small.png")
    return str(tmp_path / "img.png"), str(tmp_path / "small.png")


def test_mask_file_of_another_size_is_refused_for_named_and_single_inputs(
    tmp_path: Path,
) -> None:
    """The first review's fix: "a mask file must have its image's size from Python too" —
    seewhy.check(model, ["img.png"], masks=["small.png"]) now refuses a 20x20 mask for a
    48x40 image. The same call with the image given as a single path ("img.png"), or named
    ({"image": ["img.png"]}, the only way to give an image+tabular model its features)
    stretches the 20x20 mask over the whole image again (mask_area 0.25 for a mask that
    marks a corner), so its localization figures describe a region nobody marked."""
    image, mask = _files(tmp_path)
    plain = seewhy.Model(_cnn(), labels=["a", "b"], preprocess=Preprocess(size=(32, 32)))
    fusion = seewhy.Model(
        _Fusion(),
        name="fusion",
        task="regression",
        labels=["price"],
        num_outputs=1,
        preprocess=Preprocess(size=(16, 16)),
        inputs={"tabular": {"arg": "features", "columns": ["sqft", "grade"]}},
    )
    cases = {
        "single path": (plain, image),
        "named image": (plain, {"image": [image]}),
        "image+tabular": (fusion, {"image": [image], "tabular": [{"sqft": 1.0, "grade": 2.0}]}),
    }
    for what, (model, inputs) in cases.items():
        with pytest.raises(SeewhyError, match="20x20"):
            seewhy.check(model, inputs, ["saliency"], masks=[mask], **FAST)
            pytest.fail(f"{what}: the 20x20 mask was stretched over the 48x40 image")


def test_models_named_a_a_and_a_2_get_three_names() -> None:
    """seewhy.check([a, a, a-2]) names its results with unique_names: 'a', 'a-2', 'a-2' —
    two results under one name, and the third model's maps overwrite the second's in the
    comparison, so 'a' is compared with one of them only. `seewhy check` (load_models ->
    unique_ids) names the same three models 'a', 'a-3', 'a-2'. Every model must get its own
    name, and every model is compared with both others."""
    models = [  # one set of weights: they predict alike, so every pair is compared
        seewhy.Model(_cnn(seed=0), name="a", labels=["x", "y"]),
        seewhy.Model(_cnn(seed=0), name="a", labels=["x", "y"]),
        seewhy.Model(_cnn(seed=0), name="a-2", labels=["x", "y"]),
    ]
    results = seewhy.check(models, _images(), ["saliency"], **FAST)
    names = [r.model for r in results]
    assert names == ["a", "a-3", "a-2"]
    for r in results:
        assert set(r.figures["model_agreement"]) == set(names) - {r.model}, r.figures
        assert all(v == pytest.approx(1.0) for v in r.figures["model_agreement"].values())


class _Energy(nn.Module):
    """Scores the image's mean squared value: its saliency at a pixel depends on that pixel
    alone, so two such models agree wherever they look at the same place of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x**2).mean((1, 2, 3))[:, None] * self.w


def test_models_that_crop_differently_are_compared_on_the_same_place(tmp_path: Path) -> None:
    """Two identical models, one framing the image whole (crop_pct 1.0), one its centre
    (crop_pct 0.5), given the same image files. `seewhy check -m full.toml -m centre.toml`
    compares their maps where the frames overlap (jobs/compare._common_frame): model_agreement
    0.82. seewhy.check([full, centre], paths) compares the two 32x32 maps pixel by pixel as if
    they showed the same place (0.19, below model_agreement_warn 0.2: "disagrees with model"),
    though they show different parts of the image. The API must compare them in a common frame
    as the CLI does."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        arr = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        arr[10:20, 10 + 10 * i : 25 + 10 * i] = 255
        Image.fromarray(arr).save(tmp_path / f"img{i}.png")
        paths.append(str(tmp_path / f"img{i}.png"))
    norm = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    full = seewhy.Model(
        _Energy(), name="full", labels=["n", "f"], preprocess=Preprocess(size=(32, 32), **norm)
    )
    centre = seewhy.Model(
        _Energy(),
        name="centre",
        labels=["n", "f"],
        preprocess=Preprocess(size=(32, 32), crop_pct=0.5, **norm),
    )
    results = seewhy.check([full, centre], paths, ["saliency"], **FAST)
    for r in results:
        other = "centre" if r.model == "full" else "full"
        assert r.figures["model_agreement"][other] > 0.6, r.figures["model_agreement"]
        assert "model_disagreement" not in r.flags, r.reasons


class _Decisive(nn.Module):
    """A linear two-class model that reads a checkerboard in the top-left quarter of the image
    only: its saliency marks exactly the pixels that matter, and the blurred copy (which
    smooths the checkerboard away) brings its probability back to about 0.5."""

    def __init__(self, side: int = 16) -> None:
        super().__init__()
        self.register_buffer("w", _checkerboard(side).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x.flatten(1) * self.w).sum(1, keepdim=True) / self.w.abs().sum()
        return torch.cat([s, -s], dim=1)


def _checkerboard(side: int) -> torch.Tensor:
    """+1/-1 on a checkerboard in the top-left quarter of a ``3 x side x side`` image, 0
    elsewhere."""
    w = torch.zeros(3, side, side)
    q = side // 2
    rows, cols = torch.meshgrid(torch.arange(q), torch.arange(q), indexing="ij")
    w[:, :q, :q] = ((rows + cols) % 2 * 2 - 1).float()
    return w


def test_one_step_curves_do_not_fail_faithfulness() -> None:
    """steps=1 gives two-point curves: the image and its blurred copy, the same for every
    pixel order, so deletion_gain and insertion_gain are 0 by construction and the verdict
    says "fails faithfulness: no better than a random order" about any map, a perfect one
    included (it passes at steps=5). A curve of one step cannot tell orders apart: refuse
    steps < 2 (as steps < 1 is refused) or leave faithfulness unjudged, but never fail a map
    on it."""
    x = torch.stack([3.0 * _checkerboard(16), 2.5 * _checkerboard(16)])
    model = seewhy.Model(_Decisive(), labels=["a", "b"])
    good = seewhy.check(model, x, ["saliency"], steps=5, randomization="none")[0]
    assert good.figures["faithfulness_samples"] == 2
    assert "faithfulness" not in good.flags, good.reasons  # the same map passes at 5 steps
    try:
        result = seewhy.check(model, x, ["saliency"], steps=1, randomization="none")[0]
    except UsageError as exc:
        assert "steps" in str(exc)
        return
    assert "faithfulness" not in result.flags, result.reasons
