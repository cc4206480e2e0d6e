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


HEAVY = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "PIL",
    "matplotlib",
    "pandas",
    "safetensors",
    "pytorch_grad_cam",
    "captum",
    "shap",
    "transformers",
    "lightgbm",
)


def _heavy_after(code: str) -> list[str]:
    """The heavy modules imported after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys\nprint('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("HEAVY=")]
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def test_import_seewhy_does_not_import_torch() -> None:
    assert _heavy_after("import seewhy") == []
    # names that need no torch stay torch-free when touched
    assert _heavy_after("import seewhy; seewhy.SeewhyError; seewhy.__version__") == []


def test_help_imports_nothing_heavy() -> None:
    for argv in ([], ["explain"], ["layers"], ["report"], ["demo"]):
        code = (
            "from seewhy.cli import main\n"
            "try:\n"
            f"    main({[*argv, '--help']!r})\n"
            "except SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
        )
        assert _heavy_after(code) == [], argv


def test_the_probe_sees_heavy_imports() -> None:
    # the probes above would pass vacuously if they could not see an import: this one must
    assert _heavy_after("import seewhy, numpy") == ["numpy"]


# STYLE: cli -> jobs -> api -> {methods, checks, render, data, models, assets} -> core. Arrows
# point down the floors (skipping floors is fine); inside the braces only checks -> methods and
# render -> data. seewhy/__init__.py is the lazy loader and sits outside the house.
FLOORS = {
    "cli": 0,
    "jobs": 1,
    "api": 2,
    "methods": 3,
    "checks": 3,
    "render": 3,
    "data": 3,
    "models": 3,
    "assets": 3,
    "core": 4,
}
SIDEWAYS = {("checks", "methods"), ("render", "data")}
IMPORT = re.compile(r"^\s*(?:from|import)\s+seewhy(?:\.(\w+))?\b")


def _room(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def backward_imports(room: str, text: str, where: str = "") -> list[str]:
    """The imports in ``text`` (a file of ``room``) that point up or sideways out of turn."""
    found = []
    for i, line in enumerate(text.splitlines(), 1):
        m = IMPORT.match(line)
        if not m or line.strip() == "from seewhy import __version__":  # the package's version
            continue
        target = m.group(1) or "api"  # ``from seewhy import explain`` is the front door
        if target == room or target == "__init__":
            continue
        ok = FLOORS.get(target, -1) > FLOORS[room] or (room, target) in SIDEWAYS
        if not ok:
            found.append(f"{where}:{i} {room} -> {target}")
    return found


def test_every_room_is_on_a_floor() -> None:
    rooms = {_room(p) for p in SRC.rglob("*.py")} - {"__init__"}
    assert rooms <= set(FLOORS), rooms - set(FLOORS)


def test_imports_point_down_the_floors_only() -> None:
    offenders = [
        hit
        for p in SRC.rglob("*.py")
        if _room(p) != "__init__"
        for hit in backward_imports(_room(p), p.read_text(), str(p.relative_to(SRC)))
    ]
    assert offenders == []


def test_the_floor_check_catches_backward_imports() -> None:
    # the check above would pass vacuously if it could not see one: these must be caught
    assert backward_imports("core", "from seewhy.methods.cam import CAM")
    assert backward_imports("methods", "    from seewhy.api import explain")
    assert backward_imports("methods", "from seewhy import explain")
    assert not backward_imports("render", "    from seewhy import __version__")
    assert backward_imports("api", "import seewhy.jobs.explain")
    assert backward_imports("data", "from seewhy.render.report import render_report")
    assert backward_imports("methods", "from seewhy.checks.agreement import top_iou")
    assert not backward_imports("checks", "from seewhy.methods.registry import create_method")
    assert not backward_imports("cli", "from seewhy.core.errors import SeewhyError")


def test_core_imports_no_other_room() -> None:
    # STYLE: cli -> jobs -> api -> {methods, checks, render, data, models} -> core.
    pattern = re.compile(r"^\s*(?:from|import)\s+seewhy\.(\w+)")
    offenders = [
        f"{p.relative_to(SRC)}:{i}"
        for p in (SRC / "core").rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if (m := pattern.match(line)) and m.group(1) != "core"
    ]
    assert offenders == []
