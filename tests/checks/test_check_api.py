"""``seewhy.check`` from Python: one pass per randomized copy for a family of methods, the
independent mode, bfloat16 deletion/insertion within 0.01 of float32, several models."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import torch
from torch import nn

import seewhy
from seewhy.core import engine

CALLS = {"forward": 0}
CAMS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"]


class Counted(nn.Module):
    """A small CNN that counts its forwards in a module-level dict (deep copies share it)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CALLS["forward"] += 1
        return self.head(self.features(x))


def images(n: int = 3, side: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(1))


def forwards(methods: list[str], randomization: str) -> int:
    CALLS["forward"] = 0
    seewhy.check(Counted(), images(), methods, steps=3, randomization=randomization)
    return CALLS["forward"]


def test_five_cams_take_one_pass_per_randomized_copy() -> None:
    """The randomization stage costs the same forwards for five gradient CAMs as for one."""
    one = forwards(["gradcam"], "blocks") - forwards(["gradcam"], "none")
    five = forwards(CAMS, "blocks") - forwards(CAMS, "none")
    blocks = 3  # head, features.2, features.0
    assert one == five == blocks  # one batched forward (3 images < batch 8) per copy


def test_independent_mode_and_the_record() -> None:
    x = images()
    cascade, independent = (
        seewhy.check(Counted(), x, ["gradcam"], steps=3, randomization_mode=mode)[0]
        for mode in ("cascade", "independent")
    )
    layers = [c["layer"] for c in cascade.curves["randomization"]]
    assert layers == [c["layer"] for c in independent.curves["randomization"]]
    assert layers == ["head", "features.2", "features.0"]
    # the first step randomizes the head alone in both modes: the same maps
    assert cascade.curves["randomization"][0] == independent.curves["randomization"][0]
    steps = [c["rank_correlation"] for c in independent.curves["randomization"]]
    assert independent.figures["randomization_similarity"] == pytest.approx(
        sum(steps) / len(steps), abs=1e-9
    )
    assert cascade.figures["randomization_similarity"] == pytest.approx(
        cascade.curves["randomization"][-1]["rank_correlation"], abs=1e-9
    )
    assert independent.figures["randomization_mode"] == "independent"
    record = json.loads(json.dumps(cascade.record()))
    assert record["verdict"] == cascade.verdict and record["flags"] == cascade.flags
    with pytest.raises(seewhy.SeewhyError, match="randomization_mode 'both': use cascade or"):
        seewhy.check(Counted(), x, ["gradcam"], randomization_mode="both")


def test_bfloat16_deletion_insertion_within_001_of_float32() -> None:
    """Where bfloat16 is native the curves may run under autocast: AUCs within 0.01."""
    x = images(4, 24)
    exact = seewhy.check(Counted(), x, ["gradcam"], steps=10, randomization="none")[0]
    with mock.patch.object(engine, "bf16_native", return_value=True):
        fast = seewhy.check(
            Counted(), x, ["gradcam"], steps=10, randomization="none", faithfulness_precision="auto"
        )[0]
    for key in ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"):
        assert fast.figures[key] == pytest.approx(exact.figures[key], abs=0.01), key
    assert fast.figures["deletion_auc"] != exact.figures["deletion_auc"]  # it did run bf16


def test_two_models_are_compared_where_they_agree() -> None:
    x = images(4)
    a, b = Counted(), Counted()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.01 * torch.randn_like(p))
    results = seewhy.check([a, b], x, ["gradcam"], steps=3, randomization="none")
    assert [r.model for r in results] == ["Counted", "Counted-2"]  # unique names
    for r in results:
        assert set(r.figures["model_agreement"]) == {"Counted", "Counted-2"} - {r.model}
        other = "Counted-2" if r.model == "Counted" else "Counted"
        assert r.figures["model_agreement"][other] > 0.5


def test_masks_as_a_list_with_none_and_thresholds_as_a_dict() -> None:
    x = images(2)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:8, 4:8] = True
    r = seewhy.check(
        Counted(),
        x,
        ["gradcam"],
        masks=[None, mask],
        thresholds={"flat_share_warn": 0.5},
        steps=3,
        randomization="none",
    )[0]
    assert r.figures["mask_samples"] == 1
    assert r.figures["mask_area"] == pytest.approx(16 / 256)
    assert r.per_sample["mask_area"][0] is None
    with pytest.raises(seewhy.SeewhyError, match="unknown threshold 'flat'"):
        seewhy.check(Counted(), x, ["gradcam"], thresholds={"flat": 1}, randomization="none")
