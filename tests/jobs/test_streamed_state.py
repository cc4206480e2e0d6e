"""The dataset run's streamed state: torn records after a kill, reset on changed settings, and
the temp files a killed atomic write leaves."""

from __future__ import annotations

import json
from pathlib import Path

from seewhy.jobs.dataset import _clean_temp, _State, _Stream


def test_a_torn_last_line_is_dropped_and_cut_before_appending(tmp_path: Path) -> None:
    s = _Stream(tmp_path / "r.jsonl")
    s.append([{"id": "a"}, {"id": "b"}])
    with s.path.open("a") as f:
        f.write('{"id": "c", "val')  # killed mid-write
    assert [r["id"] for r in s.read()] == ["a", "b"]
    s.mend()
    s.append([{"id": "d"}])
    assert s.path.read_text().splitlines() == ['{"id": "a"}', '{"id": "b"}', '{"id": "d"}']


def test_changed_settings_start_the_streams_afresh(tmp_path: Path) -> None:
    keys = {"predictions": {"m": 1}, "records": {"method": "gradcam"}}
    st = _State(tmp_path, keys)
    st.predictions.append([{"id": "a"}])
    st.records.append([{"id": "a"}])
    st = _State(tmp_path, keys)  # same: both kept
    assert len(st.predictions.read()) == 1 and len(st.records.read()) == 1
    st = _State(tmp_path, {**keys, "records": {"method": "ig"}})  # another method
    assert len(st.predictions.read()) == 1 and st.records.read() == []
    st.records.append([{"id": "a"}])
    st = _State(tmp_path, {**keys, "predictions": {"m": 2}})  # another model: both
    assert st.predictions.read() == [] and st.records.read() == []
    assert json.loads((tmp_path / "dataset" / "state.json").read_text())["predictions"] == {"m": 2}


def test_stale_temp_files_of_atomic_writes_are_removed_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "figures" / "a").mkdir(parents=True)
    stale = [
        tmp_path / ".summary.json.k2j4l_9x.json",
        tmp_path / "figures" / "a" / ".m__gradcam.png.abcd1234.png",
        tmp_path / "figures" / "a" / ".m__gradcam.npy.abcd1234.tmp",
    ]
    kept = [
        tmp_path / "summary.json",
        tmp_path / ".gitignore",
        tmp_path / "figures" / "a" / "m__gradcam.png",
    ]
    for p in stale + kept:
        p.write_text("x")
    _clean_temp(tmp_path)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
