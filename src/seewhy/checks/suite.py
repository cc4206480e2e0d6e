"""The trust checks of one model, every method at once: figures, flags and a verdict each.

:func:`run_checks` is what ``seewhy.check`` and ``seewhy check`` run per model. It takes the
maps through a callable (``maps_of``) so the same code that explains the trained model explains
each randomized copy: every method of a family shares its pass (all five gradient CAMs come
out of one forward+backward per copy). Per method it measures (SPEC section 6):

- randomization (:mod:`seewhy.checks.randomization`): cascading from the head, the mean rank
  correlation and SSIM with each randomized copy's maps, the last one as
  ``randomization_similarity`` / ``randomization_ssim``, and the ``collapse_layer``;
- faithfulness (:mod:`seewhy.checks.faithfulness`): deletion and insertion AUCs beside the same
  for a seeded random pixel order, through one forward engine shared by the methods;
- localization (:mod:`seewhy.checks.localization`), on the samples with a non-empty mask;
- red flags (:mod:`seewhy.checks.flags`): border share beside the frame's area, flat maps,
  peaks in a corner, the same map for every sample, disagreement between methods;
- the verdict (:mod:`seewhy.checks.verdict`), and per sample the flags that make it a case to
  distrust.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seewhy.checks.verdict import Thresholds, judge_flags
from seewhy.core.errors import ModelOutputError, UsageError

if TYPE_CHECKING:
    from torch import Tensor

    from seewhy.core.explanation import Explanation
    from seewhy.core.inputs import Inputs
    from seewhy.core.model import Model
    from seewhy.core.targets import ResolvedTarget

POINTING_TOLERANCE = 15 / 224
"""The pointing game's tolerance as a share of the frame's longer side: a peak within 15 px of
the mask at 224 px counts as a hit, as in Zhang et al. (2018), "Top-down neural attention by
excitation backprop" (a CAM's peak is only as sharp as its grid; thin masks such as a crack
would otherwise be missed by a peak one pixel beside them)."""

RANDOMIZATIONS = ("blocks", "layers", "none")
"""``randomization``: per block/stage from the head (default), per layer (quantus's MPRT
granularity: every module with its own parameters), or off."""


@dataclass(frozen=True)
class CheckResult:
    """The checks of one model x method over a set of samples.

    Attributes:
        model: the model's name.
        method: the method's name.
        figures: SPEC section 6's figures (means over the samples, NaN-free: a figure that
            could not be measured is absent or ``None``).
        verdict: ``pass``, ``warn`` or ``fail``.
        reasons: human-readable reasons naming the rule and the figures.
        flags: the short names of the rules that warned or failed (``randomization``,
            ``faithfulness``, ``localization``, ``pointing``, ``border``, ``corner``,
            ``flat``, ``input_independent``, ``model_disagreement``, ``method_disagreement``).
        samples: the sample ids, in order.
        per_sample: figure -> one value per sample (``None`` where not measured).
        flagged_samples: the cases to distrust: ``[{"sample", "flags"}]``.
        curves: mean curves for figures: ``deletion``, ``insertion``, ``deletion_random``,
            ``insertion_random`` (``steps + 1`` points each) and ``randomization``
            (``[{"layer", "rank_correlation", "ssim"}]``, the cascade's steps).
        maps: the checked maps ``[B, H, W]`` (float32, cpu): the trained model's.
    """

    model: str
    method: str
    figures: dict[str, Any]
    verdict: str
    reasons: list[str]
    flags: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    per_sample: dict[str, list[Any]] = field(default_factory=dict)
    flagged_samples: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, Any] = field(default_factory=dict)
    maps: Tensor | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """The ``checks[]`` entry of summary.json."""
        return {
            "model": self.model,
            "method": self.method,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            **self.figures,
            "flags": list(self.flags),
            "samples": len(self.samples),
            "flagged_samples": [dict(f) for f in self.flagged_samples],
            "curves": dict(self.curves),
        }

    def judged(self, thresholds: Thresholds, **figures: Any) -> CheckResult:
        """This result with more figures (e.g. ``model_agreement`` from a comparison) and
        the verdict judged again."""
        import dataclasses

        merged = {**self.figures, **figures}
        verdict, reasons, flags = judge_flags(merged, thresholds)
        return dataclasses.replace(
            self, figures=merged, verdict=verdict, reasons=reasons, flags=flags
        )


def _mean(values: Tensor) -> float | None:
    """The mean of the finite values, ``None`` when there are none."""
    import torch

    v = values.detach().double().flatten()
    v = v[torch.isfinite(v)]
    return float(v.mean()) if v.numel() else None


def _median(values: Tensor) -> float | None:
    """The median of the finite values (the lower middle one), ``None`` when there are none."""
    import torch

    v = values.detach().double().flatten()
    v = v[torch.isfinite(v)]
    return float(v.median()) if v.numel() else None


def _values(values: Tensor) -> list[float | None]:
    return [float(x) if math.isfinite(float(x)) else None for x in values.detach().double()]


def run_checks(
    model: Model,
    inputs: Inputs,
    methods: Sequence[str],
    target: ResolvedTarget,
    maps_of: Callable[[Model], Sequence[Explanation]],
    *,
    sample_ids: Sequence[str],
    seeds: Sequence[int],
    masks: Tensor | None = None,
    thresholds: Thresholds | None = None,
    steps: int = 50,
    randomization: str = "blocks",
    randomization_mode: str = "cascade",
    batch_size: int = 8,
    seed: int = 0,
    precision: str = "float32",
    progress: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    """Every check of one model, per method (see the module's docstring).

    Args:
        model: the model (never changed: randomization works on a copy, the forwards on the
            engine's copy).
        inputs: the batch (already on the model's device), with an ``image`` entry.
        methods: the methods' names, in the order ``maps_of`` returns their explanations.
        target: the target, resolved on the trained model's clean output: each randomized
            copy explains the same class.
        maps_of: ``model -> one Explanation per method`` on ``inputs`` for ``target``.
        sample_ids: one id per sample (in ``per_sample`` and ``flagged_samples``).
        seeds: one seed per sample (the random pixel orders).
        masks: ``[B, H, W]`` bool in the model-input frame; an all-false mask means "no mask"
            for that sample. ``None``: no localization figures.
        thresholds: the verdict rules' thresholds.
        steps: deletion/insertion steps.
        randomization: ``blocks`` (default), ``layers`` or ``none``.
        randomization_mode: ``cascade`` (default: block after block from the head, each
            step keeping the ones before randomized; ``randomization_similarity`` is the last
            step's, everything randomized) or ``independent`` (each block alone, the others
            trained; ``randomization_similarity`` is the mean over the blocks).
        batch_size: the largest batch any forward sends to the model.
        seed: the randomized copies' seed.
        precision: the deletion/insertion forwards' precision (``float32`` or ``auto``).
        progress: called with a short description before each stage.
    """
    import torch

    from seewhy.checks import faithfulness, flags, localization
    from seewhy.checks import randomization as rnd
    from seewhy.core.engine import ForwardEngine

    if randomization not in RANDOMIZATIONS:
        raise UsageError(
            f"randomization '{randomization}': use {', '.join(RANDOMIZATIONS)} (blocks: per "
            "block/stage from the head; layers: every layer with parameters; none: skip it)"
        )
    if randomization_mode not in rnd.MODES:
        raise UsageError(
            f"randomization_mode '{randomization_mode}': use {' or '.join(rnd.MODES)} (cascade: "
            "block after block from the head; independent: each block alone)"
        )
    if "image" not in inputs:
        raise UsageError(
            "the trust checks read image maps, and this model takes no image input; "
            "give the card's [inputs] an image entry"
        )
    thresholds = thresholds or Thresholds()
    say = progress or (lambda _: None)
    say("explaining the trained model")
    trained = list(maps_of(model))
    if len(trained) != len(methods):
        raise UsageError(f"maps_of gave {len(trained)} explanations for {len(methods)} methods")
    maps = [e.map.detach().float().cpu() for e in trained]
    n = inputs.batch_size
    ids = list(sample_ids)

    per: list[dict[str, Any]] = [{} for _ in methods]
    figs: list[dict[str, Any]] = [{} for _ in methods]
    curves: list[dict[str, Any]] = [{} for _ in methods]

    if randomization != "none":
        how = "cascading from the head" if randomization_mode == "cascade" else "one at a time"
        say(f"randomization ({randomization}, {how})")
        broken: list[str] = []

        def image_maps(m: Model) -> list[Tensor]:
            try:
                return [e.map.detach().float().cpu() for e in maps_of(m)]
            except ModelOutputError as exc:  # a randomized copy gave NaN/inf: no similarity
                broken.append(str(exc))
                return [torch.full_like(t, math.nan) for t in maps]

        try:
            results = rnd.randomization(
                model,
                image_maps,
                granularity=randomization,
                mode=randomization_mode,
                seed=seed,
                trained=maps,
                progress=say,
            )
        except UsageError as exc:  # not copyable, no parameters, TorchScript: say so, go on
            results = []
            for k in range(len(methods)):
                figs[k]["randomization_skipped"] = str(exc)
        for k, r in enumerate(results):
            cascade = randomization_mode == "cascade"
            sim = r.similarity() if cascade else torch.nanmean(r.rank_correlation, dim=0)
            ssim = r.ssim[-1] if cascade else torch.nanmean(r.ssim, dim=0)
            per[k]["randomization_similarity"] = _values(sim)
            figs[k]["randomization_similarity"] = _mean(sim)
            figs[k]["randomization_ssim"] = _mean(ssim) if len(r.layers) else None
            figs[k]["randomization_mode"] = randomization_mode
            figs[k]["collapse_layer"] = (  # independent steps have no order to collapse in
                r.collapse_layer(thresholds.collapse_threshold) if cascade else None
            )
            if broken:
                figs[k]["randomization_nonfinite_steps"] = len(broken)
            curves[k]["randomization"] = [
                {
                    "layer": layer,
                    "rank_correlation": _mean(r.rank_correlation[j]),
                    "ssim": _mean(r.ssim[j]),
                }
                for j, layer in enumerate(r.layers)
            ]

    say(f"deletion and insertion ({steps} steps)")
    engine = ForwardEngine(
        model, inputs, batch_size=batch_size, precision=precision, finite=False
    )  # a NaN score on a perturbed copy makes that sample's curves NaN, not the whole check
    for k, m in enumerate(maps):
        c = faithfulness.deletion_insertion(
            model,
            inputs,
            m.to(inputs["image"].device),
            target,
            steps=steps,
            batch_size=batch_size,
            seeds=seeds,
            precision=precision,
            engine=engine,
        )
        aucs = c.aucs()
        figs[k]["faithfulness_dtype"] = engine.forward_dtype  # what the curves' forwards ran in
        for name, v in aucs.items():
            per[k][name] = _values(v)
            figs[k][name] = _mean(v)
        # Only where the blurred copy lowers the score can an order show anything.
        if target.regression:
            shows = torch.isfinite(c.deletion).all(dim=1)
        else:
            shows = (c.deletion[:, 0] - c.deletion[:, -1]) > thresholds.faithfulness_range
        figs[k]["faithfulness_samples"] = int(shows.sum())
        gains = {
            "deletion_gain": aucs["deletion_auc_random"] - aucs["deletion_auc"],
            "insertion_gain": aucs["insertion_auc"] - aucs["insertion_auc_random"],
        }
        for name, v in gains.items():  # medians: one sample's extreme curve cannot decide
            figs[k][name] = _median(v[shows]) if bool(shows.any()) else None
        for name in ("deletion", "insertion", "deletion_random", "insertion_random"):
            curve = getattr(c, name)
            finite = torch.isfinite(curve).all(dim=1)
            curves[k][name] = (
                [round(float(x), 5) for x in curve[finite].double().mean(dim=0)]
                if bool(finite.any())
                else []
            )

    say("localization and red flags")
    has_mask = None
    if masks is not None:
        masks = masks.detach().bool().cpu()
        if tuple(masks.shape) != tuple(maps[0].shape):
            raise UsageError(
                f"masks are {tuple(masks.shape)} but the maps are {tuple(maps[0].shape)}; "
                "give one mask per sample in the model-input frame"
            )
        has_mask = masks.flatten(1).any(dim=1)
        if not bool(has_mask.any()):
            for f in figs:
                f["mask_samples"] = 0  # every mask empty: nothing to point at
    size = (int(maps[0].shape[-2]), int(maps[0].shape[-1]))
    border_area = flags.border_area(size)
    for k, m in enumerate(maps):
        shown = m  # signed maps: the figures read what raises the target (the positive part)
        if masks is not None and has_mask is not None and bool(has_mask.any()):
            pg = localization.pointing_game(shown, _dilated(masks, POINTING_TOLERANCE))
            em = localization.energy_in_mask(shown, masks)
            area = localization.mask_area(masks)
            per[k].update(
                pointing_game=_values(pg), energy_in_mask=_values(em), mask_area=_values(area)
            )
            figs[k].update(
                pointing_game=_mean(pg),
                energy_in_mask=_mean(em),
                mask_area=_mean(area[torch.isfinite(em)])
                if bool(torch.isfinite(em).any())
                else None,
                mask_samples=int(has_mask.sum()),
            )
        bs = flags.border_share(shown)
        flat = flags.flat(shown)
        corner = flags.corner_peak(shown)
        per[k].update(border_share=_values(bs), flat=[bool(x) for x in flat])
        per[k]["corner_peak"] = [bool(x) for x in corner]
        figs[k].update(
            border_share=_mean(bs),
            border_area=border_area,
            corner_share=float(corner.float().mean()) if n else None,
            flat_share=float(flat.float().mean()) if n else None,
        )
        if n >= 2:
            ind = flags.input_independence(shown)
            figs[k]["input_independence"] = ind if math.isfinite(ind) else None
        if len(maps) > 1:
            figs[k]["method_agreement"] = {
                methods[j]: _mean(flags.disagreement(m, maps[j]))
                for j in range(len(maps))
                if j != k
            }

    out = []
    for k, method in enumerate(methods):
        verdict, reasons, fired = judge_flags(figs[k], thresholds)
        out.append(
            CheckResult(
                model=model.name,
                method=method,
                figures=figs[k],
                verdict=verdict,
                reasons=reasons,
                flags=fired,
                samples=ids,
                per_sample=per[k],
                flagged_samples=_flagged(ids, per[k], figs[k], thresholds),
                curves=curves[k],
                maps=maps[k],
            )
        )
    return out


def _dilated(masks: Tensor, share: float) -> Tensor:
    """``masks`` grown by a disk of radius ``share * longer side`` pixels: every pixel within
    that distance of the mask (the pointing game's tolerance, Zhang et al. 2018)."""
    import torch
    import torch.nn.functional as F

    radius = share * max(masks.shape[-2:])
    r = int(radius)
    if r < 1:
        return masks
    d = torch.arange(-r, r + 1, dtype=torch.float32)
    disk = ((d[:, None] ** 2 + d[None, :] ** 2) <= radius**2).float()[None, None]
    grown = F.conv2d(masks[:, None].float(), disk, padding=r)
    return grown[:, 0] > 0.5


def _flagged(
    ids: Sequence[str], per: Mapping[str, list[Any]], figs: Mapping[str, Any], t: Thresholds
) -> list[dict[str, Any]]:
    """The samples to distrust, with why: a flat map, a peak in a corner, attention on the
    border, a peak outside the mask, little energy in it."""
    barea = figs.get("border_area") or 0.0
    out = []
    for i, sid in enumerate(ids):
        why = []
        if per.get("flat", [False] * len(ids))[i]:
            why.append("flat")
        if per.get("corner_peak", [False] * len(ids))[i]:
            why.append("corner_peak")
        b = per.get("border_share", [None] * len(ids))[i]
        if b is not None and barea and b > t.border_ratio_warn * barea:
            why.append("border")
        pg = per.get("pointing_game", [None] * len(ids))[i]
        if pg is not None and pg < 0.5:
            why.append("peak_outside_mask")
        e = per.get("energy_in_mask", [None] * len(ids))[i]
        a = per.get("mask_area", [None] * len(ids))[i]
        if e is not None and a is not None and e < t.energy_ratio_warn * a:
            why.append("low_energy_in_mask")
        if why:
            out.append({"sample": sid, "flags": why})
    return out


__all__ = ["POINTING_TOLERANCE", "RANDOMIZATIONS", "CheckResult", "run_checks"]
