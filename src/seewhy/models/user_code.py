"""Importable names for the user's model files (``FILE.py:FACTORY``).

A model file is imported as ``seewhy.models.user_code.m_<hex of its UTF-8 absolute path>``.
Any process with seewhy installed can import that name: importing this module installs a
finder in ``sys.meta_path`` that maps such names back to their file (and puts the file's
folder on ``sys.path`` so it can import its neighbours). So a model built from a file
unpickles in a fresh process (a ``spawn`` worker, a DataLoader worker, a Ray task) that never
called ``load_model``; the name is the same in every process, whatever ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__path__: list[str] = []  # a package, so ``seewhy.models.user_code.m_...`` can be imported

PREFIX = f"{__name__}.m_"


def module_name(path: str | Path) -> str:
    """The module name the file at ``path`` is imported under (reversible: see
    :func:`file_of`)."""
    return PREFIX + str(Path(path).resolve()).encode("utf-8").hex()


def file_of(name: str) -> Path | None:
    """The file a :func:`module_name` stands for, or None for any other name."""
    if not name.startswith(PREFIX):
        return None
    try:
        return Path(bytes.fromhex(name[len(PREFIX) :]).decode("utf-8"))
    except ValueError:  # not hex, or not UTF-8 (UnicodeDecodeError is a ValueError)
        return None


def spec_for(name: str, path: Path) -> importlib.machinery.ModuleSpec | None:
    """The spec to import ``path`` as ``name``; puts its folder on ``sys.path`` first."""
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)  # let the file import its neighbours
    return importlib.util.spec_from_file_location(name, path)


class UserCodeFinder(importlib.abc.MetaPathFinder):
    """Finds ``seewhy.models.user_code.m_<hex path>`` modules: the user's file at that path."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        file = file_of(fullname)
        if file is None or not file.is_file():
            return None
        return spec_for(fullname, file)


def install() -> None:
    """Put the finder in ``sys.meta_path`` (once, also if this module is reloaded)."""
    mine = (UserCodeFinder.__module__, UserCodeFinder.__qualname__)
    if not any((type(f).__module__, type(f).__qualname__) == mine for f in sys.meta_path):
        sys.meta_path.append(UserCodeFinder())


install()
