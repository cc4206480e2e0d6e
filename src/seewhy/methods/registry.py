"""The method registry: CLI names (``gradcam++``) to method classes (``GradCAMPlusPlus``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from seewhy.core.errors import UsageError, did_you_mean

T = TypeVar("T", bound=type)

_METHODS: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, *aliases: str) -> Callable[[T], T]:
    """Class decorator: make a method available under ``name`` (and ``aliases``)."""

    def deco(cls: T) -> T:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method name {name!r} registered twice")
        _METHODS[name] = cls
        cls.name = name  # type: ignore[attr-defined]
        for alias in aliases:
            _ALIASES[alias] = name
        return cls

    return deco


def _load_builtin_methods() -> None:
    # Importing the families registers their methods.
    import seewhy.methods  # noqa: F401


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    _load_builtin_methods()
    return list(_METHODS)


def method_class(name: str) -> type:
    """The class registered under ``name`` or an alias; a did-you-mean error otherwise."""
    _load_builtin_methods()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        raise UsageError(
            f"unknown method '{name}'{did_you_mean(key, [*_METHODS, *_ALIASES])} "
            f"Available: {', '.join(_METHODS)}."
        )
    return _METHODS[key]


def canonical_name(name: str) -> str:
    """The registered name for ``name``, an alias or a differently written one
    (``GradCAM`` -> ``gradcam``, ``gradcampp`` -> ``gradcam++``); a did-you-mean error otherwise.

    Every front door (CLI, ``seewhy.explain``) canonicalises method names once, so results,
    agreement and resume all key on the same name.
    """
    return str(method_class(name).name)  # type: ignore[attr-defined]


def canonical_names(names: Sequence[str]) -> list[str]:
    """:func:`canonical_name` of each, duplicates (``gradcam,GradCAM``) dropped, order kept."""
    out: list[str] = []
    for n in names:
        c = canonical_name(n)
        if c not in out:
            out.append(c)
    return out


def create_method(name: str, **params: Any) -> Any:
    """Instantiate the method ``name`` with the settings that it accepts.

    Settings a method does not have (``batch_size`` for gradcam) are ignored, so callers can
    pass one shared set of options to every method.
    """
    cls = method_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in params.items() if k in fields and v is not None})
