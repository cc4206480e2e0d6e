"""Gradient methods: saliency, input x gradient, integrated gradients, SmoothGrad and expected
gradients (``shap`` on a torch model).

Each method reads the gradient of the target w.r.t. the INPUT, at the input itself or at points
around it (a straight path from a baseline, noisy copies, paths from background rows), and
combines those gradients into an attribution ``[B, C, H, W]`` (``Explanation.raw["image"]``)
that is folded over channels into the displayed map ``[B, H, W]``.

How they run (:meth:`GradientMethod.run_many`):

- One clean pass: the batch goes through the model ``batch_size`` rows at a time; its output is
  the explanation's ``output`` and the target is resolved there, once (``pred`` is the class the
  model picks on the clean input). If a method needs the gradient at the input itself
  (saliency, input x gradient, SmoothGrad with ``noise=0``), that same pass takes it, and the
  methods asking for it share it. Every other point (interpolated, noisy) reads the target
  resolved on the clean input, never a class re-decided on the point.
- The points of a method, ``steps`` or ``samples`` per row, are laid out along one flattened
  ``(row, point)`` axis and built chunk by chunk: NO forward sends the model more than
  ``batch_size`` rows, whatever ``steps x samples``, and no more than one chunk of points lives
  in memory. Gradients are accumulated per row, weighted, in float32; the model itself runs in
  its own dtype.
- Gradients are ``torch.autograd.grad(score.sum(), x)`` w.r.t. the input, made a fresh leaf;
  parameters are frozen by :func:`~seewhy.core.state.explaining` and never receive ``.grad``.
  No hooks are needed, so TorchScript modules (``torch.jit.trace``/``script``) work too.
- Randomness (SmoothGrad's noise, expected gradients' draws) comes from one CPU
  ``torch.Generator`` per row, seeded with that row's seed (``seeds[i]``): a row's result does
  not depend on the batch it came in, nor on ``batch_size``.

Multimodal batches. Every attributed entry of the batch (:data:`ATTRIBUTED`: ``image``
``[B, C, H, W]``, ``text`` ``[B, T, D]``, ``tabular`` ``[B, F]``) gets its own attribution from
the same passes: the path, noise and draws move all of them together, and the gradient is
taken w.r.t. each. ``text`` is the text embedding layer's output on the batch's token ids
(:meth:`~seewhy.core.model.Model.with_text_embedding`); the token ids and attention mask go
to the model unchanged, and the embedding layer returns the point's embeddings while the model
runs. Baselines (``_default_baselines``): zeros for the image and the tabular
features (in the model's normalised space), the [PAD] embedding at each sample's own
non-special positions for text (special tokens and padding keep their own embedding, so they
get no attribution). Displayed forms: the image map ``[B, H, W]``, per-token scores ``[B, T]``
(the sum over the embedding dimension: signed for signed methods, of ``|value|`` for unsigned
ones) and per-feature scores ``[B, F]``. ``per_sample["tokens"]`` and ``["words"]`` list each
sample's non-special tokens and whole words (word pieces merged) with their scores.

Signs and regression targets. The signed methods (input x gradient, IG, expected gradients) keep
the sign in their map: positive raises the explained output, negative lowers it, and figures
draw them diverging. The map of the opposite target (``-value`` for ``value``) is exactly the
negated map, so no ``extras["opposite"]`` is added: the one signed map shows both. The unsigned
ones (saliency, SmoothGrad) are ``|gradient|`` maps, the same for a target and its opposite, so
they add nothing either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from seewhy.core.errors import MethodNotApplicableError, UsageError
from seewhy.core.explanation import Explanation
from seewhy.core.inputs import DEFAULT_BATCH_SIZE, IMAGE, Inputs, check_batch_size
from seewhy.core.modalities import TABULAR, TEXT, token_records
from seewhy.core.model import Model, check_rows, nonfinite_rows
from seewhy.core.state import explaining
from seewhy.core.targets import ResolvedTarget, Target
from seewhy.methods.base import Method, check_seeds
from seewhy.methods.registry import register

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "ATTRIBUTED",
    "RULES",
    "ExpectedGradients",
    "GradientMethod",
    "InputXGradient",
    "IntegratedGradients",
    "Saliency",
    "SmoothGrad",
    "quadrature",
]

ATTRIBUTED: tuple[str, ...] = (IMAGE, TEXT, TABULAR)
"""The batch entries gradient methods attribute (the others go to the model unchanged)."""

RULES = (
    "gauss-legendre",
    "riemann-trapezoid",
    "riemann-left",
    "riemann-right",
    "riemann-middle",
)
"""Integrated gradients' quadrature rules (the Riemann ones named as captum's ``method=``)."""

BASELINES = ("zeros",)


def quadrature(rule: str, steps: int) -> tuple[list[float], list[float]]:
    """The nodes ``alpha_k`` in ``[0, 1]`` and weights ``w_k`` of ``rule`` with ``steps`` nodes:
    ``integral_0^1 g(a) da ~ sum_k w_k g(alpha_k)``.

    - ``gauss-legendre``: ``numpy.polynomial.legendre.leggauss(steps)`` mapped from ``[-1, 1]``
      to ``[0, 1]`` (nodes ``(t + 1) / 2``, weights halved); exact for polynomials of degree up
      to ``2 * steps - 1``.
    - ``riemann-left`` / ``-right`` / ``-middle``: nodes ``k/n``, ``(k+1)/n``, ``(k+1/2)/n``,
      weights ``1/n``.
    - ``riemann-trapezoid``: nodes ``k/(n-1)`` (both ends included), weights ``1/(n-1)``
      halved at the ends; they sum to 1 (needs ``steps >= 2``). Deviation from captum, whose
      trapezoid weights are ``1/n`` (halved at the ends) and sum to ``(n-1)/n``: captum's
      ``riemann_trapezoid`` attributions are these times ``(n-1)/n``.
    """
    n = int(steps)
    if rule == "gauss-legendre":
        import numpy as np

        nodes, weights = np.polynomial.legendre.leggauss(n)
        return [float(v) for v in 0.5 * (nodes + 1.0)], [float(v) for v in 0.5 * weights]
    if rule == "riemann-trapezoid":
        h = 1.0 / (n - 1)
        w = [h] * n
        w[0] = w[-1] = h / 2
        return [k * h for k in range(n)], w
    offset = {"riemann-left": 0.0, "riemann-right": 1.0, "riemann-middle": 0.5}[rule]
    return [(k + offset) / n for k in range(n)], [1.0 / n] * n


# -- the passes ---------------------------------------------------------------------------------


@dataclass
class _Run:
    """What one ``run_many`` call shares between its methods.

    Attributes:
        model: the model.
        inputs: the batch, on the model's device and dtype.
        names: the attributed entries (:data:`ATTRIBUTED` present in the batch).
        target: the target resolved on the clean output ``[B]``.
        output: ``[B, C]`` float32, the clean output.
        gradients: name -> ``[B, ...]`` float32, d target / d input at the input itself, or
            ``None`` if no method asked for it.
        step: the largest batch a forward may send.
        seeds: one seed per row.
        background: the rows baselines are drawn from (with their ``text`` entry), or ``None``.
        baselines: name -> the default baseline ``[B, ...]`` float32 (zeros; [PAD] for text).
        fixed: name -> a bool mask broadcastable to the entry (text: ``[B, T, 1]``, the special
            tokens and padding) where every baseline equals the input: those positions get no
            attribution, whatever baseline is drawn.
    """

    model: Model
    inputs: Inputs
    names: tuple[str, ...]
    target: ResolvedTarget
    output: Tensor
    gradients: dict[str, Tensor] | None
    step: int
    seeds: list[int]
    background: Inputs | None
    baselines: dict[str, Tensor]
    fixed: dict[str, Tensor]

    @property
    def dtype_device(self) -> tuple[Any, Any]:
        """The dtype and device the attributed inputs are in (the model's)."""
        first = self.inputs[self.names[0]]
        return first.dtype, first.device

    def generators(self) -> list[Any]:
        """One CPU generator per row, seeded with the row's seed."""
        import torch

        return [torch.Generator().manual_seed(s) for s in self.seeds]


@dataclass
class _Attribution:
    """What a method computed: the raw attributions per name ``[B, ...]`` float32, extras and
    params that took effect beside its settings."""

    raw: dict[str, Tensor]
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def _input_gradients(
    model: Model,
    batch: Inputs,
    target: Target,
    names: Sequence[str],
    *,
    bf16: bool = False,
    finite: bool = True,
) -> tuple[Tensor, ResolvedTarget, dict[str, Tensor]]:
    """One forward and one backward: the output ``[n, C]`` (detached, model dtype), the target
    resolved on it (a resolved target stays as it is) and d target / d input per name
    (float32). The inputs are fresh leaves; nothing else receives a gradient. ``bf16``: the
    forward (and so its backward) runs under bfloat16 autocast; the output is read in float32.
    ``finite=False``: a NaN/inf output is returned, not refused (the caller checks it)."""
    import contextlib

    import torch

    leaves = {n: batch[n].detach().requires_grad_(True) for n in names}
    autocast: contextlib.AbstractContextManager[Any] = (
        torch.autocast(model.device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    with torch.enable_grad():
        with autocast:
            out = model.forward(batch.replace(**leaves), finite=finite)
        if bf16:
            out = out.float()
        resolved = target.resolve(out)
        score = resolved(out)
        if not score.requires_grad:
            raise MethodNotApplicableError(_NO_GRADIENT)
        grads = torch.autograd.grad(score.sum(), [leaves[n] for n in names], allow_unused=True)
    if all(g is None for g in grads):
        raise MethodNotApplicableError(_NO_GRADIENT)
    return (
        out.detach(),
        resolved,
        {
            n: torch.zeros_like(leaves[n], dtype=torch.float32) if g is None else g.float()
            for n, g in zip(names, grads, strict=True)
        },
    )


_NO_GRADIENT = (
    "no gradient reaches the model's input from its output (a detach, an integer cast or "
    "torch.no_grad inside forward), so gradient methods cannot explain it; use a perturbation "
    "method (occlusion, rise) or a CAM"
)


def _clean_pass(
    model: Model,
    inputs: Inputs,
    target: Target,
    names: Sequence[str],
    step: int,
    *,
    gradients: bool,
) -> tuple[Tensor, ResolvedTarget, dict[str, Tensor] | None]:
    """The clean batch through the model ``step`` rows at a time: the output ``[B, C]``
    float32, the target resolved on it, and (if ``gradients``) d target / d input there."""
    import torch

    outs: list[Tensor] = []
    targets: list[ResolvedTarget] = []
    grads: dict[str, list[Tensor]] = {n: [] for n in names}
    for start in range(0, inputs.batch_size, step):
        part = inputs[start : start + step]
        part_target = target.rows(slice(start, start + step))
        if gradients:
            out, resolved, g = _input_gradients(model, part, part_target, names)
            for n in names:
                grads[n].append(g[n])
        else:
            with torch.no_grad():
                out = model.forward(part)
                resolved = part_target.resolve(out)
        outs.append(out.detach().float())
        targets.append(resolved)
    return (
        torch.cat(outs),
        ResolvedTarget.cat(targets),
        {n: torch.cat(v) for n, v in grads.items()} if gradients else None,
    )


Points = Callable[["Tensor", "Tensor"], tuple[dict[str, "Tensor"], dict[str, "Tensor"] | None]]
"""``(flat, rows) -> (points, factors)``: for flat indices ``flat`` (CPU, long) of rows
``rows``, the input at each point per attributed name (model dtype, on the model's device) and
the factor its gradient is multiplied by before it is summed into its row (float32,
broadcastable; ``None``: 1)."""


def _path_sums(run: _Run, per_row: int, points: Points, *, bf16: bool = False) -> dict[str, Tensor]:
    """``sum_k factor_k * grad f(point_k)`` per row and name (float32 ``[B, ...]``), over the
    ``per_row`` points of each row, the flattened ``(row, point)`` axis sent to the model
    ``run.step`` points at a time (row-major: a row's points are consecutive). ``bf16``: the
    points' forwards run under bfloat16 autocast."""
    import torch

    x = run.inputs
    total = x.batch_size * per_row
    sums = {n: torch.zeros(x[n].shape, dtype=torch.float32, device=x[n].device) for n in run.names}
    device = run.target.output_columns.device
    # rows whose points gave a NaN/inf output, counted on the device and read once at the end
    # (a check per chunk would stop the host after every forward on a GPU)
    bad = torch.zeros(x.batch_size, dtype=torch.int32, device=device)
    for start in range(0, total, run.step):
        stop = min(start + run.step, total)
        flat = torch.arange(start, stop)
        rows = flat // per_row
        entries, factors = points(flat, rows)
        batch = Inputs(
            {
                k: entries[k] if k in entries else v.index_select(0, rows.to(v.device))
                for k, v in x.items()
            }
        )
        out, _, grads = _input_gradients(
            run.model, batch, run.target.rows(rows.to(device)), run.names, bf16=bf16, finite=False
        )
        bad.index_add_(0, rows.to(device), nonfinite_rows(out).to(torch.int32))
        for n in run.names:
            part = grads[n] if factors is None else grads[n] * factors[n]
            # the chunk's rows are consecutive: add each row's points in order (deterministic)
            for r in range(start // per_row, (stop - 1) // per_row + 1):
                lo = max(start, r * per_row) - start
                hi = min(stop, (r + 1) * per_row) - start
                sums[n][r] += part[lo:hi].sum(dim=0)
    check_rows(bad, " at the method's points")
    return sums


def _target_values(run: _Run, inputs: Inputs) -> Tensor:
    """The resolved target on ``inputs`` (same rows as the batch) ``[B]`` float32, ``run.step``
    rows at a time, without gradients."""
    import torch

    values = []
    with torch.no_grad():
        for start in range(0, inputs.batch_size, run.step):
            out = run.model.forward(inputs[start : start + run.step])
            values.append(run.target.rows(slice(start, start + run.step))(out).float())
    return torch.cat(values)


PRECISIONS = ("float32", "bfloat16", "auto")
"""The precisions of the methods with many points (``ig``, ``smoothgrad``,
``expected-gradients``): ``float32`` (default: the model's own precision), ``bfloat16``
(the points' forward and backward under bfloat16 autocast; only where the hardware computes
bfloat16 natively), ``auto`` (bfloat16 where native, else the model's own)."""


def _bf16(method: str, precision: str, dtype: Any, device: Any) -> bool:
    """Whether ``method``'s points run under bfloat16 autocast on a model of ``dtype`` on
    ``device``: ``bfloat16`` or ``auto`` on a float32 model whose device computes bfloat16
    natively. ``bfloat16`` elsewhere is refused (emulated bfloat16 is slower than float32 and
    less exact: nothing to gain)."""
    import torch

    from seewhy.core.engine import bf16_native

    if precision == "float32":
        return False
    able = dtype == torch.float32 and bf16_native(device)
    if precision == "bfloat16" and not able:
        where = (
            f"a {str(dtype).removeprefix('torch.')} model"
            if dtype != torch.float32
            else f"this {device.type}, which does not compute bfloat16 natively "
            "(it would be slower than float32)"
        )
        raise UsageError(
            f"{method}(precision=bfloat16) runs only on a float32 model on hardware that "
            f"computes bfloat16 natively, not on {where}; use precision=float32 or auto"
        )
    return able


def _check_precision(method: str, precision: Any) -> None:
    if precision not in PRECISIONS:
        raise UsageError(
            f"{method} precision {precision!r} is unknown; use float32 (default, exact), "
            "bfloat16 (faster where the hardware computes it natively) or auto"
        )


def _forward_dtype(bf16: bool, run: _Run) -> dict[str, str]:
    """``params["forward_dtype"]``: the dtype the points' forwards ran in."""
    return {
        "forward_dtype": "bfloat16" if bf16 else str(run.dtype_device[0]).removeprefix("torch.")
    }


def _rows_of(t: Tensor, rows: Tensor) -> Tensor:
    return t.index_select(0, rows.to(t.device))


def _broadcast(v: Tensor, like: Tensor) -> Tensor:
    """``[n]`` -> ``[n, 1, 1, ...]`` to multiply ``like`` ``[n, ...]``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


# -- the family ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientMethod(Method):
    """Base of the gradient family: methods that combine gradients of the target w.r.t. the
    input. All of them run through :meth:`run_many` (``seewhy.explain`` groups them in one
    call, which shares the clean pass and its gradient)."""

    uses_clean_gradient: ClassVar[bool] = False
    many_points: ClassVar[bool] = False
    """Whether the method sends many points per row (IG's steps, SmoothGrad's noisy copies,
    expected gradients' draws): those may go through the forward engine's folded copy
    (:func:`_points_run`)."""

    def points_per_row(self) -> int:
        """How many points per row the method sends (0: none beyond the clean pass)."""
        return int(getattr(self, "steps", 0) or getattr(self, "samples", 0)) * self.many_points

    def needs_clean_gradient(self) -> bool:
        """Whether this method reads the gradient at the input itself."""
        return self.uses_clean_gradient

    def attribute(self, run: _Run) -> _Attribution:
        """The raw attribution per attributed name (float32, the input's shape)."""
        raise NotImplementedError

    def check_applicable(self, module: Any) -> None:
        """``precision=bfloat16`` where the hardware cannot run it: refused before any work."""
        import torch

        super().check_applicable(module)
        p = next((q for q in module.parameters() if q.is_floating_point()), None)
        _bf16(
            self.name,
            getattr(self, "precision", "float32"),
            torch.float32 if p is None else p.dtype,
            torch.device("cpu") if p is None else p.device,
        )

    def display(self, raw: Tensor, name: str = IMAGE) -> Tensor:
        """The displayed form of an input's raw attribution. Image ``[B, C, H, W]`` ->
        ``[B, H, W]``: the sum over channels for signed methods, the largest ``|value|`` over
        channels for unsigned ones. Text ``[B, T, D]`` -> per-token ``[B, T]``: the sum over D
        (of ``|value|`` when unsigned). Tabular ``[B, F]`` as it is (``|value|`` when
        unsigned)."""
        if name == IMAGE:
            return raw.sum(dim=1) if self.signed else raw.abs().amax(dim=1)
        value = raw if self.signed else raw.abs()
        return value.sum(dim=-1) if name == TEXT else value

    @classmethod
    def run_many(
        cls,
        methods: Sequence[Method],
        model: Model,
        inputs: Inputs,
        target: Target,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seeds: Sequence[int] | None = None,
        background: Inputs | None = None,
    ) -> list[Explanation]:
        """Run several gradient methods on one batch; they share the clean pass (output, target
        resolved once, and the gradient at the input when one of them reads it). No forward
        sends the model more than ``batch_size`` rows. ``seeds``: one per row, for the methods
        that draw at random; ``background``: the rows expected gradients draw baselines from."""
        step = check_batch_size(batch_size)
        family = [m for m in methods if isinstance(m, GradientMethod)]
        x = model.to_input(inputs)
        x = model.with_text_embedding(x)
        names = tuple(n for n in ATTRIBUTED if n in x and x[n].is_floating_point())
        image = x.get(IMAGE)
        if not names or (image is not None and (image.ndim != 4 or IMAGE not in names)):
            raise MethodNotApplicableError(
                f"gradient methods attribute a floating image batch [B, C, H, W] ('{IMAGE}'), "
                f"token embeddings ('{TEXT}', from token ids) or tabular features "
                f"('{TABULAR}' [B, F]); got {x!r}"
            )
        row_seeds = check_seeds(seeds, x.batch_size)
        bg = None if background is None else model.with_text_embedding(model.to_input(background))
        with explaining(model.module):
            gradient = any(m.needs_clean_gradient() for m in family)
            output, resolved, grads = _clean_pass(model, x, target, names, step, gradients=gradient)
            run = _Run(
                model=model,
                inputs=x,
                names=names,
                target=resolved,
                output=output,
                gradients=grads,
                step=step,
                seeds=row_seeds,
                background=bg,
                baselines=_default_baselines(model, x, names),
                fixed=_fixed_positions(model, x, names),
            )
            points = _points_run(run, family)
            done = [(m, m.attribute(points if m.many_points else run)) for m in family]
        results = []
        for m, a in done:
            raw = {n: a.raw[n].detach().float() for n in names}
            for n, fixed in run.fixed.items():  # special tokens and padding: no attribution
                raw[n] = raw[n].masked_fill(fixed, 0.0)
            shown = {n: m.display(raw[n], n) for n in names}
            per_sample: dict[str, list[Any]] = {}
            if TEXT in names and model.text is not None:
                tokens, words = token_records(
                    model.text,
                    x["input_ids"],
                    x.get("attention_mask"),
                    shown[TEXT],  # signed: the sum over D; unsigned: the sum of |value|
                    raw[TEXT].abs().sum(dim=-1),
                )
                per_sample = {"tokens": tokens, "words": words}
            results.append(
                Explanation(
                    method=m.name,
                    attributions=shown,
                    target=resolved.name,
                    params=m.params() | a.params,
                    layer=None,
                    output=output,
                    target_indices=resolved.class_indices,
                    signed=m.signed,
                    extras=a.extras,
                    raw=raw,
                    input_signed={n: m.signed for n in names},
                    per_sample=per_sample,
                )
            )
        return results


FOLD_POINTS = True
"""Whether the many-point methods run their points on the forward engine's folded copy."""

FOLD_MIN_PIXELS = 16 * 224 * 224
"""The folded copy pays for itself (a copy, an ``fx`` trace, a check: 0.16 s for a ResNet-18,
0.38 s for a ResNet-50 on one CPU thread) from about 16 points at 224 x 224: below this many
point-pixels (rows x points x H x W) the points run on the model as it is."""


def _points_run(run: _Run, family: Sequence[GradientMethod]) -> _Run:
    """``run`` on the forward engine's private copy of an image model with batch norms
    (:class:`~seewhy.core.engine.ForwardEngine`): each batch norm folded into the convolution
    before it, channels-last weights and images. The same function (an eval-mode batch norm is
    an affine map), so the same gradients up to float rounding, for fewer passes over memory:
    on a ResNet-50 a point's forward+backward costs 0.74x the plain model's (one CPU thread,
    ``benchmarks/gradients.py``). ``run`` itself when no method sends many points, for
    multi-input models, for models without batch norms or with the user's hooks, when the
    folded copy does not reproduce the model's output, and below :data:`FOLD_MIN_PIXELS`. The
    copy lives for this call only."""
    if not FOLD_POINTS or run.names != (IMAGE,) or set(run.inputs) != {IMAGE}:
        return run
    b, _, h, w = run.inputs[IMAGE].shape
    points = max(m.points_per_row() for m in family)
    if not points or b * points * h * w < FOLD_MIN_PIXELS:
        return run
    import torch

    from seewhy.core.engine import ForwardEngine, batch_norms

    module = run.model.module
    if not batch_norms(module) or _hooked(module):
        return run
    n = min(run.inputs.batch_size, 2)  # the copy is checked against the clean output's rows
    engine = ForwardEngine(
        run.model, run.inputs[:n], batch_size=run.step, precision="float32", expected=run.output[:n]
    )
    if not engine.folded:
        return run
    image = run.inputs[IMAGE].contiguous(memory_format=torch.channels_last)
    return dataclasses.replace(run, model=engine.model, inputs=run.inputs.replace(image=image))


def _hooked(module: Any) -> bool:
    """Whether the user put hooks on ``module`` or its submodules: a traced copy drops those on
    the containers it flattens and moves a convolution's past its folded batch norm, so such a
    model runs its points as it is."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(m, k, None) for m in module.modules() for k in kinds)


def _fixed_positions(model: Model, x: Inputs, names: Sequence[str]) -> dict[str, Tensor]:
    """Text: the special tokens and padding ``[B, T, 1]``, which no baseline moves."""
    if TEXT not in names or model.text is None:
        return {}
    return {TEXT: model.text.special_mask(x["input_ids"], x.get("attention_mask"))[..., None]}


def _default_baselines(model: Model, x: Inputs, names: Sequence[str]) -> dict[str, Tensor]:
    """Zeros for the image and tabular features; [PAD] at the non-special positions for text."""
    import torch

    out = {}
    for n in names:
        if n == TEXT:
            out[n] = model.text_baseline(x).float()
        else:
            out[n] = torch.zeros(x[n].shape, dtype=torch.float32, device=x[n].device)
    return out


def _clean_gradients(run: _Run) -> dict[str, Tensor]:
    if run.gradients is None:  # pragma: no cover - run_many takes them when asked
        raise MethodNotApplicableError("the gradient at the input was not taken")
    return run.gradients


def _check_int(value: Any, what: str, least: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UsageError(f"{what} must be an integer >= {least}, got {value!r}; {hint}")


@register("saliency")
@dataclass(frozen=True)
class Saliency(GradientMethod):
    """Saliency (Simonyan et al., 2014, "Deep Inside Convolutional Networks"): the magnitude of
    the gradient of the target w.r.t. the input; the displayed map is the largest ``|grad|``
    over channels at each pixel, as in the paper.

    Unsigned map. ``raw["image"]`` is the signed gradient itself ``[B, C, H, W]`` (so input x
    gradient and others can be derived from it); captum's ``Saliency(abs=True)`` equals its
    absolute value. One forward and one backward per ``batch_size`` rows.
    """

    uses_clean_gradient: ClassVar[bool] = True

    def attribute(self, run: _Run) -> _Attribution:
        return _Attribution(raw=dict(_clean_gradients(run)))


@register("inputxgrad", "input-x-gradient")
@dataclass(frozen=True)
class InputXGradient(GradientMethod):
    """Input x gradient (Shrikumar et al., 2016, "Not Just a Black Box"):
    ``(x - b) * d target / dx``, ``b`` the baseline: zeros for images and tabular features (so
    ``x * grad``), [PAD] for text.

    Signed (positive: the pixel's value raises the target, compared with a zero input in the
    model's normalised space); the displayed map is the sum over channels. It shares the
    gradient of saliency when both are asked for.
    """

    signed: ClassVar[bool] = True
    uses_clean_gradient: ClassVar[bool] = True

    def attribute(self, run: _Run) -> _Attribution:
        grads = _clean_gradients(run)
        return _Attribution(
            raw={n: (run.inputs[n].float() - run.baselines[n]) * grads[n] for n in run.names}
        )


@register("ig", "integrated-gradients")
@dataclass(frozen=True)
class IntegratedGradients(GradientMethod):
    """Integrated gradients (Sundararajan et al., 2017, "Axiomatic Attribution for Deep
    Networks"): ``(x - b) * integral_0^1 grad f(b + a (x - b)) da``, the integral taken by a
    quadrature ``rule`` with ``steps`` nodes.

    Signed; the displayed map is the sum over channels. ``extras["completeness_gap"]`` ``[B]``
    is, per sample, ``sum(attribution) - (f(x) - f(b))`` for the target (resolved on the clean
    input): the completeness axiom says it is 0, so it measures the quadrature's error (one
    extra forward of the baselines, no gradient).

    Rule. ``gauss-legendre`` (default) places the nodes and weights of Gauss-Legendre
    quadrature on ``[0, 1]`` (:func:`quadrature`). Why: ``n`` nodes integrate polynomials of
    degree ``2n - 1`` exactly, so on a smooth model (GELU, softplus, SiLU, sigmoid), whose
    path integrand is well approximated by a polynomial, the completeness gap falls
    geometrically with ``steps``, against ``O(1/n)`` for the left/right Riemann rules and
    ``O(1/n^2)`` for middle/trapezoid. On the tests' softplus/GELU CNN, 8 nodes leave a gap of
    2e-5 of ``f(x) - f(0)`` where riemann-middle and riemann-trapezoid leave 4e-4 and 1e-3;
    64 nodes are within 1% (tested; measured 1e-7). The Riemann rules (``riemann-trapezoid``,
    ``-left``, ``-right``, ``-middle``) are captum's ``method=`` choices, for comparison: ours
    equal captum's at the same rule and steps, except that captum's trapezoid weights sum to
    ``(n-1)/n`` (see :func:`quadrature`). ``steps=50`` is captum's and the paper's usual
    default: ample for smooth models, short for ReLU ones (below).

    ReLU networks. Along the path a ReLU net's gradient is piecewise constant, with a jump
    wherever a unit switches, so no rule is exact and Gauss-Legendre loses its edge: the gap
    falls roughly like ``1/n``. Measured on the tests' ReLU CNN (three 3x3 conv + ReLU blocks,
    random weights, 16 random 16 x 16 images; the half with the larger ``|f(x) - f(0)|``,
    since a near-zero difference makes any relative gap blow up): the largest gap was 2.9% of
    ``f(x) - f(0)`` at 16 steps, 1.05% at 64 and 0.39% at 128, so about **128 steps** reach
    1% on every image (64 on the median image; tested). There riemann-middle and
    riemann-trapezoid did about as well (0.7% at 64 steps, 0.4% and 0.3% at 128) and
    riemann-left/-right worse (1% only at 128).
    Rules with a node at ``alpha = 0`` (``riemann-left``, ``riemann-trapezoid``) also take a
    gradient AT the baseline, where a max-pool over the all-zero input sees ties and routes
    the gradient to one element, not the path's derivative: on a batch-norm + max-pool CNN
    that alone kept riemann-trapezoid's gap near ``1/(2n)`` (7% at 8 steps, where
    Gauss-Legendre's was 0.3%). Check ``completeness_gap`` on your model and raise ``steps``
    until it is small beside ``f(x) - f(b)``.

    Args:
        steps: quadrature nodes (forward+backward passes per sample), >= 1 (>= 2 for
            ``riemann-trapezoid``).
        baseline: ``zeros``: the all-zero input in the model's normalised space (SPEC 5; for
            ImageNet-normalised models that is the mean colour, not black); for text, the
            [PAD] embedding at the sample's non-special positions.
        rule: the quadrature rule, one of :data:`RULES`.
        precision: the points' forwards: ``float32`` (default), ``bfloat16`` (autocast
            where the hardware computes it natively; the clean pass stays float32),
            ``auto`` (see :data:`PRECISIONS`). Under bfloat16 the completeness gap grows
            (tested within 2% of ``f(x) - f(b)``).
    """

    steps: int = 50
    baseline: str = "zeros"
    rule: str = "gauss-legendre"
    many_points: ClassVar[bool] = True
    precision: str = "float32"

    signed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        least = 2 if self.rule == "riemann-trapezoid" else 1
        _check_int(self.steps, "ig steps", least, "e.g. ig(steps=50)")
        if self.rule not in RULES:
            raise UsageError(
                f"ig rule '{self.rule}' is unknown; use one of {', '.join(RULES)} "
                "(gauss-legendre converges fastest on smooth models)"
            )
        _check_precision("ig", self.precision)
        if self.baseline not in BASELINES:
            raise UsageError(
                f"ig baseline '{self.baseline}' is unknown; use {', '.join(BASELINES)} (the "
                "all-zero input in the model's normalised space)"
            )

    def attribute(self, run: _Run) -> _Attribution:
        import torch

        x = {n: run.inputs[n].float() for n in run.names}
        base = run.baselines
        alphas, weights = quadrature(self.rule, self.steps)
        device = x[run.names[0]].device
        alpha = torch.tensor(alphas, dtype=torch.float32, device=device)
        weight = torch.tensor(weights, dtype=torch.float32, device=device)
        steps = self.steps

        def points(flat: Tensor, rows: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
            k = (flat % steps).to(device)
            out, factors = {}, {}
            for n in run.names:
                b, xs = _rows_of(base[n], rows), _rows_of(x[n], rows)
                a = _broadcast(alpha[k], xs)
                out[n] = (b + a * (xs - b)).to(run.inputs[n].dtype)
                factors[n] = _broadcast(weight[k], xs)
            return out, factors

        bf16 = _bf16("ig", self.precision, *run.dtype_device)
        sums = _path_sums(run, steps, points, bf16=bf16)
        raw = {n: (x[n] - base[n]) * sums[n] for n in run.names}
        at_baseline = _target_values(
            run,
            run.inputs.replace(**{n: base[n].to(run.inputs[n].dtype) for n in run.names}),
        )
        total = sum(raw[n].flatten(1).sum(dim=1) for n in run.names)
        gap = total - (run.target.values.to(device) - at_baseline.to(device))
        return _Attribution(
            raw=raw, extras={"completeness_gap": gap}, params=_forward_dtype(bf16, run)
        )


@register("smoothgrad")
@dataclass(frozen=True)
class SmoothGrad(GradientMethod):
    """SmoothGrad (Smilkov et al., 2017): the gradient averaged over ``samples`` noisy copies
    ``x + N(0, sigma^2)`` of each input, ``sigma = noise * (max(x) - min(x))`` over that
    sample's whole input (the paper's noise level, 10-20% recommended).

    What is averaged: the GRADIENT, signed, as in the paper's ``M_hat(x) = mean M(x + noise)``
    with ``M`` the gradient; ``raw["image"]`` is that mean gradient, and the displayed map is,
    as for saliency, its largest absolute value over channels (unsigned). So ``noise=0`` gives
    exactly saliency's raw gradient and map (every copy is ``x``: one clean gradient serves,
    shared with saliency). Equivalence with captum: ``raw`` equals
    ``NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", abs=False,
    stdevs=sigma, nt_samples=samples)`` given the same noise (captum takes one ``sigma`` per
    input tensor, not per sample: the tests patch its noise with ours); its default ``abs=True``
    averages ``|grad|`` instead (the mean of magnitudes, never smaller than the magnitude of
    the mean), a different map.

    Noise: row ``i`` draws its copies in order from a CPU ``torch.Generator`` seeded with
    ``seeds[i]``: copy ``j`` is ``torch.randn(x[i].shape, generator=g)`` (float32, one draw per
    attributed input in turn), scaled by ``sigma_i`` and moved to the input's device; so a
    row's noise depends on its seed alone, whatever the batch and ``batch_size``.
    ``extras["noise_std"]`` ``[B]`` records ``sigma`` per sample.

    Args:
        samples: noisy copies per sample (forward+backward passes), >= 1.
        noise: the noise level ``sigma / (max - min)``, >= 0.
        precision: the points' forwards: ``float32`` (default), ``bfloat16`` (autocast
            where the hardware computes it natively; the clean pass stays float32),
            ``auto`` (see :data:`PRECISIONS`).
    """

    samples: int = 50
    noise: float = 0.15
    many_points: ClassVar[bool] = True
    precision: str = "float32"

    draws_at_random: ClassVar[bool] = True

    def __post_init__(self) -> None:
        import math

        _check_int(self.samples, "smoothgrad samples", 1, "e.g. smoothgrad(samples=50)")
        _check_precision("smoothgrad", self.precision)
        if (
            isinstance(self.noise, bool)
            or not isinstance(self.noise, int | float)
            or not math.isfinite(self.noise)
            or self.noise < 0
        ):
            raise UsageError(
                f"smoothgrad noise must be a number >= 0 (the noise std as a share of each "
                f"input's value range, e.g. 0.15), got {self.noise!r}"
            )

    def needs_clean_gradient(self) -> bool:
        return self.noise == 0

    def attribute(self, run: _Run) -> _Attribution:
        import torch

        x = {n: run.inputs[n].float() for n in run.names}
        sigma = {
            n: self.noise * (v.flatten(1).amax(dim=1) - v.flatten(1).amin(dim=1))
            for n, v in x.items()
        }
        extras = {"noise_std": sigma[run.names[0]]}
        if self.noise == 0:
            return _Attribution(raw=dict(_clean_gradients(run)), extras=extras)
        gens = run.generators()

        def points(flat: Tensor, rows: Tensor) -> tuple[dict[str, Tensor], None]:
            draws: dict[str, list[Tensor]] = {n: [] for n in run.names}
            for r in rows.tolist():
                for n in run.names:
                    draws[n].append(torch.randn(x[n].shape[1:], generator=gens[r]))
            out = {}
            for n in run.names:
                xs = _rows_of(x[n], rows)
                eps = torch.stack(draws[n]).to(xs.device)
                out[n] = (xs + _broadcast(_rows_of(sigma[n], rows), xs) * eps).to(
                    run.inputs[n].dtype
                )
            return out, None

        bf16 = _bf16("smoothgrad", self.precision, *run.dtype_device)
        sums = _path_sums(run, self.samples, points, bf16=bf16)
        return _Attribution(
            raw={n: s / self.samples for n, s in sums.items()},
            extras=extras,
            params=_forward_dtype(bf16, run),
        )


@register("expected-gradients", "shap")
@dataclass(frozen=True)
class ExpectedGradients(GradientMethod):
    """Expected gradients (Erion et al., 2021, "Improving performance of deep learning models
    with axiomatic attribution priors and expected gradients"), the estimator of shap's
    ``GradientExplainer``: integrated gradients averaged over baselines drawn from data,
    estimated with one random point per draw:
    ``mean_j (x - b_j) * grad f(b_j + a_j (x - b_j))``, ``b_j`` a row of ``background``,
    ``a_j ~ U(0, 1)``.

    Signed; the displayed map is the sum over channels. Its expectation sums to
    ``f(x) - mean_b f(b)`` (completeness against the background's mean output).

    Draws: row ``i`` draws ``samples`` background indices (``torch.randint``) then ``samples``
    alphas (``torch.rand``) from a CPU ``torch.Generator`` seeded with ``seeds[i]``, so they
    depend on the row's seed alone. The background is the call's ``background`` (``seewhy
    explain``: ``--n-background`` of the run's samples; ``seewhy.explain``: the given rows, by
    default the batch itself); a sample found in it may draw itself, which adds zero, as in
    shap.

    With no background or fewer than 2 rows (e.g. the default background of a one-image
    batch: the image itself, whose every draw would add zero), the baseline is the all-zero
    input: then this is integrated gradients with a Monte-Carlo rule (``samples`` uniform
    nodes), and ``extras["baseline_note"]`` says so. ``params["background_rows"]`` records the
    rows drawn from (0 for the zero baseline).

    Args:
        samples: draws (forward+backward passes) per sample, >= 1.
        precision: the points' forwards: ``float32`` (default), ``bfloat16`` (autocast
            where the hardware computes it natively; the clean pass stays float32),
            ``auto`` (see :data:`PRECISIONS`).
    """

    samples: int = 50
    many_points: ClassVar[bool] = True
    precision: str = "float32"

    signed: ClassVar[bool] = True
    uses_background: ClassVar[bool] = True
    draws_at_random: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_int(self.samples, "expected-gradients samples", 1, "e.g. shap(samples=50)")
        _check_precision("expected-gradients", self.precision)

    def attribute(self, run: _Run) -> _Attribution:
        import torch

        x = {n: run.inputs[n].float() for n in run.names}
        bg = run.background
        n_bg = 0 if bg is None else bg.batch_size
        extras: dict[str, Any] = {}
        if bg is not None and n_bg >= 2:
            for n in run.names:
                if n not in bg or tuple(bg[n].shape[1:]) != tuple(x[n].shape[1:]):
                    got = tuple(bg[n].shape[1:]) if n in bg else "none"
                    raise UsageError(
                        f"the background's '{n}' rows are {got}, the batch's "
                        f"{tuple(x[n].shape[1:])}; preprocess the background as the inputs"
                    )
            rows_bg: dict[str, Tensor] | None = {n: bg[n] for n in run.names}
        else:
            rows_bg = None
            n_bg = 0
            extras["baseline_note"] = (
                f"expected gradients need a background of at least 2 rows (got "
                f"{0 if bg is None else bg.batch_size}): the zero baseline was used instead, "
                f"i.e. integrated gradients with {self.samples} random uniform nodes"
            )
        picks, alphas = [], []
        for g in run.generators():
            if rows_bg is not None:
                picks.append(torch.randint(n_bg, (self.samples,), generator=g))
            alphas.append(torch.rand(self.samples, generator=g))
        pick = torch.cat(picks) if picks else None
        alpha = torch.cat(alphas)

        def points(flat: Tensor, rows: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
            out, factors = {}, {}
            for n in run.names:
                xs = _rows_of(x[n], rows)
                if rows_bg is None or pick is None:
                    b = _rows_of(run.baselines[n], rows)
                else:
                    b = _rows_of(rows_bg[n], pick[flat]).float()
                    if n in run.fixed:  # special tokens and padding keep their own embedding
                        b = torch.where(_rows_of(run.fixed[n], rows), xs, b)
                a = _broadcast(alpha[flat].to(xs.device), xs)
                out[n] = (b + a * (xs - b)).to(run.inputs[n].dtype)
                factors[n] = xs - b
            return out, factors

        bf16 = _bf16(self.name, self.precision, *run.dtype_device)
        sums = _path_sums(run, self.samples, points, bf16=bf16)
        return _Attribution(
            raw={n: s / self.samples for n, s in sums.items()},
            extras=extras,
            params={"background_rows": n_bg} | _forward_dtype(bf16, run),
        )
