"""Sample ids: unique, stable across reruns (never a counter), named after the inputs' paths;
folders as inputs; model names made unique without duplicates."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.core.errors import UsageError
from seewhy.data.samples import (
    from_inputs,
    from_manifest,
    from_paths,
    path_id,
    sample_ids,
    unique_ids,
)


def png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(path)
    return path


def ids(samples: list[Any]) -> list[str]:
    return [s.id for s in samples]


# --- model names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "want"),
    [
        (["a", "a", "a-2"], ["a", "a-3", "a-2"]),  # a name given as is keeps it
        (["a", "a", "b", "a"], ["a", "a-2", "b", "a-3"]),
        (["a-2", "a", "a"], ["a-2", "a", "a-3"]),
        (["m", "M"], ["m", "M-2"]),  # one folder on a case-insensitive disk
        (["my model", "my_model"], ["my_model", "my_model-2"]),
    ],
)
def test_unique_ids_never_repeat(names: list[str], want: list[str]) -> None:
    got = unique_ids(names)
    assert got == want
    assert len({g.casefold() for g in got}) == len(got)


# --- sample ids --------------------------------------------------------------------------------


def test_same_file_names_in_different_folders_get_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    paths = ["a/scan.png", "b/scan.png", "scan-2.png"]
    assert ids(from_paths(paths)) == ["a__scan", "b__scan", "scan-2"]
    assert ids(from_paths(paths)) == ["a__scan", "b__scan", "scan-2"]  # a rerun: the same
    assert ids(from_paths(paths[::-1])) == ["scan-2", "b__scan", "a__scan"]  # not by position
    assert ids(from_paths(["./a/../a/scan.png", str(tmp_path / "b" / "scan.png")])) == [
        "a__scan",
        "b__scan",
    ]


def test_path_ids_relative_to_a_root_or_without_their_anchor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert path_id("fracture/img1.png") == "fracture__img1"
    assert path_id(tmp_path / "test/fracture/img1.png", tmp_path / "test") == "fracture__img1"
    assert path_id("/data/x/a.png") == "data__x__a"  # outside the current folder
    assert path_id("a/scan.PNG", keep_suffix=True) == "a__scan.PNG"
    assert path_id("x ray/#1.png") == "x_ray__1"
    monkeypatch.chdir(tmp_path / "..")
    assert path_id(tmp_path / "a.png") == f"{tmp_path.name}__a"


def test_same_stem_keeps_the_extension_only_where_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sample_ids(["a.png", "a.jpg", "b.png"]) == ["a.png", "a.jpg", "b"]


def test_the_same_path_twice_is_one_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    samples = from_paths(["a.png", "b.png", "./a.png", str(tmp_path / "a.png")])
    assert ids(samples) == ["a", "b"]
    assert [s.image_path for s in samples] == ["a.png", "b.png"]


def test_ids_that_would_still_clash_are_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"'a b\.png' and 'a_b\.png'.*--id-col"):
        from_paths(["a b.png", "a_b.png"])
    with pytest.raises(UsageError, match=r"'x/y\.png' and 'x__y\.png'"):
        from_paths(["x/y.png", "x__y.png"])


def test_manifest_ids_come_from_the_id_column_and_must_be_unique(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,image_path\nc1,a.png\nc2,b.png\nc1,c.png\n")
    with pytest.raises(UsageError, match=r"m\.csv repeats id 'c1' \(rows 1 and 3\).*--id-col"):
        from_manifest(tmp_path / "m.csv")
    with pytest.raises(UsageError, match="repeats id 'c1'"):
        from_manifest(tmp_path / "m.csv", sample=1, seed=0)  # whatever rows are drawn
    (tmp_path / "n.csv").write_text("id,image_path\nx y,a.png\nx_y,b.png\n")
    with pytest.raises(
        UsageError,
        match=r"row 1 of manifest \S*n\.csv \(id 'x y'\) and row 2 of manifest \S*n\.csv "
        r"\(id 'x_y'\) would both get the sample id 'x_y'.*--id-col",
    ):
        from_manifest(tmp_path / "n.csv")


def test_manifest_without_ids_uses_paths_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "m.csv").write_text(
        "image_path\nimgs/a/scan.png\nimgs/b/scan.png\nscan.png\nscan.jpg\n"
    )
    got = from_manifest(tmp_path / "data" / "m.csv")
    assert ids(got) == ["imgs__a__scan", "imgs__b__scan", "scan.png", "scan.jpg"]
    assert got[0].image_path == str(tmp_path / "data" / "imgs" / "a" / "scan.png")


def test_manifest_ids_do_not_depend_on_the_sample_drawn(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("image_path\n" + "".join(f"{i}.png\n" for i in range(8)))
    (tmp_path / "m.csv").write_text((tmp_path / "m.csv").read_text() + "3.jpg\n")
    every = {s.image_path: s.id for s in from_manifest(tmp_path / "m.csv")}
    assert every[str(tmp_path / "3.png")] == "3.png" and every[str(tmp_path / "4.png")] == "4"
    for seed in range(6):
        for s in from_manifest(tmp_path / "m.csv", sample=2, seed=seed):
            assert s.id == every[s.image_path]


# --- folders -----------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """test/{normal,fracture}/*.png, a deeper file, hidden and non-image files to skip."""
    root = tmp_path / "test"
    for name in ("normal/n0.png", "normal/n1.png", "normal/N2.PNG", "normal/x.jpeg"):
        png(root / name)
    for name in ("fracture/f0.png", "fracture/f1.bmp", "fracture/extra/deep.png"):
        png(root / name, 200)
    png(root / ".cache" / "thumb.png")
    png(root / "normal" / ".hidden.png")
    (root / "normal" / "notes.txt").write_text("not an image")
    return root


FOLDER_IDS = [
    "fracture__extra__deep",
    "fracture__f0",
    "fracture__f1",
    "normal__N2",
    "normal__n0",
    "normal__n1",
    "normal__x",
]


def test_a_folder_is_its_images_with_class_folders_as_labels(tree: Path) -> None:
    samples = from_inputs([tree])
    assert ids(samples) == FOLDER_IDS
    assert [s.truth for s in samples] == ["fracture"] * 3 + ["normal"] * 4
    assert samples[0].image_path == str(tree / "fracture" / "extra" / "deep.png")
    assert ids(from_inputs([tree])) == FOLDER_IDS  # a rerun: the same


def test_a_folder_with_loose_images_has_no_labels(tree: Path) -> None:
    png(tree / "loose.png")
    samples = from_inputs([tree])
    assert ids(samples) == sorted([*FOLDER_IDS, "loose"], key=lambda i: i.split("__"))
    assert {s.truth for s in samples} == {None}


def test_sample_from_a_folder_is_seeded_and_in_sorted_order(tree: Path) -> None:
    a = from_inputs([tree], sample=2, seed=5)
    assert len(a) == 2 and ids(a) == ids(from_inputs([tree], sample=2, seed=5))
    assert ids(a) == [i for i in FOLDER_IDS if i in ids(a)]
    draws = {tuple(ids(from_inputs([tree], sample=2, seed=s))) for s in range(10)}
    assert len(draws) > 1
    assert ids(from_inputs([tree], sample=100)) == FOLDER_IDS
    with pytest.raises(UsageError, match="--sample must be >= 1"):
        from_inputs([tree], sample=0)


def test_files_and_folders_mixed(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    png(tmp_path / "other.png")
    samples = from_inputs(["other.png", "test", "test/normal/n0.png"])
    assert ids(samples) == ["other", *FOLDER_IDS]  # n0 given twice: one sample
    assert samples[0].truth is None
    one = from_inputs(["other.png", "test"], sample=3, seed=1)
    assert ids(one) == ids(from_inputs(["other.png", "test"], sample=3, seed=1))
    assert set(ids(one)) <= {"other", *FOLDER_IDS}


def test_a_folder_without_images_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    png(tmp_path / "empty" / ".hidden" / "a.png")
    (tmp_path / "empty" / "readme.txt").write_text("")
    with pytest.raises(UsageError, match=r"folder .*empty has no images \(png, jpg"):
        from_inputs([tmp_path / "empty"])


def test_a_positional_csv_is_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("case,file,label\nc0,a.png,normal\nc1,b.png,fracture\n")
    samples = from_inputs([tmp_path / "m.csv"], id_col="case", image_col="file", target_col="label")
    assert ids(samples) == ["c0", "c1"] and [s.truth for s in samples] == ["normal", "fracture"]
    assert samples[1].image_path == str(tmp_path / "b.png")
    with pytest.raises(UsageError, match=r"--id-col reads a manifest"):
        from_inputs([tmp_path / "a.png"], id_col="case")


# --- the command line --------------------------------------------------------------------------

TINY_PY = textwrap.dedent(
    """
    import torch
    from torch import nn


    def tiny(num_classes=2):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4, num_classes),
        )
    """
)


def run_cli(cwd: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from seewhy.cli import main

    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return int(exit_.value.code or 0)


def test_cli_explains_a_sample_of_a_folder_with_true_labels(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tiny.py").write_text(TINY_PY)
    args = ["explain", "test", "--sample", "1", "--seed", "3", "-m", "tiny.py:tiny"]
    args += ["--labels", "normal,fracture", "--target", "true", "--quiet", "--no-report"]
    assert run_cli(tmp_path, monkeypatch, *args, "--out", "out") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (want,) = from_inputs(["test"], sample=1, seed=3)  # in tmp_path, as the CLI ran
    assert want.truth in ("normal", "fracture")
    assert summary["samples"] == [want.describe()]
    (result,) = summary["results"]
    assert result["sample"] == want.id and result["explained"].startswith(want.truth)


def test_cli_hands_the_folder_samples_to_the_workflow(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import seewhy.jobs.explain as workflow

    seen: list[list[Any]] = []

    def spy(samples: Any, models: Any, opts: Any, **kwargs: Any) -> Any:
        seen.append(list(samples))
        raise UsageError("stop here")

    monkeypatch.setattr(workflow, "run_explain", spy)
    args = ["explain", "test", "--sample", "2", "--seed", "4", "-m", "x.toml"]
    code = run_cli(tmp_path, monkeypatch, *args)
    assert code == 2 and "stop here" in capsys.readouterr().err
    (got,) = seen
    want = from_inputs([tree], sample=2, seed=4)
    assert ids(got) == ids(want) and [s.truth for s in got] == [s.truth for s in want]
    # manifest-only flags still need a manifest; a positional CSV is one
    assert run_cli(tmp_path, monkeypatch, "explain", "test", "--id-col", "c", "-m", "x") == 2
    assert "--id-col reads a manifest" in capsys.readouterr().err
    (tmp_path / "m.csv").write_text("case,image_path\nc0,test/normal/n0.png\n")
    assert run_cli(tmp_path, monkeypatch, "explain", "m.csv", "--id-col", "case", "-m", "x") == 2
    assert ids(seen[-1]) == ["c0"]
