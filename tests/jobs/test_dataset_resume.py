"""`seewhy dataset` killed with SIGKILL mid-run, then rerun: it finishes, leaves no duplicate,
partial or temporary file, and its summary is the uninterrupted run's (SPEC section 8, issue 12:
"resumable after a kill")."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import invoke
from dataset_fixtures import REGION_NAMES, Tiles, TilesModel
from PIL import Image

from seewhy.data.summary import validate_summary

ROWS = 40  # head.csv
SLOW = "0.25"  # seconds per forward in the killed run: 10 batches of 4 rows, ~2.5 s in all
TOLERANCE = 1e-5


def _args(card: Path, out: Path) -> list[str]:
    """Every row explained (records stream from the first batch on), region shares, batches of
    4. Per-row figures off: at about 0.5 s a figure they would be most of the test's time; the
    maps (.npy), the streams and the cohort and overview PNGs are written all the same."""
    return [
        "dataset",
        "head.csv",
        "-m",
        str(card),
        "--target-col",
        "price",
        "--target",
        "value",
        "--method",
        "gradcam",
        "--explain",
        "all",
        "--cohort-size",
        "4",
        "--batch-size",
        "4",
        "--regions-col",
        "regions",
        "--region-names",
        ",".join(REGION_NAMES),
        "--no-figures",
        "--no-report",
        "--quiet",
        "--out",
        str(out),
    ]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_midway(cwd: Path, args: list[str], records: Path) -> int:
    """Starts ``seewhy ARGS`` slowed down (TILES_SLOW), SIGKILLs it (and its DataLoader worker:
    the whole process group) once records.jsonl holds a batch; returns the lines it held."""
    env = {**os.environ, "TILES_SLOW": SLOW, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seewhy.cli", *args, "--workers", "1"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _lines(records) < 4:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"the slowed run ended (exit {proc.returncode}) before the kill: {err}")
            if time.monotonic() > deadline:
                pytest.fail("records.jsonl got no batch within 120 s")
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return _lines(records)


def _files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def _close(a: Any, b: Any, where: str = "") -> None:
    """a == b, floats within TOLERANCE (float32 maps: a resumed batch of other rows may round
    differently), everything else (ids, paths, cohorts, words) exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and not isinstance(b, str):
        assert b == pytest.approx(a, abs=TOLERANCE), where
    else:
        assert a == b, where


def test_a_killed_run_resumes_to_the_uninterrupted_result(
    tiles: Tiles, tiles_model: TilesModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TILES_SLOW", raising=False)
    once, resumed = tmp_path / "once", tmp_path / "resumed"
    code, output = invoke(tiles.folder, *_args(tiles_model.card, once), "--workers", "0")
    assert code == 0, output

    at_kill = _kill_midway(
        tiles.folder, _args(tiles_model.card, resumed), resumed / "dataset" / "records.jsonl"
    )
    assert 4 <= at_kill < ROWS, f"killed with {at_kill} of {ROWS} records: not midway"
    assert not (resumed / "summary.json").exists()
    # and what a kill in the middle of a write leaves: a record cut half way, and the temporary
    # files of atomic writes (hidden, random suffix) that were never renamed
    records = resumed / "dataset" / "records.jsonl"
    last = records.read_text().splitlines()[-1]
    with records.open("a") as f:
        f.write(last[: len(last) // 2])
    stale = [
        resumed / "maps" / "t039" / ".tiles__gradcam.npy.k3j2h1g0.tmp",
        resumed / ".summary.json.a1b2c3d4.json",
        resumed / "dataset" / ".state.json.zz99yy88.json",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")

    code, output = invoke(tiles.folder, *_args(tiles_model.card, resumed), "--workers", "0")
    assert code == 0, output

    # no temporary file anywhere, nothing hidden, nothing half written
    files = _files(resumed)
    leftovers = [f for f in files if any(part.startswith(".") for part in f.split("/"))]
    leftovers += [f for f in files if f.endswith((".tmp", ".part", ".partial"))]
    assert leftovers == []
    assert files == _files(once)
    for f in files:
        path = resumed / f
        if f.endswith(".npy"):
            np.load(path)
        elif f.endswith(".png"):
            with Image.open(path) as im:
                im.verify()
        elif f.endswith(".jsonl"):
            for line in path.read_text().splitlines():
                json.loads(line)
        elif f.endswith(".json"):
            json.loads(path.read_text())

    # no duplicate rows
    with (resumed / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(set(ids)) == tiles.ids[:ROWS]
    summary = json.loads((resumed / "summary.json").read_text())
    assert validate_summary(summary) == []
    results = [(r["sample"], r["model"]) for r in summary["results"]]
    assert len(results) == len(set(results)) == ROWS
    assert len({s["id"] for s in summary["samples"]}) == len(summary["samples"]) == ROWS

    # the same summary, predictions and maps as the uninterrupted run
    reference = json.loads((once / "summary.json").read_text())
    assert [(c["name"], c["method"], c["sample_ids"]) for c in summary["cohorts"]] == [
        (c["name"], c["method"], c["sample_ids"]) for c in reference["cohorts"]
    ]
    _close(reference, summary, "summary")
    with (once / "predictions.csv").open(newline="") as fh:
        expected = list(csv.DictReader(fh))
    assert [(r["id"], r["cohorts"]) for r in rows] == [(r["id"], r["cohorts"]) for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for col in ("truth", "prediction", "residual", "abs_error"):
            assert float(got[col]) == pytest.approx(float(want[col]), abs=TOLERANCE), got["id"]
    for f in files:
        if f.endswith(".npy"):
            diff = np.abs(np.load(resumed / f) - np.load(once / f)).max()
            assert diff <= TOLERANCE, f
