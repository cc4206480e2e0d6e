"""Tree models beside the tile regressor (issue 13): a features table of the tiles and two tree
models trained on it in about a second, for `seewhy dataset` and `seewhy explain --data`.

The features of tile ``id`` (dataset_fixtures.Tiles) are its pixel shares of water, vegetation
and road (``Tiles.area``) and ``noise``, a seeded gaussian that has nothing to do with the price.
The price is 0.30 + 0.20 water + 0.16 vegetation - 0.20 road (+ a little noise), so a tree model
on these columns learns water and vegetation raising the price, roads lowering it and ``noise``
doing next to nothing: the ground truth its SHAP values are checked against.

The models are trained on tiles of their own (label maps drawn as the fixture draws them, with
their own seed), not on the 120 tiles they explain:

- ``prices.txt``: a LightGBM regressor of the price (LightGBM's text format), card
  ``prices.toml`` (``arch = "lightgbm:prices.txt"``, ``labels = ["price"]``);
- ``clf.json``: an XGBoost binary classifier (one margin) of ``pricey`` (price above the
  training tiles' median), card ``clf.toml`` (``labels = ["cheap", "pricey"]``); the features
  table's ``band`` column holds each tile's true class.

Both are built once per process (pytest worker) under a session folder and copied into each
test's folder with its cards and a fresh ``features.csv``, which a test may edit.

The oracles: :func:`lgb_direct` and :func:`xgb_direct` call shap's TreeExplainer and the
libraries' own predict directly, on the cells read back from the CSV written here.
"""

from __future__ import annotations

import csv
import shutil
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import (
    BASE,
    ROAD,
    ROAD_LOSS,
    VEGETATION,
    VEGETATION_GAIN,
    WATER,
    WATER_GAIN,
    Tiles,
    label_map,
    shares,
)

FEATURES = ("water_share", "vegetation_share", "road_share", "noise")
"""The tree models' columns, in the order they were trained on."""
SHARE_OF = {"water_share": WATER, "vegetation_share": VEGETATION, "road_share": ROAD}
LABELS = ("cheap", "pricey")
NOISE_SEED = 11
TRAIN_ROWS = 800
TRAIN_SEED = 23

PRICES_CARD = textwrap.dedent(
    f"""\
    name = "prices"
    arch = "lightgbm:prices.txt"
    task = "regression"
    labels = ["price"]
    columns = [{", ".join(f'"{c}"' for c in FEATURES)}]
    """
)
CLF_CARD = textwrap.dedent(
    """\
    name = "clf"
    arch = "xgboost:clf.json"
    task = "classification"
    labels = ["cheap", "pricey"]
    """
)


@dataclass(frozen=True)
class TreeModels:
    """The two tree models on disk (in ``folder``), and the price above which a tile is
    ``pricey`` (the training tiles' median)."""

    folder: Path
    threshold: float
    seconds: float


def _training_table(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` tiles' features (FEATURES order) and prices, drawn as dataset_fixtures draws
    the tiles (their label maps; no pixels needed)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, len(FEATURES)))
    y = np.empty(n)
    for k in range(n):
        s = shares(label_map(rng))
        x[k] = [s[WATER], s[VEGETATION], s[ROAD], rng.normal()]
        y[k] = BASE + WATER_GAIN * s[WATER] + VEGETATION_GAIN * s[VEGETATION] - ROAD_LOSS * s[ROAD]
        y[k] += rng.normal(0.0, 0.002)
    return x, y


def train_trees(folder: Path) -> TreeModels:
    import lightgbm as lgb
    import xgboost as xgb

    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    x, y = _training_table(TRAIN_ROWS, TRAIN_SEED)
    params = {
        "objective": "regression",
        "num_leaves": 8,
        "min_data_in_leaf": 3,
        "learning_rate": 0.1,
        "verbose": -1,
        "seed": 0,
        "deterministic": True,
        "num_threads": 1,
    }
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=list(FEATURES)), 80)
    booster.save_model(str(folder / "prices.txt"))
    threshold = float(np.median(y))
    clf = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": 0, "nthread": 1},
        xgb.DMatrix(x, (y > threshold).astype(int), feature_names=list(FEATURES)),
        60,
    )
    clf.save_model(str(folder / "clf.json"))
    return TreeModels(folder, threshold, time.perf_counter() - start)


_BUILT: dict[str, TreeModels] = {}


def trained_trees(factory: pytest.TempPathFactory) -> TreeModels:
    """The two tree models, trained once per process (pytest worker)."""
    if "trees" not in _BUILT:
        _BUILT["trees"] = train_trees(factory.mktemp("tree_models"))
    return _BUILT["trees"]


# -- a test's folder ----------------------------------------------------------------------------
def feature_rows(tiles: Tiles) -> dict[str, dict[str, float]]:
    """id -> its features: the tile's pixel shares (the fixture's ground truth) and a seeded
    gaussian ``noise``."""
    noise = np.random.default_rng(NOISE_SEED).normal(size=len(tiles.ids))
    out = {}
    for k, i in enumerate(tiles.ids):
        row = {c: float(tiles.area[i][cls]) for c, cls in SHARE_OF.items()}
        row["noise"] = float(noise[k])
        out[i] = row
    return out


def pricey(tiles: Tiles, models: TreeModels) -> dict[str, str]:
    """id -> its true class: ``pricey`` above the training median, else ``cheap``."""
    return {i: LABELS[int(tiles.truth[i] > models.threshold)] for i in tiles.ids}


def write_features(folder: Path, tiles: Tiles, models: TreeModels) -> Path:
    """folder/features.csv: id, the four features (written with repr: read back exactly) and
    ``band``, the true class (cheap / pricey); rows in reverse order (the join is by id)."""
    rows = feature_rows(tiles)
    classes = pricey(tiles, models)
    path = folder / "features.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *FEATURES, "band"])
        for i in reversed(tiles.ids):
            w.writerow([i, *(repr(rows[i][c]) for c in FEATURES), classes[i]])
    return path


def write_subset(folder: Path, tiles: Tiles, n: int) -> Path:
    """folder/subset.csv: the first ``n`` tiles (id, image and label map by absolute path,
    price), a small image manifest for runs that draw figures."""
    path = folder / "subset.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path", "regions", "price"])
        for i in tiles.ids[:n]:
            w.writerow(
                [
                    i,
                    str(tiles.folder / "tiles" / f"{i}.png"),
                    str(tiles.folder / "labels" / f"{i}.png"),
                    tiles.truth[i],
                ]
            )
    return path


def write_merged(folder: Path, tiles: Tiles, models: TreeModels) -> Path:
    """folder/merged.csv: one manifest with the image (absolute path), the true price and the
    features, for `seewhy explain --data`."""
    rows = feature_rows(tiles)
    path = folder / "merged.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path", "price", *FEATURES])
        for i in tiles.ids:
            image = tiles.folder / "tiles" / f"{i}.png"
            w.writerow([i, str(image), tiles.truth[i], *(repr(rows[i][c]) for c in FEATURES)])
    return path


def tree_project(folder: Path, tiles: Tiles, models: TreeModels) -> Path:
    """``folder`` with prices.txt + prices.toml, clf.json + clf.toml and features.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("prices.txt", "clf.json"):
        shutil.copy(models.folder / name, folder / name)
    (folder / "prices.toml").write_text(PRICES_CARD)
    (folder / "clf.toml").write_text(CLF_CARD)
    write_features(folder, tiles, models)
    return folder


def set_cell(path: Path, row_id: str, column: str, value: str) -> None:
    """Rewrite one cell of a CSV manifest (the row with id ``row_id``)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    for r in rows:
        if r["id"] == row_id:
            r[column] = value
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)


def read_features(path: Path) -> dict[str, np.ndarray]:
    """id -> its feature vector (FEATURES order), read back from a manifest's cells (a row
    with a cell that is not a number is left out)."""
    out = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            try:
                out[r["id"]] = np.array([float(r[c]) for c in FEATURES])
            except ValueError:
                continue
    return out


# -- the oracles --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Direct:
    """shap's TreeExplainer and the library's predict, called directly on rows ``x``."""

    values: np.ndarray  # [N, F] SHAP values of the raw output (the margin for classifiers)
    expected_value: float
    raw: np.ndarray  # [N] the raw output: the price, or the margin
    predict: np.ndarray  # [N] the price, or P(pricey) = sigmoid(margin)


def lgb_direct(model_file: Path, x: np.ndarray, background: np.ndarray | None = None) -> Direct:
    import lightgbm as lgb
    import shap

    booster = lgb.Booster(model_file=str(model_file))
    if background is None:
        explainer = shap.TreeExplainer(booster)
    else:
        explainer = shap.TreeExplainer(
            booster, data=background, feature_perturbation="interventional"
        )
    values = np.asarray(explainer.shap_values(x), dtype=np.float64)
    y = booster.predict(x)
    return Direct(values, float(np.ravel(explainer.expected_value)[0]), y, y)


def xgb_direct(model_file: Path, x: np.ndarray) -> Direct:
    import pandas as pd
    import shap
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(model_file))
    frame = pd.DataFrame(x, columns=list(FEATURES))
    explainer = shap.TreeExplainer(booster)
    values = np.asarray(explainer.shap_values(frame), dtype=np.float64)
    data = xgb.DMatrix(x, feature_names=list(FEATURES))
    margin = booster.predict(data, output_margin=True).astype(np.float64)
    # P(pricey) from the margin in float64 (XGBoost's own predict rounds it to float32)
    proba = 1.0 / (1.0 + np.exp(-margin))
    np.testing.assert_allclose(proba, booster.predict(data), atol=1e-6)
    return Direct(values, float(np.ravel(explainer.expected_value)[0]), margin, proba)
