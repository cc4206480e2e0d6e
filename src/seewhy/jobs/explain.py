"""The library's front door: ``seewhy.explain`` and ``seewhy.layers``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import UsageError
from seewhy.core.explanation import Explanation
from seewhy.core.layers import LayerInfo, example_input, list_layers, resolve_layer
from seewhy.core.targets import Target, output_tensor
from seewhy.methods.base import (
    Method,
    as_targets,
    check_batch_size,
    module_of,
    to_model_input,
)
from seewhy.methods.registry import create_method

if TYPE_CHECKING:
    from torch import Tensor, nn

    from seewhy.models.model import Model


def _as_model(model: Any) -> Any:
    if isinstance(model, (str, Path)):
        from seewhy.models.loader import load_model

        return load_model(model)
    return model


def as_batch(model: Any, inputs: Any) -> Tensor:
    """A preprocessed batch ``[B, C, H, W]`` from a tensor, or from image paths / PIL images
    (decoded robustly and preprocessed as the model's card says)."""
    import torch

    if isinstance(inputs, torch.Tensor):
        if inputs.ndim == 3:
            return inputs[None]
        if inputs.ndim != 4:
            raise UsageError(
                f"expected an image batch [B, C, H, W] (or one image [C, H, W]); got shape "
                f"{tuple(inputs.shape)}"
            )
        return inputs
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise UsageError("no inputs to explain")
    from seewhy.data.images import load_image
    from seewhy.models.model import Preprocess

    preprocess = getattr(model, "preprocess", None) or Preprocess()
    return preprocess([load_image(item) for item in items])


def resolve_methods(
    methods: Sequence[str | Method] | str, layer: str | None, **settings: Any
) -> list[Method]:
    """Method instances from names (``"gradcam,eigencam"`` or a list) or ready instances.

    Names are canonicalised once here (``GradCAM`` and ``gradcampp`` are ``gradcam`` and
    ``gradcam++``), and a method named twice is computed once.
    """
    from seewhy.methods.registry import canonical_name

    names = methods.split(",") if isinstance(methods, str) else list(methods)
    out: list[Method] = []
    seen: set[str] = set()
    for m in names:
        if isinstance(m, Method):
            out.append(m)
            continue
        name = canonical_name(str(m).strip())
        if name not in seen:
            seen.add(name)
            out.append(create_method(name, layer=layer, **settings))
    if not out:
        raise UsageError("no method given; e.g. methods=['gradcam']")
    return out


def explain(
    model: Model | nn.Module | str | Path,
    inputs: Any,
    methods: Sequence[str | Method] | str = ("gradcam",),
    target: str | int | Target = "pred",
    layer: str | None = None,
    *,
    batch_size: int = 8,
    **settings: Any,
) -> list[Explanation]:
    """Explain a batch with one or more methods.

    Args:
        model: a loaded :class:`~seewhy.models.model.Model`, a plain ``nn.Module``, or a model
            card / arch string to load.
        inputs: a preprocessed tensor batch ``[B, C, H, W]``, or image paths / PIL images
            (preprocessed as the model says).
        methods: method names (``"gradcam"``, ``"gradcam++"`` ...) or method instances.
        target: ``pred``, a class index or label, ``all``, ``value``, ``-value`` ... (SPEC 4).
        layer: the CAM layer; ``None`` uses the model card's, else ``auto``.
        batch_size: the largest batch any forward pass sends to the model: the images go
            through ``batch_size`` at a time, and methods with many forwards per image
            (Score-CAM's masked inputs) send them ``batch_size`` at a time.
        settings: other method settings (e.g. ``steps``), passed to methods that have them.

    Returns:
        One :class:`Explanation` per (target, method), targets outer, methods in the given order;
        each covers the whole batch. Methods of one family share their expensive part (all CAMs
        from one forward+backward per batch and layer). For a regression target, the methods
        that depend on the target also return the opposite sign's map (what lowers the output
        beside what raises it) in ``extras["opposite"]``, from the same passes.
    """
    model = _as_model(model)
    module = module_of(model)
    batch = as_batch(model, inputs)
    check_batch_size(batch_size)
    name = layer or getattr(model, "layer", None) or "auto"
    instances = resolve_methods(methods, name, **settings)
    for m in instances:
        m.check_applicable(module)  # e.g. a CAM on a TorchScript module: refused before any work
    if any(getattr(m, "layer", None) == "auto" for m in instances):
        # Resolve "auto" once for the whole call, not per chunk.
        found = resolve_layer(module, "auto", to_model_input(module, batch[:1])).name
        instances = [
            dataclasses.replace(m, layer=found) if getattr(m, "layer", None) == "auto" else m  # type: ignore[call-arg]
            for m in instances
        ]
    targets = _targets(model, module, batch, target)
    families: dict[Callable[..., Any], list[int]] = {}
    for i, m in enumerate(instances):
        families.setdefault(_family(m).run_many, []).append(i)
    results: list[Explanation] = []
    for tgt in targets:
        chunks: list[list[Explanation]] = [[] for _ in instances]
        for start in range(0, batch.shape[0], batch_size):
            part = batch[start : start + batch_size]
            for run_many, idx in families.items():
                group = [instances[i] for i in idx]
                for i, e in zip(
                    idx, run_many(group, model, part, tgt, batch_size=batch_size), strict=True
                ):
                    chunks[i].append(e)
        results.extend(Explanation.concat(c) for c in chunks)
    return results


def _family(method: Method) -> type[Method]:
    """The class that defines ``run_many`` for this method: methods sharing it share a pass."""
    return next(c for c in type(method).__mro__ if "run_many" in c.__dict__)


def _targets(
    model: Any, module: nn.Module, batch: Tensor, target: str | int | Target
) -> list[Target]:
    if not (isinstance(target, str) and target.strip().lower() == "all"):
        return as_targets(model, target)
    n = getattr(model, "num_outputs", None)
    if not n:
        import torch

        from seewhy.core.state import explaining

        with explaining(module), torch.no_grad():
            n = int(output_tensor(module(to_model_input(module, batch[:1]))).shape[1])
    return as_targets(model, target, num_outputs=n)


def layers(
    model: Model | nn.Module | str | Path, size: tuple[int, int] | None = None
) -> list[LayerInfo]:
    """Candidate CAM layers (modules with a spatial output) with their output shapes, in
    forward order; the auto choice is ``seewhy.core.layers.auto_layer(module).name``."""
    model = _as_model(model)
    module = module_of(model)
    pre = getattr(model, "preprocess", None)
    size = size or (tuple(pre.size) if pre is not None else (224, 224))
    rows = list_layers(module, example_input(module, size))
    return [r for r in rows if r.spatial]


def auto_layer_name(model: Model | nn.Module) -> str:
    """The layer ``layer="auto"`` picks for this model."""
    module = module_of(model)
    pre = getattr(model, "preprocess", None)
    size = tuple(pre.size) if pre is not None else (224, 224)
    return resolve_layer(module, "auto", example_input(module, size)).name
