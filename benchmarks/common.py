"""What the benchmark scripts share: the model, interleaved timing, the forward floor, and the
marked block each script writes into RESULTS.md.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and they
import this module as ``common``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
Run = Callable[[], object]


def build(name: str, classes: int = 1000) -> nn.Module:
    """A torchvision model with seeded random weights (nothing is downloaded), in eval mode."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, num_classes=classes).eval()


def measure(funcs: Mapping[str, Run], reps: int, warmup: Run | None = None) -> dict[str, float]:
    """Median seconds per contender over ``reps`` interleaved rounds (the starting contender
    rotates each round), after a warm-up: each contender once, or ``warmup`` alone when given."""
    if warmup is not None:
        warmup()
    else:
        for f in funcs.values():
            f()
    names = list(funcs)
    wall: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            funcs[k]()
            wall[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in wall.items()}


def forward_floor(net: nn.Module, rows: Callable[[int, int], torch.Tensor], n: int, bs: int) -> Run:
    """``n`` rows (built ``bs`` at a time) through bare forwards under inference mode."""

    def run() -> object:
        with torch.inference_mode():
            return [net(rows(s, min(n, s + bs)))[:, 0] for s in range(0, n, bs)]

    return run


def markers(script: str, cases: Collection[str], every: bool) -> tuple[str, str]:
    """The comment lines around a script's block in RESULTS.md: one block for a full run, one
    per set of cases for a partial run (``<!-- checks:cams+randomization:begin -->``)."""
    tag = script if every else f"{script}:{'+'.join(sorted(cases))}"
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


def publish(text: str, begin: str, end: str, *, write: bool) -> None:
    """Print the block; with ``write``, put it in RESULTS.md in place of the block between the
    same markers, or at the end when there is none."""
    print(text)
    if not write:
        return
    path = HERE / "RESULTS.md"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + text + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + text + "\n"
    path.write_text(new)
