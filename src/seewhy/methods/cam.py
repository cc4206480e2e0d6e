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
from seewhy.core.inputs import DEFAULT_BATCH_SIZE, Inputs, check_batch_size
from seewhy.core.layers import LayerSpec, resolve_layer
from seewhy.core.model import Model
from seewhy.core.state import explaining
from seewhy.core.targets import ResolvedTarget, Target
from seewhy.methods.base import Method
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
        target: the target resolved on this (clean) output: the class explained per sample in
            label space (``indices``; binary: 0 negative, 1 positive), the output column read
            (``columns``) and its sign (``signs``: -1 for ``-value`` and a binary classifier's
            negative class).
        calls: how many times the layer ran in one forward.
    """

    layer: LayerSpec
    inputs: Inputs
    activations: Tensor
    gradients: Tensor | None
    output: Tensor
    target: ResolvedTarget
    calls: int = 1

    @property
    def indices(self) -> Tensor:
        return self.target.class_indices

    @property
    def columns(self) -> Tensor:
        return self.target.output_columns

    @property
    def signs(self) -> Tensor:
        return self.target.output_signs

    def negated(self) -> LayerPass:
        """The pass of the opposite target (``-f`` for the target ``f``): the same forward, the
        gradient ``-G`` and the signs flipped. No pass runs."""
        grads = None if self.gradients is None else -self.gradients
        return dataclasses.replace(self, gradients=grads, target=self.target.opposite())

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
            inputs=Inputs.cat([p.inputs for p in parts]),
            activations=torch.cat([p.activations for p in parts]),
            gradients=None if any(g is None for g in grads) else torch.cat(grads),  # type: ignore[arg-type]
            output=torch.cat([p.output for p in parts]),
            target=ResolvedTarget.cat([p.target for p in parts]),
            calls=max(p.calls for p in parts),
        )


def layer_pass(
    model: Model,
    inputs: Inputs,
    target: Target,
    layer: LayerSpec,
    *,
    gradients: bool,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> LayerPass:
    """Forwards through the model capturing ``layer``, and backwards down to it, ``batch_size``
    samples at a time. ``target`` is resolved on each chunk's output (the clean input)."""
    step = check_batch_size(batch_size)
    return LayerPass.concat(
        [
            _one_pass(
                model,
                inputs[start : start + step],
                target.rows(slice(start, start + step)),
                layer,
                gradients=gradients,
            )
            for start in range(0, inputs.batch_size, step)
        ]
    )


def _one_pass(
    model: Model, inputs: Inputs, target: Target, layer: LayerSpec, *, gradients: bool
) -> LayerPass:
    """One forward through the model capturing ``layer``, and one backward down to it."""
    import torch

    x = model.to_input(inputs)
    size = x.image_size
    with explaining(model.module), capture_output(layer.module, layer.name, leaf=gradients) as cap:
        grad: Tensor | None = None
        if gradients:
            with torch.enable_grad():
                out = model.forward(x)
                resolved = target.resolve(out)
                score = resolved(out)
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
                out = model.forward(x)
                resolved = target.resolve(out)
            act = cap.get()
        calls = cap.calls
    out = out.detach()
    return LayerPass(
        layer=layer,
        inputs=x.detach(),
        activations=layer.to_nchw(act.detach(), size).float(),
        gradients=grad,
        output=out.float(),
        target=resolved,
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

    def cam(self, p: LayerPass) -> Tensor:
        """The rectified map ``[B, h, w]`` on the layer's grid."""
        raise NotImplementedError

    def maps(
        self, p: LayerPass, model: Model, *, batch_size: int, opposite: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The map ``[B, h, w]`` and, if ``opposite``, the map of the opposite target (``-f``
        for the target ``f``), from the same pass: by default :meth:`cam` of the negated pass
        (gradient ``-G``). ``batch_size`` bounds any forward the method runs itself."""
        low = self.cam(p)
        if not opposite:
            return low, None
        return low, self.cam(p.negated())

    def pass_params(self, p: LayerPass) -> dict[str, Any]:
        """Settings as they took effect on this pass (``auto`` resolved), for summary.json."""
        return {}

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
        """CAMs draw nothing at random and take no baselines: ``seeds`` and ``background`` are
        not used."""
        step = check_batch_size(batch_size)
        cams = [m for m in methods if isinstance(m, CAM)]
        for m in cams:
            m.check_applicable(model.module)
        size = inputs.image_size
        if size is None:
            raise MethodNotApplicableError(
                f"CAM methods explain an image batch [B, C, H, W]; got {inputs!r}"
            )
        names = [m.layer or model.layer or "auto" for m in cams]
        passes: dict[str, LayerPass] = {}
        results = []
        for m, name in zip(cams, names, strict=True):
            if name not in passes:
                same = zip(cams, names, strict=True)
                needs = any(c.needs_gradients for c, n in same if n == name)
                image, run = model.dry_run(inputs) if name == "auto" else (None, None)
                spec = resolve_layer(model.module, name, image, run)
                passes[name] = layer_pass(
                    model, inputs, target, spec, gradients=needs, batch_size=step
                )
            p = passes[name]
            opposite = p.target.regression and m.depends_on_target
            low, low_opposite = m.maps(p, model, batch_size=step, opposite=opposite)
            params = m.params() | {"layer": p.layer.name} | m.pass_params(p)
            if p.calls > 1:
                params["layer_calls"] = p.calls
            extras: dict[str, Any] = {}
            if low_opposite is not None:
                extras["opposite"] = upsample(low_opposite, size)
                extras["opposite_target"] = p.target.opposite().name
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
                    raw={"image": low},
                    input_signed={"image": False},
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

    def cam(self, p: LayerPass) -> Tensor:
        return _weighted(_grads(p).mean(dim=(2, 3)), p.activations)


@register("gradcam++", "gradcampp", "gradcam-plus-plus")
@dataclass(frozen=True)
class GradCAMPlusPlus(CAM):
    """Grad-CAM++ (Chattopadhay et al., 2018), with the paper's exponential-score closed form:
    ``alpha = G^2 / (2 G^2 + sum(A) G^3)``, weights = ``sum(alpha * relu(G))``."""

    def cam(self, p: LayerPass) -> Tensor:
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

    def cam(self, p: LayerPass) -> Tensor:
        return (_grads(p) * p.activations).sum(dim=1).clamp_min(0)


@register("xgradcam")
@dataclass(frozen=True)
class XGradCAM(CAM):
    """XGrad-CAM (Fu et al., 2020): weights = ``sum(G * A) / sum(A)`` per channel."""

    def cam(self, p: LayerPass) -> Tensor:
        a = p.activations
        w = (_grads(p) * a).sum(dim=(2, 3)) / (a.sum(dim=(2, 3)) + EPS)
        return _weighted(w, a)


@register("layercam")
@dataclass(frozen=True)
class LayerCAM(CAM):
    """LayerCAM (Jiang et al., 2021): ``relu(sum_k relu(G_k) * A_k)``."""

    def cam(self, p: LayerPass) -> Tensor:
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

    def cam(self, p: LayerPass) -> Tensor:
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
        from seewhy.core.engine import check_precision

        check_precision(self.precision, "scorecam precision")

    def low_precision(self, x: Tensor) -> bool:
        """Whether the masked forwards of ``x`` run under bfloat16 autocast."""
        import torch

        from seewhy.core import engine

        return (
            self.precision == "auto" and x.dtype == torch.float32 and engine.bf16_native(x.device)
        )

    def pass_params(self, p: LayerPass) -> dict[str, Any]:
        image = p.inputs.image
        return {
            "forward_dtype": "bfloat16"
            if self.low_precision(image)
            else str(image.dtype).removeprefix("torch.")
        }

    def maps(
        self, p: LayerPass, model: Model, *, batch_size: int, opposite: bool
    ) -> tuple[Tensor, Tensor | None]:
        import torch

        regression = p.target.regression
        scores, blank = self.scores(p, model, batch_size=batch_size, blank=regression)
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
        self, p: LayerPass, model: Model, *, batch_size: int, blank: bool
    ) -> tuple[Tensor, Tensor]:
        """The explained column's raw (unsigned) value on each channel's masked input
        ``[B, K]``, and on the blank (all-zero image) input ``[B]`` (run only if a channel is
        constant or ``blank``; else zeros). The column is the one resolved on the clean input
        (``p.target``): a masked input that would predict another class still reads it."""
        import torch

        from seewhy.core.engine import ForwardEngine

        x = p.inputs
        image = x.image
        size = (int(image.shape[-2]), int(image.shape[-1]))
        b, k = p.activations.shape[:2]
        alive, first, group = _unique_masks(p.activations)
        rows = p.columns.to(image.device)
        engine = ForwardEngine(
            model,
            x,
            batch_size=check_batch_size(batch_size),
            precision=self.precision,
            expected=p.output,
        )
        acts = p.activations

        def masked(start: int, stop: int) -> Inputs:
            bi, ki = first[start:stop].unbind(1)
            masks = _masks(acts[bi, ki], size).to(image.dtype)
            return x.take(bi).replace(image=image[bi] * masks[:, None])

        def column(out: Tensor, start: int, stop: int) -> Tensor:
            return out.gather(1, rows[first[start:stop, 0], None])[:, 0]

        scores = torch.empty(b, k, device=image.device, dtype=torch.float32)
        baseline = torch.zeros(b, device=image.device, dtype=torch.float32)
        if len(first):
            scores[alive] = engine.map(len(first), masked, column, samples=first[:, 0])[group]
        dead = (~alive).nonzero()
        if len(dead) or blank:
            # A constant channel masks the image to zeros: one forward serves them all (one
            # per sample when the model has other inputs besides the image).
            zeros = torch.zeros_like(image[:1] if len(x) == 1 else image)
            base = x[:1] if len(x) == 1 else x
            out = engine(base.replace(image=zeros))
            baseline = out[0, rows] if len(x) == 1 else out.gather(1, rows[:, None])[:, 0]
            scores[dead[:, 0], dead[:, 1]] = baseline[dead[:, 0]]
        return scores, baseline
