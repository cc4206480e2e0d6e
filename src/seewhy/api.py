"""The library's front door: ``seewhy.explain``, ``seewhy.layers``, ``seewhy.load_model``.

Whatever a user gives (a :class:`~seewhy.core.model.Model`, a plain ``nn.Module``, a model card
path, an arch string) is turned into ONE ``Model`` here, once, and the inputs (a tensor, image
paths, PIL images, or named tensors) into one :class:`~seewhy.core.inputs.Inputs` batch on the
model's device; below this door nothing converts them again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.checks.suite import CheckResult
from seewhy.checks.verdict import Thresholds
from seewhy.core.errors import TargetError, UsageError
from seewhy.core.explanation import Explanation
from seewhy.core.inputs import Inputs, check_batch_size
from seewhy.core.layers import LayerInfo, example_input, list_layers, resolve_layer
from seewhy.core.model import Model
from seewhy.core.targets import ResolvedTarget, Target
from seewhy.methods.base import Method, row_seeds
from seewhy.methods.registry import create_method, parse_method_specs, split_method_specs

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "as_inputs",
    "as_model",
    "auto_layer_name",
    "check",
    "explain",
    "layers",
    "load_model",
]


def load_model(spec: str | Path, **options: Any) -> Any:
    """A :class:`Model` from a card (``.toml``), an arch string or a checkpoint file
    (see :func:`seewhy.models.loader.load_model` for the options), or a
    :class:`~seewhy.core.trees.TabularModel` from a tree model's card or arch string
    (``lightgbm:FILE.txt``, ``xgboost:FILE.json``, ``sklearn:FILE.skops``)."""
    from seewhy.models.loader import load_any

    return load_any(spec, **options)


def as_model(model: Model | nn.Module | str | Path) -> Model:
    """One :class:`Model` from what the user gave: a Model as it is, a plain ``nn.Module``
    wrapped (classification, layer ``auto``, the default preprocessing), a card path or an arch
    string loaded.

    Raises:
        MethodNotApplicableError: a tabular tree model (only ``tree-shap`` explains it).
    """
    from seewhy.core.trees import TabularModel

    loaded = load_model(model) if isinstance(model, (str, Path)) else model
    if isinstance(loaded, TabularModel):
        from seewhy.core.errors import MethodNotApplicableError

        raise MethodNotApplicableError(
            f"model {loaded.name} is a {loaded.kind} tree model: explain it with "
            "seewhy.explain(model, rows, methods='tree-shap'), seewhy.dataset or "
            "seewhy explain --data"
        )
    return Model.of(loaded)


def as_inputs(model: Model, inputs: Any) -> Inputs:
    """The batch, on the model's device and dtype, from a tensor ``[B, C, H, W]`` (or one image
    ``[C, H, W]``), named tensors (``{"image": ..., "features": ...}`` or an :class:`Inputs`),
    or image paths / PIL images (decoded robustly, preprocessed as the model's card says)."""
    batch = _batch(model, inputs)
    _check_entries(model, batch)
    return batch


def _batch(model: Model, inputs: Any) -> Inputs:
    import torch

    if isinstance(inputs, Inputs):
        batch = model.to_input(inputs)
    elif isinstance(inputs, Mapping):
        batch = model.to_input(_named(model, inputs))
    elif isinstance(inputs, torch.Tensor):
        batch = model.to_input(_image_batch(inputs))
    else:
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if items and all(isinstance(i, torch.Tensor) for i in items):
            shapes = {tuple(i.shape) for i in items}
            if len(shapes) != 1 or any(i.ndim != 3 for i in items):
                raise UsageError(
                    f"a list of tensors must be images [C, H, W] of one shape; got shapes "
                    f"{sorted(shapes)}: stack them into a batch [B, C, H, W]"
                )
            batch = model.to_input(torch.stack(items))
        else:
            batch = model.to_input(_decoded(model, items))
    if batch.batch_size == 0:
        raise UsageError("no inputs to explain: the batch is empty")
    return batch


def _check_entries(model: Model, batch: Inputs) -> None:
    """A multimodal model's batch has every input its card names."""
    if model.text is not None and "input_ids" not in batch and "text" not in batch:
        raise UsageError(
            f"model '{model.name}' takes text: give it with the image, e.g. "
            "seewhy.explain(model, {'image': ..., 'text': ['...']})"
        )
    if model.tabular is not None and "tabular" not in batch:
        raise UsageError(
            f"model '{model.name}' takes tabular features ({', '.join(model.tabular.columns)}): "
            "give them with the image, e.g. {'image': ..., 'tabular': rows}"
        )


def _named(model: Model, inputs: Mapping[str, Any]) -> Inputs:
    """Named inputs: ``image`` (a tensor, or image paths / PIL images), ``text`` (strings,
    tokenized as the card says), ``tabular`` (a normalised tensor ``[B, F]``, or rows of raw
    values: mappings by column or lists in the card's column order), and any other tensors
    (token ids ...) as they are."""
    import torch

    out: dict[str, Tensor] = {}
    for name, value in inputs.items():
        if name == "image" and not isinstance(value, torch.Tensor):
            out[name] = _batch(model, value).image
        elif name == "image":
            out[name] = _image_batch(value)
        elif name == "text" and not isinstance(value, torch.Tensor):
            if model.text is None:
                raise UsageError(
                    f"model '{model.name}' takes no text: its card has no [inputs] text table "
                    "(args, tokenizer, max_length)"
                )
            texts = [value] if isinstance(value, str) else list(value)
            entries, truncated = model.text.encode(texts)
            if any(truncated):
                import warnings

                rows = [i for i, t in enumerate(truncated) if t]
                warnings.warn(
                    f"texts {rows} are longer than max_length={model.text.max_length} tokens "
                    "and were truncated",
                    stacklevel=3,
                )
            out.update(entries)
        elif name == "tabular" and not isinstance(value, torch.Tensor):
            if model.tabular is None:
                raise UsageError(
                    f"model '{model.name}' takes no tabular features: its card has no "
                    "[inputs] tabular table (arg, columns, mean, std)"
                )
            rows = value.to_dict("records") if hasattr(value, "to_dict") else list(value)
            out[name] = model.tabular.encode(rows)
        elif isinstance(value, torch.Tensor):
            out[name] = value
        else:
            raise UsageError(
                f"input '{name}' is a {type(value).__name__}; give a tensor (or strings for "
                "'text', rows for 'tabular', images for 'image')"
            )
    return Inputs(out)


def _image_batch(x: Tensor) -> Tensor:
    if x.ndim == 3:
        return x[None]
    if x.ndim != 4:
        raise UsageError(
            f"expected an image batch [B, C, H, W] (or one image [C, H, W]); got shape "
            f"{tuple(x.shape)}"
        )
    return x


def _decoded(model: Model, items: list[Any]) -> Tensor:
    """Image files or PIL images, decoded robustly and preprocessed as the model says."""
    from PIL import Image

    from seewhy.data.images import load_image

    if not items:
        raise UsageError("no inputs to explain")
    for item in items:
        if not isinstance(item, (str, Path, Image.Image)):
            raise UsageError(
                f"cannot explain a {type(item).__name__}: pass image paths, PIL images, a "
                "tensor batch [B, C, H, W] or named tensors {'image': ...}"
            )
    return model.preprocess([load_image(item) for item in items])


def resolve_methods(
    methods: Sequence[str | Method] | str, layer: str | None = None, **settings: Any
) -> list[Method]:
    """Method instances from names (``"gradcam,eigencam"``, ``"ig(steps=32),gradcam"`` or a
    list) or ready instances. Settings in brackets belong to that method (a setting it does not
    take is an error with the closest name) and win over the shared ``settings``.

    Names are canonicalised once here (``GradCAM`` and ``gradcampp`` are ``gradcam`` and
    ``gradcam++``), and a method named twice is computed once. Each setting (``layer``
    included) goes to the methods that take it; one that no method takes is refused, with
    the closest name (:func:`~seewhy.methods.registry.create_method`).
    """
    names = split_method_specs(methods) if isinstance(methods, str) else list(methods)
    out: list[Method] = []
    seen: dict[str, dict[str, Any]] = {}
    for m in names:
        if isinstance(m, Method):
            out.append(m)
            continue
        for name, own in parse_method_specs([str(m)]):
            if name in seen:
                if seen[name] != own:
                    raise UsageError(
                        f"method '{name}' is given twice with different settings "
                        f"({seen[name]} and {own}); give it once"
                    )
                continue
            seen[name] = own
            out.append(create_method(name, layer=layer, **{**settings, **own}))
    if not out:
        raise UsageError("no method given; e.g. methods=['gradcam']")
    return out


def explain(
    model: Model | nn.Module | str | Path,
    inputs: Any,
    methods: Sequence[str | Method] | str | None = None,
    target: str | int | Target = "pred",
    layer: str | None = None,
    *,
    batch_size: int = 8,
    seed: int = 0,
    sample_ids: Sequence[str] | None = None,
    background: Any = None,
    **settings: Any,
) -> list[Explanation]:
    """Explain a batch with one or more methods.

    Args:
        model: a loaded :class:`Model`, a plain ``nn.Module``, or a model card / arch string.
        inputs: a preprocessed tensor batch ``[B, C, H, W]``, named tensors, or image paths /
            PIL images (preprocessed as the model says).
        methods: method names (``"gradcam"``, ``"gradcam++"`` ...) or method instances;
            ``None``: ``gradcam`` for a torch model, ``tree-shap`` for a tree model.
        target: ``pred``, a class index or label, ``all``, ``value``, ``-value`` ... (SPEC 4).
        layer: the CAM layer; ``None`` uses the model card's, else ``auto``.
        batch_size: the largest batch any forward pass sends to the model: the images go
            through ``batch_size`` at a time, and methods with many forwards per image
            (Score-CAM's masked inputs) send them ``batch_size`` at a time.
        seed: the seed of the methods that draw at random (noise, baselines, masks).
        sample_ids: one id per sample: each sample's draws are seeded from ``(seed, id)``, so a
            sample's explanation is the same alone, in any batch, and on a resumed run. Without
            ids, row ``i`` of ``inputs`` stands for the id ``str(i)``.
        background: rows to draw baselines from (expected gradients), in any form ``inputs``
            takes; ``None``: the given inputs themselves (every sample of the call); ``[]``:
            none (the zero baseline, with a note in ``extras["baseline_note"]``).
        settings: other method settings (e.g. ``precision``), passed to the methods that take
            them; a setting that no method takes is an error naming the closest one.

    Returns:
        One :class:`Explanation` per (target, method), targets outer, methods in the given order;
        each covers the whole batch. Methods of one family share their expensive part (all CAMs
        from one forward+backward per batch and layer). Each target is resolved once, on the
        clean batch: ``pred`` is the class the model picks on the inputs as given. For a
        regression target, the methods that depend on the target also return the opposite
        sign's map (what lowers the output beside what raises it) in ``extras["opposite"]``,
        from the same passes. Each keeps the image the model saw (``image``, uint8) and its
        predictions in words (``predictions``): in a notebook it shows its overlays and
        ``.plot()`` draws the 4-panel figure.
    """
    from seewhy.core.trees import TabularModel

    loaded = load_model(model) if isinstance(model, (str, Path)) else model
    if isinstance(loaded, TabularModel):
        tree_methods = ("tree-shap",) if methods is None else methods
        return _explain_tree(loaded, inputs, tree_methods, target, background, settings)
    methods = ("gradcam",) if methods is None else methods
    m, target = as_model(loaded).for_target(target)  # HEAD:LABEL picks a head
    batch = as_inputs(m, inputs)
    step = check_batch_size(batch_size)
    instances = resolve_methods(methods, layer or m.layer or "auto", **settings)
    for method in instances:
        method.check_applicable(m.module)  # a CAM on a TorchScript module: refused up front
    if isinstance(target, ResolvedTarget) and target.batch_size != batch.batch_size:
        raise TargetError(
            f"target '{target.name}' was resolved for {target.batch_size} samples, but the "
            f"batch has {batch.batch_size}; resolve it on this batch's output"
        )
    ids = [str(i) for i in range(batch.batch_size)] if sample_ids is None else list(sample_ids)
    if len(ids) != batch.batch_size:
        raise UsageError(
            f"sample_ids has {len(ids)} ids for a batch of {batch.batch_size}; give one per sample"
        )
    seeds = row_seeds(seed, ids)
    no_rows = isinstance(background, (list, tuple)) and not background
    rows = batch if background is None else None if no_rows else as_inputs(m, background)
    instances = _resolve_auto_layer(m, batch, instances)
    targets = _targets(m, batch, target)
    families: dict[Callable[..., Any], list[int]] = {}
    for i, method in enumerate(instances):
        families.setdefault(_family(method).run_many, []).append(i)
    results: list[Explanation] = []
    for tgt in targets:
        chunks: list[list[Explanation]] = [[] for _ in instances]
        for start in range(0, batch.batch_size, step):
            part = batch[start : start + step]
            part_target = tgt.rows(slice(start, start + step))
            for run_many, idx in families.items():
                group = [instances[i] for i in idx]
                done = run_many(
                    group,
                    m,
                    part,
                    part_target,
                    batch_size=step,
                    seeds=seeds[start : start + step],
                    background=rows,
                )
                for i, e in zip(idx, done, strict=True):
                    chunks[i].append(e)
        results.extend(Explanation.concat(c) for c in chunks)
    return _shown(m, batch, results)


def _explain_tree(
    model: Any,
    inputs: Any,
    methods: Sequence[str | Method] | str,
    target: Any,
    background: Any,
    settings: dict[str, Any],
) -> list[Explanation]:
    """:func:`explain` for a tabular tree model: ``tree-shap`` (``shap`` too) on rows given as
    a pandas DataFrame, a list of dicts, one dict (one row), an array ``[N, F]`` in the model's
    column order, or the path of a CSV or Parquet manifest (its rows; other columns ignored).
    ``background`` (rows in the same forms): interventional; ``None`` or no rows:
    path-dependent.

    Returns one :class:`Explanation` whose ``attributions["tabular"]`` is ``[N, F]`` (signed,
    float32), ``output`` the model's predictions (``[N, 1]`` or class probabilities
    ``[N, C]``), ``extras``: ``expected_value`` ``[N]``, ``algorithm``, ``columns``."""
    import numpy as np
    import torch

    from seewhy.core.errors import MethodNotApplicableError
    from seewhy.methods.registry import canonical_name, create_method, for_trees
    from seewhy.methods.tabular import TREE_METHOD, check_target, shap_values

    given = split_method_specs(methods) if isinstance(methods, str) else list(methods)
    names = [canonical_name(m) if isinstance(m, str) else m.name for m in given]
    other = [n for n in names if not (for_trees(n) or n == "expected-gradients")]
    if other or not names:
        verb = "needs" if len(other) == 1 else "need"
        raise MethodNotApplicableError(
            f"model {model.name} is a {model.kind} tree model: {', '.join(other or ['no method'])} "
            f"{verb} a torch model's gradients or layers; use methods='{TREE_METHOD}'"
        )
    check_target(model, str(target))
    method = create_method(TREE_METHOD, **settings)
    x = _tree_rows(model, inputs, "inputs")
    if not len(x):
        raise UsageError(
            f"inputs: no rows to explain (model {model.name} takes rows with the columns "
            f"{', '.join(model.columns)}); pass at least one row"
        )
    rows = None if background is None else _tree_rows(model, background, "background")
    rows = None if rows is None or not len(rows) else rows
    if str(target).strip() == "true":
        raise UsageError(
            "target='true' needs each row's true label, which seewhy.explain does not take for "
            "a tree model: pass a class (index or label), or use seewhy.dataset with target_col"
        )
    result = shap_values(model, method, x, target=str(target), background=rows)
    output = np.asarray(model.predict(x), dtype=np.float32)
    output = output.reshape(len(x), -1)
    return [
        Explanation(
            method=TREE_METHOD,
            attributions={"tabular": torch.from_numpy(result.values.astype(np.float32))},
            target=str(target),
            params=method.params(),
            output=torch.from_numpy(output),
            target_indices=None
            if result.class_index is None
            else torch.from_numpy(np.asarray(result.class_index, dtype=np.int64)),
            signed=True,
            input_signed={"tabular": True},
            extras={
                "expected_value": torch.from_numpy(result.expected_value.astype(np.float32)),
                "algorithm": result.algorithm,
                "background": result.background,
                "columns": list(model.columns),
            },
        )
    ]


def _tree_rows(model: Any, rows: Any, what: str) -> Any:
    """A tree model's feature matrix ``[N, F]`` from a DataFrame, a list of dicts, one dict
    or pandas Series (one row), an array, or a CSV / Parquet manifest's path.

    Raises:
        UsageError: anything else, an array of another width, a path that is not a
            manifest, a row without one of the model's columns.
    """
    import numpy as np

    from seewhy.data.samples import MANIFEST_SUFFIXES, read_table

    takes = (
        f"a tree model takes rows as a DataFrame, a list of dicts, one dict, an array "
        f"[N, {len(model.columns)}] in its column order ({', '.join(model.columns)}) or a "
        "CSV/Parquet manifest's path"
    )
    if isinstance(rows, (str, Path)):
        path = Path(rows)
        if path.suffix.lower() not in MANIFEST_SUFFIXES:
            raise UsageError(f"{what}: {str(rows)!r} is not a .csv or .parquet file; {takes}")
        return model.matrix(read_table(path))
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        return model.matrix(rows.to_dict(orient="records"))
    if hasattr(rows, "to_dict") and hasattr(rows, "index"):  # a pandas Series: one row
        return model.matrix([rows.to_dict()])
    if isinstance(rows, Mapping):  # one row
        return model.matrix([rows])
    if isinstance(rows, (list, tuple)) and rows and isinstance(rows[0], Mapping):
        return model.matrix(list(rows))
    if isinstance(rows, (list, tuple)) and not rows:
        return np.empty((0, len(model.columns)), dtype=np.float64)
    try:
        x = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"{what}: got a {type(rows).__name__}; {takes}") from None
    if x.ndim != 2 or x.shape[1] != len(model.columns):
        raise UsageError(f"{what}: got shape {list(x.shape)}; {takes}")
    return x


def _shown(model: Model, batch: Inputs, results: list[Explanation]) -> list[Explanation]:
    """The explanations with what a notebook draws beside the maps: the image the model saw
    (uint8, in its input frame, one copy shared by every result) and each sample's prediction
    in words (:func:`~seewhy.data.summary.prediction_text`)."""
    from seewhy.core.display import input_image
    from seewhy.data.summary import prediction, prediction_text

    x = batch.get("image")
    image = None if x is None else input_image(x, model.preprocess.mean, model.preprocess.std)

    def said(out: Tensor | None) -> list[str] | None:
        rows = None if out is None else out.detach().float().cpu()  # one copy, not one per row
        return None if rows is None else [prediction_text(prediction(model, r, 1)[0]) for r in rows]

    return [dataclasses.replace(e, image=image, predictions=said(e.output)) for e in results]


def check(
    model: Model | nn.Module | str | Path | Sequence[Model | nn.Module | str | Path],
    inputs: Any,
    methods: Sequence[str | Method] | str = ("gradcam",),
    target: str | int | Target = "pred",
    layer: str | None = None,
    *,
    masks: Any = None,
    thresholds: Thresholds | Mapping[str, float] | str | Path | None = None,
    steps: int = 50,
    randomization: str = "blocks",
    randomization_mode: str = "cascade",
    faithfulness_precision: str = "float32",
    batch_size: int = 8,
    seed: int = 0,
    sample_ids: Sequence[str] | None = None,
    background: Any = None,
    progress: Callable[[str], None] | None = None,
    **settings: Any,
) -> list[CheckResult]:
    """The trust checks (SPEC section 6): can these maps be believed?

    Per model x method: randomization (the maps of copies whose weights are re-initialised
    from the head down, against the trained model's), deletion/insertion faithfulness beside a
    random pixel order, localization against ``masks``, red flags (border, corner, flat maps,
    the same map for every sample, disagreement between methods and between models that
    predict the same class), and a verdict (``pass``, ``warn``, ``fail``) with reasons.

    Args:
        model: a model (anything :func:`explain` takes) or a list of them: several models are
            also compared with each other on the samples where they predict the same class.
        inputs: the batch, in any form :func:`explain` takes (preprocessed tensors or image
            paths / PIL images), with an image input.
        methods: the methods to check; those of a family share their passes.
        target: as :func:`explain` (one target); resolved once on the trained model, so each
            randomized copy explains the same class.
        layer: the CAM layer; ``None`` uses the model's.
        masks: what matters in each image, in the model-input frame: a bool tensor / array
            ``[B, H, W]`` (non-zero = marked), or one per sample (a tensor, an array, a mask
            image path framed as the model frames its images, or ``None``). An empty mask means
            "nothing to point at": that sample has no localization figures.
        thresholds: the verdict's thresholds: a :class:`Thresholds`, a mapping of some of its
            names, or a TOML file.
        steps: deletion/insertion steps (default 50).
        randomization: ``blocks`` (per block/stage from the head, default), ``layers`` (every
            layer with parameters, quantus's MPRT granularity) or ``none``.
        randomization_mode: ``cascade`` (default: from the head down, each step keeping the
            blocks before it randomized) or ``independent`` (each block alone).
        faithfulness_precision: the deletion/insertion forwards: ``float32`` (default,
            exact) or ``auto`` (bfloat16 autocast where the hardware computes it natively,
            through the forward engine's folded, channels-last copy).
        batch_size: the largest batch any forward pass sends to the model.
        seed: the seed of the random pixel orders, the randomized weights and random methods.
        sample_ids: one id per sample (per-sample figures and seeds); default ``0 .. B-1``.
        background: the rows expected gradients draw baselines from, as :func:`explain`
            takes them (``None``: the given inputs; ``[]``: the zero baseline).
        progress: called with a short description of each stage.
        settings: other method settings, as :func:`explain` takes them.

    Returns:
        One :class:`~seewhy.checks.suite.CheckResult` per model x method (models outer);
        ``result.record()`` is its summary.json ``checks[]`` entry. The models are not changed.
    """
    from seewhy.checks.suite import run_checks
    from seewhy.checks.verdict import Thresholds as _Thresholds

    if isinstance(thresholds, _Thresholds):
        limits = thresholds
    elif isinstance(thresholds, Mapping):
        limits = _Thresholds.of(thresholds)
    else:
        limits = _Thresholds.load(thresholds)
    check_batch_size(batch_size)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise UsageError(
            f"steps must be an integer >= 2, got {steps!r}: with one step every pixel order "
            "gives the same curve (the image, then its blurred copy)"
        )
    from seewhy.core.engine import check_precision

    check_precision(faithfulness_precision, "faithfulness_precision")  # before any forward
    many = isinstance(model, (list, tuple))
    given: list[Any] = list(model) if isinstance(model, (list, tuple)) else [model]
    models = [as_model(m) for m in given]
    if not models:
        raise UsageError("no model given to check")
    out: list[CheckResult] = []
    maps: dict[tuple[str, str], Tensor] = {}
    predicted: dict[str, Tensor | None] = {}
    frames: dict[str, Any] = {}
    sizes = _ImageSizes(inputs)
    from seewhy.data.samples import unique_ids

    names = unique_ids([m.name for m in models])  # as the CLI names them: a, a, a-2 -> a, a-3, a-2
    for m0, name in zip(models, names, strict=True):
        m, tgt = m0.for_target(target)
        m = dataclasses.replace(m, name=name) if m.name != name else m
        batch = as_inputs(m, inputs)
        ids = [str(i) for i in range(batch.batch_size)] if sample_ids is None else list(sample_ids)
        if len(ids) != batch.batch_size:
            raise UsageError(
                f"sample_ids has {len(ids)} ids for a batch of {batch.batch_size}; give one per "
                "sample"
            )
        instances = resolve_methods(methods, layer or m.layer or "auto", **settings)
        for method in instances:
            method.check_applicable(m.module)
        instances = _resolve_auto_layer(m, batch, instances)
        resolved, predicted[name] = _resolve(m, batch, tgt, batch_size)
        framed = _masks(m, masks, batch, sizes)

        def maps_of(
            copy: Model,
            batch: Inputs = batch,
            instances: list[Method] = instances,
            resolved: ResolvedTarget = resolved,
            ids: list[str] = ids,
        ) -> list[Explanation]:
            return explain(
                copy,
                batch,
                instances,
                target=resolved,
                batch_size=batch_size,
                seed=seed,
                sample_ids=ids,
                background=background,
            )

        done = run_checks(
            m,
            batch,
            [method.name for method in instances],
            resolved,
            maps_of,
            sample_ids=ids,
            seeds=row_seeds(seed, ids),
            masks=framed,
            thresholds=limits,
            steps=steps,
            randomization=randomization,
            randomization_mode=randomization_mode,
            batch_size=batch_size,
            seed=seed,
            precision=faithfulness_precision,
            progress=progress,
        )
        out.extend(done)
        frames[name] = m.preprocess
        for r in done:
            if r.maps is not None:
                maps[name, r.method] = r.maps
    if many and len(models) > 1:
        out = _compare_models(out, maps, predicted, names, limits, frames, sizes)
    return out


def _resolve(
    model: Model, batch: Inputs, target: str | int | Target, step: int
) -> tuple[ResolvedTarget, Tensor | None]:
    """``target`` resolved on the model's clean output (``batch_size`` rows per forward), and
    the predicted classes (``None`` for a regressor: models are then compared on every
    sample)."""
    import torch

    from seewhy.core.state import explaining

    with explaining(model.module), torch.no_grad():
        out = torch.cat([model.forward(chunk) for chunk in batch.chunks(step)])
    predicted = None if model.task == "regression" else model.target("pred").resolve(out)
    classes = None if predicted is None else predicted.class_indices.cpu()
    if isinstance(target, ResolvedTarget):
        return target, classes
    return model.target(target).resolve(out), classes


def _masks(
    model: Model, masks: Any, batch: Inputs, sizes: Callable[[int], tuple[int, int] | None]
) -> Tensor | None:
    """The masks as one bool ``[B, H, W]`` tensor in the model-input frame (``None``: none).
    A mask file given for an image file must have that image's size."""
    import numpy as np
    import torch

    if masks is None:
        return None
    image = batch.get("image")
    if image is None:
        raise UsageError("masks were given, but the model takes no image input")
    b, size = batch.batch_size, tuple(image.shape[-2:])
    if isinstance(masks, (torch.Tensor, np.ndarray)) and np.ndim(masks) == 3:
        items: list[Any] = list(torch.as_tensor(masks))
    elif isinstance(masks, (list, tuple)):
        items = list(masks)
    else:
        raise UsageError(
            "masks: give a bool tensor [B, H, W] or one mask per sample (tensor, array, image "
            "path or None)"
        )
    if len(items) != b:
        raise UsageError(f"masks: {len(items)} masks for {b} samples; give one per sample")
    out = torch.zeros((b, *size), dtype=torch.bool)
    for i, item in enumerate(items):
        if item is None:
            continue
        if isinstance(item, (str, Path)):
            from seewhy.data.masks import load_mask

            item = load_mask(item, model.preprocess, image_size=sizes(i))
        t = torch.as_tensor(item)
        if tuple(t.shape[-2:]) != size or t.ndim != 2:
            raise UsageError(
                f"mask {i} is {tuple(t.shape)}, the model's input is {size}; give masks in the "
                "model-input frame (or mask image paths, which are framed as the images)"
            )
        out[i] = t.cpu() != 0
    return out


class _ImageSizes:
    """The (width, height) of input ``i`` when the inputs are image files or PIL images (a mask
    file must match it; models that crop differently are compared on it), else ``None``; each
    file is read once per :func:`check` call, however many models and masks ask."""

    def __init__(self, inputs: Any) -> None:
        from PIL import Image

        if isinstance(inputs, Mapping):  # named inputs: the image entry's
            inputs = inputs.get("image")
        if isinstance(inputs, (str, Path, Image.Image)):  # one image
            inputs = [inputs]
        self._items = list(inputs) if isinstance(inputs, (list, tuple)) else []
        self._known: dict[int, tuple[int, int] | None] = {}

    def __call__(self, i: int) -> tuple[int, int] | None:
        from PIL import Image

        if i not in self._known:
            item = self._items[i] if i < len(self._items) else None
            if isinstance(item, Image.Image):
                self._known[i] = item.size
            elif isinstance(item, (str, Path)):
                from seewhy.data.images import load_image

                self._known[i] = load_image(item).size
            else:
                self._known[i] = None
        return self._known[i]


def _compare_models(
    results: list[CheckResult],
    maps: Mapping[tuple[str, str], Tensor],
    predicted: Mapping[str, Tensor | None],
    names: Sequence[str],
    limits: Thresholds,
    frames: Mapping[str, Any],
    sizes: Callable[[int], tuple[int, int] | None],
) -> list[CheckResult]:
    """Each result judged again with its rank correlation to every other model's map of the
    same method, on the samples where the two predict the same class. Models that frame an
    image file differently (another resize or crop) are compared where their frames lie on
    it, as ``seewhy explain`` compares them."""
    import torch

    from seewhy.checks.agreement import framed_rank_correlation
    from seewhy.checks.flags import disagreement

    def rho(a: str, b: str, method: str, same: Tensor) -> Tensor:
        ma, mb = maps[a, method], maps[b, method]
        out = torch.full((ma.shape[0],), float("nan"), dtype=torch.float64)
        for i in same.nonzero().flatten().tolist():
            size = sizes(i)
            if size is not None:
                ba, bb = frames[a].box(*size), frames[b].box(*size)
                if any(abs(x - y) > 1e-6 for x, y in zip(ba, bb, strict=True)):
                    out[i] = framed_rank_correlation(ma[i], mb[i], ba, bb, size)
                    continue
            out[i] = disagreement(ma[i : i + 1], mb[i : i + 1])[0]
        return out

    out = []
    for r in results:
        agreement: dict[str, float | None] = {}
        for other in names:
            if other == r.model or (other, r.method) not in maps:
                continue
            pa, pb = predicted[r.model], predicted[other]
            same = (
                torch.ones(maps[r.model, r.method].shape[0], dtype=torch.bool)
                if pa is None or pb is None
                else pa == pb
            )
            if not bool(same.any()):
                continue
            values = rho(r.model, other, r.method, same)
            finite = values[torch.isfinite(values)]
            agreement[other] = float(finite.mean()) if finite.numel() else None
        out.append(r.judged(limits, model_agreement=agreement) if agreement else r)
    return out


def _resolve_auto_layer(model: Model, batch: Inputs, methods: list[Method]) -> list[Method]:
    """Methods whose layer is ``auto`` given the layer it stands for, found once per call."""
    if not any(getattr(m, "layer", None) == "auto" for m in methods):
        return methods
    image, run = model.dry_run(batch)
    found = resolve_layer(model.module, "auto", image, run).name
    return [
        dataclasses.replace(m, layer=found) if getattr(m, "layer", None) == "auto" else m  # type: ignore[call-arg]
        for m in methods
    ]


def _family(method: Method) -> type[Method]:
    """The class that defines ``run_many`` for this method: methods sharing it share a pass."""
    return next(c for c in type(method).__mro__ if "run_many" in c.__dict__)


def _targets(model: Model, batch: Inputs, target: str | int | Target) -> list[Target]:
    if not (isinstance(target, str) and target.strip().lower() == "all"):
        return model.targets(target)
    n = model.num_outputs
    if not n:
        import torch

        from seewhy.core.state import explaining

        with explaining(model.module), torch.no_grad():
            n = int(model.forward(batch[:1]).shape[1])
    return model.targets(target, num_outputs=n)


def _size(model: Model, size: tuple[int, int] | None) -> tuple[int, int]:
    if size is not None:
        return size
    h, w = model.preprocess.size
    return int(h), int(w)


def example_image(model: Model, size: tuple[int, int] | None = None) -> Tensor:
    """A blank image batch of one, as the model takes it (its channels, size, device)."""
    example = example_input(model.module, _size(model, size))
    channels = len(model.preprocess.mean)
    if example.shape[1] != channels:
        example = example[:, :1].expand(-1, channels, -1, -1).contiguous()
    return example


def layers(
    model: Model | nn.Module | str | Path,
    size: tuple[int, int] | None = None,
    *,
    spatial_only: bool = True,
) -> list[LayerInfo]:
    """The layers a CAM can read (modules with a spatial output; every module with
    ``spatial_only=False``) with their output shapes, in forward order; the auto choice is
    :func:`auto_layer_name`."""
    m = as_model(model)
    rows = list_layers(m.module, example_image(m, size))
    return [r for r in rows if r.spatial or not spatial_only]


def auto_layer_name(model: Model | nn.Module | str | Path) -> str:
    """The layer ``layer="auto"`` picks for this model."""
    m = as_model(model)
    return resolve_layer(m.module, "auto", example_image(m)).name
