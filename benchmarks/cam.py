"""CAM speed: seewhy against the floor and against its peers, in one run.

    .venv/bin/python benchmarks/cam.py                # full table -> benchmarks/RESULTS.md
    .venv/bin/python benchmarks/cam.py --quick        # smoke run (well under 2 min), prints only
    .venv/bin/python benchmarks/cam.py --device cuda  # the same on a GPU

The floor is what any Grad-CAM must pay: one forward and one backward down to the CAM layer with
the parameters frozen (written by hand below: a forward hook makes the layer output a leaf that
requires grad, then ``torch.autograd.grad`` of the target score w.r.t. it). Every contender is
warmed up, then the contenders run round-robin, one repetition each per round (the starting
contender rotates from round to round), so background load on a shared machine hits them alike;
medians are reported, and the ratios to the floor are what matter. Beside the wall-clock median
the table gives the ratio of median process CPU time, which a busy machine disturbs less.

Score-CAM is timed apart, on torchvision resnet18 (``layer4``): seewhy against pytorch-grad-cam,
both sending the same number of masked inputs through the model per forward (``batch_size``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seewhy.core.engine import bf16_native
from seewhy.core.inputs import Inputs
from seewhy.core.model import Model
from seewhy.core.targets import PredictedClass
from seewhy.methods.cam import CAM
from seewhy.methods.registry import create_method

warnings.filterwarnings("ignore")
FIVE = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"]
HERE = Path(__file__).resolve().parent
SIDE = 224
TARGETS = {"seewhy gradcam": 1.10, "seewhy 5 CAMs (one run_many)": 1.15}
SCORECAM_SPEEDUP = 2.0


def tokens_to_grid(t: torch.Tensor) -> torch.Tensor:
    """ViT tokens ``[B, 1 + 14 * 14, C]`` -> ``[B, C, 14, 14]``, the class token dropped."""
    return t[:, 1:, :].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)


def _timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


def _torchvision(name: str) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None)


@dataclass(frozen=True)
class Arch:
    """A benchmarked model: how to build it, its CAM layer, and the token reshape peers need."""

    build: Callable[[], nn.Module]
    layer: str
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None


ARCHS = {
    "resnet18": Arch(lambda: _torchvision("resnet18"), "layer4"),  # --quick only, by default
    "resnet50": Arch(lambda: _torchvision("resnet50"), "layer4"),
    "convnext_tiny": Arch(lambda: _timm("convnext_tiny"), "stages.3"),
    "tf_efficientnetv2_s": Arch(lambda: _timm("tf_efficientnetv2_s"), "blocks.5"),
    "vit_small_patch16_224": Arch(
        lambda: _timm("vit_small_patch16_224"), "blocks.11.norm1", tokens_to_grid
    ),
}

THREADS_NOTE = (
    "One thread (`--threads 1`): on this shared 2-core machine, other jobs held the cores, and "
    "with two threads each parallel region waits at its barrier for a descheduled thread: a "
    "resnet18 batch-2 floor took 1.6 s with two threads against 0.14 s with one, so two-thread "
    "timings measured the scheduler rather than the tools.\n\n"
)
DEFAULT = ["resnet50", "convnext_tiny", "tf_efficientnetv2_s", "vit_small_patch16_224"]
Run = Callable[[], object]


@dataclass
class Row:
    model: str
    contender: str
    wall: float  # median seconds
    cpu: float  # median process CPU seconds
    ratio: str = ""
    cpu_ratio: str = ""


def floor(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> Run:
    """Forward + backward down to the layer, parameters frozen: the least a Grad-CAM costs."""

    def run() -> object:
        store: dict[str, torch.Tensor] = {}

        def hook(module: nn.Module, args: object, out: torch.Tensor) -> torch.Tensor:
            leaf = out.detach().requires_grad_(True)
            store["a"] = leaf
            return leaf.clone()  # in-place ops after the layer stay legal

        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        handle = layer.register_forward_hook(hook)
        try:
            out = model(x)
            score = out.gather(1, out.argmax(1, keepdim=True)).sum()
            return torch.autograd.grad(score, store["a"])
        finally:
            handle.remove()
            for p, f in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(f)

    return run


def captum_runner(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> Run:
    """captum LayerGradCam at the predicted class (captum needs the class up front: one more
    forward), interpolated to the input size as the other tools' maps are."""
    from captum.attr import LayerAttribution, LayerGradCam

    lgc = LayerGradCam(model, layer)

    def run() -> object:
        with torch.no_grad():
            cls = model(x).argmax(1)
        a = lgc.attribute(x, target=cls, relu_attributions=True)
        return LayerAttribution.interpolate(a, (SIDE, SIDE), interpolate_mode="bilinear")

    return run


def torchcam_runner(arch: Arch, model: nn.Module, x: torch.Tensor) -> Run:
    """torchcam GradCAM as its documentation shows it (a ``with`` block: hooks removed on exit),
    at the predicted class, upsampled to the input size as the other tools' maps are."""
    import torch.nn.functional as F
    from torchcam.methods import GradCAM as TorchcamGradCAM

    def run() -> object:
        try:
            with TorchcamGradCAM(
                model, target_layer=arch.layer, reshape_transform=arch.reshape
            ) as extractor:
                scores = model(x)
                (cam,) = extractor(scores.argmax(1).tolist(), scores)
            return F.interpolate(cam[:, None], (SIDE, SIDE), mode="bilinear")
        finally:
            model.zero_grad(set_to_none=True)

    return run


def gradient_contenders(arch: Arch, model: nn.Module, x: torch.Tensor) -> dict[str, Run]:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM

    layer = model.get_submodule(arch.layer)
    one = create_method("gradcam", layer=arch.layer)
    five = [create_method(n, layer=arch.layer) for n in FIVE]
    target = PredictedClass()

    def pgc(kinds: list[type]) -> Run:
        """pytorch-grad-cam as its documentation shows it: each CAM in a ``with`` block, so its
        hooks are gone afterwards (and never slow down the other contenders' forwards)."""

        def run() -> object:
            maps = []
            for kind in kinds:
                with kind(
                    model=model, target_layers=[layer], reshape_transform=arch.reshape
                ) as cam:
                    maps.append(cam(input_tensor=x, targets=None))
            return maps

        return run

    funcs: dict[str, Run] = {
        "floor": floor(model, layer, x),
        "seewhy gradcam": lambda: one(model, x, target),
        "seewhy 5 CAMs (one run_many)": lambda: CAM.run_many(
            five, Model.of(model), Inputs.of(x), target
        ),
        "pytorch-grad-cam GradCAM": pgc([GradCAM]),
        "pytorch-grad-cam 5 CAMs (one by one)": pgc(
            [GradCAM, GradCAMPlusPlus, HiResCAM, XGradCAM, LayerCAM]
        ),
    }
    if arch.reshape is None:  # captum's LayerGradCam has no token reshape
        funcs["captum LayerGradCam"] = captum_runner(model, layer, x)
    funcs["torchcam GradCAM"] = torchcam_runner(arch, model, x)
    return funcs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    funcs: dict[str, Run], reps: int, device: torch.device, warmup: bool = True
) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per contender over ``reps`` interleaved rounds."""
    if warmup:
        for f in funcs.values():
            f()
    names = list(funcs)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            sync(device)
            t, c = time.perf_counter(), time.process_time()
            funcs[k]()
            sync(device)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in names}


def gradient_rows(name: str, batch: int, reps: int, device: torch.device) -> list[Row]:
    arch = ARCHS[name]
    torch.manual_seed(0)
    model = arch.build().eval().to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, SIDE, SIDE, generator=gen).to(device)
    t = measure(gradient_contenders(arch, model, x), reps, device)
    base_wall, base_cpu = t["floor"]
    return [
        Row(name, k, w, c, f"{w / base_wall:.2f}x floor", f"{c / base_cpu:.2f}x")
        for k, (w, c) in t.items()
    ]


def distinct_masks(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[int, int, int]:
    """(channels, non-constant channels, distinct masks) over the batch: channels whose min-max
    scaled grids are equal make the same mask; constant ones make none (an independent count,
    for the notes)."""
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.update(a=o.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    flat = store["a"].flatten(2).float()
    lo = flat.amin(2, keepdim=True)
    span = flat.amax(2, keepdim=True) - lo
    live, distinct = 0, 0
    for i in range(flat.shape[0]):
        keep = span[i, :, 0] > 0
        live += int(keep.sum())
        distinct += len(torch.unique((flat[i] - lo[i])[keep] / span[i][keep], dim=0))
    return flat.shape[0] * flat.shape[1], live, distinct


def scorecam_rows(
    images: int, side: int, batch_size: int, reps: int, device: torch.device
) -> tuple[list[Row], str]:
    from pytorch_grad_cam import ScoreCAM as PgcScoreCAM

    torch.manual_seed(0)
    model = _torchvision("resnet18").eval().to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(images, 3, side, side, generator=gen).to(device)
    # batch_size is a call-time argument: the largest batch any forward pass sends
    default = create_method("scorecam", layer="layer4")
    exact = create_method("scorecam", layer="layer4", precision="float32")
    target = PredictedClass()

    def pgc(inputs: torch.Tensor) -> object:
        with (
            contextlib.redirect_stderr(io.StringIO()),  # its progress bars
            PgcScoreCAM(model=model, target_layers=[model.get_submodule("layer4")]) as cam,
        ):
            cam.batch_size = batch_size  # pytorch-grad-cam reads this attribute (default 16)
            return cam(input_tensor=inputs, targets=None)

    funcs: dict[str, Run] = {
        "pytorch-grad-cam ScoreCAM": lambda: pgc(x),
        "seewhy scorecam (default precision=auto)": lambda: default(
            model, x, target, batch_size=batch_size
        ),
        "seewhy scorecam precision=float32": lambda: exact(model, x, target, batch_size=batch_size),
    }
    # Warm-up on one small image: each call makes ~1000 forwards, so one-off costs are noise.
    small = x[:1, :, :64, :64]
    pgc(small)
    exact(model, small, target, batch_size=batch_size)
    default(model, small, target, batch_size=batch_size)
    t = measure(funcs, reps, device, warmup=False)
    base_wall, base_cpu = t["pytorch-grad-cam ScoreCAM"]
    label = f"resnet18 Score-CAM ({images} img, {side}px, batch_size {batch_size})"
    rows = [
        Row(label, k, w, c, f"{base_wall / w:.2f}x faster", f"{base_cpu / c:.2f}x faster")
        for k, (w, c) in t.items()
    ]
    channels, live, distinct = distinct_masks(model, model.get_submodule("layer4"), x)
    note = (
        f"Score-CAM forwards: pytorch-grad-cam {channels} masked inputs; seewhy {distinct} "
        f"distinct masks among {live} non-constant channels (of {channels}), plus one zero "
        f"input for the constant channels and one check of the folded copy on the {images} "
        "image(s)."
    )
    return rows, note


def table(rows: list[Row]) -> str:
    lines = [
        "| model | contender | median ms | x floor | x floor (CPU time) |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r.model} | {r.contender} | {r.wall * 1000:.0f} | {r.ratio} | {r.cpu_ratio} |"
        for r in rows
    ]
    return "\n".join(lines)


def verdicts(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        if r.contender in TARGETS:
            ratio = float(r.ratio.split("x")[0])
            ok = "met" if ratio <= TARGETS[r.contender] else "MISSED"
            out.append(f"- {r.model}, {r.contender}: {ratio:.2f}x <= {TARGETS[r.contender]}x {ok}")
        elif r.contender.startswith("seewhy scorecam (default"):
            ratio = float(r.ratio.split("x")[0])
            ok = "met" if ratio >= SCORECAM_SPEEDUP else "MISSED"
            out.append(f"- {r.contender}: {ratio:.2f}x faster >= {SCORECAM_SPEEDUP}x {ok}")
        elif r.contender.startswith("seewhy scorecam "):
            ratio = float(r.ratio.split("x")[0])
            out.append(
                f"- {r.contender}: {ratio:.2f}x faster (the exact option, for comparison; the "
                "target is for the default)"
            )
    return out


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s)"
    )
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default=",".join(DEFAULT), help="comma list: " + ", ".join(ARCHS))
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds (gradient CAMs)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--scorecam-images", type=int, default=2)
    ap.add_argument("--scorecam-batch-size", type=int, default=32)
    ap.add_argument("--scorecam-reps", type=int, default=3)
    ap.add_argument("--scorecam-only", action="store_true", help="only the Score-CAM rows")
    ap.add_argument("--no-scorecam", action="store_true", help="skip the Score-CAM rows")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: resnet18 at batch 2, 1 thread, 1 round, Score-CAM on one 64px "
        "image; prints, does not write RESULTS.md",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in ARCHS]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {', '.join(ARCHS)}")
    batch, reps, sc_images, sc_side, sc_reps = (
        args.batch,
        args.reps,
        args.scorecam_images,
        SIDE,
        args.scorecam_reps,
    )
    if args.quick:
        names, batch, reps, sc_images, sc_side, sc_reps = ["resnet18"], 2, 1, 1, 64, 1
        args.threads = 1  # a busy 2-core machine stalls two threads at every barrier
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scorecam_only:
        names = []
    load_before = os.getloadavg()
    rows: list[Row] = []
    for name in names:
        part = gradient_rows(name, batch, reps, device)
        rows += part
        print(
            f"{name}: " + ", ".join(f"{r.contender} {r.wall * 1000:.0f} ms" for r in part),
            flush=True,
        )
    note = ""
    if not args.no_scorecam:
        part, note = scorecam_rows(sc_images, sc_side, args.scorecam_batch_size, sc_reps, device)
        rows += part
    text = table(rows)
    checks = verdicts(rows)
    load_after = os.getloadavg()
    print(text)
    print("\n".join(checks))
    if note:
        print(note)
    if args.quick or args.scorecam_only or not names:
        return
    command = "python benchmarks/cam.py " + " ".join(sys.argv[1:])
    header = (
        "# CAM benchmark\n\n"
        f"`{command.strip()}` on {datetime.date.today()}, device {device}: {machine(device)}. "
        f"Load average (1 min) {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end "
        "(the machine is shared: other jobs ran meanwhile).\n\n"
        f"Gradient CAMs: batch {batch} at {SIDE}x{SIDE}, target = predicted class, "
        f"{reps} interleaved rounds after a warm-up, medians. Score-CAM: torchvision resnet18 "
        f"`layer4`, {sc_images} image(s) at {sc_side}x{sc_side}, {args.scorecam_batch_size} masked "
        f"inputs per forward for both tools, {sc_reps} interleaved rounds, medians; its ratio "
        "columns say how many times faster than pytorch-grad-cam's ScoreCAM.\n\n"
        "Layers: resnet50 `layer4`, convnext_tiny `stages.3`, tf_efficientnetv2_s `blocks.5` "
        "(seewhy's auto layer), vit_small_patch16_224 `blocks.11.norm1` (tokens -> 14x14 grid, "
        "class token dropped; peers get a reshape_transform). Models are randomly initialised "
        "(no weights are downloaded). captum's LayerGradCam needs the class up front (one "
        "more forward) and has no token reshape (no ViT row); torchcam and captum maps are "
        "upsampled to the input size like everyone else's.\n\n"
        'seewhy scorecam\'s default `precision="auto"` sends the masked inputs through bfloat16 '
        "autocast where the hardware computes bfloat16 natively (here: "
        f"{'yes' if bf16_native(device) else 'no'}); activations, softmax and map stay float32, "
        "and the maps agree with exact float32 ones at Pearson r >= 0.999 (a few per cent of "
        'the peak at most). `precision="float32"` keeps every forward in float32: maps equal to '
        "the plain computation up to rounding.\n\n"
        f"{THREADS_NOTE if args.threads == 1 else ''}"
        f"Targets: seewhy gradcam <= {TARGETS['seewhy gradcam']}x the floor, all five gradient "
        f"CAMs <= {TARGETS['seewhy 5 CAMs (one run_many)']}x, Score-CAM >= {SCORECAM_SPEEDUP}x "
        "faster than pytorch-grad-cam's at equal batch size.\n\n"
    )
    body = text + "\n\n" + "\n".join(checks) + "\n"
    if note:
        body += "\n" + note + "\n"
    path = HERE / "RESULTS.md"
    # benchmarks/gradients.py keeps its own section (between its markers): carry it over.
    old = path.read_text() if path.exists() else ""
    begin, end = "<!-- gradients:begin -->", "<!-- gradients:end -->"
    kept = old[old.index(begin) : old.index(end) + len(end)] if begin in old and end in old else ""
    path.write_text(header + body + ("\n" + kept + "\n" if kept else ""))


if __name__ == "__main__":
    main()
