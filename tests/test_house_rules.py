"""Rules of the house that a machine can check (STYLE.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "seewhy"
HOOK = re.compile(r"register_(forward|forward_pre|full_backward|backward)_hook|\.register_hook\(")


def test_hooks_are_registered_only_in_core_hooks() -> None:
    offenders = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        if p.relative_to(SRC).as_posix() != "core/hooks.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if HOOK.search(line)
    ]
    assert offenders == []


def test_torch_load_always_names_weights_only() -> None:
    offenders = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "torch.load(" in line and "weights_only" not in line
    ]
    assert offenders == []


def test_no_assert_in_library_code() -> None:
    offenders = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if line.lstrip().startswith("assert ")
    ]
    assert offenders == []


def test_import_seewhy_does_not_import_torch() -> None:
    code = (
        "import sys, seewhy; "
        "heavy = [m for m in ('torch', 'timm', 'matplotlib', 'PIL') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
