"""Samples to explain: from image paths or a manifest (CSV / Parquet), with safe ids."""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seewhy.core.errors import UsageError, did_you_mean

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Sample:
    """One row to explain: a safe ``id`` (used in file names), the image path and extras."""

    id: str
    image_path: str
    text: str | None = None
    target: str | None = None
    mask_path: str | None = None
    row: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The ``samples[]`` entry of summary.json."""
        out: dict[str, Any] = {"id": self.id, "image_path": self.image_path}
        if self.text is not None:
            out["text"] = self.text
        if self.target is not None:
            out["target"] = self.target
        if self.mask_path is not None:
            out["mask_path"] = self.mask_path
        return out


def safe_id(raw: str) -> str:
    """A file-name-safe id: letters, digits, ``.``, ``_``, ``+``, ``-``; never empty or hidden."""
    cleaned = _UNSAFE.sub("_", raw).strip("._") or "sample"
    return cleaned[:120]


def unique_ids(raw: Sequence[str]) -> list[str]:
    """Safe ids, made unique with ``-2``, ``-3`` ... suffixes."""
    seen: dict[str, int] = {}
    out = []
    for r in raw:
        base = safe_id(r)
        n = seen.get(base, 0) + 1
        seen[base] = n
        out.append(base if n == 1 else f"{base}-{n}")
    return out


def from_paths(paths: Sequence[str | Path]) -> list[Sample]:
    """Samples for image paths given on the command line (id = file stem)."""
    ids = unique_ids([Path(p).stem for p in paths])
    return [Sample(id=i, image_path=str(p)) for i, p in zip(ids, paths, strict=True)]


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV or Parquet manifest as dicts."""
    if not path.is_file():
        raise UsageError(f"manifest {path} does not exist; pass a CSV or Parquet file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pandas as pd
        except ImportError as exc:
            raise UsageError(
                f"reading {path} needs pandas and pyarrow: pip install 'seewhy[tabular]'"
            ) from exc
        return [dict(r) for r in pd.read_parquet(path).to_dict(orient="records")]
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return [dict(r) for r in csv.DictReader(f)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"manifest {path} is not a readable CSV file: {exc}") from exc


def from_manifest(
    path: str | Path,
    *,
    id_col: str | None = None,
    image_col: str = "image_path",
    target_col: str | None = None,
    text_col: str | None = None,
    mask_col: str | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> list[Sample]:
    """Samples from a manifest; relative paths are relative to the manifest's folder.

    Args:
        id_col: the id column; by default ``id`` when the manifest has one, else each image's
            file stem. A column named here must exist.
        sample: if given, that many rows drawn at random (seeded by ``seed``), in file order.

    Raises:
        UsageError: a missing manifest, no rows, a named column it lacks, ``sample < 1``.
    """
    path = Path(path)
    rows = read_table(path)
    if not rows:
        raise UsageError(f"manifest {path} has no rows")
    columns = list(rows[0])
    for flag, col in (
        ("--id-col", id_col),
        ("--image-col", image_col),
        ("--target-col", target_col),
        ("--text-col", text_col),
        ("--mask-col", mask_col),
    ):
        if col is not None and col not in columns:
            raise UsageError(
                f"manifest {path} has no column '{col}' ({flag}){did_you_mean(col, columns)} "
                f"Columns: {', '.join(columns)}"
            )
    if sample is not None:
        if sample < 1:
            raise UsageError(f"--sample must be >= 1, got {sample}")
        keep = sorted(random.Random(seed).sample(range(len(rows)), min(sample, len(rows))))
        rows = [rows[i] for i in keep]
    base = path.parent
    id_col = id_col or "id"

    def resolve(value: Any) -> str | None:
        if value is None or str(value).strip() == "":
            return None
        p = Path(str(value))
        return str(p if p.is_absolute() else base / p)

    raw_ids = [
        str(r[id_col]) if id_col in r and str(r[id_col]).strip() else Path(str(r[image_col])).stem
        for r in rows
    ]
    out = []
    for sid, r in zip(unique_ids(raw_ids), rows, strict=True):
        out.append(
            Sample(
                id=sid,
                image_path=resolve(r[image_col]) or "",
                text=None if text_col is None else str(r[text_col]),
                target=None if target_col is None else str(r[target_col]),
                mask_path=None if mask_col is None else resolve(r[mask_col]),
                row=r,
            )
        )
    return out
