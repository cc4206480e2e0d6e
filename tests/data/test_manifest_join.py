"""Several manifests joined on --id-col (SPEC section 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seewhy.core.errors import UsageError
from seewhy.data.samples import MISSING_ROW, from_manifests, join_manifests


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_join_keeps_the_first_manifests_rows_order_and_paths(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    prices = write(tmp_path / "prices.csv", "id,price\nc,3\na,1\nb,2\nz,9\n")
    images = write(
        tmp_path / "imgs" / "images.csv",
        "id,image_path,price\na,a.png,100\nb,b.png,200\nc,c.png,300\n",
    )
    base, rows = join_manifests([prices, images], "id")
    assert base == images  # the one with the image column
    assert [(r["id"], r["price"], r["image_path"]) for r in rows] == [
        ("c", "3", "c.png"),  # the first manifest's value of a shared column
        ("a", "1", "a.png"),
        ("b", "2", "b.png"),
        ("z", "9", None),  # not in the image table: kept, with why (reported by the run)
    ]
    assert [MISSING_ROW in r for r in rows] == [False, False, False, True]
    assert rows[3][MISSING_ROW] == (
        f"id 'z' has no row in manifest {images} (the manifests are joined on --id-col id)"
    )
    samples = from_manifests([prices, images], target_col="price")
    assert [s.id for s in samples] == ["c", "a", "b", "z"]
    assert samples[1].image_path == str(tmp_path / "imgs" / "a.png")
    assert [s.truth for s in samples] == ["3", "1", "2", "9"]


def test_join_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "id,x\n1,2\n")
    b = write(tmp_path / "b.csv", "key,image_path\n1,p.png\n")
    with pytest.raises(UsageError, match=r"b.csv has no column 'id' \(--id-col\)"):
        join_manifests([a, b], "id")
    c = write(tmp_path / "c.csv", "id,image_path\n1,p.png\n1,q.png\n")
    with pytest.raises(UsageError, match=r"c.csv repeats id '1' \(row 2\)"):
        join_manifests([a, c], "id")
    d = write(tmp_path / "d.csv", "id,image_path\n7,p.png\n")
    with pytest.raises(UsageError, match="share no value of --id-col id"):
        join_manifests([a, d], "id")
