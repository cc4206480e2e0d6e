"""Trust checks: seewhy's deletion/insertion and randomization against their floors and quantus.

    .venv/bin/python benchmarks/checks.py                      # table -> RESULTS.md (checks)
    .venv/bin/python benchmarks/checks.py --cases cams         # one part, its own marker block
    .venv/bin/python benchmarks/checks.py --quick              # smoke run (resnet18), prints only

Cases (``--cases``, a comma list):

- ``faithfulness``: seewhy's four deletion/insertion curves (``4 * steps - 2`` forwards per
  image) against their floor, the same rows (``torch.where(removed, image, blurred)``, built
  per chunk) as bare batched forwards of the plain eval model under ``torch.inference_mode`` and
  of the engine's private copy (batch norms folded, channels-last); and quantus's
  ``PixelFlipping`` (one curve, ``--quantus-steps`` steps) against its own floor.
- ``randomization``: the cascading parameter randomization test at quantus's granularity (every
  module with parameters of its own, ``granularity="layers"``), one saliency map per copy,
  against its floor (one deep copy; per step a re-initialisation and one forward+backward to the
  input) and quantus's ``MPRT`` with captum's Saliency; and seewhy's default granularity
  (``blocks``) against its floor.
- ``cams``: the five gradient CAMs checked in one pass per randomized copy against one CAM
  alone and against their floor (forward + gradient at the CAM layer per step), beside quantus
  ``MPRT`` for five methods, extrapolated as five times its one-method time.

seewhy and the floors run round-robin after a warm-up (the starting contender rotates each
round), medians reported; quantus runs once (it is slow), on its own deep copy of the model (in
eval mode), under a forked RNG (its MPRT seeds torch's global generator). Forwards are counted
(rows through the model's last layer) on each contender's first call.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import seewhy
from common import Run, build, forward_floor, markers, measure, publish

warnings.filterwarnings("ignore")
CAMS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam")
Row = tuple[str, str, float, str, str, str]  # case, contender, s, x floor, x peer, notes


def last_leaf(net: nn.Module) -> nn.Module:
    """The last registered module without children (a classifier's head: ``fc``)."""
    return [m for m in net.modules() if next(m.children(), None) is None][-1]


class Counted:
    """``run`` with the rows through ``net``'s last layer counted on its first call (a forward
    hook; deep copies made inside the call carry it, so a private copy's rows count too: the
    hook is a plain function, which ``copy.deepcopy`` shares rather than copies)."""

    def __init__(self, run: Run, net: nn.Module) -> None:
        self.run, self.head, self.done = run, last_leaf(net), False
        self._seen = [0]

    @property
    def rows(self) -> int:
        return self._seen[0]

    def __call__(self) -> object:
        if self.done:
            return self.run()
        seen = self._seen

        def hook(_m: nn.Module, inp: tuple[Any, ...], _out: Any) -> None:
            if inp and isinstance(inp[0], torch.Tensor):  # not a tracer's proxy
                seen[0] += int(inp[0].shape[0])

        handle = self.head.register_forward_hook(hook)
        try:
            return self.run()
        finally:
            handle.remove()
            self.done = True


@contextlib.contextmanager
def quiet() -> Any:
    """quantus's prints and warnings silenced; torch's global RNG restored after."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        torch.random.fork_rng(devices=[]),
    ):
        warnings.simplefilter("ignore")
        yield


def once(run: Run) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


class Setup:
    """The model, the batch, its resolved target and seewhy's saliency maps (all cases)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from seewhy.api import as_inputs
        from seewhy.core.model import Model

        self.net = build(args.model)
        self.x = torch.randn(
            args.images, 3, args.side, args.side, generator=torch.Generator().manual_seed(0)
        )
        self.model = Model.of(self.net)
        self.inputs = as_inputs(self.model, self.x)
        with torch.no_grad():
            self.target = self.model.target("pred").resolve(self.model.forward(self.inputs))
        self.cls = self.target.output_columns.clone()
        self.bs = args.batch_size
        self.maps = self.explain(self.model, ["saliency"])[0]
        self.quantus_mprt: float | None = None  # quantus MPRT (saliency) seconds, once measured
        self.quantus_mprt_rows = 0

    def explain(
        self, model: Any, methods: list[str], layer: str | None = None
    ) -> list[torch.Tensor]:
        out = seewhy.explain(
            model, self.inputs, methods, target=self.target, layer=layer, batch_size=self.bs
        )
        return [e.map for e in out]

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.net.state_dict().items()}


# -- faithfulness ------------------------------------------------------------------------------


def quantus_features_in_step(c: int, h: int, w: int, steps: int) -> tuple[int, int]:
    """PixelFlipping's ``features_in_step`` for about ``steps`` steps, and the steps it gives.

    quantus broadcasts a ``[B, 1, H, W]`` map to the image's ``[B, C, H, W]`` and flips
    ``features_in_step`` *elements* (of ``C * H * W``) per step, but asserts that the value
    divides ``H * W``: the divisor of ``H * W`` giving the step count nearest ``steps``."""
    hw, n = h * w, c * h * w
    best = min(
        (d for d in range(1, hw + 1) if hw % d == 0), key=lambda d: abs(math.ceil(n / d) - steps)
    )
    return best, math.ceil(n / best)


def faithfulness_rows(args: argparse.Namespace, s: Setup) -> list[Row]:
    import quantus

    from seewhy.checks.faithfulness import blurred, deletion_insertion, forwards_per_sample
    from seewhy.core.engine import ForwardEngine, bf16_native

    x, bs, steps = s.x, s.bs, args.steps
    b, c, h, w = (int(v) for v in x.shape)
    hw, per = h * w, forwards_per_sample(steps)
    n = per * b
    blur = blurred(x)
    # The rows seewhy sends: per image, the image, its blurred copy, then the inner points of
    # the four curves (map order: deletion, insertion; random order: deletion, insertion).
    order = torch.argsort(s.maps.reshape(b, hw), dim=1, descending=True, stable=True)
    perm = torch.stack(
        [torch.randperm(hw, generator=torch.Generator().manual_seed(i)) for i in range(b)]
    )
    ranks = torch.empty(b, 2, hw, dtype=torch.long)
    ar = torch.arange(hw).expand(b, hw)
    ranks[:, 0].scatter_(1, order, ar)
    ranks[:, 1].scatter_(1, perm, ar)
    inner = steps - 1
    j = torch.arange(per)
    ij = (j - 2).clamp_min(0)
    curve_of = torch.where(j < 2, 0, ij // max(inner, 1))
    k_of = torch.tensor([round(t * hw / steps) for t in range(steps + 1)])[ij % max(inner, 1) + 1]
    k_of = torch.where(j == 0, 0, torch.where(j == 1, hw, k_of))

    def rows(start: int, stop: int) -> torch.Tensor:
        idx = torch.arange(start, stop)
        sample, jj = idx // per, idx % per
        cv = curve_of[jj]
        removed = ranks[sample, cv // 2] < k_of[jj][:, None]
        keep = (removed == (cv % 2 == 1)[:, None]).view(-1, 1, h, w)
        return torch.where(keep, x[sample], blur[sample])

    engine = ForwardEngine(s.model, s.inputs, batch_size=bs, precision="float32")
    folded = engine.model.module

    def rows_cl(start: int, stop: int) -> torch.Tensor:
        return rows(start, stop).contiguous(memory_format=torch.channels_last)

    # quantus PixelFlipping: per step, the next features_in_step elements of the broadcast map
    # (highest first) set to the "black" baseline (the image's minimum), all B images a batch.
    fis, qsteps = quantus_features_in_step(c, h, w, args.quantus_steps)
    qn = c * hw
    a = s.maps[:, None].expand(b, c, h, w).reshape(b, qn)
    qranks = torch.empty(b, qn, dtype=torch.long)
    qranks.scatter_(1, torch.argsort(-a, dim=1, stable=True), torch.arange(qn).expand(b, qn))
    lowest = x.flatten(1).amin(1)

    def qrows(start: int, stop: int) -> torch.Tensor:
        idx = torch.arange(start, stop)
        step, sample = idx // b + 1, idx % b  # step-major, as quantus batches the B images
        flipped = (qranks[sample] < (step * fis)[:, None]).view(-1, c, h, w)
        return torch.where(flipped, lowest[sample].view(-1, 1, 1, 1), x[sample])

    # bfloat16 through the engine where the CPU computes it natively (avx512_bf16, AMX): the
    # same curves; their AUCs are compared with float32's below
    curves: dict[str, Any] = {}
    bf16 = bf16_native(torch.device("cpu"))

    def ours_at(precision: str) -> Run:
        def run() -> object:
            curves[precision] = deletion_insertion(
                s.model, s.inputs, s.maps, s.target, steps=steps, batch_size=bs, precision=precision
            )
            return curves[precision]

        return run

    contenders = {
        "floor (plain eval model)": Counted(forward_floor(s.net, rows, n, bs), s.net),
        "floor (engine copy: folded, channels-last)": Counted(
            forward_floor(folded, rows_cl, n, bs), folded
        ),
        f"seewhy deletion_insertion(steps={steps})": Counted(ours_at("float32"), s.net),
        f"quantus floor ({qsteps} x {b} rows)": Counted(
            forward_floor(s.net, qrows, qsteps * b, bs), s.net
        ),
    }
    if bf16:
        cl_floor = forward_floor(folded, rows_cl, n, bs)

        def bf16_floor() -> object:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl_floor()

        contenders["floor (engine copy, bfloat16 autocast)"] = Counted(bf16_floor, folded)
        contenders[f"seewhy deletion_insertion(steps={steps}, precision=auto: bfloat16)"] = Counted(
            ours_at("auto"), s.net
        )
    t = measure(contenders, args.reps, warm(args, s))

    qnet = copy.deepcopy(s.net).eval()
    metric = quantus.PixelFlipping(
        features_in_step=fis, disable_warnings=True, display_progressbar=False
    )
    xn, yn = x.numpy(), s.cls.numpy()
    an = s.maps[:, None].numpy()

    def q_run() -> object:
        with quiet():
            return metric(
                model=qnet,
                x_batch=xn,
                y_batch=yn,
                a_batch=an,
                channel_first=True,
                device="cpu",
                batch_size=bs,
            )

    q = Counted(q_run, qnet)
    tq = once(q)

    case = f"faithfulness, {b} images"
    names = list(contenders)
    floor, floor_cl, ours, qfloor = (t[k] for k in names[:4])
    ours_rows = contenders[names[2]].rows
    per_row_ours, per_row_q = ours / max(ours_rows, 1), tq / max(q.rows, 1)
    curve_ours = ours / 4  # each of the four curves: steps + 1 points
    curve_q_at_steps = tq * steps / qsteps  # one quantus curve scaled to seewhy's step count
    out: list[Row] = [
        (
            case,
            names[0],
            floor,
            "1.00x",
            "",
            f"{contenders[names[0]].rows} rows = {per} x {b} at batch {bs}",
        ),
        (
            case,
            names[1],
            floor_cl,
            f"{floor_cl / floor:.2f}x",
            "",
            f"{contenders[names[1]].rows} rows; batch norms folded: {engine.folded}",
        ),
        (
            case,
            names[2],
            ours,
            f"{ours / floor:.2f}x ({ours / floor_cl:.2f}x engine floor)",
            f"{per_row_ours / per_row_q:.2f}x quantus per forward; one curve "
            f"{curve_ours:.2f} s vs quantus {curve_q_at_steps:.2f} s at {steps} steps "
            f"({curve_ours / curve_q_at_steps:.2f}x)",
            f"4 curves x {steps + 1} points; {ours_rows} rows counted = {per} x {b} "
            f"(the minimum, 4 x {steps} - 2, the curves' ends shared) + "
            f"{ours_rows - n} for the engine (reference output, folded-copy check); "
            f"{per_row_ours * 1000:.1f} ms per row",
        ),
        (case, names[3], qfloor, "1.00x", "", f"{contenders[names[3]].rows} rows"),
        (
            case,
            f"quantus PixelFlipping(features_in_step={fis}) (1 run)",
            tq,
            f"{tq / qfloor:.2f}x quantus floor",
            f"{per_row_q / per_row_ours:.2f}x seewhy per forward",
            f"1 curve x {qsteps} steps (no step 0); {q.rows} rows counted "
            f"(minimum {qsteps} x {b}); {per_row_q * 1000:.1f} ms per row",
        ),
    ]
    if not bf16:
        return [
            *out,
            (
                case,
                "seewhy precision=bfloat16",
                math.nan,
                "",
                "",
                "not run: this CPU does not compute bfloat16 natively",
            ),
        ]
    floor16, ours16 = t[names[4]], t[names[5]]
    gap = max(
        float((curves["auto"].aucs()[k] - curves["float32"].aucs()[k]).abs().nan_to_num(0.0).max())
        for k in curves["float32"].aucs()
    )
    curve16 = ours16 / 4
    return [
        *out,
        (
            case,
            names[4],
            floor16,
            f"{floor16 / floor:.2f}x",
            "",
            f"{contenders[names[4]].rows} rows; the engine floor's forwards, bfloat16 autocast",
        ),
        (
            case,
            names[5],
            ours16,
            f"{ours16 / floor:.2f}x ({ours16 / floor16:.2f}x its bfloat16 floor)",
            f"{curve_q_at_steps / curve16:.2f}x faster than quantus per curve at {steps} steps "
            f"({curve16:.2f} s vs {curve_q_at_steps:.2f} s); {ours / ours16:.2f}x faster than "
            "float32",
            f"AUCs (deletion, insertion, both random) within {gap:.4f} of float32's; "
            f"{contenders[names[5]].rows} rows counted",
        ),
    ]


# -- randomization ----------------------------------------------------------------------------


def reset(module: nn.Module, recurse: bool) -> None:
    """Re-initialise ``module``'s parameters (its submodules' too with ``recurse``)."""
    with torch.no_grad():
        for m in module.modules() if recurse else [module]:
            fn = getattr(m, "reset_parameters", None)
            if callable(fn) and (recurse or next(m.children(), None) is None):
                fn()
            else:
                for p in m.parameters(recurse=False):
                    p.normal_()
            stats = getattr(m, "reset_running_stats", None)
            if callable(stats):
                stats()


def randomization_floor(
    s: Setup, granularity: str, grad_of: Callable[[nn.Module, torch.Tensor], torch.Tensor]
) -> Run:
    """One deep copy; the trained copy's pass, then per step a re-initialisation of the next
    block (head first) and ``grad_of(copy, chunk)`` over the batch, ``bs`` rows at a time."""
    from seewhy.checks.randomization import randomizable_blocks

    names = randomizable_blocks(s.net, granularity)

    def run() -> object:
        net = copy.deepcopy(s.net).eval().requires_grad_(False)
        total = 0.0
        for name in [None, *names]:
            if name is not None:
                reset(net.get_submodule(name), recurse=granularity == "blocks" and name != "")
            for a in range(0, len(s.x), s.bs):
                total += float(grad_of(net, torch.arange(a, min(len(s.x), a + s.bs))).sum())
        return total

    return run


def input_grad(s: Setup) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """The saliency floor's pass: forward + gradient of the target score to the input."""

    def grad_of(net: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        x = s.x[idx].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(x).gather(1, s.cls[idx, None]).sum(), x)
        return g.abs().amax(1)

    return grad_of


def layer_grad(s: Setup, layer: str) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """The CAM floor's pass: forward + gradient of the target score to ``layer``'s output."""

    def grad_of(net: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []

        def leaf(_m: nn.Module, _i: Any, o: torch.Tensor) -> torch.Tensor:
            seen.append(o.detach().requires_grad_(True))  # the graph starts at the layer
            return seen[-1]

        handle = net.get_submodule(layer).register_forward_hook(leaf)
        try:
            out = net(s.x[idx])
        finally:
            handle.remove()
        (g,) = torch.autograd.grad(out.gather(1, s.cls[idx, None]).sum(), seen[0])
        return (g.mean((2, 3), keepdim=True) * seen[0]).sum(1).relu()

    return grad_of


def seewhy_randomization(
    s: Setup, granularity: str, methods: list[str], layer: str | None = None
) -> Run:
    """seewhy's cascade, the maps of each copy from one ``explain`` call (a CAM ``layer``
    resolved once, as ``seewhy.check`` does, not per copy)."""
    from seewhy.checks.randomization import randomization

    return lambda: randomization(
        s.model, lambda m: s.explain(m, methods, layer), granularity=granularity, seed=0
    )


def quantus_mprt(s: Setup) -> tuple[float, int, int]:
    """quantus MPRT (cascading top-down, captum Saliency via ``quantus.explain``) once on its
    own deep copy: seconds, rows counted, layers randomized."""
    import quantus

    qnet = copy.deepcopy(s.net).eval()
    xn, yn = s.x.numpy(), s.cls.numpy()
    with quiet():  # the reference maps, outside the timing (quantus re-explains anyway)
        an = quantus.explain(qnet, xn, yn, method="Saliency", device="cpu")
    metric = quantus.MPRT(disable_warnings=True, display_progressbar=False)

    def run() -> object:
        with quiet():
            return metric(
                model=qnet,
                x_batch=xn,
                y_batch=yn,
                a_batch=an,
                channel_first=True,
                explain_func=quantus.explain,
                explain_func_kwargs={"method": "Saliency", "device": "cpu"},
                device="cpu",
                batch_size=s.bs,
            )

    q = Counted(run, qnet)
    tq = once(q)
    layers = sum(hasattr(m, "reset_parameters") for m in qnet.modules())
    torch.testing.assert_close(qnet.state_dict(), s.net.state_dict())  # its copy is untouched
    return tq, q.rows, layers


def randomization_rows(args: argparse.Namespace, s: Setup) -> list[Row]:
    from seewhy.checks.randomization import randomizable_blocks

    b = len(s.x)
    layers = randomizable_blocks(s.net, "layers")
    blocks = randomizable_blocks(s.net, "blocks")
    contenders = {
        "floor (deepcopy; re-init + forward+backward to the input per step)": Counted(
            randomization_floor(s, "layers", input_grad(s)), s.net
        ),
        'seewhy randomization(granularity="layers"), saliency': Counted(
            seewhy_randomization(s, "layers", ["saliency"]), s.net
        ),
    }
    before = s.state()
    t = measure(contenders, args.reps, warm(args, s))
    tq, qrows, qlayers = quantus_mprt(s)
    s.quantus_mprt, s.quantus_mprt_rows = tq, qrows
    tb = measure(
        {
            "floor, blocks": randomization_floor(s, "blocks", input_grad(s)),
            'seewhy randomization(granularity="blocks"), saliency': seewhy_randomization(
                s, "blocks", ["saliency"]
            ),
        },
        args.reps,
        warm(args, s),
    )
    torch.testing.assert_close(s.net.state_dict(), before)  # nobody changed the timed model
    names = list(contenders)
    floor, ours = t[names[0]], t[names[1]]
    counted = [contenders[k].rows for k in names]
    case = f"randomization, layers ({len(layers)} steps), {b} images"
    bfloor, bours = tb.values()
    return [
        (
            case,
            names[0],
            floor,
            "1.00x",
            "",
            f"{len(layers)} + 1 passes of {b}; {counted[0]} forward rows counted",
        ),
        (
            case,
            names[1],
            ours,
            f"{ours / floor:.2f}x",
            f"{ours / tq:.2f}x quantus",
            f"{len(layers)} modules with own parameters, head first, + the trained maps; "
            f"{counted[1]} forward rows counted; rank correlation + SSIM per step",
        ),
        (
            case,
            "quantus MPRT, captum Saliency (1 run)",
            tq,
            f"{tq / floor:.2f}x",
            f"{tq / ours:.2f}x seewhy",
            f"{qlayers} modules with reset_parameters + the original re-explained; "
            f"{qrows} forward rows counted; Spearman per step",
        ),
        (
            f"randomization, blocks ({len(blocks)} steps), {b} images",
            "floor, blocks",
            bfloor,
            "1.00x",
            "",
            f"{len(blocks)} + 1 passes of {b}: {', '.join(blocks)}",
        ),
        (
            f"randomization, blocks ({len(blocks)} steps), {b} images",
            'seewhy randomization(granularity="blocks") (the default), saliency',
            bours,
            f"{bours / bfloor:.2f}x",
            f"{bours / tq:.3f}x quantus layers",
            f"{bours / ours:.3f}x of the layers check",
        ),
    ]


# -- cams ---------------------------------------------------------------------------------------


def cam_rows(args: argparse.Namespace, s: Setup) -> list[Row]:
    from seewhy.checks.randomization import randomizable_blocks

    b, gran = len(s.x), args.cams_granularity
    steps = len(randomizable_blocks(s.net, gran))
    layer = seewhy.explain(s.model, s.inputs, ["gradcam"], target=s.target)[0].layer or "layer4"
    five, one = list(CAMS), ["gradcam"]
    contenders = {
        f"floor (deepcopy; re-init + forward + gradient at {layer} per step)": Counted(
            randomization_floor(s, gran, layer_grad(s, layer)), s.net
        ),
        f"seewhy randomization, 5 CAMs ({', '.join(CAMS)})": Counted(
            seewhy_randomization(s, gran, five, layer), s.net
        ),
        "seewhy randomization, 1 CAM (gradcam)": Counted(
            seewhy_randomization(s, gran, one, layer), s.net
        ),
    }
    before = s.state()
    t = measure(contenders, args.reps, warm(args, s))
    torch.testing.assert_close(s.net.state_dict(), before)
    measured_here = s.quantus_mprt is None
    if s.quantus_mprt is None:
        s.quantus_mprt, s.quantus_mprt_rows, _ = quantus_mprt(s)
    tq = s.quantus_mprt
    names = list(contenders)
    floor, ours5, ours1 = (t[k] for k in names)
    counted = [contenders[k].rows for k in names]
    case = f"cams, {gran} ({steps} steps), {b} images"
    source = "measured in this case" if measured_here else "the randomization case's run"
    return [
        (case, names[0], floor, "1.00x", "", f"{counted[0]} forward rows counted"),
        (
            case,
            names[1],
            ours5,
            f"{ours5 / floor:.2f}x",
            f"{ours5 / ours1:.2f}x one CAM; {ours5 / (5 * tq):.3f}x quantus x 5",
            f"one forward+backward per copy for all five; {counted[1]} forward rows counted",
        ),
        (
            case,
            names[2],
            ours1,
            f"{ours1 / floor:.2f}x",
            "",
            f"{counted[2]} forward rows counted",
        ),
        (
            case,
            "quantus MPRT x 5 methods (extrapolated)",
            5 * tq,
            f"{5 * tq / floor:.2f}x",
            f"{5 * tq / ours5:.1f}x seewhy 5 CAMs",
            f"5 x its one-method (Saliency, layers) time, {tq:.1f} s ({source}), not run 5 times; "
            "quantus has no shared pass, one MPRT per method; its CAM backward stops at the "
            "layer, so 5 x Saliency may overstate it a little",
        ),
    ]


def warm(args: argparse.Namespace, s: Setup) -> Run | None:
    """``--warmup light``: one forward+backward of the batch instead of each contender once."""
    if args.warmup == "full":
        return None

    def run() -> object:
        net = copy.deepcopy(s.net).requires_grad_(False)
        return input_grad(s)(net, torch.arange(min(len(s.x), s.bs)))

    return run


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50, help="deletion/insertion steps")
    ap.add_argument("--quantus-steps", type=int, default=96, help="PixelFlipping steps (about)")
    ap.add_argument("--cams-granularity", default="layers", choices=["layers", "blocks"])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--warmup",
        default="full",
        choices=["full", "light"],
        help="full: each contender once before the rounds; light: one forward+backward",
    )
    ap.add_argument("--quick", action="store_true", help="resnet18, 64 px, 2 images; prints only")
    ap.add_argument(
        "--cases",
        default="faithfulness,randomization,cams",
        help="comma list of: faithfulness, randomization, cams",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.side, args.images, args.steps = "resnet18", 64, 2, 8
        args.quantus_steps, args.reps = 12, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    builders = {
        "faithfulness": faithfulness_rows,
        "randomization": randomization_rows,
        "cams": cam_rows,
    }
    unknown = cases - set(builders)
    if unknown:
        ap.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(builders)}")
    setup = Setup(args)
    rows: list[Row] = []
    for name, build_rows in builders.items():
        if name in cases:
            t = time.perf_counter()
            rows += build_rows(args, setup)
            print(f"[{name}: {time.perf_counter() - t:.0f} s]", file=sys.stderr)
    from importlib.metadata import version

    every = cases >= set(builders)
    begin, end = markers("checks", cases, every)
    lines = [
        begin,
        "## Trust checks (`benchmarks/checks.py`"
        + ("" if every else f" --cases {','.join(sorted(cases))}")
        + ")",
        "",
        f"{datetime.date.today()}, cpu: {cpu_model()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), quantus {version('quantus')}; {args.model}, "
        f"{args.images} image(s) at {args.side} px, forward batch {args.batch_size}, "
        f"deletion/insertion {args.steps} steps, PixelFlipping ~{args.quantus_steps} steps, "
        f"CAMs randomized by {args.cams_granularity}; seewhy and floors: {args.reps} "
        f"interleaved rounds after a {args.warmup} warm-up, medians; quantus: one run on its "
        "own deep copy. Random weights (nothing is downloaded).",
        "",
        "| case | contender | seconds | ratio to floor | ratio to peer | notes |",
        "|---|---|---:|---:|---|---|",
        *[f"| {c} | {k} | {v:.2f} | {rf} | {rp} | {n} |" for c, k, v, rf, rp, n in rows],
        end,
    ]
    publish("\n".join(lines), begin, end, write=not args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
