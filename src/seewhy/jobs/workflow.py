"""``seewhy explain`` as a workflow: samples x models x methods -> the output folder."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import SeewhyError, UsageError
from seewhy.data.output import OutputFolder, done_results
from seewhy.data.samples import Sample, unique_ids

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

    from seewhy.core.explanation import Explanation
    from seewhy.models.model import Model

METRIC_WORDS = ("acc", "f1", "auc", "precision", "recall", "loss", "mae", "rmse", "r2", "epoch")


@dataclass
class ExplainOptions:
    """The flags of ``seewhy explain`` (SPEC section 2)."""

    methods: list[str] = field(default_factory=lambda: ["gradcam"])
    target: str = "pred"
    layer: str | None = None
    out: Path = Path("seewhy-out")
    device: str | None = None
    batch_size: int = 8
    seed: int = 0
    trust_checkpoint: bool = False
    checkpoint: str | None = None
    labels: list[str] | None = None
    top_k: int = 3
    progress: bool = True
    report: bool = True


@dataclass
class RunOutcome:
    """What a run left: the summary, how many samples failed, where."""

    summary: dict[str, Any]
    failed: int
    out: Path

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def load_models(specs: Sequence[str], opts: ExplainOptions) -> list[Model]:
    """Load every ``--model``; names made unique for file names and figures."""
    from seewhy.models.loader import load_model

    if not specs:
        raise UsageError("no model given: pass --model CARD.toml or --model timm:NAME")
    if len(specs) > 1 and (opts.checkpoint or opts.labels):
        raise UsageError(
            "--checkpoint/--labels apply to a single --model; with several models put each "
            "checkpoint and its labels in a model card (.toml)"
        )
    import torch

    torch.manual_seed(opts.seed)  # arch strings without a checkpoint get reproducible weights
    models = [
        load_model(
            spec,
            checkpoint=opts.checkpoint,
            labels=opts.labels,
            layer=opts.layer,
            trust_checkpoint=opts.trust_checkpoint,
            device=opts.device,
        )
        for spec in specs
    ]
    for m, name in zip(models, unique_ids([m.name for m in models]), strict=True):
        m.name = name
    return models


def prediction(model: Model, output: Any, top_k: int = 3) -> tuple[dict[str, Any], list[str]]:
    """The summary's ``prediction`` for one sample's output row, and readable lines."""
    import torch

    row = output.float().flatten()
    if model.task == "regression":
        if row.numel() == 1:
            value = float(row[0])
            return {"value": value}, [f"predicted value: {value:.4g}"]
        values = {model.label(i): float(v) for i, v in enumerate(row)}
        first = next(iter(values.values()))
        return {"value": first, "values": values}, [f"{k}: {v:.4g}" for k, v in values.items()]
    probs = torch.sigmoid(row) if model.task == "multilabel" else torch.softmax(row, dim=0)
    # Rank by the raw output, as the 'pred' target does: probabilities can tie in float32.
    order = row.argsort(descending=True, stable=True).tolist()
    best = int(row.argmax())
    lines = [f"{model.label(i)}: {float(probs[i]):.3f}" for i in order[:top_k]]
    return {"label": model.label(best), "index": int(best), "score": float(probs[best])}, lines


def _details(model: Model, e: Explanation, lines: list[str], explained: str) -> list[str]:
    meta = [
        f"recorded {k}: {v}"
        for k, v in model.metadata.items()
        if any(w in k.lower() for w in METRIC_WORDS) and isinstance(v, (int, float, str))
    ]
    return [
        f"model: {model.name} ({model.arch})",
        "prediction:",
        *[f"  {line}" for line in lines],
        f"explained: {explained}",
        f"method: {e.method}" + (f"   layer: {e.layer}" if e.layer else ""),
        *meta[:4],
    ]


def _upsert(items: list[dict[str, Any]], entry: dict[str, Any], *keys: str) -> None:
    for i, item in enumerate(items):
        if all(item.get(k) == entry.get(k) for k in keys):
            items[i] = entry
            return
    items.append(entry)


def _validate(models: Sequence[Model], opts: ExplainOptions, samples: Sequence[Sample]) -> None:
    """Fail fast (exit 2) on a layer or target that fits no sample, before any work."""
    from seewhy.core.layers import get_layer
    from seewhy.core.targets import parse_target

    if opts.target.strip().lower() == "true" and any(s.target is None for s in samples):
        raise UsageError(
            "--target true needs the true labels: pass --data MANIFEST --target-col COL"
        )
    for m in models:
        if m.layer != "auto":
            get_layer(m.module, m.layer)
        targets = parse_target(
            opts.target, task=m.task, labels=m.labels, num_outputs=m.num_outputs, true_labels=[0]
        )
        if len(targets) != 1:
            raise UsageError(
                f"--target {opts.target} explains {len(targets)} outputs at once; seewhy explain "
                "takes one target per run (pred, a class, value, -value): run it once per class, "
                "or use seewhy.explain(..., target='all') from Python"
            )


def run_explain(
    samples: Sequence[Sample],
    model_specs: Sequence[str],
    opts: ExplainOptions,
    console: Console | None = None,
) -> RunOutcome:
    """Explain every sample with every model and method; write figures, maps, summary, report.

    A sample that fails (undecodable image, NaN output ...) is recorded in errors.jsonl and the
    run goes on. A rerun with the same ``out`` skips finished (sample, model, method) results.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    from seewhy.jobs.explain import resolve_methods

    console = console or Console(stderr=True)
    resolve_methods(opts.methods, opts.layer)  # unknown methods fail before any model loads
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if not samples:
        raise UsageError("no images to explain: pass IMAGE paths or --data MANIFEST")
    models = load_models(model_specs, opts)
    _validate(models, opts, samples)
    out = OutputFolder(opts.out)
    out.root.mkdir(parents=True, exist_ok=True)
    summary = out.load_summary()
    finished = done_results(summary, out.root)
    for m in models:
        _upsert(summary["models"], describe_model(m), "name")
    errors: list[dict[str, Any]] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not opts.progress) as bar:
        task = bar.add_task("explaining", total=len(samples))
        for sample in samples:
            bar.update(task, description=f"explaining {sample.id}")  # ids are markup-safe
            try:
                _explain_sample(sample, models, opts, out, summary, finished)
            except SeewhyError as exc:
                errors.append(_error(sample, str(exc)))
            except Exception as exc:
                # A model that crashes on one input (user code can raise anything) must not
                # end the whole run: the sample is recorded, with the exception's type.
                errors.append(_error(sample, f"{type(exc).__name__}: {exc}"))
            out.save_summary(summary)
            bar.advance(task)
    out.write_errors(errors)
    if opts.report:
        from seewhy.render.report import render_report

        render_report(out.root)
    return RunOutcome(summary=summary, failed=len(errors), out=out.root)


MAX_REASON = 600
"""Characters of an errors.jsonl reason (a long traceback-like message is cut)."""


def _error(sample: Sample, reason: str) -> dict[str, Any]:
    """An errors.jsonl entry; the reason on one line (torch's messages span several)."""
    text = " ".join(reason.split()) or "unknown error"
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3] + "..."
    return {"id": sample.id, "path": sample.image_path, "reason": text}


def describe_model(model: Model) -> dict[str, Any]:
    """The ``models[]`` entry: the model's description plus the scalar metadata its checkpoint
    recorded (accuracy, epoch ...), so the report can show it."""
    entry = model.describe()
    meta = {
        str(k): v
        for k, v in model.metadata.items()
        if isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) < 200)
    }
    if meta:
        entry["metadata"] = meta
    return entry


def _request(sample: Sample, model: Model, opts: ExplainOptions) -> dict[str, Any]:
    """What a (sample, model) result was computed from. A rerun reuses finished results only
    when this is unchanged: another --target, layer, checkpoint or image file recomputes."""
    d = model.describe()
    return {
        "target": opts.target.strip(),
        "sample_target": sample.target,
        "image": _stamp(sample.image_path),
        "model": [d.get("arch"), d.get("task"), d.get("labels"), d.get("layer")],
        "checkpoint": _stamp(d.get("checkpoint")),
    }


def _stamp(path: Any) -> list[Any] | None:
    """A file's path, size and modification time (None when there is no such file)."""
    import os

    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def _explain_sample(
    sample: Sample,
    models: Sequence[Model],
    opts: ExplainOptions,
    out: OutputFolder,
    summary: dict[str, Any],
    finished: set[tuple[str, str, str]],
) -> None:
    import numpy as np

    from seewhy.data.images import decode_image
    from seewhy.render.figures import ComparisonRow, comparison_figure

    decoded = decode_image(sample.image_path)
    image = np.asarray(decoded.image.convert("RGB"))
    _upsert(summary["samples"], sample.describe(), "id")
    per_model: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = {}
    for model in models:
        entry, maps = _explain_with(
            sample, model, image, decoded.grayscale, opts, out, summary, finished
        )
        per_model[model.name] = (entry, maps)
    if len(models) < 2:
        return
    rows, lines = [], []
    for a, b in itertools.combinations(models, 2):
        ea, ma = per_model[a.name]
        eb, mb = per_model[b.name]
        metrics = []
        for method in opts.methods:
            if method not in ma or method not in mb:
                continue
            agreement = _agreement(
                sample.id, a.name, b.name, method, ea, eb, ma[method], mb[method]
            )
            _upsert(summary["agreement"], agreement, "sample", "models", "method")
            metrics.append(
                f"{method}: rank correlation {agreement['rank_correlation']:.2f}, "
                f"top-10% IoU {agreement['top_iou']:.2f}"
            )
        if metrics:
            lines += [_pair_line(a.name, b.name, ea, eb, len(models) > 2), *metrics]
    for model in models:
        entry, maps = per_model[model.name]
        pred = entry["prediction"]
        text = (
            f"{pred['label']} ({pred['score']:.2f})"
            if "label" in pred
            else f"value {pred['value']:.4g}"
        )
        rows.append(ComparisonRow(model=model.name, prediction=text, maps=maps))
    path = out.comparison(sample.id)
    comparison_figure(
        path,
        image=image,
        rows=rows,
        agreement="\n".join(lines),
        grayscale=decoded.grayscale,
    )
    for a in summary["agreement"]:
        if a["sample"] == sample.id:
            a["comparison_figure"] = out.rel(path)


def _agreement(
    sample: str,
    a: str,
    b: str,
    method: str,
    ea: dict[str, Any],
    eb: dict[str, Any],
    ma: np.ndarray,
    mb: np.ndarray,
) -> dict[str, Any]:
    import torch

    from seewhy.checks.agreement import rank_correlation, top_iou

    pa, pb = ea["prediction"], eb["prediction"]
    same = pa.get("label") == pb.get("label") if "label" in pa else False
    ta, tb = torch.from_numpy(ma), torch.from_numpy(mb)
    return {
        "sample": sample,
        "models": [a, b],
        "method": method,
        "same_prediction": bool(same),
        "rank_correlation": round(rank_correlation(ta, tb), 4),
        "top_iou": round(top_iou(ta, tb, 0.1), 4),
    }


def _pair_line(a: str, b: str, ea: dict[str, Any], eb: dict[str, Any], named: bool) -> str:
    """What two models predict, in words (prefixed with their names when there are more)."""
    pa, pb = ea["prediction"], eb["prediction"]
    if "label" not in pa:
        return f"{a}: {pa['value']:.4g}, {b}: {pb['value']:.4g}"
    if pa.get("label") != pb.get("label"):
        return f"models disagree: {a} says {pa['label']}, {b} says {pb['label']}"
    return (
        f"{a} vs {b}: both predict {pa['label']}" if named else f"both models predict {pa['label']}"
    )


def _explain_with(
    sample: Sample,
    model: Model,
    image: np.ndarray,
    grayscale: bool,
    opts: ExplainOptions,
    out: OutputFolder,
    summary: dict[str, Any],
    finished: set[tuple[str, str, str]],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One (sample, model): explain the methods not done yet; reuse the finished ones."""
    import numpy as np

    from seewhy.core.targets import RegressionTarget, parse_target
    from seewhy.jobs.explain import explain
    from seewhy.render.figures import explanation_figure

    request = _request(sample, model, opts)
    old = next(
        (r for r in summary["results"] if r["sample"] == sample.id and r["model"] == model.name),
        None,
    )
    if old is not None and old.get("request") != request:
        old = None  # computed from another target, checkpoint, layer or image: redo it all
    todo = [m for m in opts.methods if old is None or (sample.id, model.name, m) not in finished]
    maps: dict[str, np.ndarray] = {}
    if old is not None and not todo:
        for a in old["attributions"]:
            maps[a["method"]] = np.load(out.root / a["map"])
        return old, maps
    from PIL import Image

    batch = model.preprocess([Image.fromarray(image)])
    target = _sample_target(model, sample, opts.target)
    exps = explain(model, batch, todo, target=target, batch_size=opts.batch_size)
    opposite: list[Explanation | None] = [None] * len(exps)
    flipped = False
    (t,) = parse_target(target, task=model.task, labels=model.labels, num_outputs=model.num_outputs)
    if isinstance(t, RegressionTarget) and not any(e.signed for e in exps):
        # Show what lowers the output beside what raises it (and the reverse for -value).
        opposite = list(
            explain(
                model,
                batch,
                todo,
                target=dataclasses.replace(t, sign=-t.sign),
                batch_size=opts.batch_size,
            )
        )
        flipped = t.sign < 0  # explaining -value: the opposite map is what raises
    output = exps[0].output
    if output is None:  # pragma: no cover - every method reports the model output
        raise UsageError(f"method {exps[0].method} did not report the model's output")
    pred, lines = prediction(model, output[0], opts.top_k)
    explained = _explained_name(model, exps[0])
    attributions = [a for a in (old or {}).get("attributions", []) if a["method"] not in todo]
    for a in attributions:
        maps[a["method"]] = np.load(out.root / a["map"])
    for e, other in zip(exps, opposite, strict=True):
        heat = e.map[0].cpu().numpy().astype(np.float32)
        map_path = out.map(sample.id, model.name, e.method)
        out.save_map(map_path, heat)
        fig_path = out.figure(sample.id, model.name, e.method)
        other_heat = None if other is None else other.map[0].cpu().numpy().astype(np.float32)
        raises, lowers = (
            (other_heat, heat) if flipped and other_heat is not None else (heat, other_heat)
        )
        explanation_figure(
            fig_path,
            image=image,
            heatmap=raises,
            title=f"{sample.id} · {model.name} · {e.method}",
            details=_details(model, e, lines, explained),
            signed=e.signed,
            grayscale=grayscale,
            lowers=lowers,
        )
        maps[e.method] = heat
        attributions.append(
            {
                "method": e.method,
                "params": dict(e.params),
                "map": out.rel(map_path),
                "figure": out.rel(fig_path),
            }
        )
    order = {m: i for i, m in enumerate(opts.methods)}
    attributions.sort(key=lambda a: order.get(a["method"], len(order)))
    entry = {
        "sample": sample.id,
        "model": model.name,
        "prediction": pred,
        "explained": explained,
        "attributions": attributions,
        "request": request,
    }
    _upsert(summary["results"], entry, "sample", "model")
    return entry, maps


def _sample_target(model: Model, sample: Sample, target: str) -> Any:
    """``true`` becomes this sample's class (label name or index from the manifest)."""
    from seewhy.core.targets import ClassTarget

    if target.strip().lower() != "true":
        return target
    value = str(sample.target).strip()
    labels = model.labels or []
    if value in labels:
        return ClassTarget(labels.index(value), value)
    if value.lstrip("-").isdigit():
        return ClassTarget(int(value), model.label(int(value)))
    raise UsageError(
        f"sample {sample.id}: true label '{value}' is neither a class index nor one of the "
        f"model's labels ({', '.join(labels) or 'none'})"
    )


def _explained_name(model: Model, e: Explanation) -> str:
    """The target in words: the class label for classifiers, the signed output otherwise."""
    if model.task == "regression" or e.target_indices is None:
        return e.target
    label = model.label(int(e.target_indices[0]))
    return label if e.target in ("pred", label) else f"{label} ({e.target})"
