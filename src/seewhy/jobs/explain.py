"""``seewhy explain`` as a workflow: samples x models x methods -> the output folder."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import SeewhyError, UsageError
from seewhy.data.output import OutputFolder, _file_part, done_results
from seewhy.data.samples import Sample, unique_ids
from seewhy.data.summary import prediction, upsert
from seewhy.jobs.compare import compare_models
from seewhy.jobs.multimodal import (
    check_samples,
    named_batch,
    records,
    request_inputs,
    usable_row,
)
from seewhy.jobs.regression import is_lowering, one_map_note, opposites, raises_and_lowers
from seewhy.jobs.resume import built_from
from seewhy.jobs.resume import request as resume_request

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console
    from torch import Tensor

    from seewhy.core.explanation import Explanation
    from seewhy.methods.base import Method
    from seewhy.models.model import Model

EG_BACKGROUND = 32
"""Expected gradients' background rows when ``--n-background`` is not given."""
METRIC_WORDS = ("acc", "f1", "auc", "precision", "recall", "loss", "mae", "rmse", "r2", "epoch")


@dataclass
class ExplainOptions:
    """The flags of ``seewhy explain`` (SPEC section 2)."""

    methods: list[str] = field(default_factory=lambda: ["gradcam"])
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
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
    n_background: int | None = None
    """Background rows: expected gradients draw baselines from this many of the samples
    (default :data:`EG_BACKGROUND`); tree-shap runs interventional on this many rows when it is
    given, path-dependent when not."""
    figures: bool = True
    """Draw the figures (``False``: maps and summary only, e.g. a dataset run's rows)."""
    text_from: str | None = None
    """The flag the samples' text came from (``--text`` or ``--text-col``), named in the usage
    error when no model takes text."""


@dataclass
class RunOutcome:
    """What a run left: the summary, how many samples failed, where."""

    summary: dict[str, Any]
    failed: int
    out: Path
    background_for: Callable[[Model, Sequence[Method]], Any] | None = None
    """The run's expected-gradients background for a model and methods (what
    ``seewhy.explain`` took as ``background``), for work that recomputes its maps."""

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def load_models(specs: Sequence[str], opts: ExplainOptions) -> list[Any]:
    """Load every ``--model`` (torch models, and tabular tree models from their cards); names
    made unique for file names and figures."""
    from seewhy.models.loader import load_any

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
        load_any(
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


def _check_text(
    models: Sequence[Model], every: Sequence[Any], opts: ExplainOptions, samples: Sequence[Sample]
) -> None:
    """Refuse, before any work, text that no model takes (``--text`` or ``--text-col`` with
    image-only models): it would be ignored, yet recorded beside each sample. With several
    models, the ones that take text read it and the others leave it."""
    given = opts.text_from or ("--text" if any(s.text is not None for s in samples) else None)
    if given is None or any(m.text is not None for m in models):
        return
    names = ", ".join(m.name for m in every)
    raise UsageError(
        f"{given}: no model takes text ({names}); drop {given}, or give a model whose card has "
        "[inputs] text"
    )


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
        for method in _methods(opts, None):  # e.g. precision=bfloat16 where not native
            if not _reads_a_layer(method.name):
                method.check_applicable(m.module)
        check_samples(m, samples)
        layers[m.name] = None
        if m.modalities.multimodal:  # a multimodal model's layer: on its batch
            continue
        if not cams:
            _channels_fit(m, example_image(m))
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


def _channels_fit(model: Model, example: Any) -> None:
    """One dry run of a blank image when no CAM probes the model: a model that reads other
    channels than its images have (a 4-channel model) is one line, exit 2, before any work
    (:func:`~seewhy.core.layers.dry_run`), not torch's error on every sample. Any other error
    is left to the samples, each failing alone as before."""
    import torch

    from seewhy.core.errors import ModelLoadError
    from seewhy.core.layers import dry_run
    from seewhy.core.state import explaining

    try:
        with explaining(model.module), torch.no_grad():
            dry_run(model.module, example)
    except ModelLoadError:
        raise
    except Exception:  # the samples report it, one by one
        return


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
    *,
    loaded: Sequence[Model] | None = None,
) -> RunOutcome:
    """Explain every sample with every model and method; write figures, maps, summary, report.

    ``loaded``: the models, already loaded from ``model_specs`` (``seewhy check`` loads them
    once for the explanations and the checks).

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

    from seewhy.methods.registry import parse_method_specs

    console = console or Console(stderr=True)
    # One name per method from here on (GradCAM, gradcampp -> gradcam, gradcam++): results,
    # agreement and resume all key on it. Unknown methods fail before any model loads.
    # Settings in brackets (ig(steps=32)) are checked against the method before any work.
    specs = parse_method_specs(opts.methods)
    opts = dataclasses.replace(
        opts,
        methods=[name for name, _ in specs],
        settings={**{name: own for name, own in specs if own}, **opts.settings},
    )
    _methods(opts, opts.layer)
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if opts.n_background is not None and opts.n_background < 0:
        raise UsageError(
            f"--n-background must be >= 0, got {opts.n_background} (below 2: the zero baseline)"
        )
    if not samples:
        raise UsageError("no images to explain: pass IMAGE paths or --data MANIFEST")
    if opts.out.exists() and not opts.out.is_dir():
        raise UsageError(f"--out {opts.out} is a file, not a folder; pass a folder name")
    from seewhy.jobs.trees import check_run, is_tree, split_methods

    every: list[Any] = list(loaded) if loaded is not None else load_models(model_specs, opts)
    trees = [m for m in every if is_tree(m)]
    models: list[Model] = [m for m in every if not is_tree(m)]
    _check_text(models, every, opts, samples)
    # the --model each came from: the file its arch names is relative to its card's folder
    sources = (
        {m.name: str(spec) for m, spec in zip(every, model_specs, strict=True)}
        if len(model_specs) == len(every)
        else {}
    )
    torch_methods, tree_methods = split_methods(opts.methods, models, trees)
    opts = dataclasses.replace(opts, methods=torch_methods)
    picked = [m.for_target(opts.target) for m in models]  # --target HEAD:LABEL picks a head
    if any(head is not m for (head, _), m in zip(picked, models, strict=True)):
        models = [head for head, _ in picked]
        opts = dataclasses.replace(opts, target=str(picked[0][1]))
    check_run(trees, opts.target, samples)
    layers = _validate(models, opts, samples) if models else {}
    out = OutputFolder(opts.out)
    out.root.mkdir(parents=True, exist_ok=True)
    summary = out.load_summary()
    finished = done_results(summary, out.root)
    for m in every:
        upsert(summary["models"], m.describe() if is_tree(m) else describe_model(m), "name")
    run = _Run(
        models=models,
        layers=layers,
        opts=opts,
        out=out,
        summary=summary,
        done=finished,
        samples=samples,
        specs=sources,
    )
    errors: list[dict[str, Any]] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not opts.progress) as bar:
        task = bar.add_task("explaining", total=len(samples) if models else 0)
        for start in range(0, len(samples) if models else 0, opts.batch_size):
            group = list(samples[start : start + opts.batch_size])
            # ids are markup-safe; a long one (a deep path) keeps its end, the file name
            sid = group[0].id if len(group[0].id) <= 24 else "…" + group[0].id[-23:]
            bar.update(task, description=f"explaining {sid}")
            failed = run.group(group)
            errors.extend(_error(s, failed[s.id]) for s in group if s.id in failed)
            out.save_summary(summary)
            bar.advance(task, len(group))
    if trees:
        failed_ids = {e["id"] for e in errors}
        for t in trees:
            bad = _explain_trees(
                t, tree_methods, samples, opts, out, summary, len(every) > 1, console
            )
            for s in samples:
                if s.id in bad and s.id not in failed_ids:
                    errors.append(_error(s, bad[s.id]))
                    failed_ids.add(s.id)
        _tree_agreement(trees, samples, summary)
        out.save_summary(summary)
    if run.recomputed:  # checks of maps this run replaced judged other maps: drop them
        summary["checks"] = [
            c
            for c in summary.get("checks", [])
            if (c.get("model"), c.get("method")) not in run.recomputed
        ]
        out.save_summary(summary)
    out.write_errors(errors)
    if opts.report:
        from seewhy.render.report import render_report

        render_report(out.root)
    return RunOutcome(
        summary=summary, failed=len(errors), out=out.root, background_for=run.background_for
    )


def _explain_trees(
    model: Any,
    methods: Sequence[str],
    samples: Sequence[Sample],
    opts: ExplainOptions,
    out: OutputFolder,
    summary: dict[str, Any],
    several: bool,
    console: Console | None = None,
) -> dict[str, str]:
    """A tree model's rows: predictions and tree-shap values (``features[]``) per row, a
    feature figure per row, and the whole run's beeswarm + bar figure (``importance[]``).
    Returns the rows that failed (id -> reason); the others' results replace earlier ones.
    A background too small for interventional SHAP (fewer than 2 rows) runs path-dependent,
    said on the console and in each row's ``notes``."""
    from seewhy.jobs import trees
    from seewhy.methods.registry import create_method

    name = methods[0]
    method = create_method(name, **opts.settings.get(name, {}))
    rows = trees.read_rows(model, samples, lambda s: s.truth)
    failed = dict(rows.failed)
    _, background = trees.background_rows(rows, opts.n_background, opts.seed)
    note = trees.background_note(model, rows, opts.n_background)
    notes = [note] if note else []
    if note and console is not None:
        console.print(note, style="yellow", markup=False)
    for start in range(0, len(rows.samples), trees.CHUNK):
        chunk = list(range(start, min(start + trees.CHUNK, len(rows.samples))))
        try:
            done = _tree_chunk(model, method, rows, chunk, background, opts, out, notes)
        except Exception:
            done = {}
            for k in chunk:
                try:
                    done.update(_tree_chunk(model, method, rows, [k], background, opts, out, notes))
                except Exception as one:
                    failed[rows.samples[k].id] = _reason(one)
        for k in chunk:
            s = rows.samples[k]
            if s.id in done:
                upsert(summary["samples"], s.describe(), "id")
                upsert(summary["results"], done[s.id], "sample", "model")
    ok = [k for k, s in enumerate(rows.samples) if s.id not in failed]
    if ok:
        kept = trees.TreeRows(
            [rows.samples[k] for k in ok], rows.x[ok], [rows.truth[k] for k in ok]
        )
        path = out.root / "figures" / f"{_file_part(model.name)}__{_file_part(name)}.png"
        entry = trees.importance(
            model,
            method,
            kept,
            target=opts.target,
            background=background,
            seed=opts.seed,
            figure=path if opts.figures else None,
        )
        if entry.get("figure"):
            entry["figure"] = out.rel(entry["figure"])
        if notes:
            entry["notes"] = notes
        summary.setdefault("importance", [])
        upsert(summary["importance"], entry, "model", "method")
    for sid in failed:
        summary["results"] = [
            r for r in summary["results"] if not (r["sample"] == sid and r["model"] == model.name)
        ]
    if several:
        failed = {k: f"model {model.name}: {v}" for k, v in failed.items()}
    return failed


def _tree_chunk(
    model: Any,
    method: Any,
    rows: Any,
    chunk: list[int],
    background: Any,
    opts: ExplainOptions,
    out: OutputFolder,
    notes: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """The ``results[]`` entries of rows ``chunk`` of a tree model (id -> entry); ``notes``
    go into each row's attribution."""
    from seewhy.jobs import trees

    x = rows.x[chunk]
    preds = trees.predictions(model, x)
    bad = [rows.samples[chunk[j]].id for j, p in enumerate(preds) if not trees.finite(p)]
    if bad:
        raise UsageError(f"the model's output is NaN for row {bad[0]}")
    result = trees.shap_values(
        model,
        method,
        x,
        target=opts.target,
        truth=[rows.truth[k] for k in chunk],
        background=background,
    )
    done = {}
    for n, k in enumerate(chunk):
        s = rows.samples[k]
        a = trees.attribution(model, method, result, x, n, notes)
        if opts.figures:
            from seewhy.render.figures import feature_figure

            path = out.figure(s.id, model.name, a["method"], suffix="__features")
            feature_figure(
                path,
                names=[f["name"] for f in a["features"]],
                values=[f["value"] for f in a["features"]],
                scores=[f["score"] for f in a["features"]],
                title=f"{s.id} · {model.name} · {a['method']} · features",
            )
            # the row's one figure: `figure` as SPEC section 7 names it, `features_figure`
            # as image+tabular models name their feature figure
            a["figure"] = a["features_figure"] = out.rel(path)
        done[s.id] = {
            "sample": s.id,
            "model": model.name,
            "prediction": preds[n],
            "explained": trees.explained(model, result, n, opts.target),
            "attributions": [a],
        }
    return done


def _tree_agreement(
    trees: Sequence[Any], samples: Sequence[Sample], summary: dict[str, Any]
) -> None:
    """``agreement[]`` for two or more tree models (SPEC section 2): per row both explained
    and per pair, :func:`seewhy.jobs.trees.row_agreement`. The run's earlier entries for
    these pairs and rows are replaced (a row that failed this time keeps none)."""
    import itertools

    from seewhy.jobs.trees import row_agreement

    if len(trees) < 2:
        return
    names = {t.name for t in trees}
    ids = {s.id for s in samples}
    summary["agreement"] = [
        a
        for a in summary.get("agreement", [])
        if not (a.get("sample") in ids and set(a.get("models", [])) <= names)
    ]
    results = {
        (r["sample"], r["model"]): r
        for r in summary["results"]
        if r["sample"] in ids and r["model"] in names
    }
    for s in samples:
        for a, b in itertools.combinations(trees, 2):
            ra, rb = results.get((s.id, a.name)), results.get((s.id, b.name))
            if ra is None or rb is None:
                continue
            entry = row_agreement(s.id, a.name, b.name, ra, rb)
            if entry is not None:
                upsert(summary["agreement"], entry, "sample", "models", "method")


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
    samples: Sequence[Sample] = ()
    _background: dict[str, Any] = field(default_factory=dict)
    _background_ids: list[str] | None = None
    recomputed: set[tuple[str, str]] = field(default_factory=set)
    """(model, method) pairs whose maps this run (re)computed: their checks are stale."""
    specs: dict[str, str] = field(default_factory=dict)
    """Each model's ``--model`` (by name): the file its arch names is found from it."""
    _built: dict[str, dict[str, Any]] = field(default_factory=dict)

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
            upsert(self.summary["samples"], s.describe(), "id")
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
                        compare_models(
                            self.models,
                            self.opts.methods,
                            self.out,
                            self.summary,
                            s,
                            decoded[s.id, first.preprocess.bit_depth],
                            results[s.id],
                        )
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
        request (another target, layer, checkpoint, model file, weights or image file recomputes
        them all)."""
        if model.name not in self._built:  # one pass over the weights per model per run
            self._built[model.name] = built_from(model, self.specs.get(model.name))
        request = resume_request(sample, model, self.opts.target, self._built[model.name])
        if self.opts.settings:  # another ig(steps=...) recomputes
            request["settings"] = self.opts.settings
        if self.draws_at_random:  # another --seed recomputes
            request["seed"] = self.opts.seed
        if self.uses_background:  # another background set recomputes
            request["background"] = self.background_ids()
        request.update(request_inputs(model, sample))  # another text recomputes
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

        self.recomputed.update((model.name, m) for m in items[0].methods)
        images = [decoded[t.sample.id, model.preprocess.bit_depth] for t in items]
        batch, truncated = named_batch(
            model, model.preprocess([d.image for d in images]), [t.sample for t in items]
        )
        target = _batch_target(model, [t.sample for t in items], self.opts.target)
        methods = _methods(self.opts, self.layers.get(model.name), items[0].methods)
        exps = explain(
            model,
            batch,
            methods,
            target=target,
            batch_size=self.opts.batch_size,
            seed=self.opts.seed,
            sample_ids=[t.sample.id for t in items],
            background=self.background_for(model, methods),
        )
        opposite = opposites(exps)
        flipped = is_lowering(model, target)
        done = {}
        for i, (item, d) in enumerate(zip(items, images, strict=True)):
            # Figures show the image as the model saw it (resized, cropped): the map's frame.
            shown = _Shown(np.asarray(model.preprocess.frame(d.image)), d.grayscale)
            done[item.sample.id] = self.write(
                model, item, i, exps, opposite, flipped, shown, truncated[i]
            )
        return done

    @functools.cached_property
    def draws_at_random(self) -> bool:
        """Whether a method of the run draws at random (its results depend on --seed)."""
        return any(m.draws_at_random for m in _methods(self.opts, None))

    @functools.cached_property
    def uses_background(self) -> bool:
        """Whether a method of the run draws baselines from the run's samples."""
        return _uses_background(_methods(self.opts, None))

    def background_ids(self) -> list[str]:
        """The samples baselines are drawn from (expected gradients), the same for every batch
        and model: up to ``--n-background`` of the run's samples, picked by ``--seed``;
        undecodable ones are skipped. A resumed run with other samples picks other rows, so
        the ids are part of each result's request (a changed background recomputes)."""
        import random

        if self._background_ids is None:
            pool = list(self.samples)
            random.Random(self.opts.seed).shuffle(pool)
            ids: list[str] = []
            for s in pool:
                wanted = self.opts.n_background
                if len(ids) >= (EG_BACKGROUND if wanted is None else wanted):
                    break
                try:
                    _decode(s.image_path, "minmax")
                except Exception:  # an undecodable image fails as a sample, not as a baseline
                    continue
                ids.append(s.id)
            self._background_ids = ids
        return self._background_ids

    def background_for(self, model: Model, methods: Sequence[Method]) -> Any:
        """``seewhy.explain``'s ``background``: the run's rows, ``[]`` for none (the zero
        baseline, said in a note), ``None`` when no method draws baselines from data."""
        if not _uses_background(methods):
            return None
        rows = self.background(model)
        return [] if rows is None else rows

    def background(self, model: Model) -> Any:
        """The background rows as ``model`` takes them (decoded once per model); ``None`` when
        there are none (the methods then use the zero baseline, and say so)."""
        if model.name not in self._background:
            by_id = {s.id: s for s in self.samples}
            images = [
                _decode(by_id[i].image_path, model.preprocess.bit_depth).image
                for i in self.background_ids()
            ]
            rows = [by_id[i] for i in self.background_ids()]
            usable = [k for k, r in enumerate(rows) if usable_row(model, r)]  # bad rows: skipped
            images = [images[k] for k in usable]
            rows = [rows[k] for k in usable]
            self._background[model.name] = (
                named_batch(model, model.preprocess(images), rows)[0] if images else None
            )
        return self._background[model.name]

    def write(
        self,
        model: Model,
        item: _Todo,
        i: int,
        exps: Sequence[Explanation],
        opposite: Sequence[Tensor | None],
        flipped: bool,
        shown: _Shown,
        truncated: bool = False,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Row ``i`` of a batch's explanations: its maps and figures (:meth:`draw`), then its
        summary result (:meth:`record`), keeping the methods finished on an earlier run."""
        import numpy as np

        output = exps[0].output
        if output is None:  # pragma: no cover - every method reports the model output
            raise UsageError(f"method {exps[0].method} did not report the model's output")
        pred, lines = prediction(model, output[i], self.opts.top_k)
        explained = _explained_name(model, exps[0], i)
        kept = [
            a for a in (item.old or {}).get("attributions", []) if a["method"] not in item.methods
        ]
        maps = {a["method"]: np.load(self.out.root / a["map"]) for a in kept}
        attributions = list(kept)
        for e, other in zip(exps, opposite, strict=True):
            heat = e.map[i].cpu().numpy().astype(np.float32)
            other_heat = None if other is None else other[i].cpu().numpy().astype(np.float32)
            notes = [
                n
                for n in (one_map_note(model, e.method), e.extras.get("baseline_note"))
                if isinstance(n, str) and n
            ]
            details = _details(model, e, lines, explained, notes)
            entry = self.draw(model, item.sample, e, heat, other_heat, flipped, shown, details)
            entry.update(records(model, e, i, item.sample))
            if "words" in entry and self.opts.figures:
                entry["tokens_figure"] = self.draw_tokens(model, item.sample, e, entry["words"])
            if "features" in entry and self.opts.figures:
                entry["features_figure"] = self.draw_features(
                    model, item.sample, e, entry["features"]
                )
            if "modality_share" in entry and self.opts.figures:
                entry["combined_figure"] = self.draw_combined(
                    model, item.sample, e, entry, heat, shown
                )
            if notes:  # what the user asked for was replaced (a fallback baseline ...)
                entry["notes"] = notes
            attributions.append(entry)
            maps[e.method] = heat
        entry = self.record(model, item, pred, explained, attributions)
        if model.text is not None:
            entry["text"] = {"truncated": truncated, "max_length": model.text.max_length}
        return entry, maps

    def draw_combined(
        self,
        model: Model,
        sample: Sample,
        e: Explanation,
        entry: dict[str, Any],
        heat: np.ndarray,
        shown: _Shown,
    ) -> str:
        """The combined figure ``<model>__<method>__combined.png``: the map over the image,
        the strongest words and features, and each input's share; returns its path."""
        from seewhy.render.figures import combined_figure

        path = self.out.figure(sample.id, model.name, e.method, suffix="__combined")
        combined_figure(
            path,
            image=shown.image,
            heatmap=heat,
            title=f"{sample.id} · {model.name} · {e.method}",
            signed=e.signed,
            grayscale=shown.grayscale,
            words=[(w["word"], w["score"]) for w in entry.get("words", [])],
            features=[(f["name"], f["score"]) for f in entry.get("features", [])],
            shares=entry["modality_share"],
            words_signed=e.is_signed("text"),
            features_signed=e.is_signed("tabular"),
        )
        return self.out.rel(path)

    def draw_features(
        self, model: Model, sample: Sample, e: Explanation, features: list[dict[str, Any]]
    ) -> str:
        """The feature figure ``<model>__<method>__features.png``: the tabular features' scores
        as bars, largest first; returns its path in the output folder."""
        from seewhy.render.figures import feature_figure

        path = self.out.figure(sample.id, model.name, e.method, suffix="__features")
        feature_figure(
            path,
            names=[f["name"] for f in features],
            values=[f["value"] for f in features],
            scores=[f["score"] for f in features],
            title=f"{sample.id} · {model.name} · {e.method} · features",
        )
        return self.out.rel(path)

    def draw_tokens(
        self, model: Model, sample: Sample, e: Explanation, words: list[dict[str, Any]]
    ) -> str:
        """The token figure ``<model>__<method>__tokens.png``: the sentence with its words
        coloured by score, and the scores as bars; returns its path in the output folder."""
        from seewhy.render.figures import token_figure

        path = self.out.figure(sample.id, model.name, e.method, suffix="__tokens")
        sign = "red raises, blue lowers" if e.is_signed("text") else "magnitude"
        token_figure(
            path,
            tokens=[w["word"] for w in words],
            scores=[w["score"] for w in words],
            title=f"{sample.id} · {model.name} · {e.method} · words ({sign})",
        )
        return self.out.rel(path)

    def draw(
        self,
        model: Model,
        sample: Sample,
        e: Explanation,
        heat: np.ndarray,
        other: np.ndarray | None,
        flipped: bool,
        shown: _Shown,
        details: list[str],
    ) -> dict[str, Any]:
        """One method's map file and figure (what raises and what lowers a regression output
        side by side); returns its ``attributions[]`` entry."""
        from seewhy.render.figures import explanation_figure

        out = self.out
        map_path = out.map(sample.id, model.name, e.method)
        out.save_map(map_path, heat)
        if not self.opts.figures:
            return {"method": e.method, "params": dict(e.params), "map": out.rel(map_path)}
        fig_path = out.figure(sample.id, model.name, e.method)
        raises, lowers = raises_and_lowers(heat, other, flipped)
        explanation_figure(
            fig_path,
            image=shown.image,
            heatmap=raises,
            title=f"{sample.id} · {model.name} · {e.method}",
            details=details,
            signed=e.signed,
            grayscale=shown.grayscale,
            lowers=lowers,
        )
        return {
            "method": e.method,
            "params": dict(e.params),
            "map": out.rel(map_path),
            "figure": out.rel(fig_path),
        }

    def record(
        self,
        model: Model,
        item: _Todo,
        pred: dict[str, Any],
        explained: str,
        attributions: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The (sample, model) entry of summary.json's ``results``, methods in the run's order."""
        order = {m: k for k, m in enumerate(self.opts.methods)}
        attributions.sort(key=lambda a: order.get(a["method"], len(order)))
        entry = {
            "sample": item.sample.id,
            "model": model.name,
            "prediction": pred,
            "explained": explained,
            "attributions": attributions,
            "request": item.request,
        }
        upsert(self.summary["results"], entry, "sample", "model")
        return entry


def _decode(path: str, bit_depth: str) -> Any:
    from seewhy.data.images import decode_image

    return decode_image(path, bit_depth=bit_depth)


def _batch_target(model: Model, samples: Sequence[Sample], target: str) -> Any:
    """The target for a batch: ``true`` becomes each sample's class (label or index from the
    manifest or folder); anything else is shared."""
    from seewhy.core.targets import SampleClasses

    if target.strip().lower() != "true":
        return target
    return SampleClasses(tuple(_true_class(model, s) for s in samples))


def _true_class(model: Model, sample: Sample) -> int:
    from seewhy.core.targets import numbers_hint, true_index

    value = str(sample.truth).strip()
    labels = model.labels or []
    index = true_index(value, labels)
    if index is not None:
        return index
    raise UsageError(
        f"sample {sample.id}: true label '{value}' is neither a class index nor one of the "
        f"model's labels ({', '.join(labels) or 'none'}){numbers_hint(labels)}"
    )


def _details(
    model: Model, e: Explanation, lines: list[str], explained: str, notes: Sequence[str] = ()
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
        *notes,
        *meta[:4],
    ]


def _explained_name(model: Model, e: Explanation, i: int = 0) -> str:
    """The target in words: the class label for classifiers, the signed output otherwise."""
    if model.task == "regression" or e.target_indices is None:
        return e.target
    label = model.label(int(e.target_indices[i]))
    return label if e.target in ("pred", label) else f"{label} ({e.target})"


def one_name_per_method(opts: Any) -> Any:
    """``opts`` with one name per method (GradCAM, gradcampp -> gradcam, gradcam++; a method
    named twice is one) and its bracket settings apart in ``settings``, as results are keyed.
    Unknown methods and settings fail here, before any model loads."""
    from seewhy.methods.registry import parse_method_specs

    specs = parse_method_specs(opts.methods)
    return dataclasses.replace(
        opts,
        methods=list(dict.fromkeys(name for name, _ in specs)),
        settings={**{name: own for name, own in specs if own}, **opts.settings},
    )


def _methods(
    opts: ExplainOptions, layer: str | None, names: Sequence[str] | None = None
) -> list[Method]:
    """The run's method instances (``names``: a subset), each with its bracket settings."""
    from seewhy.methods.registry import create_method

    return [
        create_method(n, layer=layer, **opts.settings.get(n, {}))
        for n in (opts.methods if names is None else names)
    ]


def _uses_background(methods: Sequence[Method]) -> bool:
    """Whether a method draws baselines from data (expected gradients)."""
    return any(m.uses_background for m in methods)
