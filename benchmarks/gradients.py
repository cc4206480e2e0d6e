"""Gradient and perturbation methods: seewhy against each method's floor and against peers.

    .venv/bin/python benchmarks/gradients.py           # table -> RESULTS.md (gradients section)
    .venv/bin/python benchmarks/gradients.py --quick   # smoke run (resnet18, small counts)

The floor of a method is its own passes on the same inputs, written by hand: the rows it must
send through the model (an image's 50 IG steps, 50 SmoothGrad noisy copies ...) batched at the
method's forward batch (``--batch-size``), parameters frozen, the gradient taken to the input only
(``torch.autograd.grad``), or only forwards for occlusion and RISE. Contenders run round-robin
after a warm-up (the starting contender rotates each round) and medians are reported, so
background load on a shared machine hits them alike; the ratios are what matter.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import seewhy

warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- gradients:begin -->", "<!-- gradients:end -->"
Run = Callable[[], object]


def build(name: str, classes: int) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, num_classes=classes).eval()


def measure(funcs: dict[str, Run], reps: int) -> dict[str, float]:
    """Median seconds per contender over ``reps`` interleaved rounds, after a warm-up."""
    for f in funcs.values():
        f()
    names = list(funcs)
    wall: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            funcs[k]()
            wall[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in wall.items()}


def grad_floor(model: nn.Module, rows: Callable[[int, int], torch.Tensor], n: int, bs: int) -> Run:
    """``n`` rows (built ``bs`` at a time) through forward + backward to the input."""

    def run() -> object:
        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            total = 0.0
            for s in range(0, n, bs):
                x = rows(s, min(n, s + bs)).requires_grad_(True)
                out = model(x)
                (g,) = torch.autograd.grad(out[:, 0].sum(), x)
                total += float(g.sum())
            return total
        finally:
            for p, f in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(f)

    return run


def forward_floor(
    model: nn.Module, rows: Callable[[int, int], torch.Tensor], n: int, bs: int
) -> Run:
    def run() -> object:
        with torch.inference_mode():
            return [model(rows(s, min(n, s + bs)))[:, 0] for s in range(0, n, bs)]

    return run


def interpolated(x: torch.Tensor, steps: int) -> Callable[[int, int], torch.Tensor]:
    """Rows (image, step) flattened: the IG path points of each image from the zero baseline
    at the Gauss-Legendre nodes seewhy's ig uses (the same inputs: the cost of a forward
    depends a little on the values, e.g. near-zero points), built per chunk."""
    from seewhy.methods.gradients import quadrature

    alphas = torch.tensor(quadrature("gauss-legendre", steps)[0])

    def rows(start: int, stop: int) -> torch.Tensor:
        idx = torch.arange(start, stop)
        return x[idx // steps] * alphas[idx % steps].view(-1, 1, 1, 1)

    return rows


def noisy(x: torch.Tensor, samples: int, noise: float = 0.15) -> Callable[[int, int], torch.Tensor]:
    """Rows (image, copy) flattened: SmoothGrad's noisy copies ``x + N(0, sigma^2)``, ``sigma``
    = ``noise`` x each image's value range, the noise drawn per chunk as seewhy draws it."""
    sigma = noise * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    g = torch.Generator().manual_seed(0)

    def rows(start: int, stop: int) -> torch.Tensor:
        idx = torch.arange(start, stop) // samples
        eps = torch.randn((len(idx), *x.shape[1:]), generator=g)
        return x[idx] + sigma[idx].view(-1, 1, 1, 1) * eps

    return rows


def gradient_rows(args: argparse.Namespace) -> list[tuple[str, str, float, str]]:
    from captum.attr import IntegratedGradients, Saliency

    model = build(args.model, 1000)
    x = torch.randn(
        args.images, 3, args.side, args.side, generator=torch.Generator().manual_seed(0)
    )
    bs, steps = args.batch_size, args.steps
    cls = int(model(x[:1]).argmax())
    out: list[tuple[str, str, float, str]] = []

    def explain(method: str) -> Run:
        return lambda: seewhy.explain(model, x, [method], target=cls, batch_size=bs)

    plain = lambda s, e: x[s:e]  # noqa: E731
    t = measure(
        {
            "floor": grad_floor(model, plain, len(x), bs),
            "seewhy saliency": explain("saliency"),
            "seewhy inputxgrad": explain("inputxgrad"),
            "captum Saliency": lambda: Saliency(model).attribute(x, target=cls, abs=True),
        },
        args.reps,
    )
    out += [
        (f"{args.model} saliency / inputxgrad", k, v, f"{v / t['floor']:.2f}x floor")
        for k, v in t.items()
    ]

    n = len(x) * steps
    ig = IntegratedGradients(model)
    contenders = {
        "floor": grad_floor(model, interpolated(x, steps), n, bs),
        f"seewhy ig(steps={steps})": lambda: seewhy.explain(
            model, x, [f"ig(steps={steps})"], target=cls, batch_size=bs
        ),
        f"captum IG internal_batch_size={bs}": lambda: ig.attribute(
            x, target=cls, n_steps=steps, method="gausslegendre", internal_batch_size=bs
        ),
    }
    from seewhy.core.engine import bf16_native

    bf16_note = False
    if bf16_native(torch.device("cpu")):
        contenders[f"seewhy ig(steps={steps},precision=bfloat16)"] = lambda: seewhy.explain(
            model, x, [f"ig(steps={steps},precision=bfloat16)"], target=cls, batch_size=bs
        )
    else:
        bf16_note = True
    if len(x) == 1 or args.side <= 64:  # captum's default: every step in one batch
        contenders["captum IG default (one batch)"] = lambda: ig.attribute(
            x, target=cls, n_steps=steps, method="gausslegendre"
        )
    t = measure(contenders, args.reps)
    out += [
        (f"{args.model} ig, {len(x)} image(s)", k, v, f"{v / t['floor']:.2f}x floor")
        for k, v in t.items()
    ]

    if bf16_note:
        out.append(
            (
                f"{args.model} ig, {len(x)} image(s)",
                "seewhy ig precision=bfloat16",
                math.nan,
                "not run: this CPU does not compute bfloat16 natively (refused there)",
            )
        )
    t = measure(
        {
            "floor": grad_floor(model, noisy(x, steps), n, bs),
            f"seewhy smoothgrad(samples={steps})": lambda: seewhy.explain(
                model, x, [f"smoothgrad(samples={steps})"], target=cls, batch_size=bs
            ),
        },
        args.reps,
    )
    out += [
        (f"{args.model} smoothgrad", k, v, f"{v / t['floor']:.2f}x floor") for k, v in t.items()
    ]
    return out


def expected_gradient_rows(args: argparse.Namespace) -> list[tuple[str, str, float, str]]:
    """Expected gradients against shap's GradientExplainer on a 4-class model at equal draws."""
    try:
        import shap
    except ImportError:
        return [("expected gradients", "shap not installed", math.nan, "-")]
    model = build(args.model, 4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.images, 3, args.side, args.side, generator=g)
    background = torch.randn(8, 3, args.side, args.side, generator=g)
    bs, draws = args.batch_size, args.steps
    cls = model(x).argmax(1)
    explainer = shap.GradientExplainer(model, background, batch_size=bs)
    t = measure(
        {
            f"seewhy expected-gradients(samples={draws})": lambda: seewhy.explain(
                model,
                x,
                [f"expected-gradients(samples={draws})"],
                target="pred",
                batch_size=bs,
                background=background,
            ),
            "shap GradientExplainer (default: all 4 outputs)": lambda: explainer.shap_values(
                x, nsamples=draws
            ),
            "shap GradientExplainer ranked_outputs=1": lambda: explainer.shap_values(
                x, nsamples=draws, ranked_outputs=1
            ),
        },
        args.reps,
    )
    del cls
    ours = next(v for k, v in t.items() if k.startswith("seewhy"))
    return [
        (f"{args.model} expected gradients, 4 classes", k, v, f"{v / ours:.2f}x seewhy")
        for k, v in t.items()
    ]


def perturbation_rows(args: argparse.Namespace) -> list[tuple[str, str, float, str]]:
    from captum.attr import Occlusion

    model = build(args.model, 1000)
    x = torch.randn(
        args.images, 3, args.side, args.side, generator=torch.Generator().manual_seed(2)
    )
    bs = args.batch_size
    cls = int(model(x[:1]).argmax())
    w = max(1, args.side // 7)
    s = max(1, w // 2)
    per_side = (args.side - w) // s + 1
    windows = per_side * per_side
    n = len(x) * windows
    masked = lambda a, b: x[torch.arange(a, b) // windows]  # noqa: E731 - same rows, same cost
    occ = Occlusion(model)
    t = measure(
        {
            "floor (forwards of every window)": forward_floor(model, masked, n, bs),
            f"seewhy occlusion(window={w},stride={s})": lambda: seewhy.explain(
                model, x, [f"occlusion(window={w},stride={s})"], target=cls, batch_size=bs
            ),
            "captum Occlusion": lambda: occ.attribute(
                x,
                target=cls,
                sliding_window_shapes=(3, w, w),
                strides=(3, s, s),
                baselines=0,
                perturbations_per_eval=bs,
            ),
        },
        args.reps,
    )
    floor = next(v for k, v in t.items() if k.startswith("floor"))
    rows = [
        (f"{args.model} occlusion, {windows} windows", k, v, f"{v / floor:.2f}x floor")
        for k, v in t.items()
    ]
    masks = args.rise_masks
    t = measure(
        {
            "floor (forwards of every mask)": forward_floor(
                model, lambda a, b: x[torch.arange(a, b) // masks], len(x) * masks, bs
            ),
            f"seewhy rise(masks={masks})": lambda: seewhy.explain(
                model, x, [f"rise(masks={masks})"], target=cls, batch_size=bs
            ),
        },
        args.reps,
    )
    floor = next(v for k, v in t.items() if k.startswith("floor"))
    rows += [
        (f"{args.model} rise, {masks} masks", k, v, f"{v / floor:.2f}x floor") for k, v in t.items()
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50, help="IG steps, SmoothGrad / EG draws")
    ap.add_argument("--rise-masks", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="resnet18, 64 px, few steps; prints only")
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.side, args.steps, args.rise_masks, args.reps = "resnet18", 64, 8, 64, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = gradient_rows(args) + expected_gradient_rows(args) + perturbation_rows(args)
    lines = [
        BEGIN,
        "## Gradient and perturbation methods (`benchmarks/gradients.py`)",
        "",
        f"{datetime.date.today()}, cpu: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.model}, "
        f"{args.images} image(s) at {args.side} px, forward batch {args.batch_size}, "
        f"{args.steps} IG steps / SmoothGrad and EG draws, RISE {args.rise_masks} masks, "
        f"{args.reps} interleaved rounds, medians. Random weights (nothing is downloaded).",
        "",
        "| case | contender | median ms | ratio |",
        "|---|---|---:|---:|",
        *[f"| {c} | {k} | {v * 1000:.0f} | {r} |" for c, k, v, r in rows],
        END,
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        path = HERE / "RESULTS.md"
        old = path.read_text() if path.exists() else ""
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            new = head + text + rest.split(END, 1)[1]
        else:
            new = old.rstrip() + "\n\n" + text + "\n"
        path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
