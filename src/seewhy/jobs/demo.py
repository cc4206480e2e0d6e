"""``seewhy demo``: the bundled X-ray-like samples, two small models, three methods, the trust
checks (the samples come with masks) and a report."""

from __future__ import annotations

from pathlib import Path

from seewhy.jobs.check import CheckOptions, run_check
from seewhy.jobs.explain import RunOutcome

DEMO_METHODS = ["gradcam", "eigencam", "scorecam"]
DEMO_STEPS = 20
"""Deletion/insertion steps in the demo (50 elsewhere): its curves at a glance, in seconds."""


def run_demo(out: str | Path = "seewhy-demo", *, progress: bool = True) -> RunOutcome:
    """Run the demo offline on the CPU; returns the run's outcome (report in ``out``)."""
    from seewhy.assets import demo_cards, demo_manifest
    from seewhy.data.samples import from_manifest

    samples = from_manifest(demo_manifest(), mask_col="mask_path", target_col="label")
    opts = CheckOptions(
        methods=list(DEMO_METHODS), out=Path(out), device="cpu", progress=progress, steps=DEMO_STEPS
    )
    return run_check(samples, [str(c) for c in demo_cards()], opts)
