"""``seewhy demo``: the bundled X-ray-like samples, two small models, three methods, a report."""

from __future__ import annotations

from pathlib import Path

from seewhy.jobs.explain import ExplainOptions, RunOutcome, run_explain

DEMO_METHODS = ["gradcam", "eigencam", "scorecam"]


def run_demo(out: str | Path = "seewhy-demo", *, progress: bool = True) -> RunOutcome:
    """Run the demo offline on the CPU; returns the run's outcome (report in ``out``)."""
    from seewhy.assets import demo_cards, demo_manifest
    from seewhy.data.samples import from_manifest

    samples = from_manifest(demo_manifest(), mask_col="mask_path", target_col="label")
    opts = ExplainOptions(
        methods=list(DEMO_METHODS), out=Path(out), device="cpu", progress=progress
    )
    return run_explain(samples, [str(c) for c in demo_cards()], opts)
