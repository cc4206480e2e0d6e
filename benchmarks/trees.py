"""tree-shap (issue 13): shap's TreeExplainer per 10,000 rows for LightGBM, XGBoost and a
scikit-learn forest, interventional (100 background rows) and path-dependent, against each
model's own predict on the same rows.

    .venv/bin/python benchmarks/trees.py            # prints the table
    .venv/bin/python benchmarks/trees.py --write    # ... and puts it in RESULTS.md
    .venv/bin/python benchmarks/trees.py --quick    # 1,000 rows, small models

A second table times ``seewhy dataset`` end to end on the same rows written as a CSV manifest
(LightGBM, ``--explain all --no-figures --no-report``, a subprocess from start to exit) against
its floor: the same CSV read with pandas, the model's predict and the path-dependent
TreeExplainer, in this process.

Models are trained here on generated data (20 features, the target from two of them), saved in
their own safe formats and loaded through seewhy's card loader, as a user's would be. Times are
medians of ``--reps`` rounds, interleaved by ``common.measure``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure, publish

BEGIN, END = "<!-- trees:begin -->", "<!-- trees:end -->"


def train(folder: Path, x: np.ndarray, y: np.ndarray, columns: list[str], trees: int) -> dict:
    import lightgbm as lgb
    import pandas as pd
    import skops.io as sio
    import xgboost as xgb
    from sklearn.ensemble import RandomForestRegressor

    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 31, "seed": 0},
        lgb.Dataset(x, y, feature_name=columns),
        trees,
    )
    booster.save_model(str(folder / "m.txt"))
    xb = xgb.train(
        {"max_depth": 6, "eta": 0.1, "seed": 0}, xgb.DMatrix(x, y, feature_names=columns), trees
    )
    xb.save_model(str(folder / "m.json"))
    forest = RandomForestRegressor(n_estimators=trees, max_depth=8, random_state=0, n_jobs=1)
    forest.fit(pd.DataFrame(x, columns=columns), y)
    sio.dump(forest, str(folder / "m.skops"))
    return {"lightgbm": "lightgbm:m.txt", "xgboost": "xgboost:m.json", "sklearn": "sklearn:m.skops"}


def end_to_end(folder: Path, rows: np.ndarray, columns: list[str], reps: int) -> str:
    """``seewhy dataset`` on ``rows`` (LightGBM, every row explained) against its floor."""
    import os
    import subprocess

    import pandas as pd

    from seewhy.methods.tabular import TreeShap
    from seewhy.models.tabular import load_tabular

    manifest = folder / "rows.csv"
    frame = pd.DataFrame(rows, columns=columns)
    frame.insert(0, "id", [f"r{i}" for i in range(len(rows))])
    frame.to_csv(manifest, index=False)
    frame.head(10).to_csv(folder / "ten.csv", index=False)
    (folder / "m.toml").write_text('arch = "lightgbm:m.txt"\ntask = "regression"\n')
    seewhy = str(Path(sys.executable).with_name("seewhy"))
    run = 0

    def cli(table: Path) -> None:
        nonlocal run
        run += 1
        cmd = [
            seewhy,
            "dataset",
            str(table),
            "-m",
            str(folder / "m.toml"),
            "--explain",
            "all",
            "--no-figures",
            "--no-report",
            "--quiet",
            "--out",
            str(folder / f"o{run}"),
        ]
        subprocess.run(cmd, check=True, env={**os.environ}, capture_output=True)

    def floor() -> None:
        model = load_tabular({"arch": "lightgbm:m.txt", "task": "regression"}, folder)
        x = pd.read_csv(manifest)[columns].to_numpy()
        model.predict(x)
        TreeShap(check_additivity=False)(model, x)

    sec = measure(
        {
            "floor": floor,
            "seewhy": lambda: cli(manifest),
            "start": lambda: cli(folder / "ten.csv"),
        },
        reps,
        warmup=floor,
    )
    n = len(rows)
    work = max(sec["seewhy"] - sec["start"], 1e-9)
    return "\n".join(
        [
            "",
            f"`seewhy dataset` end to end on the {n:,} rows as a CSV manifest (LightGBM, "
            "`--explain all --no-figures --no-report`, a subprocess from start to exit) against "
            "its floor (pandas reads the CSV, predict, path-dependent TreeExplainer, in a "
            "process that has already imported everything). Start-up: the same command on 10 "
            "rows (imports, model load, writing the folder).",
            "",
            "| contender | s | rows/s | x floor |",
            "|---|---:|---:|---:|",
            f"| floor | {sec['floor']:.2f} | {n / sec['floor']:,.0f} | 1.00x |",
            f"| seewhy dataset | {sec['seewhy']:.2f} | {n / sec['seewhy']:,.0f} | "
            f"{sec['floor'] / sec['seewhy']:.2f}x |",
            f"| seewhy dataset, start-up ({sec['start']:.2f} s) excluded | {work:.2f} | "
            f"{n / work:,.0f} | {sec['floor'] / work:.2f}x |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--background", type=int, default=100)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.trees, args.reps = 1000, 20, 1

    from seewhy.methods.tabular import TreeShap
    from seewhy.models.tabular import load_tabular

    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(20)]
    x = rng.normal(size=(args.rows + 5000, 20))
    y = 3 * x[:, 0] - 2 * x[:, 1] + 0.1 * rng.normal(size=len(x))
    train_x, train_y, rows = x[:5000], y[:5000], x[5000:]
    background = train_x[: args.background]
    lines = []
    shap_ = TreeShap(check_additivity=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        archs = train(folder, train_x, train_y, columns, args.trees)
        for kind, arch in archs.items():
            model = load_tabular({"arch": arch, "task": "regression", "columns": columns}, folder)
            funcs = {
                "predict": lambda m=model: m.predict(rows),
                "path": lambda m=model: shap_(m, rows),
                "interventional": lambda m=model: shap_(m, rows, background=background),
            }
            sec = measure(funcs, args.reps, warmup=lambda m=model: shap_(m, rows[:50]))
            per = 10_000 / args.rows
            lines.append(
                f"| {kind} | {sec['predict'] * per:.3f} | {sec['path'] * per:.2f} "
                f"({sec['path'] / sec['predict']:.0f}x) | {sec['interventional'] * per:.2f} "
                f"({sec['interventional'] / sec['predict']:.0f}x) |"
            )
            print(f"[{kind} done]", file=sys.stderr)
        tail = end_to_end(folder, rows, columns, args.reps)
    import shap
    import torch

    text = "\n".join(
        [
            BEGIN,
            "## tree-shap (`benchmarks/trees.py`)",
            "",
            f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
            f"torch threads {torch.get_num_threads()}, shap {shap.__version__}. "
            f"{args.rows} rows explained (20 features, the target from 2), models of "
            f"{args.trees} trees trained on 5,000 other rows, loaded through seewhy's card "
            f"loader; interventional with {args.background} background rows. Seconds per "
            f"10,000 rows, medians of {args.reps} interleaved round(s); in brackets, x the "
            "model's own predict on the same rows.",
            "",
            "| model | predict (s) | tree-shap path-dependent (s) | tree-shap interventional (s) |",
            "|---|---:|---:|---:|",
            *lines,
            tail,
            END,
        ]
    )
    publish(text, BEGIN, END, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
