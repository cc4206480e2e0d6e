"""The method registry: CLI names (``gradcam++``) to method classes (``GradCAMPlusPlus``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from seewhy.core.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from seewhy.methods.base import Method

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


def _sentence(text: str) -> str:
    """``text`` ended as a sentence: a period unless it ends with one or a question mark
    (a did-you-mean suffix), so the list that follows starts a sentence of its own."""
    return text if text.endswith((".", "?")) else text + "."


def method_class(name: str) -> type[Method]:
    """The class registered under ``name`` or an alias; a did-you-mean error otherwise."""
    _load_builtin_methods()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        raise UsageError(
            _sentence(f"unknown method '{name}'{did_you_mean(key, [*_METHODS, *_ALIASES])}")
            + f" Available: {', '.join(_METHODS)}."
        )
    return cast("type[Method]", _METHODS[key])


def canonical_name(name: str) -> str:
    """The registered name for ``name``, an alias or a differently written one
    (``GradCAM`` -> ``gradcam``, ``gradcampp`` -> ``gradcam++``); a did-you-mean error otherwise.

    Every front door (CLI, ``seewhy.explain``) canonicalises method names once, so results,
    agreement and resume all key on the same name.
    """
    return str(method_class(name).name)


def canonical_names(names: Sequence[str]) -> list[str]:
    """:func:`canonical_name` of each, duplicates (``gradcam,GradCAM``) dropped, order kept."""
    out: list[str] = []
    for n in names:
        c = canonical_name(n)
        if c not in out:
            out.append(c)
    return out


def for_trees(name: str) -> bool:
    """Whether the method ``name`` explains tabular tree models (``tree-shap``) rather than
    torch models."""
    return bool(getattr(method_class(name), "for_trees", False))


def method_settings(name: str) -> frozenset[str]:
    """The settings the method ``name`` (or an alias) takes: its dataclass fields."""
    return frozenset(f.name for f in dataclasses.fields(method_class(name)))


def all_settings() -> frozenset[str]:
    """Every setting some registered method takes."""
    _load_builtin_methods()
    return frozenset(f.name for cls in _METHODS.values() for f in dataclasses.fields(cls))


def create_method(name: str, **params: Any) -> Any:
    """Instantiate the method ``name`` with the settings in ``params`` that it takes.

    ``params`` may be one shared set of options for several methods (``precision`` is
    Score-CAM's; gradcam ignores it) and ``None`` means the method's default. A setting that NO
    registered method takes is refused, with the closest one that exists
    (``precison`` -> did you mean 'precision'?): a typo never silently runs the default.
    """
    cls = method_class(name)
    known = all_settings()
    unknown = [k for k in params if k not in known]
    if "batch_size" in unknown:
        raise UsageError(
            "batch_size is a call argument, not a method setting: "
            "method(model, inputs, target, batch_size=N) or seewhy.explain(..., batch_size=N)"
        )
    if unknown:
        k = unknown[0]
        raise UsageError(
            _sentence(f"no method takes the setting '{k}'{did_you_mean(k, sorted(known))}")
            + f" Settings: {', '.join(sorted(known))}."
        )
    fields = method_settings(name)
    return cls(**{k: v for k, v in params.items() if k in fields and v is not None})


def split_method_specs(text: str) -> list[str]:
    """``"ig(steps=32),occlusion(window=32,stride=16), gradcam"`` -> one spec per method:
    commas inside brackets separate settings, not methods."""
    out: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


def _value(text: str) -> Any:
    """A setting's value from its text: int, float, true/false, none, else the string (quotes
    stripped). Nothing is evaluated."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            continue
    return t


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ig(steps=32, rule=riemann-trapezoid)"`` -> ``("ig", {"steps": 32, "rule": ...})``.

    The name is canonicalised (aliases, case); each setting must be one the method takes
    (a did-you-mean error otherwise), so a typo never silently runs the default.
    """
    text = spec.strip()
    name, settings = text, {}
    if "(" in text:
        if not text.endswith(")") or text.count("(") != 1 or text.count(")") != 1:
            raise UsageError(
                f"method '{spec}': write settings in one pair of brackets, e.g. "
                "'ig(steps=32)' or 'occlusion(window=32,stride=16)'"
            )
        name, _, inner = text[:-1].partition("(")
        for part in (p.strip() for p in inner.split(",")):
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise UsageError(
                    f"method '{spec}': settings are name=value, e.g. '{name.strip()}(steps=32)'"
                )
            if key.strip() in settings:
                raise UsageError(
                    f"method '{spec}': setting '{key.strip()}' is given twice; give it once"
                )
            settings[key.strip()] = _value(value)
    canonical = canonical_name(name.strip())
    takes = method_settings(canonical)
    for key in settings:
        if key not in takes:
            options = ", ".join(sorted(takes)) or "no settings"
            raise UsageError(
                _sentence(
                    f"method '{canonical}' has no setting '{key}'{did_you_mean(key, sorted(takes))}"
                )
                + f" It takes: {options}."
            )
    return canonical, settings


def parse_method_specs(specs: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each spec parsed (:func:`parse_method_spec`), a method named twice kept once; the same
    method twice with different settings is refused (its results would share one name)."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        for one in split_method_specs(spec):
            name, settings = parse_method_spec(one)
            if name in out and out[name] != settings:
                raise UsageError(
                    f"method '{name}' is given twice with different settings ({out[name]} and "
                    f"{settings}); give it once"
                )
            out[name] = settings
    return list(out.items())
