"""Class activation maps: the gradient-weighted family, EigenCAM and Score-CAM.

Every method here reads one layer's activations ``A`` (``[B, K, h, w]``) and, for the
gradient-weighted ones, the gradient ``G = d target / d A``. :meth:`CAM.run_many` captures both
ONCE per batch and layer — asking for five gradient CAMs costs one forward and one backward,
and that backward stops at the layer: parameters never receive gradients (the layer output is
made a fresh leaf inside ``core.hooks.capture_output``).

Targets are read through their output column and per-sample sign (``Target.columns``,
``Target.signs``): on a single-logit binary classifier the negative class is the negated logit.
``Explanation.target_indices`` holds the class explained, in label space.

``batch_size`` (a call argument, not a setting) is the largest batch any forward sends to the
model: the layer pass runs the batch in chunks of that size, Score-CAM its masked inputs.

Regression targets: each map comes with the map of the opposite sign (what lowers the output
beside what raises it) in ``extras["opposite"]``, from the same passes: the opposite target's
gradient is ``-G``, and Score-CAM's masked forwards serve both signs. Target-independent
methods (``depends_on_target = False``: EigenCAM) have no opposite map.

A layer that runs more than once in one forward (a module called twice, weights shared across
steps) is explained at its LAST call: the activations are that call's output and the gradient
flows through it only; ``params["layer_calls"]`` then records how many calls there were.

Maps are computed in float32 (whatever the model's dtype), rectified, and bilinearly upsampled
(``align_corners=False``) to the input resolution. ``extras["low_res"]`` keeps the layer-grid map.

TorchScript modules cannot be hooked, so CAMs refuse them up front
(:class:`MethodNotApplicableError`): explain the original ``nn.Module`` instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from seewhy.core.errors import LayerError, MethodNotApplicableError
from seewhy.core.explanation import Explanation
from seewhy.core.hooks import capture_output
from seewhy.core.layers import LayerSpec, resolve_layer
from seewhy.core.state import explaining
from seewhy.core.targets import RegressionTarget, Target, output_tensor
from seewhy.methods.base import (
    DEFAULT_BATCH_SIZE,
    Method,
    check_batch_size,
    check_output,
    default_layer,
    module_of,
    to_model_input,
)
from seewhy.methods.registry import register

if TYPE_CHECKING:
    from torch import Tensor, nn

EPS = 1e-7


@dataclass
class LayerPass:
    """What the forward (+ backward) passes through a layer yield, all float32 and detached.

    Attributes:
        layer: the resolved layer.
        inputs: the batch as the model saw it (device, dtype).
        activations: ``[B, K, h, w]`` the layer's output (its last call).
        gradients: ``[B, K, h, w]`` d target / d activations, or ``None``.
        output: ``[B, C]`` the model's output.
        indices: ``[B]`` the class explained, in label space (binary: 0 negative, 1 positive).
        columns: ``[B]`` the output column read.
        signs: ``[B]`` float32, the sign the column is read with (+1, or -1 for ``-value`` and
            a binary classifier's negative class).
        calls: how many times the layer ran in one forward.
    """

    layer: LayerSpec
    inputs: Tensor
    activations: Tensor
    gradients: Tensor | None
    output: Tensor
    indices: Tensor
    columns: Tensor
    signs: Tensor
    calls: int = 1

    def negated(self) -> LayerPass:
        """The pass of the opposite target (``-f`` for the target ``f``): the same forward, the
        gradient ``-G`` and the signs flipped. No pass runs."""
        grads = None if self.gradients is None else -self.gradients
        return dataclasses.replace(self, gradients=grads, signs=-self.signs)

    @staticmethod
    def concat(parts: Sequence[LayerPass]) -> LayerPass:
        """Join the passes of consecutive chunks of one batch."""
        import torch

        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        grads = [p.gradients for p in parts]
        return LayerPass(
            layer=first.layer,
            inputs=torch.cat([p.inputs for p in parts]),
            activations=torch.cat([p.activations for p in parts]),
            gradients=None if any(g is None for g in grads) else torch.cat(grads),  # type: ignore[arg-type]
            output=torch.cat([p.output for p in parts]),
            indices=torch.cat([p.indices for p in parts]),
            columns=torch.cat([p.columns for p in parts]),
            signs=torch.cat([p.signs for p in parts]),
            calls=max(p.calls for p in parts),
        )


def layer_pass(
    module: nn.Module,
    inputs: Tensor,
    target: Target,
    layer: LayerSpec,
    *,
    gradients: bool,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> LayerPass:
    """Forwards through ``module`` capturing ``layer``, and backwards down to it, ``batch_size``
    samples at a time."""
    step = check_batch_size(batch_size)
    return LayerPass.concat(
        [
            _one_pass(module, inputs[start : start + step], target, layer, gradients=gradients)
            for start in range(0, inputs.shape[0], step)
        ]
    )


def _one_pass(
    module: nn.Module, inputs: Tensor, target: Target, layer: LayerSpec, *, gradients: bool
) -> LayerPass:
    """One forward through ``module`` capturing ``layer``, and one backward down to it."""
    import torch

    x = to_model_input(module, inputs)
    size = (int(x.shape[-2]), int(x.shape[-1])) if x.ndim == 4 else None
    with explaining(module), capture_output(layer.module, layer.name, leaf=gradients) as cap:
        grad: Tensor | None = None
        if gradients:
            with torch.enable_grad():
                out = output_tensor(module(x))
                check_output(out)
                score = target(out)
                act = cap.get()
                (g,) = torch.autograd.grad(score.sum(), act, allow_unused=True)
            if g is None:
                raise LayerError(
                    f"the output does not depend on layer '{layer.name}' (for class-token "
                    "ViTs read the last block's 'norm1', e.g. 'blocks.11.norm1'); choose a layer "
                    "on the path to the output"
                )
            grad = layer.to_nchw(g.detach(), size).float()
            if not bool(grad.any()) and bool(g.any()):
                # Only tokens outside the grid (a class token) carry gradient: every gradient
                # CAM of this layer would be a blank picture.
                raise LayerError(
                    f"the output depends on layer '{layer.name}' only through its class "
                    "(prefix) tokens, not its patch grid, so a gradient CAM there is blank; for "
                    "class-token ViTs read the last block's 'norm1' (e.g. 'blocks.11.norm1') or "
                    "use layer auto"
                )
        else:
            with torch.no_grad():
                out = output_tensor(module(x))
                check_output(out)
            act = cap.get()
        calls = cap.calls
    out = out.detach()
    return LayerPass(
        layer=layer,
        inputs=x.detach(),
        activations=layer.to_nchw(act.detach(), size).float(),
        gradients=grad,
        output=out.float(),
        indices=target.indices(out).detach(),
        columns=target.columns(out).detach(),
        signs=target.signs(out).detach().float(),
        calls=calls,
    )


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``[B, h, w]`` maps to ``size`` (half-pixel centres)."""
    import torch.nn.functional as F

    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


TORCHSCRIPT_REFUSED = (
    "CAM methods need a hookable layer; TorchScript modules cannot be hooked; explain the "
    "original nn.Module (FILE.py:FACTORY + checkpoint)"
)


@dataclass(frozen=True)
class CAM(Method):
    """Base of the CAM family. ``layer``: a module name, or ``auto``/``None`` for the model's
    default (the card's ``layer``, else the last spatial feature layer)."""

    layer: str | None = None
    needs_gradients: ClassVar[bool] = True

    def check_applicable(self, module: nn.Module) -> None:
        """CAMs capture a layer with a forward hook: TorchScript modules have none."""
        import torch

        if isinstance(module, torch.jit.ScriptModule):
            raise MethodNotApplicableError(TORCHSCRIPT_REFUSED)

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        """The rectified map ``[B, h, w]`` on the layer's grid."""
        raise NotImplementedError

    def maps(
        self, p: LayerPass, module: nn.Module, target: Target, *, batch_size: int, opposite: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The map ``[B, h, w]`` and, if ``opposite``, the map of the opposite target (``-f``
        for the target ``f``), from the same pass: by default :meth:`cam` of the negated pass
        (gradient ``-G``). ``batch_size`` bounds any forward the method runs itself."""
        low = self.cam(p, module, target)
        if not opposite:
            return low, None
        return low, self.cam(p.negated(), module, _opposite(target))

    def pass_params(self, p: LayerPass) -> dict[str, Any]:
        """Settings as they took effect on this pass (``auto`` resolved), for summary.json."""
        return {}

    @classmethod
    def run_many(
        cls,
        methods: Sequence[Method],
        model: Any,
        inputs: Tensor,
        target: Target,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[Explanation]:
        module = module_of(model)
        step = check_batch_size(batch_size)
        cams = [m for m in methods if isinstance(m, CAM)]
        for m in cams:
            m.check_applicable(module)
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        names = [m.layer or default_layer(model) for m in cams]
        regression = isinstance(target, RegressionTarget)
        passes: dict[str, LayerPass] = {}
        results = []
        for m, name in zip(cams, names, strict=True):
            if name not in passes:
                same = zip(cams, names, strict=True)
                needs = any(c.needs_gradients for c, n in same if n == name)
                example = to_model_input(module, inputs[:1]) if name == "auto" else None
                spec = resolve_layer(module, name, example)
                passes[name] = layer_pass(
                    module, inputs, target, spec, gradients=needs, batch_size=step
                )
            p = passes[name]
            opposite = regression and m.depends_on_target
            low, low_opposite = m.maps(p, module, target, batch_size=step, opposite=opposite)
            params = m.params() | {"layer": p.layer.name} | m.pass_params(p)
            if p.calls > 1:
                params["layer_calls"] = p.calls
            extras: dict[str, Any] = {"low_res": low}
            if low_opposite is not None:
                extras["opposite"] = upsample(low_opposite, size)
                extras["opposite_target"] = _opposite(target).name
            results.append(
                Explanation(
                    method=m.name,
                    attributions={"image": upsample(low, size)},
                    target=target.name,
                    params=params,
                    layer=p.layer.name,
                    output=p.output,
                    target_indices=p.indices,
                    signed=False,
                    extras=extras,
                )
            )
        return results


def _opposite(target: Target) -> Target:
    """The target of the other sign, for regression targets (others have none)."""
    if isinstance(target, RegressionTarget):
        return target.opposite()
    return target


def _weighted(weights: Tensor, acts: Tensor) -> Tensor:
    """``relu(sum_k w_k A_k)`` for per-channel weights ``[B, K]``."""
    return (weights[:, :, None, None] * acts).sum(dim=1).clamp_min(0)


def _grads(p: LayerPass) -> Tensor:
    if p.gradients is None:  # pragma: no cover - run_many always asks for them
        raise LayerError("gradients were not captured")
    return p.gradients


@register("gradcam")
@dataclass(frozen=True)
class GradCAM(CAM):
    """Grad-CAM (Selvaraju et al., 2017): channel weights = spatial mean of the gradient."""

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        return _weighted(_grads(p).mean(dim=(2, 3)), p.activations)


@register("gradcam++", "gradcampp", "gradcam-plus-plus")
@dataclass(frozen=True)
class GradCAMPlusPlus(CAM):
    """Grad-CAM++ (Chattopadhay et al., 2018), with the paper's exponential-score closed form:
    ``alpha = G^2 / (2 G^2 + sum(A) G^3)``, weights = ``sum(alpha * relu(G))``."""

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        g = _grads(p)
        g2 = g * g
        denom = 2 * g2 + p.activations.sum(dim=(2, 3), keepdim=True) * g2 * g + EPS
        alpha = (g2 / denom).masked_fill(g == 0, 0.0)
        return _weighted((alpha * g.clamp_min(0)).sum(dim=(2, 3)), p.activations)


@register("hirescam")
@dataclass(frozen=True)
class HiResCAM(CAM):
    """HiResCAM (Draelos & Carin, 2020): ``relu(sum_k G_k * A_k)``, element-wise, so the map is
    faithful to the gradient at each position rather than its average."""

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        return (_grads(p) * p.activations).sum(dim=1).clamp_min(0)


@register("xgradcam")
@dataclass(frozen=True)
class XGradCAM(CAM):
    """XGrad-CAM (Fu et al., 2020): weights = ``sum(G * A) / sum(A)`` per channel."""

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        a = p.activations
        w = (_grads(p) * a).sum(dim=(2, 3)) / (a.sum(dim=(2, 3)) + EPS)
        return _weighted(w, a)


@register("layercam")
@dataclass(frozen=True)
class LayerCAM(CAM):
    """LayerCAM (Jiang et al., 2021): ``relu(sum_k relu(G_k) * A_k)``."""

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        return (_grads(p).clamp_min(0) * p.activations).sum(dim=1).clamp_min(0)


@register("eigencam")
@dataclass(frozen=True)
class EigenCAM(CAM):
    """Eigen-CAM (Muhammad & Yeasin, 2020): the activations projected on their first principal
    component (channels as features, positions as samples, centred), rectified.

    Gradient-free, so it does not depend on the target (``depends_on_target = False``: the
    same map for every class, and no opposite map for ``-value``). Deviation from
    pytorch-grad-cam: an SVD gives the component up to its sign, and pytorch-grad-cam keeps
    whatever sign its SVD routine returns, so its map can come out inverted (the ReLU then keeps
    the background). Here the component is oriented to correlate positively with the
    channel-summed activation; where the two signs agree, the maps are the same.
    """

    needs_gradients: ClassVar[bool] = False
    depends_on_target: ClassVar[bool] = False

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        import torch

        a = torch.nan_to_num(p.activations)
        b, _, h, w = a.shape
        m = a.flatten(2).transpose(1, 2)  # [B, hw, K]
        m = m - m.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(m, full_matrices=False)
        proj = (m @ vh[:, 0, :, None]).squeeze(-1)  # [B, hw]
        total = a.sum(dim=1).flatten(1)
        total = total - total.mean(dim=1, keepdim=True)
        flip = torch.where((proj * total).sum(dim=1) < 0, -1.0, 1.0)
        return (proj * flip[:, None]).view(b, h, w).clamp_min(0)


def _fold_batch_norm(module: nn.Module) -> nn.Module | None:
    """``module`` (an eval-mode copy) with each batch norm folded into the convolution before it
    (``torch.fx`` symbolic tracing), or ``None`` when it has no batch norm or cannot be traced.

    Only exact ``Conv -> BatchNorm`` pairs are folded (batch-norm subclasses that carry an
    activation, as timm's ``BatchNormAct2d``, are left alone). The fusion rewrites the copy's
    submodules in place, so a failed or rejected result means the copy must be thrown away.
    """
    from torch import nn
    from torch.fx.experimental.optimization import fuse

    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    if not any(type(m) in norms for m in module.modules()):
        return None  # nothing to fold: spare the trace
    try:
        return fuse(module, inplace=True)
    except Exception:  # untraceable forward (control flow, asserts): no folding
        return None


def _inference_copy(module: nn.Module, x: Tensor, expected: Tensor, batch_size: int) -> nn.Module:
    """A private copy of ``module`` tuned for many forwards; the user's model is never touched.

    The copy is in eval mode with frozen parameters, its batch norms are folded into the
    convolutions (when ``torch.fx`` can trace the model) and, for image batches, its weights are
    channels-last. The folded copy is kept only if it reproduces ``expected`` (the original's
    output on ``x``, checked ``batch_size`` rows at a time), so a trace that specialised on
    something it should not have falls back to the plain copy. A module that cannot be
    deep-copied (locks or file handles inside) is used as it is.
    """
    import copy

    import torch

    try:
        clone = copy.deepcopy(module)
    except Exception:  # an uncopyable module: run the original as it is
        return module
    clone.eval().requires_grad_(False)
    image = x.ndim == 4
    layout = torch.channels_last if image else torch.contiguous_format
    folded = _fold_batch_norm(clone)
    if folded is not None:
        folded = folded.to(memory_format=layout)
        with torch.inference_mode():
            out = torch.cat(
                [
                    output_tensor(folded(x[i : i + batch_size].contiguous(memory_format=layout)))
                    for i in range(0, x.shape[0], batch_size)
                ]
            ).float()
        loose = x.dtype in (torch.float16, torch.bfloat16)
        tol = (5e-2 if loose else 1e-3) * float(expected.abs().max().clamp_min(1e-6))
        if out.shape == expected.shape and bool(((out - expected).abs() <= tol).all()):
            return folded
        clone = copy.deepcopy(module)  # the fusion rewrote ``clone``'s submodules
        clone.eval().requires_grad_(False)
    return clone.to(memory_format=layout)


def _bf16_native(device: Any) -> bool:
    """Whether bfloat16 convolutions and matmuls run in hardware here (faster than float32).

    CUDA: compute capability 8.0 or newer (Ampere on; older GPUs only emulate bfloat16). CPU:
    AVX-512 BF16 or AMX instructions. oneDNN also "supports" bfloat16 on plain AVX-512 CPUs,
    by conversion, which is slower than float32 there, so that does not count. Unsure = no.
    """
    import torch

    try:
        if device.type == "cuda":
            return torch.cuda.get_device_capability(device) >= (8, 0)
        if device.type == "cpu":
            cpu = torch.cpu
            return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError, AssertionError):
        return False
    return False


def _unique_masks(acts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Group the ``(image, channel)`` pairs of ``acts`` ``[B, K, h, w]`` whose masks are equal.

    A mask depends on its channel only up to a positive affine map (it is min-max scaled), so
    channels whose min-max scaled grids are equal give equal masks: one forward serves them all
    (in ReLU networks, e.g. the many channels that fire at a single position). Constant channels
    (dead ones above all) give the all-zero mask and are left out.

    Returns:
        ``alive`` ``[B, K]`` whether a channel is not constant, ``first`` ``[u, 2]`` one
        ``(image, channel)`` pair per distinct mask, and ``group`` ``[n]`` the index in
        ``first`` of the mask of each live pair (``alive.nonzero()`` order).
    """
    import torch

    scaled, span = _min_max(acts.flatten(2), dims=(2,))
    alive = span[..., 0] > 0
    live = alive.nonzero()
    scaled = scaled[alive]
    keys = torch.cat([live[:, :1].to(scaled.dtype), scaled], dim=1)  # masks never cross images
    _, group = torch.unique(keys, dim=0, return_inverse=True)
    order = torch.arange(len(live), device=live.device)
    first = torch.full((int(group.max()) + 1 if len(live) else 0,), len(live), device=live.device)
    first = first.scatter_reduce(0, group, order, reduce="amin")
    return alive, live[first], group


def _min_max(t: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``t`` scaled to ``[0, 1]`` over ``dims`` by its exact span (0 where constant), and the
    span (``dims`` kept as size 1)."""
    import torch

    lo = t.amin(dim=dims, keepdim=True)
    span = t.amax(dim=dims, keepdim=True) - lo
    return (t - lo) / span.clamp_min(torch.finfo(t.dtype).tiny), span


def _masks(acts: Tensor, size: tuple[int, int]) -> Tensor:
    """Channel grids ``[n, h, w]`` upsampled to ``size`` and min-max scaled to ``[0, 1]``."""
    return _min_max(upsample(acts, size), dims=(1, 2))[0]


@register("scorecam")
@dataclass(frozen=True)
class ScoreCAM(CAM):
    """Score-CAM (Wang et al., 2020): each channel, upsampled and min-max scaled to ``[0, 1]``,
    masks the input; the target's score on each masked input weighs its channel.

    Classification: as in pytorch-grad-cam, the weights are the softmax over channels of the
    target's raw (signed) score (the paper uses the softmax over classes); the class explained
    is the one picked on the unmasked input. Regression (deviation from pytorch-grad-cam): a
    softmax of raw outputs depends on their unit (a price in units of 1e5 makes it one-hot), so
    the weights are the target's change from the blank input, as in the paper's increase of
    confidence: ``w_k = sign * (f(x * M_k) - f(x_0))`` with ``x_0`` the all-zero masked input,
    and the map ``relu(sum_k w_k A_k)``; scaling the output scales the map, never reshapes it.
    The opposite sign's map (``extras["opposite"]``) comes from the same masked forwards.

    Masks are upsampled with ``align_corners=False`` (pytorch-grad-cam: ``True``), the same
    convention as the displayed maps, and scaled by their exact span (pytorch-grad-cam adds
    ``1e-8`` to it); a constant channel gives the all-zero mask (pytorch-grad-cam: zeros for a
    dead channel, rounding noise for a constant non-zero one).

    Speed. Score-CAM costs one forward per image and channel, so the work is in those
    forwards; every step below leaves the maps as they were up to float rounding:

    - the masked inputs go through a private copy of the model (the user's model is never
      changed) with each batch norm folded into its convolution (``torch.fx``; kept only if it
      reproduces the model's output, else the plain copy) and channels-last weights and inputs;
    - one forward per distinct mask: channels whose min-max scaled grids are equal share it,
      and every constant channel shares one forward of a zero input;
    - the masked inputs of all images go through the model ``batch_size`` at a time (the
      call's ``batch_size``, the largest batch any forward sends), built chunk by chunk (never
      all at once), under ``torch.inference_mode``.

    The copy holds a second set of weights for the duration of the call. On a 2-core AVX-512
    CPU (``benchmarks/RESULTS.md``; resnet18, 224 px, ``batch_size`` 32 for both tools) the
    fold and channels-last make each float32 forward 1.35x (one thread) to 1.6x (two threads)
    cheaper than the plain model's; the remaining cost is the convolutions themselves.

    Precision (deviation from pytorch-grad-cam, which runs the masked forwards in the model's
    dtype). ``precision="auto"`` (default) runs the masked forwards under bfloat16 autocast
    where the hardware computes bfloat16 natively (CPUs with AVX-512 BF16 or AMX, CUDA GPUs
    from Ampere on) and the model is float32; elsewhere it is ``float32``. Only the
    channel scores come from those forwards; the activations, the weights and the map stay
    float32. The maps then agree with exact float32 ones at Pearson r >= 0.999 (r >= 0.99 is
    tested): on the bundled demo models the largest difference was 4.4% of a map's peak. That
    is what makes Score-CAM 2.3x (one thread, busy machine) to 3.1x-4.1x (two threads, idle)
    faster than pytorch-grad-cam's at equal batch on that CPU, against 1.4x to 2.1x in float32.
    ``precision="float32"`` keeps every forward in the model's own precision: maps equal to the
    plain computation up to float rounding, the same on every machine. The precision used is
    recorded as ``params["forward_dtype"]``.
    """

    precision: str = "auto"
    needs_gradients: ClassVar[bool] = False

    def __post_init__(self) -> None:
        from seewhy.core.errors import UsageError

        if self.precision not in ("auto", "float32"):
            raise UsageError(
                f"scorecam precision '{self.precision}': use auto (bfloat16 masked forwards "
                "where the hardware runs them natively) or float32 (exact)"
            )

    def low_precision(self, x: Tensor) -> bool:
        """Whether the masked forwards of ``x`` run under bfloat16 autocast."""
        import torch

        return self.precision == "auto" and x.dtype == torch.float32 and _bf16_native(x.device)

    def pass_params(self, p: LayerPass) -> dict[str, Any]:
        return {
            "forward_dtype": "bfloat16"
            if self.low_precision(p.inputs)
            else str(p.inputs.dtype).removeprefix("torch.")
        }

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        return self.maps(p, module, target, batch_size=DEFAULT_BATCH_SIZE, opposite=False)[0]

    def maps(
        self, p: LayerPass, module: nn.Module, target: Target, *, batch_size: int, opposite: bool
    ) -> tuple[Tensor, Tensor | None]:
        import torch

        regression = isinstance(target, RegressionTarget)
        scores, blank = self.scores(p, module, batch_size=batch_size, blank=regression)
        signs = p.signs[:, None].to(scores.device)
        if regression:
            change = signs * (scores - blank[:, None])
            low = _weighted(change, p.activations)
            return low, _weighted(-change, p.activations) if opposite else None
        low = _weighted(torch.softmax(signs * scores, dim=1), p.activations)
        if not opposite:
            return low, None
        return low, _weighted(torch.softmax(-signs * scores, dim=1), p.activations)

    def scores(
        self, p: LayerPass, module: nn.Module, *, batch_size: int, blank: bool
    ) -> tuple[Tensor, Tensor]:
        """The explained column's raw (unsigned) value on each channel's masked input
        ``[B, K]``, and on the blank (all-zero) input ``[B]`` (run only if a channel is
        constant or ``blank``; else zeros)."""
        import torch

        x = p.inputs
        size = (int(x.shape[-2]), int(x.shape[-1]))
        b, k = p.activations.shape[:2]
        alive, first, group = _unique_masks(p.activations)
        rows = p.columns.to(x.device)
        step = check_batch_size(batch_size)
        low = self.low_precision(x)
        fast = _inference_copy(module, x, p.output, step)
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        distinct = torch.empty(len(first), device=x.device, dtype=torch.float32)
        scores = torch.empty(b, k, device=x.device, dtype=torch.float32)
        baseline = torch.zeros(b, device=x.device, dtype=torch.float32)
        with (
            explaining(fast),
            torch.inference_mode(),
            torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=low),
        ):
            for start in range(0, len(first), step):
                bi, ki = first[start : start + step].unbind(1)
                masks = _masks(p.activations[bi, ki], size).to(x.dtype)
                out = output_tensor(fast(x[bi] * masks[:, None]))
                distinct[start : start + step] = out.float().gather(1, rows[bi, None])[:, 0]
            scores[alive] = distinct[group]
            dead = (~alive).nonzero()
            if len(dead) or blank:
                # A constant channel masks the input to zeros: one forward serves them all.
                out = output_tensor(fast(torch.zeros_like(x[:1]))).float()
                baseline = out[0, rows]
                scores[dead[:, 0], dead[:, 1]] = baseline[dead[:, 0]]
        return scores, baseline
