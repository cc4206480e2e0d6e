"""Resuming a run: what a (sample, model) result was computed from, so a rerun reuses it only
when nothing it depends on changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seewhy.core.model import Model
    from seewhy.data.samples import Sample


def request(sample: Sample, model: Model, target: str) -> dict[str, Any]:
    """What a (sample, model) result was computed from. A rerun reuses finished results only
    when this is unchanged: another --target, layer, checkpoint or image file recomputes."""
    d = model.describe()
    out = {
        "target": target.strip(),
        "sample_target": sample.truth,
        "image": stamp(sample.image_path),
        "model": [d.get("arch"), d.get("task"), d.get("labels"), d.get("layer")],
        "preprocess": d.get("preprocess"),
        "checkpoint": stamp(d.get("checkpoint")),
    }
    if model.inputs:  # another normalisation, tokenizer or column recomputes
        out["inputs"] = model.inputs
    if model.output is not None:  # another output or head recomputes
        out["output"] = model.output
    return out


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
