"""``seewhy dataset``: a whole table of samples -> predictions, cohorts, maps, checks, one report.

The run streams (SPEC section 8):

1. **Predict** every row: DataLoader workers decode and preprocess the images (and validate each
   row's true value and region map), the model predicts in real batches, and each row's
   prediction is appended to ``dataset/predictions.jsonl`` as it comes. With ``--explain all``
   this pass explains the rows too (the explanation's forward gives the prediction).
2. **Cohorts** are picked from the predictions (:mod:`seewhy.jobs.cohorts`).
3. **Explain** the cohorts' members in batches; maps, figures and per-row records
   (``dataset/records.jsonl``) are written by a background writer while the next batch runs.
4. **Check** a sample of rows (``--check-sample N``), as ``seewhy check`` does.
5. **Compile** summary.json, predictions.csv, the cohorts' mean maps and region shares, and the
   report, from the per-row records (no rewrite of the whole summary per row).

A batch that fails is retried row by row, so one bad row fails alone (errors.jsonl). A run
killed at any point resumes: the streamed records are append-only, a torn last line is dropped,
finished rows are not done again, and every other file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import UsageError
from seewhy.jobs.check import CheckOptions
from seewhy.jobs.cohorts import (
    Cohort,
    Row,
    describe,
    mean_features,
    mean_shares,
    metrics,
    pick_cohorts,
    true_value,
)
from seewhy.jobs.explain import (
    _batch_target,
    _check_text,
    _error,
    _methods,
    _reads_a_layer,
    _reason,
    _Run,
    _Shown,
    _Todo,
    _validate,
    describe_model,
    load_models,
    one_name_per_method,
)
from seewhy.jobs.resume import weights as _weights  # the fingerprint explain's resume takes too

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console
    from rich.progress import Progress

    from seewhy.core.explanation import Explanation
    from seewhy.core.trees import TabularModel
    from seewhy.data.output import OutputFolder
    from seewhy.data.samples import Sample
    from seewhy.models.model import Model

EXPLAIN_CHOICES = ("cohorts", "all")


@dataclass
class DatasetOptions(CheckOptions):
    """The flags of ``seewhy dataset`` (SPEC sections 2 and 8): ``check``'s, and its own."""

    manifests: list[Path] = field(default_factory=list)
    id_col: str = "id"
    target_col: str | None = None
    regions_col: str | None = None
    region_names: list[str] | None = None
    explain: str = "cohorts"
    cohort_size: int = 32
    check_sample: int = 0
    figures: bool = True
    workers: int = 2


@dataclass
class DatasetOutcome:
    """What a dataset run left: the summary, how many rows failed, where."""

    summary: dict[str, Any]
    failed: int
    out: Path

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


# -- the streamed state: append-only records, resumable after a kill ---------------------------
class _Stream:
    """An append-only JSON-lines file: each record is one line, flushed and synced as written.

    A run killed while writing leaves at most a torn last line, which reading drops and
    appending cuts off first, so the file never holds a half record.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if isinstance(item, dict):
                out.append(item)
        return out

    def mend(self) -> None:
        """Cut a torn last line (a record written half before a kill)."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, items: Sequence[dict[str, Any]]) -> None:
        if not items:
            return
        text = "".join(json.dumps(i, default=_jsonable) + "\n" for i in items)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class _State:
    """``OUT/dataset/``: the streamed predictions and records, and what they were computed
    from. A rerun whose models or settings differ starts that stream afresh."""

    def __init__(self, root: Path, keys: dict[str, Any]) -> None:
        self.dir = root / "dataset"
        self.predictions = _Stream(self.dir / "predictions.jsonl")
        self.records = _Stream(self.dir / "records.jsonl")
        state_path = self.dir / "state.json"
        old: dict[str, Any] = {}
        if state_path.is_file():
            try:
                old = json.loads(state_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = {}
        if old.get("predictions") != keys["predictions"]:
            self.predictions.reset()
            self.records.reset()
        elif old.get("records") != keys["records"]:
            self.records.reset()
        self.predictions.mend()
        self.records.mend()
        from seewhy.core.atomic import atomic_write

        atomic_write(state_path, json.dumps(keys, indent=1, default=_jsonable))


def _file_stamp(path: Any) -> Any:
    from seewhy.jobs.resume import stamp

    return stamp(path)


def _keys(
    models: Sequence[Model],
    opts: DatasetOptions,
    background: list[str],
    layers: dict[str, str | None],
) -> dict[str, Any]:
    """What the streamed predictions and records depend on (another model, target, method,
    setting, seed or region set starts them afresh)."""
    from seewhy.jobs.resume import stamp

    described = []
    for m in models:
        d = m.describe()
        described.append(
            [
                m.name,
                d.get("arch"),
                d.get("task"),
                d.get("labels"),
                d.get("preprocess"),
                stamp(d.get("checkpoint")),
                m.inputs or None,
                m.output,
                _weights(m),
            ]
        )
    predictions = {"models": described, "target_col": opts.target_col}
    records = {
        "target": opts.target,
        "methods": opts.methods,
        "settings": opts.settings,
        "layer": [opts.layer, layers],  # a card's layer, resolved
        "seed": opts.seed,
        "regions": [opts.regions_col, opts.region_names],
        "figures": opts.figures,
        "background": background,
    }
    return {"predictions": predictions, "records": records}


# -- reading rows: DataLoader workers decode, preprocess and validate ---------------------------
@dataclass
class _Item:
    """One row as a worker read it: the model's input image, the frame shown in figures, the
    framed region map; or why the row cannot be used."""

    index: int
    image: Any = None
    shown: Any = None
    grayscale: bool = False
    regions: Any = None
    truth: float | str | None = None
    reason: str | None = None


class _Rows:
    """A map-style dataset of manifest rows for one model (picklable for worker processes)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        model: Model,
        opts: DatasetOptions,
        *,
        frames: bool,
        regions: bool,
    ) -> None:
        self.samples = list(samples)
        self.preprocess = model.preprocess
        self.task = model.task
        self.labels = list(model.labels or [])
        n = model.num_outputs or len(self.labels)
        self.classes = 2 if (model.task == "classification" and n == 1) else int(n or 0)
        self.target_col = opts.target_col
        self.region_names = list(opts.region_names or [])
        self.frames = frames
        self.regions = regions and bool(opts.regions_col)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> _Item:
        import numpy as np

        from seewhy.data.images import decode_image
        from seewhy.data.regions import load_regions
        from seewhy.data.samples import MISSING_ROW

        s = self.samples[i]
        try:
            if s.row.get(MISSING_ROW):  # a row another manifest lacks (joined on the id)
                raise UsageError(str(s.row[MISSING_ROW]))
            truth = self.truth(s)
            if not s.image_path:
                raise UsageError("the image cell is blank")
            d = decode_image(s.image_path, bit_depth=self.preprocess.bit_depth)
            image = self.preprocess([d.image])[0]
            regions = None
            if self.region_names:  # read (and checked) on every pass, kept when explaining
                if not s.regions_path:
                    raise UsageError("the region map cell (--regions-col) is blank")
                regions = load_regions(
                    s.regions_path, self.preprocess, self.region_names, image_size=d.image.size
                )
                if not self.regions:
                    regions = None
            shown = np.asarray(self.preprocess.frame(d.image)) if self.frames else None
            return _Item(i, image, shown, d.grayscale, regions, truth)
        except Exception as exc:  # a bad row fails alone
            return _Item(i, reason=_reason(exc))

    def truth(self, s: Sample) -> float | str | None:
        """The row's true value (:func:`~seewhy.jobs.cohorts.true_value`)."""
        if self.target_col is None:
            return None
        value = s.row.get(self.target_col, s.truth)
        return true_value(value, self.target_col, self.task, self.labels, self.classes)


def _batches(rows: _Rows, batch_size: int, workers: int) -> Iterator[list[_Item]]:
    """The rows in batches, read by ``workers`` worker processes (0: in this process)."""
    from torch.utils.data import DataLoader

    loader: DataLoader[Any] = DataLoader(
        rows,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=list,
        prefetch_factor=2 if workers else None,
    )
    yield from loader


# -- the background writer: maps, figures and records while the next batch runs -----------------
class _Writer:
    """One thread that runs the write jobs in order; at most ``depth`` jobs wait, so memory
    stays bounded. An error in a job is kept and raised by :meth:`close`."""

    def __init__(self, depth: int = 2) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="seewhy-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:
                    self._error = exc

    def submit(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._jobs.put(job)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


# -- the run ------------------------------------------------------------------------------------
def run_dataset(
    samples: Sequence[Sample],
    model_specs: Sequence[str],
    opts: DatasetOptions,
    console: Console | None = None,
    *,
    loaded: Sequence[Model] | None = None,
) -> DatasetOutcome:
    """Predict every row, pick the cohorts, explain them (or every row), check a sample, and
    write summary.json, predictions.csv and the report into ``opts.out``.

    ``loaded``: the models, already loaded (``seewhy.dataset`` from a notebook)."""
    from rich.console import Console

    from seewhy.data.output import OutputFolder

    console = console or Console(stderr=True)
    opts = one_name_per_method(opts)
    _check_options(opts)
    _methods(opts, opts.layer)
    if not samples:
        raise UsageError("the manifest has no rows to explain")
    if opts.out.exists() and not opts.out.is_dir():
        raise UsageError(f"--out {opts.out} is a file, not a folder; pass a folder name")
    from seewhy.jobs.trees import check_run, is_tree, split_methods

    every: list[Any] = list(loaded) if loaded is not None else load_models(model_specs, opts)
    trees = [m for m in every if is_tree(m)]
    models: list[Model] = [m for m in every if not is_tree(m)]
    torch_methods, tree_methods = split_methods(opts.methods, models, trees)
    opts = dataclasses.replace(opts, methods=torch_methods)
    picked = [m.for_target(opts.target) for m in models]
    if any(head is not m for (head, _), m in zip(picked, models, strict=True)):
        heads = {m.name: head for (head, _), m in zip(picked, models, strict=True)}
        every = [heads.get(m.name, m) if not is_tree(m) else m for m in every]
        models = [head for head, _ in picked]
        opts = dataclasses.replace(opts, target=str(picked[0][1]))
    check_run(trees, opts.target, samples)
    _check_text(models, every, opts, samples)
    for m in models:
        if m.task == "multilabel" and opts.target_col:
            raise UsageError(
                f"model {m.name} is multilabel: seewhy dataset does not read several true "
                "labels per row yet; leave out --target-col (cohorts then follow each row's "
                "top label), or explain the rows with seewhy explain --data"
            )
    layers = _validate(models, opts, samples) if models else {}
    out = OutputFolder(opts.out)
    out.root.mkdir(parents=True, exist_ok=True)
    _clean_temp(out.root)
    job = _Job(every, layers, opts, out, samples, console, tree_methods=tree_methods)
    return job.run()


def _check_options(opts: DatasetOptions) -> None:
    from seewhy.core.engine import check_precision

    if opts.explain not in EXPLAIN_CHOICES:
        raise UsageError(f"--explain {opts.explain}: use cohorts or all")
    check_precision(opts.precision, "--precision")
    for flag, value, low in (
        ("--cohort-size", opts.cohort_size, 1),
        ("--check-sample", opts.check_sample, 0),
        ("--workers", opts.workers, 0),
        ("--batch-size", opts.batch_size, 1),
        ("--n-background", opts.n_background or 0, 0),
    ):
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if opts.regions_col and not opts.region_names:
        raise UsageError(
            f"--regions-col {opts.regions_col} needs --region-names: the class of each id in the "
            "region maps, in order (e.g. --region-names soil,vegetation,water,road)"
        )
    if opts.region_names and not opts.regions_col:
        raise UsageError("--region-names names the classes of --regions-col; give that column too")
    if opts.region_names and len(set(opts.region_names)) != len(opts.region_names):
        raise UsageError(f"--region-names repeats a name: {','.join(opts.region_names)}")


_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?$")


def _clean_temp(root: Path) -> None:
    """Remove the temporary files a killed run's atomic writes left (``.name.XXXXXXXX.ext``)."""
    for sub in ("", "figures", "maps", "cohorts", "overview", "dataset", "checks"):
        folder = root / sub
        if not folder.is_dir():
            continue
        found = folder.glob(".*") if not sub else folder.rglob(".*")
        for p in found:
            if p.is_file() and _TEMP.match(p.name):
                p.unlink(missing_ok=True)


@dataclass
class _Job:
    models: Sequence[Any]
    """The run's models in the order given: torch :class:`Model` and tree
    :class:`~seewhy.core.trees.TabularModel` (``torch`` and ``trees`` hold them apart)."""
    layers: dict[str, str | None]
    opts: DatasetOptions
    out: OutputFolder
    samples: Sequence[Sample]
    console: Console
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    predicted: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    explained: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    checked: int = 0
    """How many rows the checks ran on (``--check-sample``, at most the rows predicted)."""
    tree_methods: list[str] = field(default_factory=list)
    """The tree models' methods (``tree-shap``); ``opts.methods`` are the torch models'."""

    def __post_init__(self) -> None:
        from seewhy.jobs.trees import background_note, background_rows, is_tree, read_rows
        from seewhy.jobs.trees import stamp as tree_stamp

        self.by_id = {s.id: s for s in self.samples}
        self.order = {s.id: k for k, s in enumerate(self.samples)}
        self.torch: list[Model] = [m for m in self.models if not is_tree(m)]
        self.trees: list[TabularModel] = [m for m in self.models if is_tree(m)]
        self.tree_rows = {
            t.name: read_rows(t, self.samples, self.tree_truth(t)) for t in self.trees
        }
        self.tree_background: dict[str, Any] = {}
        self.tree_notes: dict[str, list[str]] = {}
        tree_background: dict[str, list[Any]] = {}
        for t in self.trees:
            ids, rows = background_rows(
                self.tree_rows[t.name], self.opts.n_background, self.opts.seed
            )
            self.tree_background[t.name] = rows
            note = background_note(t, self.tree_rows[t.name], self.opts.n_background)
            if note:  # too few rows for interventional: path-dependent, said once and per row
                self.tree_notes[t.name] = [note]
                self.console.print(note, style="yellow", markup=False)
            # the rows' cells too: a background row edited changes every row's values
            tree_background[t.name] = [[i, tree_stamp(t, self.by_id[i], None)[1]] for i in ids]
        self.helper = _Run(
            models=self.torch,
            layers=self.layers,
            opts=self.opts,
            out=self.out,
            summary={"results": [], "agreement": []},
            done=set(),
            samples=self.samples,
        )
        background = self.helper.background_ids() if self.helper.uses_background else []
        keys = _keys(self.torch, self.opts, background, self.layers)
        keys["predictions"]["trees"] = [
            [t.name, t.arch, t.task, t.labels, t.columns, _file_stamp(t.path)] for t in self.trees
        ]
        keys["records"]["trees"] = {
            "methods": self.tree_methods,
            "settings": {k: v for k, v in self.opts.settings.items() if k in self.tree_methods},
            "background": tree_background,
        }
        self.state = _State(self.out.root, keys)
        self._stamps: dict[tuple[str, str], list[Any]] = {}
        for p in self.state.predictions.read():
            if self.current(p, p.get("id")):
                self.predicted.setdefault(p["model"], {})[p["id"]] = p
        files = self.out.root
        for r in self.state.records.read():
            atts = r.get("attributions", [])
            paths = [a.get("map") for a in atts if "features" not in a or "map" in a]
            paths += [a.get("figure") for a in r.get("attributions", []) if a.get("figure")]
            if not self.current(r, r.get("sample")):
                continue  # another row now (image, truth, text ...): done again
            if all(p and (files / p).is_file() for p in paths):  # else: done again
                self.explained.setdefault(r["model"], {})[r["sample"]] = r

    def stamp(self, sample: Sample, model: Any) -> list[Any]:
        """What a row's records depend on besides the run's settings: its image file (path,
        size, modification time), its true value as written, its region map file, its text
        and tabular values. A rerun redoes a row whose stamp changed."""
        key = (sample.id, model.name)
        if key not in self._stamps:
            from seewhy.jobs.multimodal import request_inputs
            from seewhy.jobs.resume import stamp
            from seewhy.jobs.trees import is_tree
            from seewhy.jobs.trees import stamp as tree_stamp

            col = self.opts.target_col
            truth = None if col is None else sample.row.get(col, sample.truth)
            if is_tree(model):
                self._stamps[key] = tree_stamp(model, sample, truth)
                return self._stamps[key]
            self._stamps[key] = [
                stamp(sample.image_path),
                None if truth is None else str(truth),
                stamp(sample.regions_path),
                request_inputs(model, sample),
            ]
        return self._stamps[key]

    def current(self, record: dict[str, Any], sid: Any) -> bool:
        """Whether a streamed record is of a row of this run, unchanged since."""
        sample = self.by_id.get(str(sid))
        model = next((m for m in self.models if m.name == record.get("model")), None)
        if sample is None or model is None:
            return False
        return bool(record.get("stamp") == json.loads(json.dumps(self.stamp(sample, model))))

    # -- the stages ----------------------------------------------------------------------------
    def run(self) -> DatasetOutcome:
        from rich.progress import Progress

        cohorts: dict[str, list[Cohort]] = {}
        with Progress(
            *_columns(), console=self.console, transient=True, disable=not self.opts.progress
        ) as bar:
            every = self.opts.explain == "all"
            for model in self.models:
                todo = [s for s in self.samples if s.id not in self.predicted.get(model.name, {})]
                if every:  # one pass: predictions come with the explanations
                    todo = [
                        s for s in self.samples if s.id not in self.explained.get(model.name, {})
                    ]
                (self.tree_stream if model in self.trees else self.stream)(
                    model,
                    todo,
                    explain=every,
                    bar=bar,
                    what=("explaining" if every else "predicting"),
                )
                cohorts[model.name] = self.cohorts(model)
            if not every:
                # every model explains the members of every model's cohorts, so the models
                # can be compared on the same rows
                members = dict.fromkeys(
                    i for model_cohorts in cohorts.values() for c in model_cohorts for i in c.ids
                )
                for model in self.models:
                    done = self.explained.get(model.name, {})
                    predicted = self.predicted.get(model.name, {})
                    todo = [
                        self.by_id[i]
                        for i in sorted(members, key=self.order.__getitem__)
                        if i not in done and i in predicted
                    ]
                    (self.tree_stream if model in self.trees else self.stream)(
                        model, todo, explain=True, bar=bar, what="explaining cohorts"
                    )
        checks = self.checks()
        summary = self.compile(cohorts, checks)
        self.out.save_summary(summary)
        errors = sorted(self.errors.values(), key=lambda e: self.order.get(e["id"], -1))
        self.out.write_errors(errors)
        if self.opts.report:
            from seewhy.render.report import render_report

            render_report(self.out.root)
        return DatasetOutcome(summary=summary, failed=len(errors), out=self.out.root)

    def fail(self, sample: Sample, model: Any, reason: str) -> None:
        if sample.id in self.errors:
            return
        text = reason if len(self.models) == 1 else f"model {model.name}: {reason}"
        self.errors[sample.id] = _error(sample, text)

    def stream(
        self,
        model: Model,
        todo: Sequence[Sample],
        *,
        explain: bool,
        bar: Progress,
        what: str,
    ) -> None:
        """Predict (and with ``explain``, explain) ``todo`` in batches, streaming records."""
        if not todo:
            return
        label = what if len(self.models) == 1 else f"{what} ({model.name})"
        task = bar.add_task(label, total=len(todo))
        rows = _Rows(todo, model, self.opts, frames=explain and self.opts.figures, regions=explain)
        writer = _Writer() if explain else None
        try:
            for items in _batches(rows, self.opts.batch_size, self.opts.workers):
                good = []
                for item in items:
                    if item.reason is not None:
                        self.fail(todo[item.index], model, item.reason)
                    else:
                        good.append(item)
                if good:
                    self.batch(model, todo, good, explain, writer)
                bar.advance(task, len(items))
        finally:
            if writer is not None:
                writer.close()
        bar.remove_task(task)

    def tree_truth(self, model: TabularModel) -> Callable[[Sample], Any]:
        """A row's true value for a tree model (checked as the image models' rows are)."""
        from seewhy.jobs.trees import n_classes

        col = self.opts.target_col
        if col is None:
            return lambda s: None
        labels = list(model.labels or [])
        classes = n_classes(model)
        return lambda s: true_value(s.row.get(col, s.truth), col, model.task, labels, classes)

    def tree_stream(
        self,
        model: TabularModel,
        todo: Sequence[Sample],
        *,
        explain: bool,
        bar: Progress,
        what: str,
    ) -> None:
        """A tree model's pass over ``todo``: predictions (and with ``explain``, tree-shap)
        for many rows per call, streamed as the image models' are. A chunk that fails is
        retried row by row, so a bad row fails alone."""
        from seewhy.jobs.trees import CHUNK

        if not todo:
            return
        rows = self.tree_rows[model.name]
        index = {s.id: k for k, s in enumerate(rows.samples)}
        for s in todo:
            if s.id in rows.failed:
                self.fail(s, model, rows.failed[s.id])
        ks = [index[s.id] for s in todo if s.id in index]
        label = what if len(self.models) == 1 else f"{what} ({model.name})"
        task = bar.add_task(label, total=len(todo))
        bar.advance(task, len(todo) - len(ks))
        for start in range(0, len(ks), CHUNK):
            chunk = ks[start : start + CHUNK]
            try:
                self.tree_chunk(model, chunk, explain)
            except Exception:
                for k in chunk:
                    try:
                        self.tree_chunk(model, [k], explain)
                    except Exception as one:
                        self.fail(rows.samples[k], model, _reason(one))
            bar.advance(task, len(chunk))
        bar.remove_task(task)

    def tree_chunk(self, model: TabularModel, chunk: list[int], explain: bool) -> None:
        """Rows ``chunk`` (indices into the model's readable rows): their predictions, and
        with ``explain`` their tree-shap records."""
        from seewhy.jobs import trees
        from seewhy.methods.registry import create_method

        rows = self.tree_rows[model.name]
        samples = [rows.samples[k] for k in chunk]
        truth = [rows.truth[k] for k in chunk]
        x = rows.x[chunk]
        preds = trees.predictions(model, x)
        good = [j for j, p in enumerate(preds) if trees.finite(p)]
        for j in range(len(preds)):
            if j not in good:
                self.fail(samples[j], model, "the model's output is NaN")
        x = x[good]
        records = [
            {
                "id": samples[j].id,
                "model": model.name,
                "prediction": preds[j],
                "truth": truth[j],
                "stamp": self.stamp(samples[j], model),
            }
            for j in good
        ]
        if not explain:
            self.keep_predictions(model, records)
            return
        name = self.tree_methods[0]
        method = create_method(name, **self.opts.settings.get(name, {}))
        result = trees.shap_values(
            model,
            method,
            x,
            target=self.opts.target,
            truth=[truth[j] for j in good],
            background=self.tree_background.get(model.name),
        )
        explained: list[dict[str, Any]] = [
            {
                "sample": samples[j].id,
                "model": model.name,
                "prediction": preds[j],
                "explained": trees.explained(model, result, n, self.opts.target),
                "attributions": [
                    trees.attribution(
                        model, method, result, x, n, self.tree_notes.get(model.name, ())
                    )
                ],
                "stamp": self.stamp(samples[j], model),
            }
            for n, j in enumerate(good)
        ]
        if self.opts.explain == "all":  # the predictions come with this pass
            self.keep_predictions(model, records)
        self.state.records.append(explained)
        for r in explained:
            self.explained.setdefault(model.name, {})[str(r["sample"])] = r

    def batch(
        self,
        model: Model,
        todo: Sequence[Sample],
        items: list[_Item],
        explain: bool,
        writer: _Writer | None,
    ) -> None:
        """One batch; retried row by row when it fails, so a bad row fails alone."""
        work = self.explain if explain else self.predict
        try:
            work(model, todo, items, writer)
        except Exception as exc:
            if len(items) == 1:
                self.fail(todo[items[0].index], model, _reason(exc))
                return
            for item in items:
                try:
                    work(model, todo, [item], writer)
                except Exception as one:
                    self.fail(todo[item.index], model, _reason(one))

    def inputs(self, model: Model, samples: list[Sample], items: list[_Item]) -> Any:
        import torch

        from seewhy.jobs.multimodal import named_batch

        images = torch.stack([it.image for it in items])
        return named_batch(model, images, samples)

    def predict(
        self, model: Model, todo: Sequence[Sample], items: list[_Item], writer: _Writer | None
    ) -> None:
        import torch

        from seewhy.api import as_inputs
        from seewhy.core.state import explaining

        samples = [todo[it.index] for it in items]
        batch, _ = self.inputs(model, samples, items)
        with explaining(model.module), torch.inference_mode():
            output = model.forward(model.to_input(as_inputs(model, batch)))
        self.keep_predictions(model, self.prediction_records(model, samples, items, output))

    def prediction_records(
        self, model: Model, samples: Sequence[Sample], items: Sequence[_Item], output: Any
    ) -> list[dict[str, Any]]:
        """The streamed prediction record of each row of a batch, from the model's output."""
        from seewhy.data.summary import prediction

        return [
            {
                "id": s.id,
                "model": model.name,
                "prediction": prediction(model, output[k])[0],
                "truth": it.truth,
                "stamp": self.stamp(s, model),
            }
            for k, (s, it) in enumerate(zip(samples, items, strict=True))
        ]

    def keep_predictions(self, model: Any, records: Sequence[dict[str, Any]]) -> None:
        """Append prediction records to the stream, and keep them for the cohorts."""
        if not records:
            return
        self.state.predictions.append(records)
        for r in records:
            self.predicted.setdefault(model.name, {})[str(r["id"])] = r

    def explain(
        self, model: Model, todo: Sequence[Sample], items: list[_Item], writer: _Writer | None
    ) -> None:
        from seewhy.api import explain
        from seewhy.data.regions import region_sums
        from seewhy.jobs.regression import is_lowering, opposites

        samples = [todo[it.index] for it in items]
        batch, truncated = self.inputs(model, samples, items)
        target = _batch_target(model, samples, self.opts.target)
        methods = _methods(self.opts, self.layers.get(model.name))
        exps = explain(
            model,
            batch,
            methods,
            target=target,
            batch_size=self.opts.batch_size,
            seed=self.opts.seed,
            sample_ids=[s.id for s in samples],
            background=self.helper.background_for(model, methods),
        )
        opposite = opposites(exps)
        flipped = is_lowering(model, target)
        output = exps[0].output
        if output is None:  # pragma: no cover - every method reports the model output
            raise UsageError(f"method {exps[0].method} did not report the model's output")
        every = self.opts.explain == "all"  # the predictions come with this pass
        records = self.prediction_records(model, samples, items, output) if every else []
        names = list(self.opts.region_names or [])
        sums: list[dict[str, dict[str, list[float]]]] = []
        for k, it in enumerate(items):
            row: dict[str, dict[str, list[float]]] = {}
            if it.regions is not None:
                for e, other in zip(exps, opposite, strict=True):
                    heat = e.map[k].cpu().numpy()
                    low = None if other is None else other[k].cpu().numpy()
                    rs = region_sums(heat, it.regions, len(names), lowers=low)
                    row[e.method] = {
                        "raises": rs.raises.tolist(),
                        "lowers": rs.lowers.tolist(),
                        "pixels": rs.pixels.tolist(),
                    }
            sums.append(row)
        job = _WriteBatch(
            self, model, samples, items, exps, opposite, flipped, truncated, sums, records
        )
        if writer is None:
            job()
        else:
            writer.submit(job)

    # -- cohorts, checks, summary --------------------------------------------------------------
    def rows(self, model: Any) -> list[Row]:
        """The model's predictions over the rows that did not fail, in manifest order."""
        got = self.predicted.get(model.name, {})
        out = []
        for s in self.samples:
            p = got.get(s.id)
            if p is None:
                continue
            pred = p["prediction"]
            out.append(
                Row(
                    id=s.id,
                    value=pred.get("value"),
                    label=pred.get("label"),
                    score=pred.get("score"),
                    truth=p.get("truth"),
                )
            )
        return out

    def what(self, model: Any) -> str:
        """The explained output in words: the --target-col, else a regressor's one label
        (the card's ``labels = ["price"]``), else ``output`` (``class`` for classifiers)."""
        if self.opts.target_col:
            return self.opts.target_col
        if model.task == "regression":
            return model.labels[0] if model.labels and len(model.labels) == 1 else "output"
        return "class"

    def cohorts(self, model: Any) -> list[Cohort]:
        return pick_cohorts(self.rows(model), model.task, self.opts.cohort_size, self.what(model))

    def checks(self) -> list[dict[str, Any]]:
        """``--check-sample N``: the trust checks on N rows drawn at random (seeded) among the
        rows that predicted."""
        if not self.opts.check_sample:
            return []
        import random

        from seewhy.checks.verdict import Thresholds
        from seewhy.jobs.check import _check_model, _with_figure, _with_model_agreement

        thresholds = Thresholds.load(self.opts.thresholds)
        results = []
        for model in self.torch:
            ok = [s for s in self.samples if s.id in self.predicted.get(model.name, {})]
            if not ok:
                continue
            self.checked = max(self.checked, min(self.opts.check_sample, len(ok)))
            pick = random.Random(self.opts.seed).sample(
                range(len(ok)), min(self.opts.check_sample, len(ok))
            )
            chosen = [ok[i] for i in sorted(pick)]
            checked, _bad = _check_model(
                model,
                self.opts.target,
                chosen,
                self.opts,
                thresholds,
                None,
                self.console,
                self.helper.background_for,
            )
            results.extend(checked)
        regressors = {m.name for m in self.torch if m.task == "regression"}
        results = _with_model_agreement(results, [], thresholds, regressors)
        return [_with_figure(self.out, r.record()) for r in results]

    def compile(
        self, cohorts: dict[str, list[Cohort]], checks: list[dict[str, Any]]
    ) -> dict[str, Any]:
        from seewhy.data.samples import unique_ids
        from seewhy.data.summary import new_summary

        summary = new_summary()
        summary["models"] = [
            m.describe() if m in self.trees else describe_model(m) for m in self.models
        ]
        if self.opts.explain != "all":  # rows an earlier run explained and this one does not
            wanted = {i for model_cohorts in cohorts.values() for c in model_cohorts for i in c.ids}
            self.explained = {
                m: {i: r for i, r in recs.items() if i in wanted}
                for m, recs in self.explained.items()
            }
        explained_ids = {i for recs in self.explained.values() for i in recs}
        summary["samples"] = [s.describe() for s in self.samples if s.id in explained_ids]
        names = list(self.opts.region_names or [])
        for s in self.samples:
            for m in self.models:
                r = self.explained.get(m.name, {}).get(s.id)
                if r is not None:
                    summary["results"].append(_result(r, names))
        overview: dict[str, str] = {}
        summary["metrics"] = {}
        for m in self.models:
            rows = self.rows(m)
            summary["metrics"][m.name] = metrics(rows, m.task, m.labels or ())
            fig = self.overview(m, rows, summary["metrics"][m.name])
            if fig:
                overview[m.name] = fig
            mine = cohorts.get(m.name, [])
            # file names: cohorts whose names clean alike (class:a b, class:a/b) get -2, -3
            stems = unique_ids([c.name for c in mine])
            methods = self.tree_methods if m in self.trees else self.opts.methods
            for c, stem in zip(mine, stems, strict=True):
                for method in methods:
                    summary["cohorts"].append(self.cohort(m, method, c, rows, stem))
        summary["checks"] = checks
        if len(self.torch) > 1:
            summary["agreement"] = self.agreement()
        importance = self.importance()
        if importance:
            summary["importance"] = importance
        if len(self.models) > 1:
            summary["prediction_agreement"] = self.prediction_agreement()
        if self.torch and self.trees:
            from seewhy.jobs.trees import side_by_side

            rows_by = {m.name: {r.id: r for r in self.rows(m)} for m in self.models}
            summary["side_by_side"] = side_by_side(
                summary["cohorts"], self.torch, self.trees, self.explained, rows_by
            )
        self.write_predictions(cohorts)
        total = len(self.samples)
        summary["dataset"] = {
            "manifests": [str(p) for p in self.opts.manifests],
            "id_col": self.opts.id_col,
            "target_col": self.opts.target_col,
            "rows": total,
            "predicted": len({i for recs in self.predicted.values() for i in recs}),
            "explained": len(explained_ids),
            "failed": len(self.errors),
            "explain": self.opts.explain,
            "cohort_size": self.opts.cohort_size,
            "check_sample": self.checked,
            "predictions": "predictions.csv",
            "overview": overview,
        }
        if importance:
            summary["dataset"]["importance"] = {
                i["model"]: i["figure"] for i in importance if i.get("figure")
            }
            summary["dataset"]["importance_rows"] = {i["model"]: i["rows"] for i in importance}
        if names:
            summary["dataset"]["region_names"] = names
        return summary

    def importance(self) -> list[dict[str, Any]]:
        """``importance[]``: per tree model, what drives it over the whole table (tree-shap on
        up to 2,000 rows drawn by the seed), with its beeswarm + bar figure."""
        from seewhy.data.output import _file_part
        from seewhy.jobs.trees import importance
        from seewhy.methods.registry import create_method

        out = []
        for t in self.trees:
            rows = self.tree_rows[t.name]
            got = self.predicted.get(t.name, {})
            if not self.tree_methods or not any(s.id in got for s in rows.samples):
                continue
            name = self.tree_methods[0]
            path = self.out.root / "overview" / f"{_file_part(t.name)}__{_file_part(name)}.png"
            entry = importance(
                t,
                create_method(name, **self.opts.settings.get(name, {})),
                rows,
                target=self.opts.target,
                background=self.tree_background.get(t.name),
                seed=self.opts.seed,
                figure=path if self.opts.figures else None,
                known={
                    i: r["attributions"][0]
                    for i, r in self.explained.get(t.name, {}).items()
                    if r.get("attributions")
                },
            )
            if entry.get("figure"):
                entry["figure"] = self.out.rel(entry["figure"])
            if self.tree_notes.get(t.name):
                entry["notes"] = list(self.tree_notes[t.name])
            out.append(entry)
        return out

    def prediction_agreement(self) -> list[dict[str, Any]]:
        """``prediction_agreement[]``: for each pair of models, how much their predictions
        agree on the rows both predicted (:func:`seewhy.jobs.trees.agreement`)."""
        import itertools

        from seewhy.jobs.trees import agreement

        out = []
        rows = {m.name: {r.id: r for r in self.rows(m)} for m in self.models}
        for a, b in itertools.combinations(self.models, 2):
            both = [s.id for s in self.samples if s.id in rows[a.name] and s.id in rows[b.name]]
            figures = agreement(
                a.task, b.task, [rows[a.name][i] for i in both], [rows[b.name][i] for i in both]
            )
            if figures:
                out.append({"models": [a.name, b.name], **figures})
        return out

    def agreement(self) -> list[dict[str, Any]]:
        """``agreement[]`` for every row two models explained: per method, Spearman's rho of
        their maps and the IoU of their top 10% (compared where both frames cover the image,
        as ``seewhy explain`` compares them), and whether they predict the same class."""
        import itertools

        import numpy as np

        from seewhy.checks.agreement import COMPARE_SIDE, place
        from seewhy.jobs.compare import _agreement

        out = []
        for s in self.samples:
            have = [m for m in self.torch if s.id in self.explained.get(m.name, {})]
            if len(have) < 2:
                continue
            size: tuple[int, int] | None = None
            for a, b in itertools.combinations(have, 2):
                ea, eb = self.explained[a.name][s.id], self.explained[b.name][s.id]
                for method in self.opts.methods:
                    fa = next((x for x in ea["attributions"] if x["method"] == method), None)
                    fb = next((x for x in eb["attributions"] if x["method"] == method), None)
                    if fa is None or fb is None:
                        continue
                    ma = np.load(self.out.root / fa["map"])
                    mb = np.load(self.out.root / fb["map"])
                    if size is None:
                        from PIL import Image

                        with Image.open(s.image_path) as img:  # the header: its size
                            size = img.size
                    box_a = a.preprocess.box(*size)
                    box_b = b.preprocess.box(*size)
                    if ma.shape != mb.shape or not np.allclose(box_a, box_b, atol=1e-6):
                        scale = min(1.0, COMPARE_SIDE / max(size))
                        grid = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
                        ma, ca = place(ma, box_a, size, grid)
                        mb, cb = place(mb, box_b, size, grid)
                        both = ca & cb
                        ma, mb = ma[both], mb[both]
                    out.append(_agreement(s.id, a.name, b.name, method, ea, eb, ma, mb))
        return out

    def overview(self, model: Any, rows: list[Row], figures: dict[str, Any]) -> str | None:
        """The model's overview figure: predicted vs true and the residuals (regression), the
        confusion matrix (classification)."""
        from seewhy.data.output import _file_part

        path = self.out.root / "overview" / f"{_file_part(model.name)}__predictions.png"
        try:
            if model.task == "regression":
                from seewhy.render.figures import prediction_figure

                values = [r.value for r in rows if r.value is not None]
                if not values:
                    return None
                truth = [r.truth for r in rows if r.value is not None]
                has_truth = all(isinstance(t, (int, float)) for t in truth)
                prediction_figure(
                    path,
                    prediction=values,
                    truth=[float(t) for t in truth] if has_truth else None,  # type: ignore[arg-type]
                    title=f"{model.name}: predicted {self.what(model)}",
                )
            else:
                confusion = figures.get("confusion")
                if not confusion:
                    return None
                from seewhy.render.figures import confusion_figure

                confusion_figure(
                    path,
                    labels=confusion["labels"],
                    matrix=confusion["matrix"],
                    title=f"{model.name}: confusion (rows true, columns predicted)",
                )
        except Exception as exc:  # a figure that cannot be drawn is noted, not fatal
            self.console.print(f"[yellow]overview figure for {model.name}: {exc}[/]")
            return None
        return self.out.rel(path)

    def cohort(
        self, model: Any, method: str, c: Cohort, rows: list[Row], file_stem: str
    ) -> dict[str, Any]:
        """A ``cohorts[]`` entry: members, mean map and its figure, region shares, features."""
        import numpy as np

        from seewhy.data.output import _file_part
        from seewhy.jobs.regression import depends_on_target, is_lowering

        by_id = {r.id: r for r in rows}
        done = self.explained.get(model.name, {})
        members = []
        total: np.ndarray | None = None
        count = 0
        raises, lowers, areas = [], [], []
        features: dict[str, list[float]] = {}
        explained_rows: list[dict[str, Any]] = []
        signed = False
        for sid in c.ids:
            r = by_id[sid]
            member: dict[str, Any] = {"id": sid, "target": r.truth}
            member["prediction"] = r.value if model.task == "regression" else r.label
            if model.task == "regression":
                member["residual"] = r.residual
            else:
                member["score"] = r.score
            rec = done.get(sid)
            a = (
                None
                if rec is None
                else next((x for x in rec["attributions"] if x["method"] == method), None)
            )
            for f in [] if a is None else a.get("features", []):
                features.setdefault(f["name"], []).append(float(f["score"]))
            if a is not None and "features" in a and "map" not in a:  # a tree model's row
                explained_rows.append(a)
            elif a is not None:
                member["map"] = a["map"]
                if a.get("figure"):
                    member["figure"] = a["figure"]
                heat = np.load(self.out.root / a["map"])
                total = heat.astype(np.float64) if total is None else total + heat
                count += 1
                signed = signed or bool(a.get("signed"))
                sums = a.get("region_sums")
                if sums:
                    from seewhy.data.regions import RegionSums

                    shares = RegionSums(
                        np.asarray(sums["raises"]),
                        np.asarray(sums["lowers"]),
                        np.asarray(sums["pixels"]),
                    ).shares()
                    raises.append(shares[0])
                    lowers.append(shares[1])
                    areas.append(shares[2])
            members.append(member)
        entry: dict[str, Any] = {
            "name": c.name,
            "title": c.title,
            "model": model.name,
            "method": method,
            "sample_ids": list(c.ids),
            "members": members,
            "explained": count,
        }
        if total is not None and count:
            mean = (total / count).astype(np.float32)
            stem = f"{_file_part(model.name)}__{_file_part(method)}__{file_stem}"
            npy = self.out.root / "cohorts" / f"{stem}.npy"
            self.out.save_map(npy, mean)
            entry["mean_map"] = self.out.rel(npy)
            entry["signed"] = signed
            png = npy.with_suffix(".png")
            try:
                from seewhy.render.figures import cohort_figure

                cohort_figure(
                    png,
                    mean_map=mean,
                    title=f"{c.title} · {model.name} · {method} · mean of {count}",
                    signed=signed,
                )
                entry["figure"] = self.out.rel(png)
            except Exception as exc:
                self.console.print(f"[yellow]cohort figure {stem}: {exc}[/]")
        names = list(self.opts.region_names or [])
        if names and areas:
            area = mean_shares(areas) or []
            up = mean_shares(raises)
            down = mean_shares(lowers)
            entry["region_area"] = dict(zip(names, area, strict=True))
            if up is not None:
                entry["region_share"] = dict(zip(names, up, strict=True))
            if down is not None:
                entry["region_share_lower"] = dict(zip(names, down, strict=True))
            # region_share is of what raises the explained output; the words speak of the
            # output itself, so explaining -value (what lowers it) turns the verbs round.
            # A map without a direction (|gradient| maps, EigenCAM) gets neutral words.
            directional = signed or (_reads_a_layer(method) and depends_on_target(method))
            if not directional:
                entry["description"] = describe(
                    c.title, names, up, None, area, self.what(model), neutral=True
                )
            else:
                words = (down, up) if is_lowering(model, self.opts.target) else (up, down)
                entry["description"] = describe(c.title, names, *words, area, self.what(model))
        if features:
            entry["features"] = mean_features(features)
        if explained_rows and features:  # a tree model: its words and beeswarm + bar figure
            from seewhy.jobs.cohorts import describe_features
            from seewhy.jobs.trees import explained_words, tree_target

            lowering = tree_target(model, self.opts.target) == "-value"
            # a classifier's values explain a class's score (each row's own class, or the one
            # --target names), not the label column
            what = explained_words(model, self.opts.target, self.what(model))
            entry["description"] = describe_features(
                c.title, entry["features"], what, lowering=lowering
            )
            from seewhy.jobs.trees import matrices, summary_figure

            entry["explained"] = len(explained_rows)
            columns = [f["name"] for f in explained_rows[0]["features"]]
            values, data = matrices(explained_rows, columns)
            stem = f"{_file_part(model.name)}__{_file_part(method)}__{file_stem}"
            png = self.out.root / "cohorts" / f"{stem}.png"
            title = f"{c.title} · {model.name} · {method} · {len(explained_rows)} rows"
            if self.opts.figures and summary_figure(png, values, data, columns, title):
                entry["figure"] = self.out.rel(png)
        return entry

    def write_predictions(self, cohorts: dict[str, list[Cohort]]) -> None:
        """predictions.csv: one line per (row, model), with the cohorts it belongs to."""
        import csv
        import io

        from seewhy.core.atomic import atomic_write

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(
            ["id", "model", "truth", "prediction", "score", "residual", "abs_error", "cohorts"]
        )
        for m in self.models:
            member_of: dict[str, list[str]] = {}
            for c in cohorts.get(m.name, []):
                for i in c.ids:
                    member_of.setdefault(i, []).append(c.name)
            for r in self.rows(m):
                res = r.residual
                w.writerow(
                    [
                        r.id,
                        m.name,
                        "" if r.truth is None else r.truth,
                        r.value if m.task == "regression" else r.label,
                        "" if r.score is None else r.score,
                        "" if res is None else res,
                        "" if res is None else abs(res),
                        ";".join(member_of.get(r.id, [])),
                    ]
                )
        atomic_write(self.out.root / "predictions.csv", buf.getvalue())


def _result(record: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A ``results[]`` entry from a streamed record: per method its region shares in words."""
    import numpy as np

    from seewhy.data.regions import RegionSums

    entry = {k: v for k, v in record.items() if k not in ("truth", "stamp")}
    attributions = []
    for a in record.get("attributions", []):
        a = dict(a)
        sums = a.pop("region_sums", None)
        if sums and names:
            up, down, area = RegionSums(
                np.asarray(sums["raises"]), np.asarray(sums["lowers"]), np.asarray(sums["pixels"])
            ).shares()
            if up is not None:
                a["region_share"] = dict(zip(names, up, strict=True))
            if down is not None:
                a["region_share_lower"] = dict(zip(names, down, strict=True))
            a["region_area"] = dict(zip(names, area, strict=True))
        attributions.append(a)
    entry["attributions"] = attributions
    return entry


@dataclass
class _WriteBatch:
    """A batch's maps, figures and records, written by the background writer."""

    job: _Job
    model: Model
    samples: list[Sample]
    items: list[_Item]
    exps: list[Explanation]
    opposite: list[Any]
    flipped: bool
    truncated: list[bool]
    sums: list[dict[str, dict[str, list[float]]]]
    predictions: list[dict[str, Any]]

    def __call__(self) -> None:
        job = self.job
        run = job.helper
        records = []
        failed = set()
        for k, (s, it) in enumerate(zip(self.samples, self.items, strict=True)):
            todo = _Todo(s, {}, None, tuple(job.opts.methods))  # a fresh result, every method
            shown = _Shown(it.shown, it.grayscale)
            try:
                entry, _ = run.write(
                    self.model,
                    todo,
                    k,
                    self.exps,
                    self.opposite,
                    self.flipped,
                    shown,
                    self.truncated[k],
                )
            except Exception as exc:  # a figure that fails fails its row alone
                job.fail(s, self.model, _reason(exc))
                failed.add(s.id)
                continue
            finally:
                run.summary["results"].clear()  # the job compiles results from the records
            entry.pop("request", None)  # state.json and the stamp say what it came from
            entry["stamp"] = job.stamp(s, self.model)
            for a in entry["attributions"]:
                e = next(x for x in self.exps if x.method == a["method"])
                a["signed"] = bool(e.signed)
                if a["method"] in self.sums[k]:
                    a["region_sums"] = self.sums[k][a["method"]]
            records.append(entry)
        # --explain all: the predictions of the same pass
        job.keep_predictions(self.model, [p for p in self.predictions if p["id"] not in failed])
        job.state.records.append(records)
        for r in records:
            job.explained.setdefault(self.model.name, {})[r["sample"]] = r


def _columns() -> tuple[Any, ...]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.1f} rows/s")

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeRemainingColumn(),
    )


# -- from a notebook ----------------------------------------------------------------------------
def dataset(
    manifest: Any,
    model: Any,
    methods: str | Sequence[str] | None = None,
    *,
    target: str = "pred",
    out: str | Path = "seewhy-out",
    id_col: str | None = None,
    image_col: str = "image_path",
    target_col: str | None = None,
    text_col: str | None = None,
    regions_col: str | None = None,
    region_names: Sequence[str] | None = None,
    explain: str = "cohorts",
    cohort_size: int = 32,
    check_sample: int = 0,
    figures: bool = True,
    workers: int = 0,
    batch_size: int = 8,
    seed: int = 0,
    sample: int | None = None,
    n_background: int | None = None,
    layer: str | None = None,
    device: str | None = None,
    trust_checkpoint: bool = False,
    progress: bool = False,
    report: bool = True,
) -> DatasetResult:
    """``seewhy dataset`` from Python: the same run, the same output folder.

    Args:
        manifest: a CSV/Parquet path, several (joined on ``id_col``), or a pandas DataFrame
            (relative image paths are then relative to the current folder).
        model: a model card / arch string, a loaded :class:`~seewhy.core.model.Model` or an
            ``nn.Module``, or a list of them.
        methods: method names, a comma list or a list (settings in brackets); ``None``:
            gradcam for torch models, tree-shap for tree models.
        workers: DataLoader worker processes (default 0 here: notebooks often cannot fork).

    Other arguments are the flags of ``seewhy dataset`` (SPEC sections 2 and 8).

    Returns:
        A :class:`DatasetResult`: ``.predictions`` and ``.cohorts`` as pandas DataFrames,
        ``.summary``, ``.report()``; it displays itself in Jupyter.
    """
    from seewhy.data.samples import from_manifests, from_rows
    from seewhy.jobs.trees import is_tree
    from seewhy.methods.registry import split_method_specs
    from seewhy.models.tabular import is_tabular_spec

    names = list(region_names) if region_names else None
    models = model if isinstance(model, (list, tuple)) else [model]
    trees_only = all(
        is_tree(m) or (isinstance(m, (str, Path)) and is_tabular_spec(m)) for m in models
    )
    if hasattr(manifest, "to_dict") and hasattr(manifest, "columns"):  # a pandas DataFrame
        samples = from_rows(
            manifest.to_dict(orient="records"),
            id_col=id_col,
            image_col=image_col,
            target_col=target_col,
            text_col=text_col,
            regions_col=regions_col,
            sample=sample,
            seed=seed,
            images=not trees_only,
        )
        paths: list[Path] = []
    else:
        paths = [Path(p) for p in (manifest if isinstance(manifest, (list, tuple)) else [manifest])]
        samples = from_manifests(
            paths,
            id_col=id_col,
            image_col=image_col,
            target_col=target_col,
            text_col=text_col,
            regions_col=regions_col,
            sample=sample,
            seed=seed,
            images=not trees_only,
        )
    specs = [str(m) for m in models if isinstance(m, (str, Path))]
    opts = DatasetOptions(
        methods=split_method_specs(methods if isinstance(methods, str) else ",".join(methods))
        if methods
        else [],
        target=target,
        layer=layer,
        out=Path(out),
        device=device,
        batch_size=batch_size,
        seed=seed,
        trust_checkpoint=trust_checkpoint,
        progress=progress,
        report=report,
        n_background=n_background,
        manifests=paths,
        text_from=None if text_col is None else f"text_col={text_col!r}",
        id_col=id_col or "id",
        target_col=target_col,
        regions_col=regions_col,
        region_names=names,
        explain=explain,
        cohort_size=cohort_size,
        check_sample=check_sample,
        figures=figures,
        workers=workers,
    )
    loaded = None
    if len(specs) != len(models):  # loaded models or modules
        import copy

        from seewhy.api import as_model, load_model
        from seewhy.data.samples import unique_ids

        loaded = [  # copies: the names made unique below are this run's, not the caller's
            load_model(m)
            if isinstance(m, (str, Path))
            else copy.copy(m)
            if is_tree(m)
            else copy.copy(as_model(m))
            for m in models
        ]
        for m, name in zip(loaded, unique_ids([m.name for m in loaded]), strict=True):
            m.name = name
    outcome = run_dataset(samples, specs, opts, loaded=loaded)
    return DatasetResult(outcome.summary, outcome.failed, outcome.out)


@dataclass
class DatasetResult:
    """What :func:`dataset` returns: the run's summary and output folder, with views for a
    notebook."""

    summary: dict[str, Any]
    failed: int
    out: Path

    @property
    def predictions(self) -> Any:
        """predictions.csv as a pandas DataFrame (id, model, truth, prediction, score,
        residual, abs_error, cohorts)."""
        pd = _pandas()
        return pd.read_csv(self.out / "predictions.csv", dtype={"id": str, "model": str})

    @property
    def cohorts(self) -> Any:
        """One row per cohort x model x method: its name, title, members, words, mean map
        and, with region maps, the share of each class in what raises / lowers the output."""
        pd = _pandas()
        rows = []
        for c in self.summary.get("cohorts", []):
            row = {
                k: c.get(k)
                for k in ("name", "title", "model", "method", "description", "mean_map", "figure")
            }
            row["rows"] = len(c.get("sample_ids", []))
            row["sample_ids"] = list(c.get("sample_ids", []))
            for key, prefix in (
                ("region_share", "raises"),
                ("region_share_lower", "lowers"),
                ("region_area", "area"),
            ):
                for k, v in (c.get(key) or {}).items():
                    row[f"{prefix}:{k}"] = v
            rows.append(row)
        return pd.DataFrame(rows)

    def cohort(self, name: str, model: str | None = None, method: str | None = None) -> CohortView:
        """One cohort (the first model's and method's unless named), for display."""
        for c in self.summary.get("cohorts", []):
            if (
                c.get("name") == name
                and model in (None, c.get("model"))
                and method
                in (
                    None,
                    c.get("method"),
                )
            ):
                return CohortView(c, self.out)
        have = sorted({str(c.get("name")) for c in self.summary.get("cohorts", [])})
        raise UsageError(f"no cohort '{name}' in this run; it has {', '.join(have) or 'none'}")

    def report(self) -> Path:
        """Render report.html (again) and return its path."""
        from seewhy.render.report import render_report

        return render_report(self.out)

    def _repr_html_(self) -> str:
        from html import escape

        info = self.summary.get("dataset", {})
        head = (
            f"<p><b>seewhy dataset</b> · {info.get('rows', 0)} rows, "
            f"{info.get('predicted', 0)} predicted, {info.get('explained', 0)} explained, "
            f"{info.get('failed', 0)} failed · {escape(str(self.out))}</p>"
        )
        lines = [
            f"<li>{escape(str(c.get('model')))} / {escape(str(c.get('method')))}: "
            f"{escape(str(c.get('description') or c.get('title')))}</li>"
            for c in self.summary.get("cohorts", [])
        ]
        return head + (f"<ul>{''.join(lines)}</ul>" if lines else "")


@dataclass
class CohortView:
    """A cohort of a dataset run, shown inline in Jupyter: its words, mean map and gallery."""

    entry: dict[str, Any]
    out: Path

    @property
    def mean_map(self) -> Any:
        """The cohort's mean map (float32 ``[H, W]``), or ``None`` when nothing was explained."""
        import numpy as np

        ref = self.entry.get("mean_map")
        return None if not ref else np.load(self.out / ref)

    def _repr_html_(self) -> str:
        from html import escape

        c = self.entry
        parts = [
            f"<p><b>{escape(str(c.get('title') or c.get('name')))}</b> · "
            f"{escape(str(c.get('model')))} / {escape(str(c.get('method')))} · "
            f"{len(c.get('sample_ids', []))} rows</p>"
        ]
        if c.get("description"):
            parts.append(f"<p>{escape(str(c['description']))}</p>")
        if c.get("figure"):
            tree = "mean_map" not in c and bool(c.get("features"))
            caption = "SHAP values of its rows" if tree else "mean map"
            parts.append(_img(self.out / c["figure"], 560 if tree else 360, caption))
        if c.get("features"):
            rows = "".join(
                f"<tr><td>{escape(str(f['name']))}</td><td>{f['score']:+.4g}</td>"
                f"<td>{f['abs_score']:.4g}</td></tr>"
                for f in c["features"][:12]
            )
            parts.append(
                "<table><tr><th>feature</th><th>mean attribution</th><th>mean |attribution|</th>"
                f"</tr>{rows}</table>"
            )
        cells = []
        for m in c.get("members", [])[:12]:
            if m.get("figure"):
                caption = (
                    f"{m.get('id')}: target {m.get('target')}, predicted {m.get('prediction')}"
                )
                cells.append(_img(self.out / m["figure"], 220, caption))
        if cells:
            parts.append("<div>" + "".join(cells) + "</div>")
        return "".join(parts)


def _img(path: Path, width: int, caption: str) -> str:
    """An inline thumbnail (PNG data URI) of ``path``, ``width`` px wide, with a caption."""
    import base64
    import io
    from html import escape

    from PIL import Image

    try:
        with Image.open(path) as img:
            img.thumbnail((width, width * 4))
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
    except OSError:
        return f"<p><i>{escape(caption)}: {escape(str(path))} is missing</i></p>"
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        "<figure style='display:inline-block;margin:4px'>"
        f"<img src='data:image/png;base64,{data}' width='{width}'>"
        f"<figcaption style='font-size:80%'>{escape(caption)}</figcaption></figure>"
    )


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise UsageError(
            "DataFrames need pandas: pip install 'seewhy[tabular]' (or pip install pandas)"
        ) from exc
    return pd
