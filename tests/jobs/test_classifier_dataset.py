"""``seewhy dataset`` on two classifiers: every row explained, no figures, checks on a sample,
and the numbers read back against the models run directly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import invoke
from PIL import Image

from seewhy.data.summary import validate_summary


@pytest.fixture
def manifest(project: Path) -> Path:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(12):
        arr = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        arr[8:16, 4 + i : 12 + i] = 255
        Image.fromarray(arr).save(project / f"row{i}.png")
        rows.append({"id": f"row{i}", "image_path": f"row{i}.png", "label": ["normal", "1"][i % 2]})
    with (project / "cases.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "image_path", "label"])
        w.writeheader()
        w.writerows(rows)
    return project / "cases.csv"


def direct(project: Path, card: str, ids: list[str]) -> torch.Tensor:
    import seewhy

    m = seewhy.load_model(str(project / card), device="cpu")
    images = [Image.open(project / f"{i}.png").convert("RGB") for i in ids]
    with torch.no_grad():
        return torch.softmax(m.module.eval()(m.preprocess(images)), dim=1)


def test_every_row_two_models_no_figures_and_checks(project: Path, manifest: Path) -> None:
    code, output = invoke(
        project,
        "dataset", "cases.csv", "-m", "small.toml", "-m", "wide.toml",
        "--target-col", "label", "--explain", "all", "--no-figures",
        "--check-sample", "2", "--workers", "0", "--out", "out", "--quiet",
    )  # fmt: skip
    assert code == 0, output
    out = project / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert validate_summary(summary) == []
    ids = [f"row{i}" for i in range(12)]
    truth = ["normal", "fracture"] * 6  # "1" is the index of fracture
    with (out / "predictions.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 24
    for name in ("small", "wide"):
        probs = direct(project, f"{name}.toml", ids)
        mine = [r for r in table if r["model"] == name]
        assert [r["id"] for r in mine] == ids
        assert [r["truth"] for r in mine] == truth
        labels = [["normal", "fracture"][int(k)] for k in probs.argmax(1)]
        assert [r["prediction"] for r in mine] == labels
        np.testing.assert_allclose(
            [float(r["score"]) for r in mine], probs.max(1).values.numpy(), atol=1e-5
        )
        correct = sum(a == b for a, b in zip(labels, truth, strict=True))
        assert summary["metrics"][name]["accuracy"] == pytest.approx(correct / 12)
        matrix = summary["metrics"][name]["confusion"]["matrix"]
        assert sum(map(sum, matrix)) == 12
        wrong = sorted(
            (i for i, a, b in zip(ids, labels, truth, strict=True) if a != b),
            key=lambda i: (-float(probs[ids.index(i)].max()), i),
        )
        cohort = next(
            c for c in summary["cohorts"] if c["model"] == name and c["name"] == "misclassified"
        )
        assert cohort["sample_ids"] == wrong
        for i in ids:  # every row explained, its map saved, no figure drawn
            assert (out / "maps" / i / f"{name}__gradcam.npy").is_file()
    assert not (out / "figures").exists()
    assert summary["dataset"]["explained"] == 12 and summary["dataset"]["failed"] == 0
    assert len(summary["results"]) == 24
    assert {(c["model"], c["method"]) for c in summary["checks"]} == {
        ("small", "gradcam"),
        ("wide", "gradcam"),
    }
    assert all(c["verdict"] in ("pass", "warn", "fail") for c in summary["checks"])


def test_bad_flags_exit_2_with_one_line(project: Path, manifest: Path) -> None:
    for args, words in (
        (["--explain", "some"], "--explain some: use cohorts or all"),
        (["--cohort-size", "0"], "--cohort-size must be >= 1"),
        (["--regions-col", "label"], "--regions-col label needs --region-names"),
        (["--target-col", "lable"], "no column 'lable' (--target-col); did you mean 'label'?"),
    ):
        code, output = invoke(
            project, "dataset", "cases.csv", "-m", "small.toml", "--out", "o", *args
        )
        assert code == 2, output
        assert words in output and len(output.strip().splitlines()) == 1
