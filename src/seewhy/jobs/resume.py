"""Resuming a run: what a (sample, model) result was computed from, so a rerun reuses it only
when nothing it depends on changed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seewhy.core.model import Model
    from seewhy.data.samples import Sample


def request(
    sample: Sample, model: Model, target: str, built: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a (sample, model) result was computed from. A rerun reuses finished results only
    when this is unchanged: another --target, layer, checkpoint or image file recomputes.

    ``built``: what the model was built from beyond its description (:func:`built_from`: its
    weights and the file its arch names), taken once per model per run, so a TorchScript file
    re-exported or a factory file edited under the same name recomputes too."""
    d = model.describe()
    out = {
        "target": target.strip(),
        "sample_target": sample.truth,
        "image": stamp(sample.image_path),
        "model": [d.get("arch"), d.get("task"), d.get("labels"), d.get("layer")],
        "preprocess": d.get("preprocess"),
        "checkpoint": stamp(d.get("checkpoint")),
    }
    if built:
        out.update(built)
    if model.inputs:  # another normalisation, tokenizer or column recomputes
        out["inputs"] = model.inputs
    if model.output is not None:  # another output or head recomputes
        out["output"] = model.output
    return out


def built_from(model: Model, spec: str | Path | None = None) -> dict[str, Any]:
    """What a model was built from beyond its description: a fingerprint of its weights
    (:func:`weights`) and, when its arch names a file (``torchscript:FILE``,
    ``FILE.py:FACTORY``, the module of ``package.module:FACTORY``, an ``hf:DIR``'s
    ``config.json``), that file's stamp (as a checkpoint's); for ``hf:DIR`` its
    ``preprocessor_config.json``'s too. ``spec``: the ``--model`` it was loaded from (a card's
    relative paths start from the card's folder). One pass over the weights: take it once per
    model per run."""
    out: dict[str, Any] = {"weights": weights(model)}
    file = arch_file(model.arch, spec)
    if file is not None:
        out["arch_file"] = stamp(file)
    if model.arch.partition(":")[0] == "hf" and file is not None:
        from seewhy.models.hf import PROCESSOR_FILE

        out["processor_file"] = stamp(file.parent / PROCESSOR_FILE)
    return out


def arch_file(arch: str, spec: str | Path | None = None) -> Path | None:
    """The file an arch string names (``torchscript:FILE``, ``FILE.py:FACTORY``, an
    ``hf:DIR``'s ``DIR/config.json``), found as the loader finds it: relative to the model
    card's folder when ``spec`` is a card, else to the working folder (as the checkpoints'
    stamps, a relative path stays relative); for ``package.module:FACTORY`` the module's source
    file, where Python finds one (the module is already imported when the model was loaded, so
    nothing runs again). None for an arch that names no file (``timm:NAME`` ...) or a module
    that cannot be found."""
    kind, _, rest = arch.partition(":")
    if kind in ("timm", "torchvision"):
        return None
    if kind == "hf":
        name = str(Path(rest) / "config.json") if rest else ""
    elif kind == "torchscript":
        name = rest
    else:
        name = arch.rpartition(":")[0]
        if not name.endswith(".py"):
            return _module_file(name) if name else None
    if not name:
        return None
    card = str(spec) if spec is not None else ""
    return Path(card).parent / name if card.lower().endswith(".toml") else Path(name)


def _module_file(name: str) -> Path | None:
    """The source file of the module ``name`` (``package.module``), or None."""
    import importlib.util
    import sys

    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module is not None else None
    if not origin:
        try:  # imports the parent packages only, and only where they are not imported yet
            found = importlib.util.find_spec(name)
        except Exception:  # not found, or a parent package that fails to import
            return None
        if found is None or not found.has_location:
            return None
        origin = found.origin
    return Path(origin) if isinstance(origin, str) and origin else None


def weights(model: Model) -> list[Any]:
    """A fingerprint of a model's weights (each tensor's shape, sum and sum of squares in float64,
    on the CPU): a model changed in memory (a notebook's retrain), a factory file edited or a
    TorchScript file re-exported without a checkpoint redoes its results; about one pass over
    the weights, one tensor's copy at a time."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, t in [*model.module.state_dict().items()]:
            if not isinstance(t, torch.Tensor):
                continue
            # on the CPU: the same figures whatever device the model is on (a run resumed on
            # another device keeps its rows), and MPS has no float64
            x = t.detach().to("cpu", torch.float64)
            digest.update(f"{name}:{tuple(t.shape)}:{float(x.sum()):.17g}".encode())
            digest.update(f":{float((x * x).sum()):.17g}".encode())
    return [digest.hexdigest()]


def stamp(path: Any) -> list[Any] | None:
    """A file's path, size and modification time (None when there is no such file)."""
    import os

    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]
