"""Samples to explain: from image files, folders or manifests (CSV / Parquet), with stable ids."""

from __future__ import annotations

import csv
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from seewhy.core.errors import UsageError, did_you_mean
from seewhy.data.summary import SCHEMA

_UNSAFE = re.compile(r"[^\w.+-]+")  # \w: letters and digits of any script, and _
_MAX_ID_BYTES = 200
"""A file name holds at most 255 bytes; ids of non-Latin scripts take 2-4 bytes a letter."""
_MAX_ID = 120
_IMAGE_ORDER = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_SUFFIXES = frozenset(_IMAGE_ORDER)
"""What a folder's images are named (compared in lower case)."""
MANIFEST_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})
"""A file named so, given where images are, is read as a manifest (SPEC section 2)."""


@dataclass(frozen=True)
class Sample:
    """One row to explain: a safe ``id`` (used in file names), the image path and extras.

    ``truth`` is the ground truth (a class label or index from a manifest column or a class
    subfolder); summary.json keeps it as the sample's ``target``.
    """

    id: str
    image_path: str
    text: str | None = None
    truth: str | None = None
    mask_path: str | None = None
    row: dict[str, Any] = field(default_factory=dict)
    regions_path: str | None = None

    def describe(self) -> dict[str, Any]:
        """The ``samples[]`` entry of summary.json."""
        out: dict[str, Any] = {"id": self.id, "image_path": self.image_path}
        if self.text is not None:
            out["text"] = self.text
        if self.truth is not None:
            out["target"] = self.truth
        if self.mask_path is not None:
            out["mask_path"] = self.mask_path
        if self.regions_path is not None:
            out["regions_path"] = self.regions_path
        return out


def safe_id(raw: str) -> str:
    """A file-name-safe id: letters and digits (of any script: ``東京-1`` stays as it is),
    ``.``, ``_``, ``+``, ``-``; never empty or hidden. Unicode is normalised (NFC), so the
    same name typed on macOS and Linux is one id; at most 120 letters and 200 bytes."""
    import unicodedata

    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", raw)).strip("._") or "sample"
    cleaned = cleaned[:120]
    while len(cleaned.encode("utf-8")) > _MAX_ID_BYTES:
        cleaned = cleaned[:-1]
    return cleaned


def unique_ids(raw: Sequence[str]) -> list[str]:
    """File-safe names made unique, for names that are labels only (model names).

    The first of each name keeps it; a repeat gets the lowest ``-2``, ``-3`` ... suffix that no
    name in ``raw`` has, so a name given as is is never taken (``a, a, a-2`` -> ``a, a-3,
    a-2``). Names are compared case-insensitively: they become folder and file names, and
    ``M`` and ``m`` are one file on macOS and Windows. Sample ids are never renamed like this:
    see :func:`sample_ids`.
    """
    bases = [safe_id(r) for r in raw]
    reserved = {b.casefold() for b in bases}
    used: set[str] = set()
    out = []
    for base in bases:
        name = base
        if base.casefold() in used:
            n = 2
            while f"{base}-{n}".casefold() in reserved:
                n += 1
            name = f"{base}-{n}"
            reserved.add(name.casefold())
        used.add(name.casefold())
        out.append(name)
    return out


def path_id(path: str | Path, root: str | Path | None = None, *, keep_suffix: bool = False) -> str:
    """The stable sample id of an image path: its path relative to ``root``, else to the current
    folder, else (outside both) the path without its anchor (``/data/x/a.png`` ->
    ``data__x__a``); each folder level file-safe and joined by ``__``, the extension dropped
    unless ``keep_suffix``. Ids longer than 120 characters keep their end (the file name)."""
    p = Path(os.path.abspath(path))
    for base in (root, os.getcwd()):
        if base is None:
            continue
        try:
            parts = p.relative_to(os.path.abspath(base)).parts
            break
        except ValueError:
            continue
    else:
        parts = p.parts[1:] if p.anchor else p.parts
    if parts and not keep_suffix:
        parts = (*parts[:-1], Path(parts[-1]).stem)
    joined = "__".join(safe_id(part) for part in parts) or "sample"
    return joined if len(joined) <= _MAX_ID else joined[-_MAX_ID:].lstrip("._-") or "sample"


@dataclass(frozen=True)
class _Draft:
    """A sample before its id is settled: where it came from and the ids it may take."""

    sample: Sample  # id still empty
    source: str  # how an error names it
    id: str
    id_with_suffix: str | None = None  # path-derived ids only: for same-stem files
    manifest: Path | None = None  # explicit ids only: the manifest, the row (1-based) and
    row: int = 0  # the id as written there
    raw_id: str | None = None


def _path_draft(path: Path, root: Path | None, source: str, target: str | None = None) -> _Draft:
    return _Draft(
        sample=Sample(id="", image_path=str(path), truth=target),
        source=source,
        id=path_id(path, root),
        id_with_suffix=path_id(path, root, keep_suffix=True),
    )


def _settle(drafts: Sequence[_Draft]) -> list[Sample]:
    """Each draft's id, unique and stable: path ids that clash keep their extension; any id
    still shared (compared case-insensitively, as file names on macOS and Windows) is a
    UsageError naming both inputs, never a counter that depends on what else was given."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(drafts):
        groups.setdefault(d.id.casefold(), []).append(i)
    chosen = [d.id for d in drafts]
    for members in groups.values():
        if len(members) > 1:
            for i in members:
                chosen[i] = drafts[i].id_with_suffix or chosen[i]
    first: dict[str, int] = {}
    for i, sid in enumerate(chosen):
        j = first.setdefault(sid.casefold(), i)
        if j != i:
            raise _clash(drafts[j], drafts[i], sid)
    return [replace(d.sample, id=sid) for d, sid in zip(drafts, chosen, strict=True)]


def _clash(a: _Draft, b: _Draft, sid: str) -> UsageError:
    if a.manifest is not None and a.manifest == b.manifest and a.raw_id == b.raw_id:
        return UsageError(
            f"manifest {a.manifest} repeats id '{a.raw_id}' (rows {a.row} and {b.row}); sample ids "
            "name the output folders, so the id column (--id-col) needs unique values"
        )
    fix = (
        "give the manifest an id column with unique values (--id-col COL)"
        if a.manifest is not None or b.manifest is not None
        else "rename one, or list the images in a manifest with an id column of unique values "
        "(--data MANIFEST --id-col COL)"
    )
    return UsageError(
        f"{a.source} and {b.source} would both get the sample id '{sid}', and one's outputs "
        f"would overwrite the other's; {fix}"
    )


def pick(samples: list[Sample], sample: int | None, seed: int) -> list[Sample]:
    """All samples, or ``sample`` of them drawn at random (seeded), in their order."""
    if sample is None:
        return samples
    keep = sorted(random.Random(seed).sample(range(len(samples)), min(sample, len(samples))))
    return [samples[i] for i in keep]


def _check_sample(sample: int | None) -> None:
    if sample is not None and sample < 1:
        raise UsageError(f"--sample must be >= 1, got {sample}")


def sample_ids(paths: Sequence[str | Path], root: str | Path | None = None) -> list[str]:
    """Stable, unique ids for image paths (see :func:`path_id`); the same path twice gets the
    same id.

    Raises:
        UsageError: two different paths that would share an id even with their extensions.
    """
    drafts: dict[str, _Draft] = {}
    for p in paths:
        drafts.setdefault(_path_key(p), _path_draft(Path(p), _root(root), repr(str(p))))
    by_key = {k: s.id for k, s in zip(drafts, _settle(list(drafts.values())), strict=True)}
    return [by_key[_path_key(p)] for p in paths]


def _root(root: str | Path | None) -> Path | None:
    return None if root is None else Path(root)


def _path_key(path: str | Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def from_paths(paths: Sequence[str | Path]) -> list[Sample]:
    """Samples for image files (see :func:`from_inputs` for folders and manifests)."""
    return from_inputs(paths)


def folder_images(folder: str | Path) -> list[Path]:
    """The images in ``folder``, recursively, as paths relative to it, sorted by their parts.

    Images: files named ``*.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``, ``.webp``
    (any case). Hidden files and folders (``.name``) are skipped, links to folders are not
    followed, and a seewhy output folder (an ``--out`` inside the inputs) is not read.

    Raises:
        UsageError: a subfolder that cannot be read.
    """
    folder = Path(folder)

    def unreadable(exc: OSError) -> None:
        raise UsageError(
            f"cannot read folder {exc.filename}: {exc.strerror}; fix its permissions or pass "
            "the images another way"
        ) from exc

    found = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        if "summary.json" in filenames and _is_output_folder(Path(dirpath)):
            dirnames[:] = []  # a seewhy output folder (--out inside the inputs): its figures
            continue  # are not samples
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath, name).relative_to(folder))
    return sorted(found, key=lambda p: p.parts)


def _is_output_folder(folder: Path) -> bool:
    """Whether ``folder`` is a seewhy output folder (its summary.json has our schema)."""
    try:
        with (folder / "summary.json").open(encoding="utf-8", errors="replace") as f:
            head = f.read(200)
    except OSError:
        return False
    family = SCHEMA.split("/")[0]  # any version of our schema, not only this one
    return f'"schema": "{family}/' in head


def _folder_drafts(folder: Path) -> list[_Draft]:
    found = folder_images(folder)
    if not found:
        raise UsageError(
            f"folder {folder} has no images ({', '.join(s[1:] for s in _IMAGE_ORDER)}, "
            "searched recursively, hidden files skipped); pass a folder of images"
        )
    labelled = all(len(rel.parts) > 1 for rel in found)  # the <class>/ layout
    return [
        _path_draft(
            folder / rel, folder, repr(str(folder / rel)), rel.parts[0] if labelled else None
        )
        for rel in found
    ]


def from_inputs(
    paths: Sequence[str | Path],
    *,
    sample: int | None = None,
    seed: int = 0,
    id_col: str | None = None,
    image_col: str | None = None,
    target_col: str | None = None,
    text_col: str | None = None,
    mask_col: str | None = None,
    images: bool = True,
) -> list[Sample]:
    """Samples for what a user lists: image files, folders and manifests (SPEC section 2).

    A folder means its images, recursively (:func:`folder_images`); when every image sits in a
    subfolder (the ``<class>/`` layout) the first subfolder is its true label
    (``Sample.truth``). A ``.csv``/``.parquet`` file is a manifest, read as
    :func:`from_manifest` reads it with the column arguments. The same file given twice (or
    found twice) is one sample.

    Ids are stable across reruns, never a counter: a manifest's id column, else the image's
    path relative to the folder given (or the manifest's folder) or else to the current folder
    (:func:`path_id`); files that share a stem keep their extension (``a.png``, ``a.jpg``).

    Args:
        sample: if given, that many samples drawn at random (seeded by ``seed``) from all of
            them, in their order (inputs in the order given, a folder's images sorted).
        images: whether a manifest's rows need images (``False``: tree models alone, a
            manifest without the image column is read, as :func:`from_manifest` reads it).

    Raises:
        UsageError: a folder without images, a column argument with no manifest given, two
            inputs that would share an id, ``sample < 1``, and what :func:`from_manifest`
            raises.
    """
    _check_sample(sample)
    manifests = [Path(p) for p in paths if Path(p).suffix.lower() in MANIFEST_SUFFIXES]
    if not manifests:
        for flag, value in (
            ("--id-col", id_col),
            ("--image-col", image_col),
            ("--target-col", target_col),
            ("--text-col", text_col),
            ("--mask-col", mask_col),
        ):
            if value is not None:
                raise UsageError(
                    f"{flag} reads a manifest: pass --data MANIFEST (or a .csv/.parquet file) "
                    "with it"
                )
    drafts: list[_Draft] = []
    seen: set[str] = set()
    for raw in paths:
        p = Path(raw)
        if p.suffix.lower() in MANIFEST_SUFFIXES:
            drafts += _manifest_drafts(
                p,
                id_col=id_col,
                image_col=image_col or "image_path",
                target_col=target_col,
                text_col=text_col,
                mask_col=mask_col,
                images=images,
            )
            continue
        for d in _folder_drafts(p) if p.is_dir() else [_path_draft(p, None, repr(str(raw)))]:
            key = _path_key(d.sample.image_path)
            if key not in seen:
                seen.add(key)
                drafts.append(d)
    return pick(_settle(drafts), sample, seed)


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
        try:
            table = pd.read_parquet(path)
        except ImportError as exc:  # pandas without pyarrow or fastparquet
            raise UsageError(
                f"reading {path} needs a Parquet engine (pyarrow): pip install 'seewhy[tabular]'"
            ) from exc
        except (OSError, ValueError) as exc:
            raise UsageError(f"manifest {path} is not a readable Parquet file: {exc}") from exc
        return [dict(r) for r in table.to_dict(orient="records")]
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
    regions_col: str | None = None,
    images: bool = True,
) -> list[Sample]:
    """Samples from a manifest; relative paths are relative to the manifest's folder.

    Args:
        id_col: the id column; by default ``id`` when the manifest has one. A column named here
            must exist. Rows without an id get their image's path relative to the manifest's
            folder (:func:`path_id`), as :func:`from_inputs` gives files.
        sample: if given, that many rows drawn at random (seeded by ``seed``), in file order.
            Ids do not depend on the rows drawn.
        images: whether the rows need images; ``False`` (tree models alone read only the
            rows' columns): a manifest without ``image_col`` is read, its images blank.

    Raises:
        UsageError: a missing manifest, no rows, a named column it lacks, a repeated id,
            ``sample < 1``.
    """
    path = Path(path)
    drafts = _manifest_drafts(
        path,
        id_col=id_col,
        image_col=image_col,
        target_col=target_col,
        text_col=text_col,
        mask_col=mask_col,
        regions_col=regions_col,
        images=images,
    )
    _check_sample(sample)
    return pick(_settle(drafts), sample, seed)


def blank(value: Any) -> bool:
    """Whether a manifest cell is empty: missing, NaN (a Parquet null) or only spaces."""
    return (
        value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()
    )


def _manifest_drafts(
    path: Path,
    *,
    id_col: str | None,
    image_col: str,
    target_col: str | None,
    text_col: str | None,
    mask_col: str | None,
    rows: list[dict[str, Any]] | None = None,
    regions_col: str | None = None,
    images: bool = True,
) -> list[_Draft]:
    rows = read_table(path) if rows is None else rows
    if not rows:
        raise UsageError(f"manifest {path} has no rows")
    columns = list(rows[0])
    image_key: str | None = image_col
    if not images and image_col not in columns:
        image_key = None  # tree models alone: rows without images
    for flag, col in (
        ("--id-col", id_col),
        ("--image-col", image_key),
        ("--target-col", target_col),
        ("--text-col", text_col),
        ("--mask-col", mask_col),
        ("--regions-col", regions_col),
    ):
        if col is not None and col not in columns:
            raise UsageError(
                f"manifest {path} has no column '{col}' ({flag}){did_you_mean(col, columns)} "
                f"Columns: {', '.join(columns)}"
            )
    base = path.parent
    id_col = id_col or "id"

    def resolve(value: Any) -> str | None:
        if blank(value):
            return None
        p = Path(str(value))
        return str(p if p.is_absolute() else base / p)

    drafts = []
    for n, r in enumerate(rows, start=1):
        image = None if image_key is None else resolve(r[image_key])
        s = Sample(
            id="",
            image_path=image or "",
            text=None if text_col is None or blank(r[text_col]) else str(r[text_col]),
            truth=None if target_col is None else str(r[target_col]),
            mask_path=None if mask_col is None else resolve(r[mask_col]),
            row=r,
            regions_path=None if regions_col is None else resolve(r[regions_col]),
        )
        source = f"row {n} of manifest {path}" + (
            "" if image_key is None else f" ({r[image_key]!r})"
        )
        if id_col in r and not blank(r[id_col]):
            raw_id = str(r[id_col]).strip()
            source = f"row {n} of manifest {path} (id {raw_id!r})"
            drafts.append(_Draft(s, source, safe_id(raw_id), manifest=path, row=n, raw_id=raw_id))
        elif image is None:
            drafts.append(_Draft(s, source, f"row-{n}"))
        else:
            drafts.append(
                _Draft(
                    s,
                    source,
                    path_id(image, base),
                    id_with_suffix=path_id(image, base, keep_suffix=True),
                )
            )
    return drafts


MISSING_ROW = "__seewhy_missing__"
"""The key of a joined row that another manifest lacks: why (see :func:`join_manifests`)."""


def join_manifests(
    paths: Sequence[str | Path], id_col: str, image_col: str = "image_path"
) -> tuple[Path, list[dict[str, Any]]]:
    """The rows of several manifests joined on ``id_col`` (SPEC section 8), and the manifest
    whose folder their relative paths are relative to (the first one with ``image_col``).

    The join keeps every row of the first manifest, in its order: a row whose id another
    manifest lacks carries why under :data:`MISSING_ROW` (the dataset run reports it in
    errors.jsonl and goes on); ids only in the other manifests are not rows. Columns keep the
    first manifest's value where two manifests share a column name.

    Raises:
        UsageError: a manifest without ``id_col``, a repeated id within one manifest, or no id
            common to all of them.
    """
    tables = [(Path(p), read_table(Path(p))) for p in paths]
    keyed: list[dict[str, dict[str, Any]]] = []
    for path, rows in tables:
        if not rows:
            raise UsageError(f"manifest {path} has no rows")
        if id_col not in rows[0]:
            raise UsageError(
                f"manifest {path} has no column '{id_col}' (--id-col)"
                f"{did_you_mean(id_col, list(rows[0]))} Several manifests are joined on it. "
                f"Columns: {', '.join(rows[0])}"
            )
        by_id: dict[str, dict[str, Any]] = {}
        for n, r in enumerate(rows, start=1):
            if blank(r[id_col]):
                continue
            key = str(r[id_col]).strip()
            if key in by_id:
                raise UsageError(
                    f"manifest {path} repeats id '{key}' (row {n}); the manifests are joined on "
                    f"--id-col {id_col}, which needs unique values"
                )
            by_id[key] = r
        keyed.append(by_id)
    first_rows = tables[0][1]
    columns = list(dict.fromkeys(c for _, rows in tables for c in rows[0]))
    base = next((p for p, rows in tables if image_col in rows[0]), tables[0][0])
    joined = []
    for n, r in enumerate(first_rows, start=1):
        if blank(r[id_col]):  # cannot be joined: kept, to be reported
            joined.append(
                {
                    **dict.fromkeys(columns),
                    **r,
                    MISSING_ROW: f"the id cell (--id-col {id_col}) is blank in row {n} of "
                    f"manifest {tables[0][0]}; the manifests are joined on it",
                }
            )
            continue
        key = str(r[id_col]).strip()
        row: dict[str, Any] = dict.fromkeys(columns)  # a lacking manifest's cells: blank
        lacking = [
            p for (p, _), other in zip(tables[1:], keyed[1:], strict=True) if key not in other
        ]
        for other in reversed(keyed):
            row.update(other.get(key, {}))
        if lacking:
            row[MISSING_ROW] = (
                f"id '{key}' has no row in manifest {', '.join(str(p) for p in lacking)} (the "
                f"manifests are joined on --id-col {id_col})"
            )
        joined.append(row)
    if all(MISSING_ROW in r for r in joined):
        names = ", ".join(str(p) for p, _ in tables)
        raise UsageError(
            f"manifests {names} share no value of --id-col {id_col}; check that the id column "
            "holds the same ids in each"
        )
    return base, joined


def from_manifests(
    paths: Sequence[str | Path],
    *,
    id_col: str | None = None,
    image_col: str = "image_path",
    target_col: str | None = None,
    text_col: str | None = None,
    mask_col: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    regions_col: str | None = None,
    images: bool = True,
) -> list[Sample]:
    """Samples from one manifest (:func:`from_manifest`) or several joined on ``id_col``
    (:func:`join_manifests`; default ``id``). Relative paths are relative to the folder of the
    first manifest that has ``image_col``."""
    if len(paths) == 1:
        return from_manifest(
            paths[0],
            id_col=id_col,
            image_col=image_col,
            target_col=target_col,
            text_col=text_col,
            mask_col=mask_col,
            sample=sample,
            seed=seed,
            regions_col=regions_col,
            images=images,
        )
    _check_sample(sample)
    key = id_col or "id"
    base, rows = join_manifests(paths, key, image_col)
    drafts = _manifest_drafts(
        base,
        id_col=key,
        image_col=image_col,
        target_col=target_col,
        text_col=text_col,
        mask_col=mask_col,
        rows=rows,
        regions_col=regions_col,
        images=images,
    )
    return pick(_settle(drafts), sample, seed)


def from_rows(
    rows: Sequence[dict[str, Any]],
    *,
    id_col: str | None = None,
    image_col: str = "image_path",
    target_col: str | None = None,
    text_col: str | None = None,
    mask_col: str | None = None,
    regions_col: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    images: bool = True,
) -> list[Sample]:
    """Samples from rows already in memory (a DataFrame's records), as :func:`from_manifest`
    reads a file's; relative paths are relative to the current folder."""
    _check_sample(sample)
    drafts = _manifest_drafts(
        Path.cwd() / "<rows>",
        id_col=id_col,
        image_col=image_col,
        target_col=target_col,
        text_col=text_col,
        mask_col=mask_col,
        rows=[dict(r) for r in rows],
        regions_col=regions_col,
        images=images,
    )
    return pick(_settle(drafts), sample, seed)
