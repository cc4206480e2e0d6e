"""seewhy: why does an image model decide what it decides, and can the explanation be trusted?

The package imports lazily: ``import seewhy`` (and ``seewhy --help``) does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "explain": ("seewhy.api", "explain"),
    "check": ("seewhy.api", "check"),
    "dataset": ("seewhy.jobs.dataset", "dataset"),
    "DatasetResult": ("seewhy.jobs.dataset", "DatasetResult"),
    "CheckResult": ("seewhy.checks.suite", "CheckResult"),
    "Thresholds": ("seewhy.checks.verdict", "Thresholds"),
    "load_model": ("seewhy.api", "load_model"),
    "layers": ("seewhy.api", "layers"),
    "Model": ("seewhy.core.model", "Model"),
    "Explanation": ("seewhy.core.explanation", "Explanation"),
    "SeewhyError": ("seewhy.core.errors", "SeewhyError"),
    "available_methods": ("seewhy.methods.registry", "available_methods"),
    "create_method": ("seewhy.methods.registry", "create_method"),
    "parse_target": ("seewhy.core.targets", "parse_target"),
    "load_image": ("seewhy.data.images", "load_image"),
}

__all__ = [*sorted(_LAZY), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seewhy' has no attribute {name!r}")
