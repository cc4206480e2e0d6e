"""`seewhy dataset` (issue 12): rows per second against the forward floor, figures, a notebook
loop, cohorts, and peak memory at 1,000 vs 10,000 rows.

    .venv/bin/python benchmarks/dataset.py           # 2,000 rows at 224 px; prints the table
    .venv/bin/python benchmarks/dataset.py --write   # ... and puts it in RESULTS.md
    .venv/bin/python benchmarks/dataset.py --quick   # tiny sizes: does it work? (prints only)

Setup (in a temp folder): ``--rows`` PNG images of ``--side`` px (smooth random colour fields
with a little pixel noise), a manifest CSV (``id``, ``image_path``, ``y``: a number), and a
torchvision resnet18 regressor (``weights=None``, 1 output, seeded; nothing is downloaded)
saved as a state_dict and loaded through a model card (``models.py:regressor``, task
``regression``, layer ``layer4``, input ``--side`` px with ImageNet mean and std).

Contenders, timed in interleaved rounds (``common.measure``: the starting contender rotates each
round, after a warm-up on a few rows; medians):

- ``floor``: the same model, in this process, forward only under ``torch.inference_mode`` on
  the same images read by a ``torch.utils.data.DataLoader`` with the same workers and batch
  size, each item decoded by seewhy's ``decode_image`` and preprocessed by the card's
  ``Preprocess`` (decoding counted). Worker start-up is counted too (a fresh loader per run).
- ``seewhy dataset --explain all --no-figures``: the CLI in a subprocess (``--method gradcam
  --target value --no-report --quiet``), from start to exit; a fresh output folder per run.
- the same with figures (per-row 4-panel figures): what figures cost.
- ``seewhy dataset`` with the default ``--explain cohorts`` (a prediction pass over every row,
  then gradcam on the cohorts' members).
- start-up runs: ``--explain all`` (with and without figures) on the first ``--start-rows``
  rows. Process start, imports, model load, loader start-up and the final compile are in both
  the full and the start-up run, so ``(rows - start_rows) / (T_full - T_start)`` is the
  workflow's own rate (the marginal rows per second, start-up excluded).
- ``notebook loop``: what users write today, in this process: per image ``PIL.Image.open``, a
  torchvision transform (Resize, ToTensor, Normalize), a hand-written Grad-CAM (forward hook on
  ``layer4`` keeping the activation, a tensor hook for its gradient, backward of the output,
  channel weights = mean gradient, ReLU of the weighted sum, bilinear upsampling to the input,
  scaled to 0..1) and ``np.save`` of the map, one image at a time (its own rate is the
  relevant number: it has no start-up); on the first ``--notebook-rows`` rows (500 by default:
  its rate is steady and it is the slowest contender).

Peak memory (``--memory-rows``, default 1,000 and 10,000): ``seewhy dataset --explain all
--no-figures`` on ``--memory-side`` px images (64 by default, the same for both sizes; the
10,000-row run is about rows, not pixels; layer4 is then 2x2) and a card of the same input
size, run once each. Two numbers per run: the peak RSS of the seewhy process (``os.wait4``'s
``ru_maxrss``: the largest of the process and its waited-for children, i.e. the DataLoader
workers, each alone), and the peak of the sum of RSS over the process tree (``/proc`` polled
every 50 ms). Target: flat within 10% from 1,000 to 10,000 rows.

Torch threads: ``--threads`` sets this process's and, through ``OMP_NUM_THREADS``, the seewhy
subprocesses' (0: torch's default in both).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import Run, measure, publish

warnings.filterwarnings("ignore")

MODELS_PY = textwrap.dedent(
    '''
    """The benchmark's regressor: torchvision resnet18, random weights, one output."""
    import torchvision


    def regressor():
        return torchvision.models.resnet18(weights=None, num_classes=1)
    '''
)

CARD = textwrap.dedent(
    """
    name = "resnet18_reg"
    arch = "models.py:regressor"
    checkpoint = "resnet18_reg.pt"
    task = "regression"
    layer = "layer4"

    [preprocess]
    size = {size}
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    """
).lstrip()


# -- the data and the model ----------------------------------------------------------------------
def write_images(folder: Path, rows: int, side: int, name: str = "rows.csv") -> Path:
    """``rows`` PNGs (smooth random colour fields, 1/8 of ``side`` upsampled, plus pixel noise)
    and a manifest ``id,image_path,y`` beside them (paths relative to it)."""
    from PIL import Image

    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    coarse = max(2, side // 8)
    lines = []
    for i in range(rows):
        small = (rng.random((coarse, coarse, 3)) * 255).astype(np.uint8)
        big = np.asarray(Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR))
        noisy = np.clip(big.astype(np.int16) + rng.integers(-6, 7, big.shape), 0, 255)
        path = img_dir / f"r{i:05d}.png"
        Image.fromarray(noisy.astype(np.uint8)).save(path)
        lines.append((f"r{i:05d}", f"images/{path.name}", f"{float(big.mean()) / 255:.6f}"))
    return manifest(folder / name, lines)


def manifest(path: Path, lines: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image_path", "y"])
        w.writerows(lines)
    return path


def head_manifest(src: Path, rows: int, name: str) -> Path:
    """The first ``rows`` rows of a manifest, beside it (the same image paths)."""
    with src.open() as f:
        lines = [tuple(r) for r in list(csv.reader(f))[1 : rows + 1]]
    return manifest(src.parent / name, lines)  # type: ignore[arg-type]


def write_model(folder: Path, size: int) -> Path:
    """models.py, the seeded state_dict and the card (input ``size`` px); returns the card."""
    import torchvision

    (folder / "models.py").write_text(MODELS_PY)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=1)
    torch.save(net.state_dict(), folder / "resnet18_reg.pt")
    card = folder / "card.toml"
    card.write_text(CARD.replace("{size}", str(size)))
    return card


# -- the floor and the notebook loop (in this process) ------------------------------------------
class Decoded(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Manifest rows -> the model's input tensors: seewhy's decode_image + the card's
    Preprocess (the reading the workflow's DataLoader workers do)."""

    def __init__(self, paths: list[Path], preprocess: Any) -> None:
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from seewhy.data.images import decode_image

        d = decode_image(self.paths[i], bit_depth=self.preprocess.bit_depth)
        return self.preprocess([d.image])[0]


def image_paths(csv_path: Path) -> list[Path]:
    with csv_path.open() as f:
        return [csv_path.parent / r["image_path"] for r in csv.DictReader(f)]


def floor_run(net: torch.nn.Module, preprocess: Any, paths: list[Path], args: Any) -> Run:
    def run() -> object:
        loader = torch.utils.data.DataLoader(
            Decoded(paths, preprocess),
            batch_size=args.batch_size,
            shuffle=False,
            num_workers=args.workers,
            prefetch_factor=2 if args.workers else None,
        )
        out = []
        with torch.inference_mode():
            for x in loader:
                out.append(net(x)[:, 0])
        return torch.cat(out)

    return run


def notebook_run(net: torch.nn.Module, paths: list[Path], maps: Path, side: int) -> Run:
    """Per image: PIL, a torchvision transform, a hand-written Grad-CAM on layer4, np.save."""
    import torch.nn.functional as F
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.Resize((side, side)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    store: dict[str, torch.Tensor] = {}

    def keep(_m: Any, _i: Any, out: torch.Tensor) -> None:
        store["act"] = out
        out.register_hook(lambda g: store.__setitem__("grad", g))

    def run() -> object:
        maps.mkdir(parents=True, exist_ok=True)
        handle = net.layer4.register_forward_hook(keep)  # type: ignore[union-attr]
        try:
            for p in paths:
                x = tf(Image.open(p).convert("RGB")).unsqueeze(0)
                net.zero_grad()
                out = net(x)
                out[0, 0].backward()
                act, grad = store["act"].detach(), store["grad"]
                w = grad.mean(dim=(2, 3), keepdim=True)
                cam = F.relu((w * act).sum(1, keepdim=True))
                cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
                cam = cam[0, 0]
                cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)
                np.save(maps / f"{p.stem}.npy", cam.numpy().astype(np.float32))
        finally:
            handle.remove()
        return None

    return run


# -- seewhy dataset in a subprocess --------------------------------------------------------------
def seewhy_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "seewhy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "seewhy"]


def child_env(args: Any) -> dict[str, str]:
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    env.pop("COLUMNS", None)
    return env


class Workflow:
    """``seewhy dataset MANIFEST ...`` from start to exit, into a fresh output folder each run
    (a reused folder would resume, i.e. skip the rows). The last run's summary is kept."""

    def __init__(self, csv_path: Path, card: Path, work: Path, args: Any, *extra: str) -> None:
        self.csv, self.card, self.work, self.args, self.extra = csv_path, card, work, args, extra
        self.summary: dict[str, Any] = {}
        self.runs = 0

    def command(self, out: Path) -> list[str]:
        a = self.args
        return [
            *seewhy_cmd(),
            "dataset",
            str(self.csv),
            "-m",
            str(self.card),
            "--target-col",
            "y",
            "--target",
            "value",
            "--method",
            "gradcam",
            "--no-report",
            "--quiet",
            "--workers",
            str(a.workers),
            "--batch-size",
            str(a.batch_size),
            "--out",
            str(out),
            *self.extra,
        ]

    def __call__(self) -> object:
        self.runs += 1
        out = self.work / f"out-{os.getpid()}-{id(self)}-{self.runs}"
        proc = subprocess.run(
            self.command(out), env=child_env(self.args), capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"seewhy dataset exited {proc.returncode}: {' '.join(self.command(out))}\n"
                f"{proc.stderr[-3000:]}"
            )
        self.summary = json.loads((out / "summary.json").read_text())
        shutil.rmtree(out, ignore_errors=True)
        return None


# -- peak memory ---------------------------------------------------------------------------------
def tree_rss(root: int) -> int:
    """Sum of RSS (bytes) over ``root`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * page
    keep, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in keep:
                keep.add(child)
                frontier.append(child)
    return sum(rss.get(p, 0) for p in keep)


def peak_memory(wf: Workflow) -> tuple[float, float, float]:
    """(seconds, peak RSS of the largest process, peak summed RSS of the tree), both in MB."""
    out = wf.work / f"mem-{wf.csv.stem}"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.Popen(
        wf.command(out),
        env=child_env(wf.args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            with contextlib.suppress(Exception):
                peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    err = proc.stderr.read() if proc.stderr else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    done.set()
    poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"seewhy dataset exited {proc.returncode}:\n{err[-3000:]}")
    wf.summary = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return seconds, usage.ru_maxrss / 1024, peak[0] / 2**20


# -- the run -------------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--side", type=int, default=224, help="image side for the timed runs (px)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--reps", type=int, default=1, help="interleaved rounds (medians)")
    ap.add_argument(
        "--start-rows", type=int, default=0, help="rows of the start-up runs (0: 2 x batch size)"
    )
    ap.add_argument(
        "--notebook-rows",
        type=int,
        default=500,
        help="rows of the notebook loop, the first of --rows (its rate is steady; 0: all)",
    )
    ap.add_argument("--memory-rows", default="1000,10000", help="two row counts ('' to skip)")
    ap.add_argument("--memory-side", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that it works")
    ap.add_argument("--write", action="store_true", help="put the block in RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.side, args.reps, args.batch_size = 24, 64, 1, 8
        args.notebook_rows = min(args.notebook_rows or 8, 8)
        args.memory_rows = "16,48"
        args.memory_side = 64
    if args.threads:
        torch.set_num_threads(args.threads)
    start_rows = args.start_rows or 2 * args.batch_size
    if start_rows >= args.rows:
        ap.error(f"--start-rows {start_rows} must be below --rows {args.rows}")
    nb_rows = min(args.notebook_rows or args.rows, args.rows)
    load_start = os.getloadavg()[0]
    began = time.perf_counter()

    import seewhy

    work = Path(tempfile.mkdtemp(prefix="seewhy-bench-dataset-"))
    try:
        t = time.perf_counter()
        data = work / "timed"
        rows_csv = write_images(data, args.rows, args.side)
        start_csv = head_manifest(rows_csv, start_rows, "start.csv")
        warm_csv = head_manifest(rows_csv, min(args.rows, args.batch_size), "warm.csv")
        card = write_model(data, args.side)
        print(f"[setup: {args.rows} images, {time.perf_counter() - t:.0f} s]", file=sys.stderr)

        model = seewhy.load_model(card)
        net, preprocess = model.module.eval(), model.preprocess
        paths = image_paths(rows_csv)
        flags = ("--explain", "all")
        nofig = Workflow(rows_csv, card, work, args, *flags, "--no-figures")
        fig = Workflow(rows_csv, card, work, args, *flags)
        cohorts = Workflow(rows_csv, card, work, args)
        start_nofig = Workflow(start_csv, card, work, args, *flags, "--no-figures")
        start_fig = Workflow(start_csv, card, work, args, *flags)
        notebook = notebook_run(net, paths[:nb_rows], work / "notebook-maps", args.side)
        warm_runs: list[Run] = [
            floor_run(net, preprocess, paths[: args.batch_size], args),
            notebook_run(net, paths[:2], work / "notebook-maps", args.side),
        ]
        if not args.quick:  # the subprocess's imports and files into the OS cache
            warm_runs.append(Workflow(warm_csv, card, work, args, *flags))
        names = {
            "floor": "floor: DataLoader (decode_image + preprocess) + forward",
            "nofig": "seewhy dataset --explain all --no-figures",
            "fig": "seewhy dataset --explain all (figures on)",
            "cohorts": "seewhy dataset (--explain cohorts, the default)",
            "notebook": "notebook loop: PIL + transform + hooks Grad-CAM, 1 image at a time",
            "start_nofig": f"start-up: --explain all --no-figures on {start_rows} rows",
            "start_fig": f"start-up: --explain all (figures) on {start_rows} rows",
        }
        t = time.perf_counter()
        sec = measure(
            {
                "floor": floor_run(net, preprocess, paths, args),
                "nofig": nofig,
                "fig": fig,
                "cohorts": cohorts,
                "notebook": notebook,
                "start_nofig": start_nofig,
                "start_fig": start_fig,
            },
            args.reps,
            warmup=lambda: [r() for r in warm_runs],
        )
        print(f"[timed runs: {time.perf_counter() - t:.0f} s]", file=sys.stderr)
        count = {k: args.rows for k in sec}
        count["notebook"] = nb_rows
        count["start_nofig"] = count["start_fig"] = start_rows
        rate = {k: count[k] / v for k, v in sec.items()}
        floor = rate["floor"]
        marginal = {
            k: (args.rows - start_rows) / (sec[k] - sec[s]) if sec[k] > sec[s] else float("nan")
            for k, s in (("nofig", "start_nofig"), ("fig", "start_fig"))
        }
        explained = cohorts.summary.get("dataset", {}).get("explained", "?")
        checked = nofig.summary.get("dataset", {})

        def row(k: str, note: str = "") -> str:
            own = marginal.get(k)
            own_txt = f"{own:.1f} ({own / floor:.2f}x)" if own is not None else ""
            return (
                f"| {names[k]} | {count[k]} | {sec[k]:.1f} | {rate[k]:.1f} | "
                f"{rate[k] / floor:.2f}x | {own_txt} | {note} |"
            )

        fig_cost = (
            1 / marginal["fig"] - 1 / marginal["nofig"]
            if all(v == v for v in marginal.values())
            else float("nan")
        )
        table = [
            "| contender | rows | seconds | rows/s (end to end) | x floor | rows/s own "
            "(start-up excluded; x floor) | notes |",
            "|---|---:|---:|---:|---:|---:|---|",
            row("floor", "in this process; loader start-up counted"),
            row(
                "nofig",
                f"subprocess, start to exit; {checked.get('explained', '?')} explained, "
                f"{checked.get('failed', '?')} failed",
            ),
            row("fig", f"figures: {fig_cost * 1000:.0f} ms per row more (own rates)"),
            row("cohorts", f"prediction pass + gradcam on {explained} cohort members"),
            row("notebook", "in this process (no start-up)"),
            row("start_nofig", "process start, imports, model load, loader, compile"),
            row("start_fig", ""),
        ]
        target = marginal["nofig"] / floor
        e2e = rate["nofig"] / floor
        verdict = [
            f"- `--explain all --no-figures`: {e2e:.2f}x the floor end to end, {target:.2f}x "
            f"start-up excluded; target >= 0.8x: {'met' if target >= 0.8 else 'MISSED'} "
            f"(start-up excluded), {'met' if e2e >= 0.8 else 'missed'} (end to end).",
            f"- against the notebook loop: {rate['nofig'] / rate['notebook']:.1f}x faster end "
            f"to end, {marginal['nofig'] / rate['notebook']:.1f}x start-up excluded.",
        ]

        mem_lines: list[str] = []
        sizes = [int(s) for s in args.memory_rows.split(",") if s.strip()]
        if sizes:
            mem = []
            for n in sizes:
                t = time.perf_counter()
                folder = work / f"mem{n}"
                mcsv = write_images(folder, n, args.memory_side, name=f"mem{n}.csv")
                mcard = write_model(folder, args.memory_side)
                wf = Workflow(mcsv, mcard, work, args, *flags, "--no-figures")
                print(f"[memory setup {n}: {time.perf_counter() - t:.0f} s]", file=sys.stderr)
                s, largest, tree = peak_memory(wf)
                mem.append((n, s, largest, tree, wf.summary.get("dataset", {})))
                shutil.rmtree(folder, ignore_errors=True)
            mem_lines = [
                "",
                f"Peak memory, `seewhy dataset --explain all --no-figures` on {args.memory_side}"
                f" px images and a card of {args.memory_side} px input (the same for every "
                "row count; the rows are what grows), one run each:",
                "",
                "| rows | seconds | explained | peak RSS, largest process (MB) | "
                "peak RSS, process tree summed (MB) |",
                "|---:|---:|---:|---:|---:|",
                *[
                    f"| {n} | {s:.1f} | {d.get('explained', '?')} | {lg:.0f} | {tr:.0f} |"
                    for n, s, lg, tr, d in mem
                ],
            ]
            if len(mem) >= 2:
                (n0, _, l0, t0, _), (n1, _, l1, t1, _) = mem[0], mem[-1]
                ok = l1 <= 1.10 * l0 and t1 <= 1.10 * t0
                mem_lines += [
                    "",
                    f"- {n1} vs {n0} rows: largest process {l1 / l0:.2f}x, tree {t1 / t0:.2f}x;"
                    f" target flat within 10%: {'met' if ok else 'MISSED'}.",
                ]

        from importlib.metadata import version

        begin, end = "<!-- dataset:begin -->", "<!-- dataset:end -->"
        quick = " --quick (sizes too small to mean anything)" if args.quick else ""
        lines = [
            begin,
            f"## `seewhy dataset` (`benchmarks/dataset.py`{quick})",
            "",
            f"{datetime.date.today()}, cpu: {cpu_model()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__}, torchvision {version('torchvision')}, "
            f"{torch.get_num_threads()} torch thread(s); load average (1 min) {load_start:.1f} "
            f"at the start, {os.getloadavg()[0]:.1f} at the end. {args.rows} PNG images of "
            f"{args.side}x{args.side}, resnet18 regressor (random weights, 1 output, card + "
            f"state_dict + factory file), gradcam at `layer4`, target `value`, batch "
            f"{args.batch_size}, {args.workers} DataLoader worker(s); {args.reps} interleaved "
            f"round(s) after a warm-up on {args.batch_size} rows, medians. Rows/s own = "
            f"(rows - {start_rows}) / (seconds - the start-up run's seconds): the start-up run "
            f"does the same on the first {start_rows} rows, so process start, imports, model "
            "load, loader start-up and the final compile cancel out. The notebook loop ran "
            f"{nb_rows} rows. Total {time.perf_counter() - began:.0f} s.",
            "",
            *table,
            "",
            *verdict,
            *mem_lines,
            end,
        ]
        publish("\n".join(lines), begin, end, write=args.write)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
