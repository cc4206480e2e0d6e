"""`seewhy dataset` over a manifest with bad rows: each fails alone, in errors.jsonl by id with a
reason naming the problem; the other rows are predicted and the run ends with exit 1."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import invoke
from dataset_fixtures import REGION_NAMES, TilesModel, write_tiles
from PIL import Image

from seewhy.data.summary import validate_summary

GOOD = 20


# id -> (image_path, regions, price, what the reason must say)
BAD = {
    "bad_missing": (
        "tiles/nowhere.png",
        "labels/t000.png",
        "0.4",
        r"nowhere\.png.*(not exist|missing|not found)",
    ),
    "bad_corrupt": (
        "tiles/corrupt.png",
        "labels/t001.png",
        "0.4",
        r"corrupt\.png.*(corrupt|not an image|cannot|unreadable)",
    ),
    "bad_truncated": (
        "tiles/truncated.png",
        "labels/t002.png",
        "0.4",
        r"truncated\.png.*(corrupt|truncated|cannot|unreadable)",
    ),
    "bad_nan": ("tiles/t003.png", "labels/t003.png", "nan", r"'price'.*(nan|NaN)"),
    "bad_blank": ("tiles/t004.png", "labels/t004.png", "", r"'price'.*blank"),
    "bad_region": ("tiles/t005.png", "labels/unknown.png", "0.4", r"unknown\.png.*class id 7"),
    "bad_no_map": (
        "tiles/t006.png",
        "labels/none.png",
        "0.4",
        r"none\.png.*(not exist|missing|not found)",
    ),
    "bad_map_size": (
        "tiles/t007.png",
        "labels/small.png",
        "0.4",
        r"small\.png is 32x32 but its image is 64x64",
    ),
}


@pytest.fixture
def with_bad_rows(tmp_path: Path) -> Path:
    """20 good tiles and the bad rows of BAD, interleaved (a bad row in most batches)."""
    tiles = write_tiles(tmp_path, GOOD, seed=11)
    (tmp_path / "tiles" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    whole = (tmp_path / "tiles" / "t002.png").read_bytes()
    (tmp_path / "tiles" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    labels = np.asarray(Image.open(tmp_path / "labels" / "t005.png")).copy()
    labels[10:14, 10:14] = 7  # a class id --region-names does not name
    Image.fromarray(labels).save(tmp_path / "labels" / "unknown.png")
    Image.fromarray(labels[:32, :32] % 4).save(tmp_path / "labels" / "small.png")
    rows = [(i, f"tiles/{i}.png", f"labels/{i}.png", tiles.truth[i]) for i in tiles.ids]
    for k, (bid, (image, regions, price, _)) in enumerate(BAD.items()):
        rows.insert(3 * k + 1, (bid, image, regions, price))  # spread over the batches
    with (tmp_path / "mixed.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path", "regions", "price"])
        w.writerows(rows)
    return tmp_path


def test_bad_rows_fail_alone_with_their_reason(
    with_bad_rows: Path, tiles_model: TilesModel
) -> None:
    """Each bad row in errors.jsonl once, by id, with a reason naming the file or column and
    the problem; the good rows predicted, cohorts among them; exit 1. A rerun into the same
    folder says the same (the failed rows are tried again and fail again, once each)."""
    args = (
        "dataset",
        "mixed.csv",
        "-m",
        str(tiles_model.card),
        "--target-col",
        "price",
        "--target",
        "value",
        "--method",
        "gradcam",
        "--regions-col",
        "regions",
        "--region-names",
        ",".join(REGION_NAMES),
        "--cohort-size",
        "2",
        "--batch-size",
        "4",
        "--workers",
        "1",
        "--no-figures",
        "--no-report",
        "--quiet",
        "--out",
        "out",
    )
    code, output = invoke(with_bad_rows, *args)
    assert code == 1, output
    out = with_bad_rows / "out"
    _check(out)
    first = (out / "errors.jsonl").read_text(), (out / "predictions.csv").read_text()
    code, output = invoke(with_bad_rows, *args)
    assert code == 1, output
    _check(out)
    assert ((out / "errors.jsonl").read_text(), (out / "predictions.csv").read_text()) == first


def _check(out: Path) -> None:
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == list(BAD)  # once each, in manifest order
    for e in errors:
        image, _, _, says = BAD[e["id"]]
        assert re.search(says, e["reason"]), (e["id"], e["reason"])
        assert e["path"].endswith(image.split("/")[-1])

    with (out / "predictions.csv").open(newline="") as f:
        predicted = [r["id"] for r in csv.DictReader(f)]
    good = [f"t{k:03d}" for k in range(GOOD)]
    assert sorted(predicted) == good
    summary = json.loads((out / "summary.json").read_text())
    assert validate_summary(summary) == []
    d = summary["dataset"]
    assert (d["rows"], d["predicted"], d["failed"]) == (GOOD + len(BAD), GOOD, len(BAD))
    assert summary["metrics"]["tiles"]["rows"] == GOOD
    for c in summary["cohorts"]:
        assert set(c["sample_ids"]) <= set(good)
        assert c["explained"] == len(c["sample_ids"]) == 2


def test_parquet_without_an_engine_is_one_line_and_exit_2(
    with_bad_rows: Path, tiles_model: TilesModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pandas without pyarrow or fastparquet: one line naming the install, exit 2 (it was
    pandas' ImportError with a traceback, exit 1)."""
    (with_bad_rows / "mixed.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    code, output = invoke(
        with_bad_rows, "dataset", "mixed.parquet", "-m", str(tiles_model.card), "--quiet"
    )
    assert code == 2
    assert "pip install" in output
