"""Class activation maps: the gradient-weighted family, EigenCAM and Score-CAM.

Every method here reads one layer's activations ``A`` (``[B, K, h, w]``) and, for the
gradient-weighted ones, the gradient ``G = d target / d A``. :meth:`CAM.run_many` captures both
ONCE per batch and layer — asking for five gradient CAMs costs one forward and one backward,
and that backward stops at the layer: parameters never receive gradients (the layer output is
made a fresh leaf inside ``core.hooks.capture_output``).

Maps are computed in float32 (whatever the model's dtype), rectified, and bilinearly upsampled
(``align_corners=False``) to the input resolution. ``extras["low_res"]`` keeps the layer-grid map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from seewhy.core.errors import LayerError
from seewhy.core.explanation import Explanation
from seewhy.core.hooks import capture_output
from seewhy.core.layers import LayerSpec, resolve_layer
from seewhy.core.registry import register
from seewhy.core.state import explaining
from seewhy.core.targets import Target, output_tensor
from seewhy.methods.base import Method, check_output, default_layer, module_of, to_model_input

if TYPE_CHECKING:
    from torch import Tensor, nn

EPS = 1e-7


@dataclass
class LayerPass:
    """What one forward (+ backward) through a layer yields, all float32 and detached."""

    layer: LayerSpec
    inputs: Tensor  # the batch as the model saw it (device, dtype)
    activations: Tensor  # [B, K, h, w]
    gradients: Tensor | None  # [B, K, h, w] d score / d activations, or None
    output: Tensor  # [B, C]
    indices: Tensor  # [B] explained output column
    sign: int  # the target's sign (+1, or -1 for "-value")


def layer_pass(
    module: nn.Module, inputs: Tensor, target: Target, layer: LayerSpec, *, gradients: bool
) -> LayerPass:
    """One forward through ``module`` capturing ``layer``, and one backward down to it."""
    import torch

    x = to_model_input(module, inputs)
    with explaining(module), capture_output(layer.module, layer.name, leaf=gradients) as cap:
        grad: Tensor | None = None
        if gradients:
            with torch.enable_grad():
                out = output_tensor(module(x))
                check_output(out)
                indices = target.indices(out)
                score = target(out)
                act = cap.get()
                (g,) = torch.autograd.grad(score.sum(), act, allow_unused=True)
            if g is None:
                raise LayerError(
                    f"the output does not depend on layer '{layer.name}' (for class-token "
                    "ViTs read the last block's 'norm1', e.g. 'blocks.11.norm1'); choose a layer "
                    "on the path to the output"
                )
            grad = layer.to_nchw(g.detach()).float()
        else:
            with torch.no_grad():
                out = output_tensor(module(x))
                check_output(out)
                indices = target.indices(out)
            act = cap.get()
    return LayerPass(
        layer=layer,
        inputs=x.detach(),
        activations=layer.to_nchw(act.detach()).float(),
        gradients=grad,
        output=out.detach().float(),
        indices=indices.detach(),
        sign=target.sign,
    )


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``[B, h, w]`` maps to ``size`` (half-pixel centres)."""
    import torch.nn.functional as F

    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


@dataclass(frozen=True)
class CAM(Method):
    """Base of the CAM family. ``layer``: a module name, or ``auto``/``None`` for the model's
    default (the card's ``layer``, else the last spatial feature layer)."""

    layer: str | None = None
    needs_gradients: ClassVar[bool] = True

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        """The rectified map ``[B, h, w]`` on the layer's grid."""
        raise NotImplementedError

    @classmethod
    def run_many(
        cls, methods: Sequence[Method], model: Any, inputs: Tensor, target: Target
    ) -> list[Explanation]:
        module = module_of(model)
        cams = [m for m in methods if isinstance(m, CAM)]
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        names = [m.layer or default_layer(model) for m in cams]
        passes: dict[str, LayerPass] = {}
        results = []
        for m, name in zip(cams, names, strict=True):
            if name not in passes:
                same = zip(cams, names, strict=True)
                needs = any(c.needs_gradients for c, n in same if n == name)
                example = to_model_input(module, inputs[:1]) if name == "auto" else None
                spec = resolve_layer(module, name, example)
                passes[name] = layer_pass(module, inputs, target, spec, gradients=needs)
            p = passes[name]
            low = m.cam(p, module, target)
            results.append(
                Explanation(
                    method=m.name,
                    attributions={"image": upsample(low, size)},
                    target=target.name,
                    params=m.params() | {"layer": p.layer.name},
                    layer=p.layer.name,
                    output=p.output,
                    target_indices=p.indices,
                    signed=False,
                    extras={"low_res": low},
                )
            )
        return results


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

    Gradient-free, so it does not depend on the target. Deviation from pytorch-grad-cam: an SVD
    gives the component up to its sign, and pytorch-grad-cam keeps whatever sign its SVD routine
    returns, so its map can come out inverted (the ReLU then keeps the background). Here the
    component is oriented to correlate positively with the channel-summed activation; where the
    two signs agree, the maps are the same.
    """

    needs_gradients: ClassVar[bool] = False

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


def _fast_copy(module: nn.Module) -> nn.Module:
    """A channels-last copy of the model for the masked forwards (the user's model is never
    changed); the model itself when it cannot be copied."""
    import copy

    import torch

    if isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        clone = copy.deepcopy(module)
    except Exception:  # an uncopyable module (locks, handles): run the original as it is
        return module
    return clone.to(memory_format=torch.channels_last)


def _bf16_native(device: Any) -> bool:
    """Whether bfloat16 matmuls/convolutions run natively (faster than float32) here."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


@register("scorecam")
@dataclass(frozen=True)
class ScoreCAM(CAM):
    """Score-CAM (Wang et al., 2020): each channel, upsampled and min-max scaled to ``[0, 1]``,
    masks the input; the target's score on each masked input weighs its channel.

    As in pytorch-grad-cam, the weights are the softmax over channels of the target's raw
    score (the paper uses the softmax over classes); the class explained is the one picked on
    the unmasked input. Masks are upsampled with ``align_corners=False`` (pytorch-grad-cam:
    ``True``), the same convention as the displayed maps.

    Speed: the masked inputs of the whole batch go through the model ``batch_size`` at a time,
    on a channels-last copy of the model; constant channels (an all-zero mask) share one
    forward. ``precision="auto"`` runs the masked forwards under bfloat16 autocast where the
    hardware computes bfloat16 natively (recent x86 CPUs, CUDA): the scores only weigh the
    channels, and the maps agree with float32 ones at Pearson r >= 0.99 (tested).
    ``precision="float32"`` keeps every forward in the model's own precision.
    """

    batch_size: int = 32
    precision: str = "auto"
    needs_gradients: ClassVar[bool] = False

    def cam(self, p: LayerPass, module: nn.Module, target: Target) -> Tensor:
        import torch

        from seewhy.core.errors import UsageError

        if self.precision not in ("auto", "float32"):
            raise UsageError(f"scorecam precision '{self.precision}': use auto or float32")
        x = p.inputs
        b, k = p.activations.shape[:2]
        up = upsample(p.activations.flatten(0, 1), (int(x.shape[-2]), int(x.shape[-1])))
        up = up.view(b, k, *up.shape[-2:])
        lo = up.amin(dim=(2, 3), keepdim=True)
        span = up.amax(dim=(2, 3), keepdim=True) - lo
        masks = (up - lo) / (span + 1e-8)
        live = span.flatten(1) > 0  # [B, K]
        scores = torch.empty(b, k, device=x.device, dtype=torch.float32)
        rows = p.indices.to(x.device)
        pairs = live.nonzero()
        step = max(1, int(self.batch_size))
        low = self.precision == "auto" and x.dtype == torch.float32 and _bf16_native(x.device)
        fast = _fast_copy(module) if x.ndim == 4 else module
        with (
            explaining(fast),
            torch.inference_mode(),
            torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=low),
        ):
            for start in range(0, len(pairs), step):
                bi, ki = pairs[start : start + step].unbind(1)
                masked = x[bi] * masks[bi, ki][:, None].to(x.dtype)
                out = output_tensor(fast(masked.contiguous(memory_format=torch.channels_last)))
                scores[bi, ki] = p.sign * out.float().gather(1, rows[bi][:, None]).squeeze(1)
            dead = (~live).nonzero()
            if len(dead):
                # A constant channel masks the input to zeros: one forward serves them all.
                out = output_tensor(fast(torch.zeros_like(x[:1]))).float()
                scores[dead[:, 0], dead[:, 1]] = p.sign * out[0, rows[dead[:, 0]]]
        weights = torch.softmax(scores, dim=1)
        return _weighted(weights, p.activations)
