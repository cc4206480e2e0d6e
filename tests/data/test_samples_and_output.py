from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seewhy.core.errors import UsageError
from seewhy.data.output import OutputFolder, done_results
from seewhy.data.samples import from_manifest, from_paths, safe_id, unique_ids
from seewhy.data.summary import new_summary, validate_summary


def test_ids_are_file_safe_and_unique(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert safe_id("../etc/pass wd") == "etc_pass_wd"
    assert safe_id("...") == "sample"
    assert unique_ids(["a", "a", "b", "a"]) == ["a", "a-2", "b", "a-3"]
    assert unique_ids(["a", "a", "a-2"]) == ["a", "a-3", "a-2"]
    # sample ids name each file by its folder, never by a counter (tests/data/test_sample_ids.py)
    assert [s.id for s in from_paths(["x/scan.png", "y/scan.png"])] == ["x__scan", "y__scan"]


def test_manifest_paths_relative_to_manifest_and_seeded_sample(tmp_path: Path) -> None:
    rows = "\n".join(f"case{i},img{i}.png,{i % 2}" for i in range(10))
    (tmp_path / "m.csv").write_text("id,image_path,label\n" + rows + "\n")
    all_rows = from_manifest(tmp_path / "m.csv", target_col="label")
    assert [s.id for s in all_rows] == [f"case{i}" for i in range(10)]
    assert all_rows[3].image_path == str(tmp_path / "img3.png") and all_rows[3].truth == "1"
    a = from_manifest(tmp_path / "m.csv", sample=4, seed=7)
    b = from_manifest(tmp_path / "m.csv", sample=4, seed=7)
    c = from_manifest(tmp_path / "m.csv", sample=4, seed=8)
    assert [s.id for s in a] == [s.id for s in b] and len(a) == 4
    assert [s.id for s in a] != [s.id for s in c]
    assert [s.id for s in a] == sorted((s.id for s in a), key=lambda x: int(x[4:]))


def test_manifest_errors_name_the_column_and_flag(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,path\n1,a.png\n")
    with pytest.raises(UsageError, match=r"no column 'image_path' \(--image-col\)"):
        from_manifest(tmp_path / "m.csv")
    with pytest.raises(UsageError, match="does not exist"):
        from_manifest(tmp_path / "nope.csv")


def test_summary_schema_catches_problems() -> None:
    s = new_summary()
    assert validate_summary(s) == []
    s["models"].append({"name": "m", "arch": "timm:x", "task": "classification", "layer": "auto"})
    s["samples"].append({"id": "a", "image_path": "a.png"})
    s["results"].append(
        {
            "sample": "a",
            "model": "m",
            "prediction": {"value": 1.0},
            "explained": "value",
            "attributions": [{"method": "gradcam", "map": "x.npy", "figure": "x.png"}],
        }
    )
    assert validate_summary(s) == []
    s["results"].append(
        {
            "sample": "zz",
            "model": "m",
            "prediction": {},
            "explained": "v",
            "attributions": [{"method": "gradcam"}],
        }
    )
    problems = validate_summary(s)
    assert "results[1].sample 'zz' is not in samples[]" in problems
    assert "results[1].prediction needs label/index/score or value" in problems
    assert "results[1].attributions[0] lacks 'map'" in problems


def test_output_folder_atomic_writes_and_resume(tmp_path: Path) -> None:
    out = OutputFolder(tmp_path / "out")
    m = out.map("s1", "my model", "gradcam++")
    assert m.as_posix().endswith("maps/s1/my_model__gradcam++.npy")
    out.save_map(m, np.eye(3))
    assert np.load(m).dtype == np.float32
    summary = new_summary()
    summary["results"].append(
        {
            "sample": "s1",
            "model": "my model",
            "attributions": [
                {"method": "gradcam++", "map": out.rel(m), "figure": "figures/s1/missing.png"}
            ],
        }
    )
    out.save_summary(summary)
    assert json.loads(out.summary_path.read_text())["schema"] == "seewhy/1"
    assert done_results(summary, out.root) == set()  # the figure is missing: not done
    fig = out.root / "figures/s1/missing.png"
    fig.parent.mkdir(parents=True)
    fig.write_bytes(b"png")
    assert done_results(summary, out.root) == {("s1", "my model", "gradcam++")}
    out.write_errors([{"id": "x", "path": "x.png", "reason": "bad"}])
    assert out.errors() == [{"id": "x", "path": "x.png", "reason": "bad"}]
    out.write_errors([])
    assert not out.errors_path.exists()
    assert [p.name for p in out.root.rglob(".*")] == []
