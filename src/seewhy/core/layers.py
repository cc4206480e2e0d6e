"""Layer lookup: names to modules, ``"auto"`` to the last spatial feature layer, and the
reshapes that turn any layer's output into an ``[B, C, h, w]`` map.

Layouts handled:
- ``nchw``: CNN feature maps (ResNet, ConvNeXt, EfficientNet, DenseNet ...).
- ``nhwc``: channels-last outputs (timm Swin, and any model with ``output_fmt == "NHWC"``).
- ``tokens``: ``[B, N, C]`` transformer tokens (ViT, DeiT, EVA): prefix tokens (class,
  distillation, registers) are dropped and the patch tokens laid out on their grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import LayerError, MethodNotApplicableError, closest
from seewhy.core.hooks import record_output_shapes

if TYPE_CHECKING:
    from torch import Tensor, nn


@dataclass(frozen=True)
class LayerSpec:
    """A resolved layer: its name, module and how to read its output as ``[B, C, h, w]``."""

    name: str
    module: nn.Module
    layout: str = "auto"  # auto | nchw | nhwc | tokens
    prefix_tokens: int | None = None
    grid: tuple[int, int] | None = None

    def to_nchw(self, t: Tensor) -> Tensor:
        """Reshape a captured output (or its gradient) to ``[B, C, h, w]``."""
        layout = self.layout_of(t)
        if layout == "nchw":
            return t
        if layout == "nhwc":
            return t.permute(0, 3, 1, 2)
        b, n, c = t.shape
        prefix, (h, w) = self.token_grid(n)
        return t[:, prefix:, :].reshape(b, h, w, c).permute(0, 3, 1, 2)

    def layout_of(self, t: Tensor) -> str:
        """The layout of a captured output of this layer."""
        if t.ndim == 4:
            return "nhwc" if self.layout == "nhwc" else "nchw"
        if t.ndim == 3:
            return "tokens"
        raise MethodNotApplicableError(
            f"layer '{self.name}' outputs a {t.ndim}-D tensor {tuple(t.shape)}, not a spatial "
            "map; CAM methods need a layer with a [B, C, H, W], [B, H, W, C] or [B, tokens, C] "
            "output (see seewhy.layers(model)), or use a gradient or perturbation method"
        )

    def token_grid(self, n: int) -> tuple[int, tuple[int, int]]:
        """(number of prefix tokens, patch grid) for ``n`` tokens."""
        if self.grid is not None:
            prefix = n - self.grid[0] * self.grid[1]
            if prefix >= 0 and (self.prefix_tokens is None or prefix == self.prefix_tokens):
                return prefix, self.grid
        if self.prefix_tokens is not None:
            side = math.isqrt(n - self.prefix_tokens)
            if side * side == n - self.prefix_tokens:
                return self.prefix_tokens, (side, side)
        for prefix in range(0, 9):  # class, distillation and register tokens come first
            side = math.isqrt(n - prefix)
            if side > 1 and side * side == n - prefix:
                return prefix, (side, side)
        raise MethodNotApplicableError(
            f"layer '{self.name}' outputs {n} tokens, which do not form a square patch grid; "
            "name a layer with a spatial output"
        )


def _module_hints(model: nn.Module) -> dict[str, Any]:
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    return {
        "layout": "nhwc" if str(getattr(model, "output_fmt", "")).upper() == "NHWC" else "auto",
        "prefix_tokens": getattr(model, "num_prefix_tokens", None),
        "grid": tuple(grid) if grid is not None else None,
    }


def get_layer(model: nn.Module, name: str) -> LayerSpec:
    """The layer called ``name`` (as in ``model.named_modules()``), with its layout hints."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        near = closest(name, [n for n in modules if n])
        hint = f"; closest: {', '.join(repr(n) for n in near)}" if near else ""
        raise LayerError(
            f"no layer '{name}' in {type(model).__name__}{hint}. "
            "Run `seewhy layers MODEL` to list the candidates."
        )
    return LayerSpec(name=name, module=modules[name], **_module_hints(model))


def _timm_auto(model: nn.Module) -> str | None:
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    try:
        last = info[-1]["module"]
    except (KeyError, IndexError, TypeError):
        return None
    blocks = getattr(model, "blocks", None)
    pool = getattr(model, "global_pool", None)
    if isinstance(pool, str) and pool in ("token", "map") and blocks is not None:
        # The class token is all the head sees: the last block's patch tokens get no
        # gradient. Read the tokens that enter its attention instead.
        idx = len(blocks) - 1
        for sub in ("norm1", "ln1"):
            if f"blocks.{idx}.{sub}" in dict(model.named_modules()):
                return f"blocks.{idx}.{sub}"
    return str(last)


def example_input(model: nn.Module, size: tuple[int, int] = (224, 224)) -> Tensor:
    """A zero image batch of one on the model's device and dtype."""
    import torch

    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.zeros(1, 3, *size, device=device, dtype=dtype)


@dataclass(frozen=True)
class LayerInfo:
    """A row of ``seewhy.layers(model)``."""

    name: str
    type: str
    shape: tuple[int, ...]
    spatial: bool


def _is_spatial(shape: tuple[int, ...], hints: dict[str, Any]) -> bool:
    if len(shape) == 4:
        h, w = (shape[1], shape[2]) if hints["layout"] == "nhwc" else (shape[2], shape[3])
        return h > 1 and w > 1
    if len(shape) == 3:
        spec = LayerSpec("", None, **hints)  # type: ignore[arg-type]
        try:
            spec.token_grid(shape[1])
        except MethodNotApplicableError:
            return False
        return True
    return False


def list_layers(model: nn.Module, example: Tensor | None = None) -> list[LayerInfo]:
    """Every named module's output shape from one dry run, in the order the forward finished."""
    import torch

    from seewhy.core.state import explaining

    x = example if example is not None else example_input(model)
    named = [(n, m) for n, m in model.named_modules() if n]
    types = {n: type(m).__name__ for n, m in named}
    hints = _module_hints(model)
    with explaining(model), torch.no_grad(), record_output_shapes(named) as rec:
        model(x)
    return [
        LayerInfo(n, types[n], rec.shapes[n], _is_spatial(rec.shapes[n], hints)) for n in rec.order
    ]


# Names of the norm before a transformer block's attention (timm, torchvision, Hugging Face).
PRE_ATTENTION_NORMS = ("norm1", "ln1", "ln_1", "layernorm_before")


def auto_layer(model: nn.Module, example: Tensor | None = None) -> LayerSpec:
    """The last spatial feature layer.

    timm models: their ``feature_info`` (the last stage; for class-token ViTs the input of the
    last block's attention). Others: a dry run, taking the last module to finish whose output is
    a spatial map (``h, w > 1``), else a square grid of tokens; where token layers follow the
    last map (a ViT with a convolutional stem), the norm before the last block's attention
    (``norm1``, ``ln_1``, ``ln1``, ``layernorm_before``).
    """
    name = _timm_auto(model)
    if name is not None and name in dict(model.named_modules()):
        return get_layer(model, name)
    rows = list_layers(model, example)
    four_d = [r for r in rows if r.spatial and len(r.shape) == 4]
    tokens = [r for r in rows if r.spatial and len(r.shape) == 3]
    pick = four_d or tokens
    # A transformer with a convolutional patch embedding (torchvision's ViT): its last 4-D
    # output is the stem. Read the tokens entering the last block's attention instead (after
    # the last block only the class token may reach the head: patch tokens get no gradient).
    last_map = rows.index(four_d[-1]) if four_d else -1
    pre_attention = [
        r
        for r in tokens[::-1]
        if rows.index(r) > last_map and r.name.rsplit(".", 1)[-1] in PRE_ATTENTION_NORMS
    ]
    if pre_attention:
        pick = pre_attention[:1]
    if not pick:
        raise MethodNotApplicableError(
            f"{type(model).__name__} has no layer with a spatial output (every module outputs "
            "a vector or a 1x1 map), so CAM methods cannot apply; use a gradient or "
            "perturbation method"
        )
    return get_layer(model, pick[-1].name)


def resolve_layer(
    model: nn.Module, layer: str | None = "auto", example: Tensor | None = None
) -> LayerSpec:
    """``"auto"``/``None`` -> :func:`auto_layer`; a name -> :func:`get_layer`."""
    if layer is None or layer == "auto":
        return auto_layer(model, example)
    return get_layer(model, layer)
