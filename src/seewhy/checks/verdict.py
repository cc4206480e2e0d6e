"""Verdict rules: the figures of one model x method turned into ``pass``, ``warn`` or ``fail``
with reasons a reviewer can act on (SPEC section 6).

Every rule names its figures and threshold in its reason ("fails randomization: rank
correlation 0.91 with a randomized model, above 0.5"). The thresholds are the fields of
:class:`Thresholds`; a user overrides any of them with ``--thresholds FILE.toml`` (a flat table
of the same names, or the same under ``[thresholds]``). Figures that were not measured (no
masks, randomization off, a single sample) are skipped, not guessed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seewhy.core.errors import UsageError, did_you_mean

VERDICTS = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Thresholds:
    """The verdict rules' thresholds (SPEC section 6 lists them with these defaults).

    Attributes:
        randomization_fail: ``randomization_similarity`` (the mean Spearman rank correlation
            between the trained model's maps and the fully randomized copy's) above this fails.
        randomization_warn: above this (and not above the fail line) warns.
        faithfulness_margin: how far the map's pixel order must beat a seeded random order, on
            the curve's scale (the explained class's probability, or the normalised regression
            output): ``deletion_gain`` (``deletion_auc_random - deletion_auc``) and
            ``insertion_gain`` (``insertion_auc - insertion_auc_random``), medians over the
            samples where the test can show something (see ``faithfulness_range``). Neither
            above it fails ("no better than a random order"); one of them not above it warns.
        faithfulness_range: a classifier's sample shows faithfulness only if its blurred copy
            lowers the explained probability by more than this (else the curves run flat
            whatever the order: the blur keeps what the model sees); no such sample warns.
        energy_ratio_warn: ``energy_in_mask`` below this multiple of ``mask_area`` warns (the
            map points at the marked region little more than a uniform map would).
        energy_ratio_fail: at or below this multiple fails (no more than a uniform map).
        pointing_warn: ``pointing_game`` below this warns.
        border_ratio_warn: ``border_share`` above this multiple of ``border_area`` warns
            (attention on the image's edges: side markers, text, borders).
        corner_share_warn: a share of samples whose map peaks in a corner above this warns.
        flat_share_warn: a share of flat or empty maps above this warns.
        flat_share_fail: at or above this share fails.
        input_independence_warn: a mean rank correlation between different samples' maps above
            this warns (the same map for every sample: it ignores the input).
        model_agreement_warn: a mean rank correlation with another model that predicts the same
            class below this warns.
        method_agreement_warn: a mean rank correlation with another method on the same model
            below this warns.
        collapse_threshold: the rank correlation below which the cascade's similarity has
            collapsed (``collapse_layer``).
    """

    randomization_fail: float = 0.5
    randomization_warn: float = 0.3
    faithfulness_margin: float = 0.02
    faithfulness_range: float = 0.1
    energy_ratio_warn: float = 1.5
    energy_ratio_fail: float = 1.0
    pointing_warn: float = 0.5
    border_ratio_warn: float = 1.5
    corner_share_warn: float = 0.25
    flat_share_warn: float = 0.0
    flat_share_fail: float = 1.0
    input_independence_warn: float = 0.9
    model_agreement_warn: float = 0.2
    method_agreement_warn: float = 0.0
    collapse_threshold: float = 0.5

    @classmethod
    def load(cls, path: str | Path | None) -> Thresholds:
        """The defaults, overridden by a TOML file's numbers (``None``: the defaults)."""
        if path is None:
            return cls()
        import tomllib

        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"--thresholds {p}: no such file; pass a TOML file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"--thresholds {p} is not a readable TOML file: {exc}") from None
        table = data.get("thresholds", {})
        if not isinstance(table, Mapping):
            raise UsageError(f"--thresholds {p}: [thresholds] must be a table of numbers")
        flat = {k: v for k, v in data.items() if k != "thresholds"}
        twice = sorted(k for k in flat.keys() & table.keys() if flat[k] != table[k])
        if twice:
            raise UsageError(
                f"--thresholds {p}: {', '.join(twice)} set twice (at the top and under "
                "[thresholds]) with different values; keep one"
            )
        return cls.of({**flat, **table}, where=f"--thresholds {p}")

    @classmethod
    def of(cls, values: Mapping[str, Any], where: str = "thresholds") -> Thresholds:
        """The defaults with ``values`` (name -> number) replacing some; unknown names and
        non-numbers are refused with the closest name."""
        names = [f.name for f in dataclasses.fields(cls)]
        out: dict[str, float] = {}
        for key, value in values.items():
            if key not in names:
                hint = did_you_mean(key, names)
                raise UsageError(
                    f"{where}: unknown threshold '{key}'{hint or '.'} Known: {', '.join(names)}"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{where}: {key} = {value!r} must be a number")
            if not math.isfinite(value):
                raise UsageError(f"{where}: {key} = {value!r} must be a finite number")
            out[key] = float(value)
        t = dataclasses.replace(cls(), **out)
        for low, high in (
            ("randomization_warn", "randomization_fail"),
            ("energy_ratio_fail", "energy_ratio_warn"),
            ("flat_share_warn", "flat_share_fail"),
        ):
            if getattr(t, low) > getattr(t, high):
                raise UsageError(
                    f"{where}: {low} = {getattr(t, low)} is above {high} = {getattr(t, high)}; "
                    f"{low} must not exceed {high}"
                )
        return t


def _num(figures: Mapping[str, Any], key: str) -> float | None:
    v = figures.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _f(v: float) -> str:
    return f"{v:.2f}"


def judge(
    figures: Mapping[str, Any], thresholds: Thresholds | None = None
) -> tuple[str, list[str]]:
    """The verdict and its reasons for one model x method's figures.

    Args:
        figures: the ``checks[]`` entry's figures (SPEC section 6 names): any of
            ``randomization_similarity``, ``collapse_layer``, ``deletion_auc``,
            ``insertion_auc``, ``deletion_auc_random``, ``insertion_auc_random``,
            ``energy_in_mask``, ``mask_area``, ``pointing_game``, ``border_share``,
            ``border_area``, ``corner_share``, ``flat_share``, ``input_independence``,
            ``model_agreement`` {model: rank correlation}, ``method_agreement`` {method: rank
            correlation}. Missing or NaN figures are skipped.
        thresholds: the rules' thresholds (default :class:`Thresholds`).

    Returns:
        ``(verdict, reasons)``: ``fail`` if any rule fails, else ``warn`` if any warns, else
        ``pass``; failing reasons first. A pass says what passed; figures on which no rule
        could be evaluated at all warn (nothing was shown to hold).
    """
    verdict, reasons, _ = judge_flags(figures, thresholds)
    return verdict, reasons


def judge_flags(
    figures: Mapping[str, Any], thresholds: Thresholds | None = None
) -> tuple[str, list[str], list[str]]:
    """:func:`judge`, with the short names of the rules that warned or failed (``flags[]``):
    ``randomization``, ``faithfulness``, ``localization``, ``pointing``, ``border``,
    ``corner``, ``flat``, ``input_independent``, ``model_disagreement``,
    ``method_disagreement``, ``unchecked``; none for a pass."""
    t = thresholds or Thresholds()
    fails: list[str] = []
    warns: list[str] = []
    passed: list[str] = []
    flags: list[str] = []

    def fail(flag: str, text: str) -> None:
        fails.append(text)
        flags.append(flag)

    def warn(flag: str, text: str) -> None:
        warns.append(text)
        flags.append(flag)

    skipped = figures.get("randomization_skipped")
    if isinstance(skipped, str):
        warn("randomization", f"randomization not run: {skipped}")
    broken = _num(figures, "randomization_nonfinite_steps")
    if broken:
        warn(
            "randomization",
            f"the randomized copy's output was NaN or infinite at {int(broken)} step(s): those "
            "steps have no similarity",
        )
    sim = _num(figures, "randomization_similarity")
    if sim is not None:
        said = f"rank correlation {_f(sim)} with a randomized model"
        if sim > t.randomization_fail:
            fail(
                "randomization",
                f"fails randomization: {said}, above {_f(t.randomization_fail)} "
                "(the map does not depend on what the model learned)",
            )
        elif sim > t.randomization_warn:
            warn("randomization", f"weak randomization: {said}, above {_f(t.randomization_warn)}")
        else:
            layer = figures.get("collapse_layer")
            where = f", collapsing at '{layer}'" if isinstance(layer, str) else ""
            passed.append(f"randomization: {said}{where}")

    d, dr = _num(figures, "deletion_auc"), _num(figures, "deletion_auc_random")
    i, ir = _num(figures, "insertion_auc"), _num(figures, "insertion_auc_random")
    dg, ig = _num(figures, "deletion_gain"), _num(figures, "insertion_gain")
    shown = figures.get("faithfulness_samples")
    if d is not None and dr is not None and i is not None and ir is not None:
        m = t.faithfulness_margin
        said = (
            f"over all samples: deletion AUC {_f(d)} vs {_f(dr)} for a random order, "
            f"insertion AUC {_f(i)} vs {_f(ir)}"
        )
        if dg is None or ig is None:  # figures without gains: the means over every sample
            dg, ig = dr - d, i - ir
        if shown == 0:
            warn(
                "faithfulness",
                "faithfulness not shown: on every sample the blurred copy scores within "
                f"{_f(t.faithfulness_range)} of the image, so removing pixels cannot lower the "
                f"score ({said})",
            )
        else:
            on = (
                f" on the {shown} samples whose blurred copy changes the score"
                if isinstance(shown, int)
                else ""
            )
            gains = (
                f"the map's order beats a random one by {_f(dg)} in deletion AUC and {_f(ig)} "
                f"in insertion AUC{on} (medians; margin {_f(m)})"
            )
            good_del, good_ins = dg > m, ig > m
            if not good_del and not good_ins:
                fail(
                    "faithfulness",
                    f"fails faithfulness: no better than a random order ({gains}; {said})",
                )
            elif not (good_del and good_ins):
                which = "deletion" if not good_del else "insertion"
                warn(
                    "faithfulness",
                    f"weak faithfulness: {which} no better than a random order ({gains}; {said})",
                )
            else:
                passed.append(f"faithfulness: {gains} ({said})")

    e, area = _num(figures, "energy_in_mask"), _num(figures, "mask_area")
    if e is not None and area is not None and area > 0:
        said = f"energy in mask {_f(e)} for a mask of {_f(area)} of the image"
        if e <= t.energy_ratio_fail * area:
            fail("localization", f"fails localization: {said}, no more than a uniform map")
        elif e < t.energy_ratio_warn * area:
            warn(
                "localization",
                f"weak localization: {said}, below {_f(t.energy_ratio_warn)}x the mask's area",
            )
        else:
            passed.append(f"localization: {said}")
    pg = _num(figures, "pointing_game")
    if pg is not None and pg < t.pointing_warn:
        warn(
            "pointing",
            f"pointing game {_f(pg)}: the peak lies outside the mask on "
            f"{round(100 * (1 - pg))}% of the samples",
        )

    b, barea = _num(figures, "border_share"), _num(figures, "border_area")
    if b is not None and barea is not None and barea > 0 and b > t.border_ratio_warn * barea:
        warn(
            "border",
            f"attention on the border: {_f(b)} of the attribution lies in the outer 10% frame, "
            f"which is {_f(barea)} of the image (above {_f(t.border_ratio_warn)}x)",
        )
    corner = _num(figures, "corner_share")
    if corner is not None and corner > t.corner_share_warn:
        warn(
            "corner",
            f"peak in a corner on {round(100 * corner)}% of the samples "
            f"(above {round(100 * t.corner_share_warn)}%): a marker, text or the frame's edge?",
        )
    flat = _num(figures, "flat_share")
    if flat is not None:
        if flat >= t.flat_share_fail:
            fail("flat", "every map is flat or empty: nothing to show")
        elif flat > t.flat_share_warn:
            warn("flat", f"{round(100 * flat)}% of the maps are flat or empty")
    same = _num(figures, "input_independence")
    if same is not None and same > t.input_independence_warn:
        warn(
            "input_independent",
            f"the same map for every sample: rank correlation {_f(same)} between different "
            f"samples' maps, above {_f(t.input_independence_warn)} (it ignores the input)",
        )
    for key, what, line in (
        ("model_agreement", "model", t.model_agreement_warn),
        ("method_agreement", "method", t.method_agreement_warn),
    ):
        others = figures.get(key)
        if not isinstance(others, Mapping):
            continue
        for other, rho in others.items():
            r = _num({"r": rho}, "r")
            if r is not None and r < line:
                agree = " that predicts the same class" if what == "model" else ""
                warn(
                    f"{what}_disagreement",
                    f"disagrees with {what} {other}{agree}: rank correlation {_f(r)}, "
                    f"below {_f(line)}",
                )
    fired = list(dict.fromkeys(flags))
    if fails:
        return "fail", fails + warns, fired
    if warns:
        return "warn", warns, fired
    if not passed:
        return (
            "warn",
            ["no check could be evaluated on these figures (nothing measured)"],
            ["unchecked"],
        )
    return "pass", passed, []


__all__ = ["VERDICTS", "Thresholds", "judge", "judge_flags"]
