"""From an outside review of ``seewhy dataset`` (each test failed before its fix)."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_runner import invoke
from dataset_fixtures import REGION_NAMES, Tiles, TilesModel, tiles_folder, trained_model
from PIL import Image

REGIONS = ("--regions-col", "regions", "--region-names", ",".join(REGION_NAMES))
QUIET = ("--workers", "0", "--no-figures", "--no-report", "--quiet")

BRIGHT_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Bright(nn.Module):
        # class 0 for bright images, class 1 for dark ones (a 1x1 conv for the CAM layer)
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(3, 1, 1)
            with torch.no_grad():
                self.features.weight.fill_(1.0)
                self.features.bias.zero_()

        def forward(self, x):
            m = self.features(x).mean(dim=(2, 3))
            return torch.cat([m, -m], dim=1)

    def build():
        return Bright()
    """
)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Tiles:
    return tiles_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def tiles_model(tmp_path_factory: pytest.TempPathFactory) -> TilesModel:
    return trained_model(tmp_path_factory)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def bright(tmp_path: Path) -> Path:
    (tmp_path / "bright.py").write_text(BRIGHT_PY)
    (tmp_path / "bright.toml").write_text(
        'arch = "bright.py:build"\nlabels = ["a b", "a/b"]\nlayer = "features"\n'
        "[preprocess]\nsize = 16\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n"
    )
    rows = []
    for i in range(8):
        level = 230 if i % 2 == 0 else 20
        Image.fromarray(np.full((16, 16, 3), level, np.uint8)).save(tmp_path / f"b{i}.png")
        rows.append([f"b{i}", f"b{i}.png", "a b" if i % 2 == 0 else "1"])
    write_csv(tmp_path / "b.csv", ["id", "image_path", "y"], rows)
    return tmp_path


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def errors_of(out: Path) -> dict[str, str]:
    lines = (out / "errors.jsonl").read_text().splitlines()
    return {e["id"]: e["reason"] for e in map(json.loads, lines)}


def test_class_cohorts_whose_names_clean_alike_keep_their_own_files(bright: Path) -> None:
    code, output = invoke(bright, "dataset", "b.csv", "-m", "bright.toml", "--target-col", "y",
                          "--out", "o", *QUIET)  # fmt: skip
    assert code == 0, output
    cohorts = {c["name"]: c for c in summary_of(bright / "o")["cohorts"]}
    assert cohorts["class:a b"]["sample_ids"] == ["b0", "b2", "b4", "b6"]
    assert cohorts["class:a/b"]["sample_ids"] == ["b1", "b3", "b5", "b7"]
    files = [cohorts[k]["mean_map"] for k in ("class:a b", "class:a/b")]
    assert files[0] != files[1]
    assert all((bright / "o" / f).is_file() for f in files)


def test_a_true_label_the_model_does_not_have_fails_its_row(bright: Path) -> None:
    rows = [[f"b{i}", f"b{i}.png", ["a b", "cat", "7", "1"][i % 4]] for i in range(8)]
    write_csv(bright / "bad.csv", ["id", "image_path", "y"], rows)
    code, output = invoke(bright, "dataset", "bad.csv", "-m", "bright.toml", "--target-col", "y",
                          "--out", "o", *QUIET)  # fmt: skip
    assert code == 1, output
    errors = errors_of(bright / "o")
    assert sorted(errors) == ["b1", "b2", "b5", "b6"]
    assert "holds 'cat', which is not one of the model's classes (a b, a/b)" in errors["b1"]
    metrics = summary_of(bright / "o")["metrics"]["bright"]
    assert metrics["confusion"]["labels"] == ["a b", "a/b"] and metrics["accuracy"] == 1.0


def test_a_multilabel_model_with_a_target_column_is_refused(bright: Path) -> None:
    card = (bright / "bright.toml").read_text().replace("labels", 'task = "multilabel"\nlabels')
    (bright / "ml.toml").write_text(card)
    code, output = invoke(bright, "dataset", "b.csv", "-m", "ml.toml", "--target-col", "y",
                          "--out", "o", *QUIET)  # fmt: skip
    assert code == 2 and "is multilabel" in output and len(output.strip().splitlines()) == 1


def test_unicode_ids_are_kept(bright: Path) -> None:
    ids = ["東京-1", "大阪-1", "ü1", "ä1"]
    rows = [[sid, f"b{i}.png", "a b"] for i, sid in enumerate(ids)]
    write_csv(bright / "u.csv", ["id", "image_path", "y"], rows)
    code, output = invoke(bright, "dataset", "u.csv", "-m", "bright.toml", "--target-col", "y",
                          "--out", "o", "--explain", "all", *QUIET)  # fmt: skip
    assert code == 0, output
    with (bright / "o" / "predictions.csv").open(encoding="utf-8") as f:
        assert [r["id"] for r in csv.DictReader(f)] == ids
    assert (bright / "o" / "maps" / "東京-1" / "bright__gradcam.npy").is_file()


def test_check_sample_records_how_many_rows_were_checked(bright: Path) -> None:
    code, output = invoke(bright, "dataset", "b.csv", "-m", "bright.toml", "--check-sample", "50",
                          "--out", "o", *QUIET)  # fmt: skip
    assert code == 0, output
    assert summary_of(bright / "o")["dataset"]["check_sample"] == 8


def test_a_blank_id_in_joined_manifests_is_reported(bright: Path) -> None:
    write_csv(bright / "p.csv", ["id", "y"], [["b0", "a b"], ["", "a b"], ["b2", "a b"]])
    write_csv(bright / "i.csv", ["id", "image_path"], [[f"b{i}", f"b{i}.png"] for i in range(3)])
    code, output = invoke(bright, "dataset", "p.csv", "i.csv", "-m", "bright.toml",
                          "--target-col", "y", "--out", "o", *QUIET)  # fmt: skip
    assert code == 1, output
    (reason,) = errors_of(bright / "o").values()
    assert "the id cell (--id-col id) is blank in row 2 of manifest p.csv" in reason


def test_a_rerun_redoes_rows_when_the_weights_change_in_memory(tmp_path: Path) -> None:
    import torch
    from torch import nn

    import seewhy

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Conv2d(3, 2, 3, padding=1)
            self.head = nn.Linear(2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x).mean(dim=(2, 3)))

    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / f"x{i}.png")
    write_csv(tmp_path / "m.csv", ["id", "image_path"], [[f"x{i}", f"x{i}.png"] for i in range(4)])
    torch.manual_seed(0)
    net = Net()
    model = seewhy.Model(net, task="regression")
    first = seewhy.dataset(tmp_path / "m.csv", model, out=tmp_path / "o", report=False)
    before = first.predictions["prediction"]  # read now: the next run rewrites the file
    with torch.no_grad():
        net.head.bias += 100.0  # a notebook's retrain
    again = seewhy.dataset(tmp_path / "m.csv", model, out=tmp_path / "o", report=False)
    shift = again.predictions["prediction"] - before
    np.testing.assert_allclose(shift, 100.0, rtol=1e-5)


def test_a_changed_card_layer_redoes_the_maps(tiles: Tiles, tiles_model: TilesModel,
                                              tmp_path: Path) -> None:  # fmt: skip
    card = tmp_path / "card.toml"
    text = tiles_model.card.read_text()
    folder = tiles_model.card.parent.as_posix()
    card.write_text(text.replace('"tiles_model.py', f'"{folder}/tiles_model.py').replace(
        'checkpoint = "', f'checkpoint = "{folder}/'))  # fmt: skip
    args = ("dataset", "head.csv", "-m", str(card), "--target-col", "price", "--target", "value",
            "--cohort-size", "2", "--out", str(tmp_path / "o"), *QUIET)  # fmt: skip
    assert invoke(tiles.folder, *args)[0] == 0
    layers = {a["params"].get("layer") for r in summary_of(tmp_path / "o")["results"]
              for a in r["attributions"]}  # fmt: skip
    assert len(layers) == 1
    other = "features.0" if layers != {"features.0"} else "features.2"
    card.write_text(card.read_text().replace('layer = "features"', f'layer = "{other}"'))
    assert f'layer = "{other}"' in card.read_text()
    assert invoke(tiles.folder, *args)[0] == 0
    layers = {a["params"].get("layer") for r in summary_of(tmp_path / "o")["results"]
              for a in r["attributions"]}  # fmt: skip
    assert layers == {other}


def test_maps_without_a_direction_get_neutral_words(tiles: Tiles, tiles_model: TilesModel,
                                                    tmp_path: Path) -> None:  # fmt: skip
    words = {}
    for target in ("value", "-value"):
        args = ("dataset", "head.csv", "-m", str(tiles_model.card), "--target-col", "price",
                f"--target={target}", "--method", "eigencam,saliency", "--cohort-size", "3",
                "--out", str(tmp_path / target), *QUIET, *REGIONS)  # fmt: skip
        assert invoke(tiles.folder, *args)[0] == 0
        for c in summary_of(tmp_path / target)["cohorts"]:
            words[target, c["name"], c["method"]] = c["description"]
    for (_, name, method), line in words.items():
        assert " raises " not in line and " lowers " not in line, line
        assert line == words["value", name, method]  # the same words whatever the target


def test_a_jpeg_label_map_fails_its_row(tiles: Tiles, tiles_model: TilesModel,
                                        tmp_path: Path) -> None:  # fmt: skip
    rows = []
    with (tiles.folder / "head.csv").open() as f:
        for k, r in enumerate(csv.DictReader(f)):
            regions = str(tiles.folder / r["regions"])
            if k == 3:
                regions = str(tmp_path / "lossy.jpg")
                Image.open(tiles.folder / r["regions"]).save(regions, quality=90)
            rows.append([r["id"], str(tiles.folder / r["image_path"]), regions, r["price"]])
    write_csv(tmp_path / "m.csv", ["id", "image_path", "regions", "price"], rows)
    code, output = invoke(tmp_path, "dataset", "m.csv", "-m", str(tiles_model.card),
                          "--target-col", "price", "--out", "o", *QUIET, *REGIONS)  # fmt: skip
    assert code == 1, output
    errors = errors_of(tmp_path / "o")
    assert list(errors) == [rows[3][0]] and "is a JPEG file" in errors[rows[3][0]]


def test_the_same_command_gives_the_same_summary_whatever_ran_before(
    tiles: Tiles, tiles_model: TilesModel, tmp_path: Path
) -> None:
    def run(out: Path, size: str) -> dict:
        args = ("dataset", "head.csv", "-m", str(tiles_model.card), "--target-col", "price",
                "--target", "value", "--cohort-size", size, "--out", str(out), *QUIET)  # fmt: skip
        assert invoke(tiles.folder, *args)[0] == 0
        return summary_of(out)

    fresh = run(tmp_path / "fresh", "3")
    run(tmp_path / "o", "4")
    again = run(tmp_path / "o", "3")
    assert [r["sample"] for r in again["results"]] == [r["sample"] for r in fresh["results"]]
    assert again["samples"] == fresh["samples"]
    assert again["dataset"]["explained"] == fresh["dataset"]["explained"]
