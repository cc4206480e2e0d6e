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
    from torch import Tensor

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
    """The summary's ``prediction`` for one sample's output row, and readable lines.

    Classifiers with one output are binary (SPEC section 3): the score is the sigmoid of the
    logit, the label the positive one when the logit is above 0 (probability above 0.5), as the
    ``pred`` target decides. Multilabel models score each output by its sigmoid; the label is the
    top-scoring one. Other classifiers: the softmax.
    """
    import torch

    from seewhy.core.targets import PredictedClass

    row = output.float().flatten()
    if model.task == "regression":
        if row.numel() == 1:
            value = float(row[0])
            return {"value": value}, [f"predicted value: {value:.4g}"]
        values = {model.label(i): float(v) for i, v in enumerate(row)}
        first = next(iter(values.values()))
        return {"value": first, "values": values}, [f"{k}: {v:.4g}" for k, v in values.items()]
    # The class the 'pred' target explains (binary: by threshold; else the top raw output).
    best = int(PredictedClass(multilabel=model.task == "multilabel").indices(row[None])[0])
    if model.task == "classification" and row.numel() == 1:
        positive = float(torch.sigmoid(row[0]))
        chance = {1: positive, 0: 1.0 - positive}
        lines = [f"{model.label(i)}: {chance[i]:.3f}" for i in (best, 1 - best)]
        return {"label": model.label(best), "index": best, "score": chance[best]}, lines
    probs = torch.sigmoid(row) if model.task == "multilabel" else torch.softmax(row, dim=0)
    # Rank by the raw output, as the 'pred' target does: probabilities can tie in float32.
    order = row.argsort(descending=True, stable=True).tolist()
    lines = [f"{model.label(i)}: {float(probs[i]):.3f}" for i in order[:top_k]]
    return {"label": model.label(best), "index": int(best), "score": float(probs[best])}, lines


def _details(
    model: Model, e: Explanation, lines: list[str], explained: str, note: str | None = None
) -> list[str]:
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
        *([note] if note else []),
        *meta[:4],
    ]


def _upsert(items: list[dict[str, Any]], entry: dict[str, Any], *keys: str) -> None:
    for i, item in enumerate(items):
        if all(item.get(k) == entry.get(k) for k in keys):
            items[i] = entry
            return
    items.append(entry)


def _reads_a_layer(method: str) -> bool:
    """Whether a method reads a layer's activations (the CAM family): it has a ``layer``."""
    from seewhy.methods.registry import method_class

    cls = method_class(method)
    return "layer" in {f.name for f in dataclasses.fields(cls)}


def _validate(
    models: Sequence[Model], opts: ExplainOptions, samples: Sequence[Sample]
) -> dict[str, str | None]:
    """Fail fast (exit 2) on a target, method or layer that fits no sample, before any work.

    Every (model, method, layer) pair is checked: a CAM needs a hookable module (not
    TorchScript) and a layer with a spatial output, ``auto`` included (one dry run of a blank
    image per model). Returns each model's resolved CAM layer (``None`` when no CAM is asked),
    so the run does not search for it again per batch.
    """
    from seewhy.api import example_image, resolve_methods
    from seewhy.core.errors import MethodNotApplicableError
    from seewhy.core.layers import resolve_layer
    from seewhy.core.targets import parse_target

    if opts.target.strip().lower() == "true" and any(s.truth is None for s in samples):
        raise UsageError(
            "--target true needs the true labels: pass --data MANIFEST --target-col COL, or a "
            "folder with one subfolder per class"
        )
    cams = [m for m in opts.methods if _reads_a_layer(m)]
    layers: dict[str, str | None] = {}
    for m in models:
        targets = parse_target(
            opts.target, task=m.task, labels=m.labels, num_outputs=m.num_outputs, true_labels=[0]
        )
        if len(targets) != 1:
            raise UsageError(
                f"--target {opts.target} explains {len(targets)} outputs at once; seewhy explain "
                "takes one target per run (pred, a class, value, -value): run it once per class, "
                "or use seewhy.explain(..., target='all') from Python"
            )
        _check_classes(m, targets[0], opts.target, samples)
        layers[m.name] = None
        if not cams:
            continue
        for method in resolve_methods(cams, m.layer):
            try:  # what the method itself refuses (a CAM on TorchScript), before any work
                method.check_applicable(m.module)
            except MethodNotApplicableError as exc:
                raise MethodNotApplicableError(f"model {m.name} ({m.arch}): {exc}") from None
        example = example_image(m)
        try:
            spec = resolve_layer(m.module, m.layer, example)
        except MethodNotApplicableError as exc:
            raise MethodNotApplicableError(
                f"model {m.name}: {', '.join(cams)} cannot explain it: {exc}"
            ) from None
        layers[m.name] = spec.name
    return layers


def _check_classes(model: Model, target: Any, spec: str, samples: Sequence[Sample]) -> None:
    """Refuse, before any work, a class that the model does not have: a class index out of
    range, or true labels (``--target true``) that are not among the model's classes."""
    from seewhy.core.targets import ClassTarget

    n = model.num_outputs
    classes = 2 if (model.task == "classification" and n == 1) else n
    names = f" ({', '.join(model.labels)})" if model.labels else ""
    if isinstance(target, ClassTarget) and classes and not 0 <= target.index < classes:
        raise UsageError(
            f"--target {spec}: model {model.name} has {classes} classes, 0..{classes - 1}{names}"
        )
    if spec.strip().lower() != "true":
        return
    if model.task == "regression":
        raise UsageError(
            f"--target true explains each sample's true class, but model {model.name} is a "
            "regressor; use --target value or -value"
        )
    bad: dict[str, int] = {}
    for s in samples:
        try:
            index = _true_class(model, s)
        except UsageError:
            index = -1
        if classes and not 0 <= index < classes:
            bad[str(s.truth)] = bad.get(str(s.truth), 0) + 1
    if bad:
        shown = ", ".join(f"'{k}' ({v} samples)" for k, v in sorted(bad.items())[:5])
        raise UsageError(
            f"--target true: model {model.name} has no class {shown}; its classes are "
            f"{names.strip(' ()') or f'0..{(classes or 1) - 1}'}. Fix the card's labels, or the "
            "manifest's --target-col / the folder's class subfolders"
        )


def run_explain(
    samples: Sequence[Sample],
    model_specs: Sequence[str],
    opts: ExplainOptions,
    console: Console | None = None,
) -> RunOutcome:
    """Explain every sample with every model and method; write figures, maps, summary, report.

    Samples go through the models in groups of ``opts.batch_size`` (the largest batch any
    forward pass sends to a model). A group that fails is retried sample by sample, so a sample
    that fails (undecodable image, NaN output, a crash inside the model ...) is recorded in
    errors.jsonl alone and the run goes on. A rerun with the same ``out`` skips finished
    (sample, model, method) results.
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

    from seewhy.api import resolve_methods
    from seewhy.methods.registry import canonical_names

    console = console or Console(stderr=True)
    # One name per method from here on (GradCAM, gradcampp -> gradcam, gradcam++): results,
    # agreement and resume all key on it. Unknown methods fail before any model loads.
    opts = dataclasses.replace(opts, methods=canonical_names(opts.methods))
    resolve_methods(opts.methods, opts.layer)
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if not samples:
        raise UsageError("no images to explain: pass IMAGE paths or --data MANIFEST")
    if opts.out.exists() and not opts.out.is_dir():
        raise UsageError(f"--out {opts.out} is a file, not a folder; pass a folder name")
    models = load_models(model_specs, opts)
    layers = _validate(models, opts, samples)
    out = OutputFolder(opts.out)
    out.root.mkdir(parents=True, exist_ok=True)
    summary = out.load_summary()
    finished = done_results(summary, out.root)
    for m in models:
        _upsert(summary["models"], describe_model(m), "name")
    run = _Run(models=models, layers=layers, opts=opts, out=out, summary=summary, done=finished)
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
        for start in range(0, len(samples), opts.batch_size):
            group = list(samples[start : start + opts.batch_size])
            # ids are markup-safe; a long one (a deep path) keeps its end, the file name
            sid = group[0].id if len(group[0].id) <= 24 else "…" + group[0].id[-23:]
            bar.update(task, description=f"explaining {sid}")
            failed = run.group(group)
            errors.extend(_error(s, failed[s.id]) for s in group if s.id in failed)
            out.save_summary(summary)
            bar.advance(task, len(group))
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
        "sample_target": sample.truth,
        "image": _stamp(sample.image_path),
        "model": [d.get("arch"), d.get("task"), d.get("labels"), d.get("layer")],
        "preprocess": d.get("preprocess"),
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


def _reason(exc: BaseException) -> str:
    """A failure's reason: a seewhy error's message, anything else (a crash inside the user's
    model) with its exception type."""
    return str(exc) if isinstance(exc, SeewhyError) else f"{type(exc).__name__}: {exc}"


@dataclass
class _Shown:
    """A sample's image as one model sees it: decoded, in the model-input frame for figures."""

    image: np.ndarray
    grayscale: bool


@dataclass
class _Todo:
    """A (sample, model) result to compute: the request it comes from and what is reusable."""

    sample: Sample
    request: dict[str, Any]
    old: dict[str, Any] | None
    methods: tuple[str, ...]


@dataclass
class _Run:
    """One ``seewhy explain`` run: models, options, the output folder and its summary."""

    models: Sequence[Model]
    layers: dict[str, str | None]
    opts: ExplainOptions
    out: OutputFolder
    summary: dict[str, Any]
    done: set[tuple[str, str, str]]

    def group(self, samples: Sequence[Sample]) -> dict[str, str]:
        """Explain a group of samples with every model; returns failed sample id -> reason."""
        failed: dict[str, str] = {}
        decoded: dict[tuple[str, str], Any] = {}
        depths = list(dict.fromkeys(m.preprocess.bit_depth for m in self.models))
        for s in samples:
            try:  # once per 16-bit scaling the models ask for (the same for 8-bit images)
                for depth in depths:
                    decoded[s.id, depth] = _decode(s.image_path, depth)
            except Exception as exc:  # an undecodable image fails alone
                failed[s.id] = _reason(exc)
                continue
            _upsert(self.summary["samples"], s.describe(), "id")
        for s in samples:
            if s.id in failed:
                self.forget(s.id, None)
        live = [s for s in samples if s.id not in failed]
        results: dict[str, dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]] = {}
        reasons: dict[str, list[str]] = {}
        for model in self.models:
            # Each model explains every decoded sample: one model failing on an image does
            # not keep the others from it (the comparison then has the models that worked).
            broken: dict[str, str] = {}
            for sid, done in self.with_model(model, live, decoded, broken).items():
                results.setdefault(sid, {})[model.name] = done
            for sid, reason in broken.items():
                self.forget(sid, model.name)
                reasons.setdefault(sid, []).append(
                    reason if len(self.models) == 1 else f"model {model.name}: {reason}"
                )
        if len(self.models) > 1:
            for s in live:
                if s.id in results:
                    # The comparison shows the image as the first model that read it saw it.
                    first = next(m for m in self.models if m.name in results[s.id])
                    try:
                        self.compare(s, decoded[s.id, first.preprocess.bit_depth], results[s.id])
                    except Exception as exc:
                        reasons.setdefault(s.id, []).append(f"comparison: {_reason(exc)}")
        failed.update({sid: "; ".join(r) for sid, r in reasons.items()})
        return failed

    def forget(self, sample: str, model: str | None) -> None:
        """Drop a (sample, model) result (every model's when ``model`` is None) that failed on
        this run, with its agreement entries: the summary never shows a stale success."""
        summary = self.summary
        summary["results"] = [
            r
            for r in summary["results"]
            if not (r["sample"] == sample and (model is None or r["model"] == model))
        ]
        summary["agreement"] = [
            a
            for a in summary["agreement"]
            if not (a["sample"] == sample and (model is None or model in a["models"]))
        ]

    def with_model(
        self,
        model: Model,
        samples: Sequence[Sample],
        decoded: dict[tuple[str, str], Any],
        failed: dict[str, str],
    ) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]:
        """The (sample, model) results: reused where finished, else computed in one batch per
        set of methods to do; a batch that fails is retried sample by sample."""
        import numpy as np

        ready: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = {}
        pending: dict[tuple[str, ...], list[_Todo]] = {}
        for s in samples:
            todo = self.todo(s, model)
            if todo.old is not None and not todo.methods:
                maps = {
                    a["method"]: np.load(self.out.root / a["map"]) for a in todo.old["attributions"]
                }
                ready[s.id] = (todo.old, maps)
            else:
                pending.setdefault(todo.methods, []).append(todo)
        for items in pending.values():
            try:
                ready.update(self.compute(model, items, decoded))
            except Exception as exc:
                if len(items) == 1:
                    failed[items[0].sample.id] = _reason(exc)
                    continue
                for item in items:  # find the sample that broke the batch
                    try:
                        ready.update(self.compute(model, [item], decoded))
                    except Exception as one:
                        failed[item.sample.id] = _reason(one)
        return ready

    def todo(self, sample: Sample, model: Model) -> _Todo:
        """What is left to do for (sample, model): the methods not finished under the same
        request (another target, layer, checkpoint or image file recomputes them all)."""
        request = _request(sample, model, self.opts)
        old = next(
            (
                r
                for r in self.summary["results"]
                if r["sample"] == sample.id and r["model"] == model.name
            ),
            None,
        )
        if old is not None and old.get("request") != request:
            old = None
        methods = tuple(
            m
            for m in self.opts.methods
            if old is None or (sample.id, model.name, m) not in self.done
        )
        return _Todo(sample, request, old, methods)

    def compute(
        self, model: Model, items: Sequence[_Todo], decoded: dict[tuple[str, str], Any]
    ) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]:
        """Explain ``items`` (same methods to do) as one batch; write maps, figures, results."""
        import numpy as np

        from seewhy.api import explain

        methods = list(items[0].methods)
        images = [decoded[t.sample.id, model.preprocess.bit_depth] for t in items]
        batch = model.preprocess([d.image for d in images])
        target = _batch_target(model, [t.sample for t in items], self.opts.target)
        exps = explain(
            model,
            batch,
            methods,
            target=target,
            layer=self.layers.get(model.name),
            batch_size=self.opts.batch_size,
        )
        opposite = _opposites(exps)
        flipped = _is_lowering(model, target)
        done = {}
        for i, (item, d) in enumerate(zip(items, images, strict=True)):
            # Figures show the image as the model saw it (resized, cropped): the map's frame.
            shown = _Shown(np.asarray(model.preprocess.frame(d.image)), d.grayscale)
            done[item.sample.id] = self.write(model, item, i, exps, opposite, flipped, shown)
        return done

    def write(
        self,
        model: Model,
        item: _Todo,
        i: int,
        exps: Sequence[Explanation],
        opposite: Sequence[Tensor | None],
        flipped: bool,
        shown: _Shown,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Row ``i`` of a batch's explanations: its maps, figures and summary result."""
        import numpy as np

        from seewhy.render.figures import explanation_figure

        sample, out = item.sample, self.out
        output = exps[0].output
        if output is None:  # pragma: no cover - every method reports the model output
            raise UsageError(f"method {exps[0].method} did not report the model's output")
        pred, lines = prediction(model, output[i], self.opts.top_k)
        explained = _explained_name(model, exps[0], i)
        kept = [
            a for a in (item.old or {}).get("attributions", []) if a["method"] not in item.methods
        ]
        maps = {a["method"]: np.load(out.root / a["map"]) for a in kept}
        attributions = list(kept)
        for e, other in zip(exps, opposite, strict=True):
            heat = e.map[i].cpu().numpy().astype(np.float32)
            map_path = out.map(sample.id, model.name, e.method)
            out.save_map(map_path, heat)
            fig_path = out.figure(sample.id, model.name, e.method)
            other_heat = None if other is None else other[i].cpu().numpy().astype(np.float32)
            raises, lowers = (
                (other_heat, heat) if flipped and other_heat is not None else (heat, other_heat)
            )
            note = None
            if _is_regression(model) and not _depends_on_target(e.method):
                note = f"{e.method} does not depend on the target: one map for any output"
            explanation_figure(
                fig_path,
                image=shown.image,
                heatmap=raises,
                title=f"{sample.id} · {model.name} · {e.method}",
                details=_details(model, e, lines, explained, note),
                signed=e.signed,
                grayscale=shown.grayscale,
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
        order = {m: k for k, m in enumerate(self.opts.methods)}
        attributions.sort(key=lambda a: order.get(a["method"], len(order)))
        entry = {
            "sample": sample.id,
            "model": model.name,
            "prediction": pred,
            "explained": explained,
            "attributions": attributions,
            "request": item.request,
        }
        _upsert(self.summary["results"], entry, "sample", "model")
        return entry, maps

    def compare(
        self,
        sample: Sample,
        decoded: Any,
        per_model: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]],
    ) -> None:
        """The comparison figure and agreement entries of one sample (two or more models)."""

        from seewhy.render.figures import ComparisonRow, comparison_figure

        models = [m for m in self.models if m.name in per_model]
        if len(models) < 2:
            return
        image, framed = _common_frame(models, decoded.image, per_model)
        rows, lines = [], []
        for a, b in itertools.combinations(models, 2):
            ea, ma = per_model[a.name]
            eb, mb = per_model[b.name]
            metrics = []
            for method in self.opts.methods:
                if method not in ma or method not in mb:
                    continue
                fa, ca = framed[a.name][method]
                fb, cb = framed[b.name][method]
                both = ca & cb  # compared where both models saw the image
                agreement = _agreement(
                    sample.id, a.name, b.name, method, ea, eb, fa[both], fb[both]
                )
                _upsert(self.summary["agreement"], agreement, "sample", "models", "method")
                metrics.append(
                    f"{method}: rank correlation {agreement['rank_correlation']:.2f}, "
                    f"top-10% IoU {agreement['top_iou']:.2f}"
                )
            if metrics:
                lines += [_pair_line(a.name, b.name, ea, eb, len(models) > 2), *metrics]
        for model in models:
            entry, _ = per_model[model.name]
            maps = {m: shown for m, (shown, _) in framed[model.name].items()}
            rows.append(
                ComparisonRow(
                    model=model.name, prediction=_prediction_text(entry["prediction"]), maps=maps
                )
            )
        path = self.out.comparison(sample.id)
        comparison_figure(
            path,
            image=image,
            rows=rows,
            agreement="\n".join(lines),
            grayscale=decoded.grayscale,
        )
        for a in self.summary["agreement"]:
            if a["sample"] == sample.id:
                a["comparison_figure"] = self.out.rel(path)


def _decode(path: str, bit_depth: str) -> Any:
    from seewhy.data.images import decode_image

    return decode_image(path, bit_depth=bit_depth)


COMPARE_SIDE = 256
"""The longer side of the grid on which models that frame the image differently are compared."""


def _common_frame(
    models: Sequence[Model],
    image: Any,
    per_model: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]],
) -> tuple[np.ndarray, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """The image and every model's maps in one frame, with where each map covers it.

    Models that resize and crop alike (the usual case) share their input frame: the image is
    the first model's frame and the maps are used as they are. Models that crop differently
    (a timm model with ``crop_pct = 0.875`` beside one at 1.0) see different parts of the
    image: their maps are placed where their frame lies on the original image, on a grid of
    :data:`COMPARE_SIDE` pixels along its longer side, and agreement is computed only where
    both maps cover it.
    """
    import numpy as np

    width, height = image.size
    boxes = [m.preprocess.box(width, height) for m in models]
    if all(np.allclose(b, boxes[0], atol=1e-6) for b in boxes):
        shown = np.asarray(models[0].preprocess.frame(image))
        return shown, {
            m.name: {k: (v, np.ones(v.shape, bool)) for k, v in per_model[m.name][1].items()}
            for m in models
        }
    scale = min(1.0, COMPARE_SIDE / max(width, height))
    grid = (max(1, round(width * scale)), max(1, round(height * scale)))
    framed = {
        m.name: {k: _place(v, box, (width, height), grid) for k, v in per_model[m.name][1].items()}
        for m, box in zip(models, boxes, strict=True)
    }
    return np.asarray(image.convert("RGB")), framed


def _place(
    heat: np.ndarray,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    grid: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """A map of a model's input frame placed on a ``grid`` (w, h) over the original image of
    ``size`` (w, h), where the frame covers ``box``: (map, covered), 0 where not covered."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    x0, y0, x1, y1 = box
    (width, height), (gw, gh) = size, grid
    nx = ((np.arange(gw) + 0.5) * width / gw - x0) / (x1 - x0) * 2 - 1
    ny = ((np.arange(gh) + 0.5) * height / gh - y0) / (y1 - y0) * 2 - 1
    gy, gx = np.meshgrid(ny, nx, indexing="ij")
    where = torch.from_numpy(np.stack([gx, gy], axis=-1)).float()[None]
    src = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    placed = F.grid_sample(src, where, mode="bilinear", padding_mode="zeros", align_corners=False)
    covered = (np.abs(gx) <= 1) & (np.abs(gy) <= 1)
    return placed[0, 0].numpy() * covered, covered


def _prediction_text(pred: dict[str, Any]) -> str:
    """A prediction in a few words: ``fracture (0.93)`` or ``value 3.2e+05``."""
    if "label" in pred:
        return f"{pred['label']} ({pred['score']:.2f})"
    return f"value {pred['value']:.4g}"


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
    if "label" not in pa and "label" not in pb:
        return f"{a}: {pa['value']:.4g}, {b}: {pb['value']:.4g}"
    if "label" not in pa or "label" not in pb:  # a classifier beside a regressor
        return f"{a}: {_prediction_text(pa)}, {b}: {_prediction_text(pb)}"
    if pa.get("label") != pb.get("label"):
        return f"models disagree: {a} says {pa['label']}, {b} says {pb['label']}"
    return (
        f"{a} vs {b}: both predict {pa['label']}" if named else f"both models predict {pa['label']}"
    )


def _is_regression(model: Model) -> bool:
    return model.task == "regression"


def _depends_on_target(method: str) -> bool:
    """Whether a method's map changes with the target (EigenCAM's does not)."""
    from seewhy.methods.registry import method_class

    return bool(getattr(method_class(method), "depends_on_target", True))


def _single(model: Model, target: Any) -> Any:
    from seewhy.core.targets import Target, parse_target

    if isinstance(target, Target):
        return target
    (t,) = parse_target(target, task=model.task, labels=model.labels, num_outputs=model.num_outputs)
    return t


def _is_lowering(model: Model, target: Any) -> bool:
    """Whether the target explains what lowers a regression output (``-value``)."""
    from seewhy.core.targets import RegressionTarget

    t = _single(model, target)
    return isinstance(t, RegressionTarget) and t.sign < 0


def _opposites(exps: Sequence[Explanation]) -> list[Tensor | None]:
    """Each method's map of the opposite sign (regression targets: every target-dependent CAM
    computes it in the same pass, ``extras["opposite"]``), so figures show what raises and what
    lowers the output apart; ``None`` for classifiers, signed methods and methods that do not
    depend on the target (their two maps would be the same)."""
    return [
        e.extras.get("opposite") if _depends_on_target(e.method) and not e.signed else None
        for e in exps
    ]


def _batch_target(model: Model, samples: Sequence[Sample], target: str) -> Any:
    """The target for a batch: ``true`` becomes each sample's class (label or index from the
    manifest or folder); anything else is shared."""
    from seewhy.core.targets import SampleClasses

    if target.strip().lower() != "true":
        return target
    return SampleClasses(tuple(_true_class(model, s) for s in samples))


def _true_class(model: Model, sample: Sample) -> int:
    value = str(sample.truth).strip()
    labels = model.labels or []
    if value in labels:
        return labels.index(value)
    if value.lstrip("-").isdigit():
        return int(value)
    raise UsageError(
        f"sample {sample.id}: true label '{value}' is neither a class index nor one of the "
        f"model's labels ({', '.join(labels) or 'none'})"
    )


def _explained_name(model: Model, e: Explanation, i: int = 0) -> str:
    """The target in words: the class label for classifiers, the signed output otherwise."""
    if model.task == "regression" or e.target_indices is None:
        return e.target
    label = model.label(int(e.target_indices[i]))
    return label if e.target in ("pred", label) else f"{label} ({e.target})"
