"""Atomic writes: all or nothing under the final name, and the mode a plain ``open`` gives."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from seewhy.core.atomic import atomic_path, atomic_write


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: None, mask: int, mode: int) -> None:
    os.umask(mask)
    out = atomic_write(tmp_path / "sub" / "report.html", "<p>é</p>")
    assert out.read_bytes() == "<p>é</p>".encode()
    assert stat.S_IMODE(out.stat().st_mode) == mode
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(plain.stat().st_mode) == mode  # the same as an ordinary write


def test_a_failed_write_leaves_neither_the_file_nor_a_temp(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
