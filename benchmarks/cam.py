"""CAM speed: seewhy against the floor and against peers, in one run.

    .venv/bin/python benchmarks/cam.py            # full table -> benchmarks/RESULTS.md
    .venv/bin/python benchmarks/cam.py --quick    # smoke run, prints only

The floor is what any Grad-CAM must pay: one forward and one backward down to the CAM layer,
parameters frozen (written by hand below). Contenders run round-robin, interleaved rep by rep,
so background load hits every contender alike; medians are reported. Ratios are to the floor.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from seewhy.core.registry import create_method
from seewhy.core.targets import PredictedClass
from seewhy.methods.cam import CAM

warnings.filterwarnings("ignore")
FIVE = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"]
HERE = Path(__file__).resolve().parent


def vit_reshape(t: torch.Tensor) -> torch.Tensor:
    return t[:, 1:, :].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)


MODELS: dict[str, tuple[Callable[[], nn.Module], str, Callable[..., torch.Tensor] | None]] = {
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), "layer4", None),
    "convnext_tiny": (
        lambda: timm.create_model("convnext_tiny", pretrained=False),
        "stages.3",
        None,
    ),
    "tf_efficientnetv2_s": (
        lambda: timm.create_model("tf_efficientnetv2_s", pretrained=False),
        "blocks.5",
        None,
    ),
    "vit_small_patch16_224": (
        lambda: timm.create_model("vit_small_patch16_224", pretrained=False),
        "blocks.11.norm1",
        vit_reshape,
    ),
}


def floor(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Forward + backward down to the layer, parameters frozen: the least a Grad-CAM costs."""

    def run() -> object:
        store: dict[str, torch.Tensor] = {}

        def hook(m: nn.Module, i: object, o: torch.Tensor) -> torch.Tensor:
            leaf = o.detach().requires_grad_(True)
            store["a"] = leaf
            return leaf.clone()

        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        h = layer.register_forward_hook(hook)
        try:
            out = model(x)
            score = out.gather(1, out.argmax(1, keepdim=True)).sum()
            return torch.autograd.grad(score, store["a"])
        finally:
            h.remove()
            for p, f in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(f)

    return run


def contenders(name: str, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM

    build, layer_name, reshape = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    layer = dict(model.named_modules())[layer_name]
    one = create_method("gradcam", layer=layer_name)
    five = [create_method(n, layer=layer_name) for n in FIVE]
    target = PredictedClass()
    pgc_one = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape)
    pgc_five = [
        c(model=model, target_layers=[layer], reshape_transform=reshape)
        for c in (GradCAM, GradCAMPlusPlus, HiResCAM, XGradCAM, LayerCAM)
    ]
    out: dict[str, Callable[[], object]] = {
        "floor": floor(model, layer, x),
        "seewhy gradcam": lambda: one(model, x, target),
        "seewhy 5 CAMs (one pass)": lambda: CAM.run_many(five, model, x, target),
        "pytorch-grad-cam GradCAM": lambda: pgc_one(input_tensor=x, targets=None),
        "pytorch-grad-cam 5 CAMs": lambda: [c(input_tensor=x, targets=None) for c in pgc_five],
    }
    if reshape is None:  # captum and torchcam read NCHW layers only
        lgc = LayerGradCam(model, layer)

        def captum() -> object:
            with torch.no_grad():
                cls = model(x).argmax(1)
            a = lgc.attribute(x, target=cls, relu_attributions=True)
            return LayerAttribution.interpolate(a, tuple(x.shape[-2:]), interpolate_mode="bilinear")

        out["captum LayerGradCam"] = captum
        out["torchcam GradCAM"] = torchcam_runner(model, layer_name, x)
    return out


def torchcam_runner(model: nn.Module, layer_name: str, x: torch.Tensor) -> Callable[[], object]:
    from torchcam.methods import GradCAM as TorchcamGradCAM

    def run() -> object:
        extractor = TorchcamGradCAM(model, target_layer=layer_name)
        try:
            scores = model(x)
            return extractor(scores.argmax(1).tolist(), scores)
        finally:
            extractor.remove_hooks()
            model.zero_grad(set_to_none=True)

    return run


def measure(funcs: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    for f in funcs.values():  # warm-up
        f()
    times: dict[str, list[float]] = {k: [] for k in funcs}
    for _ in range(reps):
        for k, f in funcs.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def scorecam_rows(reps: int, images: int, batch_size: int) -> list[tuple[str, str, float, str]]:
    from pytorch_grad_cam import ScoreCAM as PgcScoreCAM

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(images, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    pgc = PgcScoreCAM(model=model, target_layers=[model.layer4])
    pgc.batch_size = batch_size
    fast = create_method("scorecam", layer="layer4", batch_size=batch_size)
    exact = create_method("scorecam", layer="layer4", batch_size=batch_size, precision="float32")
    import contextlib
    import io

    def quiet(f: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with contextlib.redirect_stderr(io.StringIO()):  # pytorch-grad-cam's tqdm bars
                return f()

        return run

    funcs = {
        "pytorch-grad-cam ScoreCAM": quiet(lambda: pgc(input_tensor=x, targets=None)),
        "seewhy scorecam (precision=auto)": lambda: fast(model, x, PredictedClass()),
        "seewhy scorecam (precision=float32)": lambda: exact(model, x, PredictedClass()),
    }
    t = measure(funcs, reps)
    base = t["pytorch-grad-cam ScoreCAM"]
    return [
        ("resnet18 (scorecam)", k, v, f"{base / v:.2f}x faster than pytorch-grad-cam")
        for k, v in t.items()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scorecam-images", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="resnet50 only, 1 rep, no RESULTS.md")
    args = ap.parse_args()
    names = ["resnet50"] if args.quick else args.models.split(",")
    reps = 1 if args.quick else args.reps
    device = torch.device(args.device)
    rows: list[tuple[str, str, float, str]] = []
    for name in names:
        x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        funcs = contenders(name, x)
        if device.type != "cpu":
            raise SystemExit("GPU runs: move the model and x to the device in contenders()")
        t = measure(funcs, reps)
        for k, v in t.items():
            rows.append((name, k, v, f"{v / t['floor']:.2f}x floor"))
        print(f"{name}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in t.items()), flush=True)
    rows += scorecam_rows(max(1, reps - 1), args.scorecam_images, 32)
    table = ["| model | contender | median ms | ratio |", "|---|---|---:|---|"]
    table += [f"| {m} | {c} | {v * 1000:.0f} | {r} |" for m, c, v, r in rows]
    text = "\n".join(table)
    print(text)
    if args.quick:
        return
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    header = (
        "# CAM benchmark\n\n"
        f"Run `python benchmarks/cam.py --reps {args.reps}` on "
        f"{datetime.date.today()}: {cpu}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, batch {args.batch} at 224x224 (Score-CAM: "
        f"{args.scorecam_images} image(s), 32 masked inputs per forward for every tool). "
        "Medians of interleaved reps.\n\n"
        "Targets (issue 2): seewhy gradcam <= 1.1x the floor, all five <= 1.15x, Score-CAM >= 2x "
        "faster than pytorch-grad-cam's at equal batch.\n\n"
    )
    (HERE / "RESULTS.md").write_text(header + text + "\n")


if __name__ == "__main__":
    main()
