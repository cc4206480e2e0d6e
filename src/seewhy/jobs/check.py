"""``seewhy check`` as a workflow: explain, then the trust checks and a verdict per model x
method (SPEC section 6), into summary.json ``checks[]``, the console and the report's top.

The maps, figures and comparisons come from ``seewhy explain``'s run (the same output folder,
resumable); the checks then run per model on the samples it explained, through
:func:`seewhy.api.check`: randomization, deletion/insertion, localization against each sample's
mask or box, red flags. Models that predict the same class are compared through the run's
``agreement[]`` (each model's maps in its own frame, compared where the frames overlap).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import UsageError
from seewhy.jobs.explain import (
    ExplainOptions,
    RunOutcome,
    _batch_target,
    _decode,
    _methods,
    _reason,
    load_models,
    one_name_per_method,
    run_explain,
)

if TYPE_CHECKING:
    from rich.console import Console
    from torch import Tensor

    from seewhy.checks.suite import CheckResult
    from seewhy.checks.verdict import Thresholds
    from seewhy.data.output import OutputFolder
    from seewhy.data.samples import Sample
    from seewhy.methods.base import Method
    from seewhy.models.model import Model

BOX_COLUMNS = ("x0", "y0", "x1", "y1")
"""A manifest's box columns (``--box-cols``): the box's corners in the image's pixels."""
TREE_REFUSAL = (
    "seewhy check judges image maps; tree-shap values add up exactly, so explain it with "
    "seewhy explain --data or seewhy dataset"
)
"""Why ``seewhy check`` refuses a tree model (after the model's name and kind)."""


def refuse_tree_specs(model_specs: Sequence[str]) -> None:
    """Refuse a tree model by its ``--model`` value, before any sample is read (a features
    table would otherwise be refused for lacking an image column first).

    Raises:
        UsageError: a ``--model`` that is a tabular tree model (card or arch string).
    """
    import tomllib

    from seewhy.models.tabular import is_tabular_spec

    for spec in model_specs:
        if not is_tabular_spec(spec):
            continue
        name, arch = spec, spec
        if spec.lower().endswith(".toml"):  # a card is_tabular_spec could read: named as loaded
            card = tomllib.loads(Path(spec).read_text(encoding="utf-8"))
            name, arch = str(card.get("name") or Path(spec).stem), str(card.get("arch"))
        kind = arch.partition(":")[0].strip().lower()
        raise UsageError(f"model {name} is a {kind} tree model: {TREE_REFUSAL}")


@dataclass
class CheckOptions(ExplainOptions):
    """The flags of ``seewhy check``: ``explain``'s, and the checks' own."""

    thresholds: Path | None = None
    steps: int = 50
    randomization: str = "blocks"
    randomization_mode: str = "cascade"
    box_cols: tuple[str, ...] | None = None
    precision: str = "float32"


def run_check(
    samples: Sequence[Sample],
    model_specs: Sequence[str],
    opts: CheckOptions,
    console: Console | None = None,
) -> RunOutcome:
    """Explain every sample with every model and method, then check each model x method.

    Returns the run's outcome; its summary holds ``checks[]`` (one entry per model x method,
    with the figures, the verdict and its reasons). A sample whose mask or box cannot be read
    is checked without it and recorded in errors.jsonl (exit code 1).
    """
    from rich.console import Console

    from seewhy.checks.randomization import MODES
    from seewhy.checks.suite import RANDOMIZATIONS
    from seewhy.checks.verdict import Thresholds
    from seewhy.core.engine import check_precision
    from seewhy.data.output import OutputFolder

    console = console or Console(stderr=True)
    opts = one_name_per_method(opts)
    thresholds = Thresholds.load(opts.thresholds)  # a bad file fails before any work
    if opts.steps < 2:
        raise UsageError(
            f"--steps must be >= 2, got {opts.steps}: with one step every pixel order gives the "
            "same curve (the image, then its blurred copy)"
        )
    if opts.randomization not in RANDOMIZATIONS:
        raise UsageError(f"--randomization {opts.randomization}: use {', '.join(RANDOMIZATIONS)}")
    if opts.randomization_mode not in MODES:
        raise UsageError(
            f"--randomization-mode {opts.randomization_mode}: use {' or '.join(MODES)}"
        )
    check_precision(opts.precision, "--precision")
    boxes = _box_columns(samples, opts.box_cols)
    models = load_models(model_specs, opts) if samples else []
    from seewhy.jobs.trees import is_tree

    for m in models:
        if is_tree(m):
            raise UsageError(f"model {m.name} is a {m.kind} tree model: {TREE_REFUSAL}")
    explained = run_explain(
        samples, model_specs, dataclasses.replace(opts, report=False), console, loaded=models
    )
    out = OutputFolder(explained.out)
    summary = explained.summary
    errors = out.errors()
    failed = {e.get("id") for e in errors}
    done = {(r["sample"], r["model"]) for r in summary["results"]}
    results: list[CheckResult] = []
    for model in models:
        m, target = model.for_target(opts.target)
        todo = [s for s in samples if (s.id, m.name) in done]
        if not todo:
            continue
        checked, bad = _check_model(
            m, str(target), todo, opts, thresholds, boxes, console, explained.background_for
        )
        results.extend(checked)
        for sid, reason in bad.items():
            if sid not in failed:
                failed.add(sid)
                sample = next(s for s in todo if s.id == sid)
                errors.append({"id": sid, "path": sample.image_path, "reason": reason})
    regressors = {m.name for m in models if m.task == "regression"}
    results = _with_model_agreement(results, summary.get("agreement", []), thresholds, regressors)
    checked_pairs = {(r.model, r.method) for r in results}
    records = [_with_figure(out, r.record()) for r in results]
    summary["checks"] = [
        c
        for c in summary.get("checks", [])
        if (c.get("model"), c.get("method")) not in checked_pairs
    ] + records
    out.save_summary(summary)
    out.write_errors(errors)
    if opts.report:
        from seewhy.render.report import render_report

        render_report(out.root)
    return RunOutcome(summary=summary, failed=len(failed - {None}), out=out.root)


def _with_figure(out: OutputFolder, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its curves figure written (``checks/<model>__<method>.png``: beside
    ``figures/``, not in it, where a sample named ``checks`` would clash)."""
    from seewhy.render.figures import check_figure

    path = out.root / "checks" / f"{record['model']}__{record['method']}.png"
    check_figure(record, path)
    return {**record, "figure": out.rel(path)}


def _box_columns(
    samples: Sequence[Sample], given: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    """The box columns to read: ``--box-cols`` (each must be in the manifest), else
    ``x0,y0,x1,y1`` when a manifest has all four, else none."""
    rows = [s.row for s in samples if s.row]
    if given is not None:
        if len(given) != 4:
            raise UsageError(
                f"--box-cols {','.join(given)}: give four columns, x0,y0,x1,y1 (the box's "
                "corners in the image's pixels)"
            )
        if not rows:
            raise UsageError("--box-cols reads a manifest: pass --data MANIFEST with it")
        missing = [c for c in given if c not in rows[0]]
        if missing:
            raise UsageError(
                f"--box-cols: the manifest has no column {', '.join(missing)}; its columns: "
                f"{', '.join(rows[0])}"
            )
        return given
    if rows and all(c in rows[0] for c in BOX_COLUMNS):
        return BOX_COLUMNS
    return None


def _check_model(
    model: Model,
    target: str,
    samples: Sequence[Sample],
    opts: CheckOptions,
    thresholds: Thresholds,
    boxes: tuple[str, ...] | None,
    console: Console,
    background_for: Callable[[Model, Sequence[Method]], Any] | None,
) -> tuple[list[CheckResult], dict[str, str]]:
    """The checks of one model on the samples it explained; (results, sample id -> reason
    for a mask or box that could not be read)."""
    from seewhy.api import check
    from seewhy.jobs.multimodal import named_batch

    images = [_decode(s.image_path, model.preprocess.bit_depth) for s in samples]
    batch, _ = named_batch(model, model.preprocess([d.image for d in images]), list(samples))
    masks, bad = _masks(model, samples, images, boxes)
    methods = _methods(opts, opts.layer or model.layer)
    # expected gradients: the background explain drew its saved maps from
    background = background_for(model, methods) if background_for is not None else None
    with console.status(f"checking {model.name}", spinner="dots") as status:

        def say(stage: str) -> None:
            if opts.progress:
                status.update(f"checking {model.name}: {stage}")

        results = check(
            model,
            batch,
            methods,
            target=_batch_target(model, samples, target),
            layer=opts.layer,
            masks=masks,
            thresholds=thresholds,
            steps=opts.steps,
            randomization=opts.randomization,
            randomization_mode=opts.randomization_mode,
            faithfulness_precision=opts.precision,
            batch_size=opts.batch_size,
            seed=opts.seed,
            sample_ids=[s.id for s in samples],
            background=background,
            progress=say,
        )
    return results, bad


def _masks(
    model: Model, samples: Sequence[Sample], images: Sequence[Any], boxes: tuple[str, ...] | None
) -> tuple[Tensor | None, dict[str, str]]:
    """Each sample's mask (its mask file, else its box) in the model-input frame, as one
    ``[B, H, W]`` bool tensor (``None`` when no sample has one); and the samples whose mask or
    box could not be read, with why."""
    import torch

    from seewhy.data.masks import box_mask, load_mask, parse_box
    from seewhy.data.samples import blank

    if not any(s.mask_path for s in samples) and boxes is None:
        return None, {}
    h, w = model.preprocess.size
    out = torch.zeros((len(samples), int(h), int(w)), dtype=torch.bool)
    bad: dict[str, str] = {}
    for i, (s, d) in enumerate(zip(samples, images, strict=True)):
        size = d.image.size
        try:
            if s.mask_path:
                out[i] = load_mask(s.mask_path, model.preprocess, image_size=size)
            elif boxes is not None and not all(blank(s.row.get(c)) for c in boxes):
                empty = [c for c in boxes if blank(s.row.get(c))]
                if empty:  # some corners given, some not: a broken box, not "no box"
                    raise UsageError(
                        f"box column {', '.join(empty)} is blank in sample {s.id}'s row; give "
                        f"all four of {','.join(boxes)}, or none"
                    )
                out[i] = box_mask(parse_box([s.row[c] for c in boxes]), size, model.preprocess)
        except Exception as exc:  # a bad mask fails its sample's localization alone
            bad[s.id] = f"mask: {_reason(exc)}"
    return out, bad


def _with_model_agreement(
    results: list[CheckResult],
    agreement: Sequence[dict[str, Any]],
    thresholds: Thresholds,
    regressors: Collection[str] = (),
) -> list[CheckResult]:
    """Each result judged again with its mean rank correlation to every other model, per
    method, over the samples where the two predict the same class (the run's
    ``agreement[]``); two regressors, which predict no class, over every sample."""
    import math

    out = []
    for r in results:
        sums: dict[str, list[float]] = {}
        for a in agreement:
            models = list(a.get("models", []))
            rho = a.get("rank_correlation")
            if (
                a.get("method") != r.method
                or r.model not in models
                or not (a.get("same_prediction") or set(models) <= set(regressors))
                or a.get("sample") not in r.samples
                or not isinstance(rho, (int, float))
                or not math.isfinite(rho)
            ):
                continue
            for other in models:
                if other != r.model:
                    sums.setdefault(other, []).append(float(rho))
        if sums:
            mean = {k: sum(v) / len(v) for k, v in sums.items()}
            out.append(r.judged(thresholds, model_agreement=mean))
        else:
            out.append(r)
    return out


__all__ = ["BOX_COLUMNS", "CheckOptions", "run_check"]
