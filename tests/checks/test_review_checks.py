"""An outside review of the trust checks from Python (``seewhy.check`` and its parts): one test
per defect found. Each failed on the code as reviewed and passes once the defect is fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import seewhy
from seewhy.checks.verdict import Thresholds
from seewhy.core.errors import SeewhyError, UsageError
from seewhy.core.preprocess import Preprocess

FAST = {"steps": 5, "randomization": "none"}


def _cnn(classes: int = 3, seed: int = 0) -> nn.Sequential:
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


class _PeakAt(nn.Module):
    """A linear classifier over the pixels whose gradient (so its saliency map) peaks at one
    pixel ``(row, col)`` of a ``side x side`` image; a faint ramp elsewhere keeps the map from
    being flat."""

    def __init__(self, side: int, row: int, col: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * side * side, 2)
        with torch.no_grad():
            w = torch.linspace(0.0, 0.01, side * side).view(side, side).repeat(3, 1, 1)
            w[:, row, col] = 1.0
            self.fc.weight.copy_(torch.stack([w.flatten(), -w.flatten()]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_pointing_game_tolerance_is_15_px_not_a_31_px_square() -> None:
    """SPEC 6: a peak counts as a hit when it lies within 15 px of the mask at 224 px, as
    Zhang et al. (TorchRay's PointingGame: a disk, distance^2 < 15^2) count it. A peak 12 px
    right of and 12 px below the mask's nearest pixel is 17 px away: a miss. The check grows
    the mask by a 31 x 31 square instead, so it counts that peak as a hit (pointing_game 1.0),
    while a peak 13 px straight right (a true hit) and one 17 px straight right (a miss) are
    told apart correctly."""
    side = 224
    mask = torch.zeros(side, side, dtype=torch.bool)
    mask[90:101, 90:101] = True  # nearest pixel to the peaks below: (100, 100)
    x = torch.ones(1, 3, side, side)
    found = {}
    for name, (row, col) in {
        "diagonal_17px": (112, 112),
        "right_13px": (100, 113),
        "right_17px": (100, 117),
    }.items():
        model = seewhy.Model(_PeakAt(side, row, col), labels=["a", "b"])
        result = seewhy.check(model, x, ["saliency"], masks=[mask], **FAST)[0]
        found[name] = result.figures["pointing_game"]
    assert found["right_13px"] == 1.0
    assert found["right_17px"] == 0.0
    assert found["diagonal_17px"] == 0.0, (
        "a peak 17 px (12 px right, 12 px down) from the mask counts as a hit: the tolerance "
        "is a square of side 31 px, not 15 px as SPEC section 6 and Zhang et al. have it"
    )


def test_thresholds_file_with_flat_keys_and_a_thresholds_table_ignores_none(
    tmp_path: Path,
) -> None:
    """SPEC 6: thresholds are read "flat or under [thresholds]". A file that has both (a flat
    key, then a [thresholds] table) silently drops the flat key: the user's
    corner_share_warn = 0.9 is ignored and the verdict still warns at 25%. Either both apply
    or the file is refused with a reason; never a setting silently dropped."""
    path = tmp_path / "strict.toml"
    path.write_text("corner_share_warn = 0.9\n\n[thresholds]\nflat_share_warn = 0.5\n")
    try:
        loaded = Thresholds.load(path)
    except UsageError as exc:
        assert "corner_share_warn" in str(exc) or "[thresholds]" in str(exc)
        return
    assert loaded.flat_share_warn == 0.5
    assert loaded.corner_share_warn == 0.9, "corner_share_warn = 0.9 was silently ignored"


def test_check_refuses_a_bad_batch_size_with_a_reason() -> None:
    """``seewhy.explain(..., batch_size=0)`` says "batch_size must be an integer >= 1, got 0";
    ``seewhy.check`` with the same argument dies in ``range()`` (ValueError: range() arg 3
    must not be zero), and batch_size=-1 in torch.cat (an empty list)."""
    for bad in (0, -1):
        with pytest.raises(UsageError, match="batch_size"):
            seewhy.check(_cnn(), _images(), ["saliency"], batch_size=bad, **FAST)


def test_check_refuses_a_mask_file_of_another_size_than_its_image(tmp_path: Path) -> None:
    """``seewhy check img.png --mask small.png`` refuses a 20x20 mask for a 48x40 image
    ("mask ... is 20x20 but its image is 48x40"); ``seewhy.check(model, ["img.png"],
    masks=["small.png"])`` stretches the mask over the image instead (mask_area 0.25 for a
    mask that marks a corner of the image), so the localization figures describe a region the
    user never marked."""
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    small = np.zeros((20, 20), dtype=np.uint8)
    small[:10, :10] = 255
    Image.fromarray(small).save(tmp_path / "small.png")
    model = seewhy.Model(_cnn(2), labels=["a", "b"], preprocess=Preprocess(size=(32, 32)))
    with pytest.raises(SeewhyError, match="20x20"):
        seewhy.check(
            model,
            [str(tmp_path / "img.png")],
            ["saliency"],
            masks=[str(tmp_path / "small.png")],
            **FAST,
        )


class _SqrtScale(nn.Module):
    """A classifier with a learned positive scale, used through its square root (a
    temperature): the trained model is finite, a re-initialised copy may draw a negative scale
    and give NaN."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.tensor([4.0, 4.0, 4.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3))) * torch.sqrt(self.scale)


def test_randomized_copy_with_nan_output_does_not_stop_the_check() -> None:
    """checks/randomization.py: "A sample whose map is NaN (in the trained or the randomized
    model) gets NaN similarity." A randomized copy whose output is NaN instead raises
    ModelOutputError ("check the checkpoint and the input preprocessing", about a model that
    is fine) out of seewhy.check, and no figure at all comes back: faithfulness, flags and
    verdict are lost with it."""
    results = seewhy.check(_SqrtScale(), _images(), ["saliency"], steps=5)
    assert len(results) == 1
    r = results[0]
    assert r.verdict in ("pass", "warn", "fail")
    assert isinstance(r.figures["deletion_auc"], float)
    assert isinstance(r.figures["border_share"], float)
    steps = r.curves["randomization"]
    assert steps and steps[0]["layer"] == "fc"


def _biased(winner: int) -> nn.Module:
    """The same small CNN, its head biased so that it always predicts class ``winner``."""
    net = _cnn(2)
    head = net[4]
    assert isinstance(head, nn.Linear)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[winner] = 10.0
    return net


def test_model_agreement_only_over_samples_where_both_predict_the_same_class() -> None:
    """SPEC 6: model_agreement is the mean rank correlation "over the samples where both
    predict the same class". Model a predicts class 0 on every sample, model b class 1: there
    is no such sample, so no model_agreement (as with target "pred"). With target=0 (or 1)
    seewhy.check compares them on every sample anyway ({'b': 1.0}): it takes the explained
    class for the prediction. (`seewhy check --target 0` reads the real predictions.)"""
    a = seewhy.Model(_biased(0), name="a", labels=["x", "y"])
    b = seewhy.Model(_biased(1), name="b", labels=["x", "y"])
    batch = _images(3)
    assert a.module(batch).argmax(1).tolist() == [0, 0, 0]
    assert b.module(batch).argmax(1).tolist() == [1, 1, 1]
    for target in (0, 1):
        results = seewhy.check([a, b], batch, ["saliency"], target=target, **FAST)
        for r in results:
            other = "b" if r.model == "a" else "a"
            agreement = r.figures.get("model_agreement") or {}
            assert agreement.get(other) is None, (target, r.model, agreement)
