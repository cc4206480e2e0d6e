"""Typed errors. Each message says what was wrong, what was expected and how to fix it.

The library raises these; only the CLI turns them into exit codes (``SeewhyError`` -> 2).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SeewhyError(Exception):
    """Base class of every error seewhy raises on purpose."""


class UsageError(SeewhyError):
    """A bad argument: unknown method, target, flag value."""


class ModelLoadError(SeewhyError):
    """The model card, arch string or factory could not produce a model."""


class CheckpointError(ModelLoadError):
    """The checkpoint file is missing, unreadable or does not fit the architecture."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint needs full unpickling, which can run arbitrary code."""


class LayerError(SeewhyError):
    """An unknown layer name, or a layer whose output cannot be read as a spatial map."""


class MethodNotApplicableError(SeewhyError):
    """The method cannot explain this model (e.g. a CAM on a model with no spatial layer)."""


class TargetError(UsageError):
    """A target that does not fit the model's task or outputs."""


class ImageError(SeewhyError):
    """An image that cannot be decoded."""


class ModelOutputError(SeewhyError):
    """The model produced unusable output (NaN/inf, wrong shape)."""


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates most similar to ``name`` (for did-you-mean messages)."""
    pool = list(candidates)
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.4)
    if not found:
        found = [c for c in pool if name in c or c in name][:n]
    return found


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ``"; did you mean 'x'?"`` suffix, or an empty string."""
    found = closest(name, candidates)
    if not found:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in found) + "?"
