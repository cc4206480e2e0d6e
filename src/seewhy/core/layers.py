"""Layer lookup: names to modules, ``"auto"`` to the last spatial feature layer, and the
reshapes that turn any layer's output into an ``[B, C, h, w]`` map.

Layouts handled:
- ``nchw``: CNN feature maps (ResNet, ConvNeXt, EfficientNet, DenseNet ...).
- ``nhwc``: channels-last outputs (timm Swin, and any model with ``output_fmt == "NHWC"``).
- ``tokens``: ``[B, N, C]`` transformer tokens (ViT, DeiT, EVA): prefix tokens (class,
  distillation, registers) are dropped and the patch tokens laid out on their grid.

The layout is decided per layer (:func:`detect_layout`), from the output's shape and the
model's input size: a model-level hint (timm's ``output_fmt``) only breaks ties. Given an
example input, :func:`resolve_layer` runs the model once to fix the layer's layout, count its
calls and refuse, up front, a layer whose output is not a spatial map.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import LayerError, MethodNotApplicableError, ModelLoadError, closest
from seewhy.core.hooks import record_output_shapes

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor, nn

    DryRun = Callable[[], Any]
    """How to run the model once on an example (a multi-input model's call with all its
    inputs); by default ``model(example)``, the example being the image batch."""


def _grid_fits(a: int, b: int, size: tuple[int, int]) -> bool:
    """Whether an ``a x b`` grid can be the input ``size`` seen at one stride: each side at most
    the input's, and ``H / a ~ W / b`` (each side within one cell of the input scaled by the
    pair's mean stride, which admits the rounding of padded and ceil-mode strides)."""
    h, w = size
    if not (1 <= a <= h and 1 <= b <= w):
        return False
    stride = (h + w) / (a + b)
    return abs(h / stride - a) < 1 and abs(w / stride - b) < 1


def detect_layout(
    shape: tuple[int, ...], input_size: tuple[int, int] | None = None, hint: str = "auto"
) -> str | None:
    """``"nchw"``, ``"nhwc"`` or ``"tokens"`` for an output of this shape, ``None`` if it has
    neither 3 nor 4 dimensions.

    3-D outputs are tokens. For 4-D ``[B, d1, d2, d3]``, with the input size ``(H, W)``: the
    spatial pair is the one whose sizes are proportional to the input's (``H / da ~ W / db``,
    each at most the input's side). If only ``(d1, d2)`` fits, NHWC; if only ``(d2, d3)``, NCHW.
    When both or neither fit (``[B, 7, 7, 7]`` on a square input is ambiguous) the ``hint``
    decides (``"nchw"``/``"nhwc"``, e.g. timm's ``output_fmt``), else NCHW.

    Without an input size: the hint if there is one, else NHWC when ``d1 == d2 != d3`` (a square
    grid with its channels last) and NCHW otherwise. That guess misreads an NCHW map with as
    many channels as rows on a non-square grid (``[B, 32, 32, 64]``); pass the input size.
    """
    if len(shape) == 3:
        return "tokens"
    if len(shape) != 4:
        return None
    known = hint if hint in ("nchw", "nhwc") else None
    d1, d2, d3 = shape[1], shape[2], shape[3]
    if input_size is None:
        return known or ("nhwc" if d1 == d2 != d3 else "nchw")
    nchw, nhwc = _grid_fits(d2, d3, input_size), _grid_fits(d1, d2, input_size)
    if nhwc and not nchw:
        return "nhwc"
    if nchw and not nhwc:
        return "nchw"
    return known or "nchw"


@dataclass(frozen=True)
class LayerSpec:
    """A resolved layer: its name, module and how to read its output as ``[B, C, h, w]``.

    Attributes:
        name: the module's name in ``model.named_modules()``.
        module: the module.
        layout: ``nchw``, ``nhwc`` or ``tokens`` when known (from a dry run, or the model's
            hints), else ``auto``: decided per output by :func:`detect_layout`.
        prefix_tokens: class/distillation/register tokens before the patch tokens, if known.
        grid: the patch grid of a token layer, if known.
        calls: how many times the layer ran in the dry run's one forward (``1`` when there was
            none). A layer that runs more than once is explained at its last call.
        input_size: the ``(H, W)`` of the dry run's input, used to tell NCHW from NHWC.
        shape: the layer's output shape in the dry run, ``None`` without one.
    """

    name: str
    module: nn.Module
    layout: str = "auto"  # auto | nchw | nhwc | tokens
    prefix_tokens: int | None = None
    grid: tuple[int, int] | None = None
    calls: int = 1
    input_size: tuple[int, int] | None = None
    shape: tuple[int, ...] | None = None

    def to_nchw(self, t: Tensor, input_size: tuple[int, int] | None = None) -> Tensor:
        """Reshape a captured output (or its gradient) to ``[B, C, h, w]``.

        ``input_size``: the model input's ``(H, W)``, to tell NCHW from NHWC when the layout
        is not known (see :meth:`layout_of`).
        """
        layout = self.layout_of(t, input_size)
        if layout == "nchw":
            return t
        if layout == "nhwc":
            return t.permute(0, 3, 1, 2)
        b, n, c = t.shape
        prefix, (h, w) = self.token_grid(n)
        return t[:, prefix:, :].reshape(b, h, w, c).permute(0, 3, 1, 2)

    def layout_of(self, t: Tensor, input_size: tuple[int, int] | None = None) -> str:
        """The layout of a captured output of this layer.

        3-D: tokens. 4-D: this layer's layout when known, else :func:`detect_layout` from the
        shape and ``input_size`` (or the dry run's input size): ambiguous shapes stay NCHW.
        """
        if t.ndim == 3:
            return "tokens"
        if t.ndim == 4:
            if self.layout in ("nchw", "nhwc"):
                return self.layout
            return detect_layout(tuple(t.shape), input_size or self.input_size) or "nchw"
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


def get_layer(
    model: nn.Module, name: str, example: Tensor | None = None, run: DryRun | None = None
) -> LayerSpec:
    """The layer called ``name`` (as in ``model.named_modules()``), with its layout hints.

    With an ``example`` input, one dry run (eval mode, no gradients) fixes the layer's layout,
    output shape and number of calls, and refuses a layer whose output is not a spatial map
    (:class:`MethodNotApplicableError`), before any work.
    """
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        near = closest(name, [n for n in modules if n])
        hint = f"; closest: {', '.join(repr(n) for n in near)}" if near else ""
        raise LayerError(
            f"no layer '{name}' in {type(model).__name__}{hint}. "
            "Run `seewhy layers MODEL` to list the candidates."
        )
    spec = LayerSpec(name=name, module=modules[name], **_module_hints(model))
    return spec if example is None else _measure(model, spec, example, run)


def _input_size(example: Tensor | None) -> tuple[int, int] | None:
    """The ``(H, W)`` of an image batch ``[B, C, H, W]``; ``None`` for other inputs."""
    if example is None or getattr(example, "ndim", 0) != 4:
        return None
    return int(example.shape[-2]), int(example.shape[-1])


def _spatial_layout(
    shape: tuple[int, ...], spec: LayerSpec, input_size: tuple[int, int] | None
) -> str | None:
    """The layout of an output of ``shape`` if it is a spatial map (``h, w > 1``, or tokens on
    a square grid), else ``None``."""
    layout = detect_layout(shape, input_size, spec.layout)
    if layout in ("nchw", "nhwc"):
        h, w = (shape[1], shape[2]) if layout == "nhwc" else (shape[2], shape[3])
        return layout if h > 1 and w > 1 else None
    if layout == "tokens":
        try:
            spec.token_grid(shape[1])
        except MethodNotApplicableError:
            return None
        return layout
    return None


def input_channels(model: nn.Module) -> tuple[str, int] | None:
    """The model's first convolution and the channels it reads: the one timm's
    ``pretrained_cfg["first_conv"]`` names, else the first ``Conv2d`` among its modules (a stem
    is registered first). ``None`` when it has none."""
    from torch import nn

    modules = dict(model.named_modules())
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    first = cfg.get("first_conv") if isinstance(cfg, dict) else None
    names = [first] if isinstance(first, str) and first in modules else []
    names += [n for n, m in modules.items() if isinstance(m, nn.Conv2d)][:1]
    for name in names:
        channels = getattr(modules[name], "in_channels", None)
        if isinstance(modules[name], nn.Conv2d) and isinstance(channels, int) and channels > 0:
            return name, channels
    return None


def expected_size(model: nn.Module) -> tuple[int, int] | None:
    """The ``(H, W)`` the model states it takes, where it states one: a Hugging Face
    ``config.image_size``, or a timm patch embedding with a strict ``img_size``. ``None`` for
    models that take any size (CNNs) or say nothing."""
    for module in model.modules():
        side = getattr(getattr(module, "config", None), "image_size", None)
        if side is None and getattr(module, "strict_img_size", False):
            side = getattr(module, "img_size", None)
        if isinstance(side, int) and side > 0:
            return side, side
        if (
            isinstance(side, (list, tuple))
            and len(side) == 2
            and all(isinstance(v, int) and v > 0 for v in side)
        ):
            return int(side[0]), int(side[1])
    return None


_SIZE_WORDS = re.compile(r"\b(size|height|width|resolution)\b", re.IGNORECASE)


def _size_mismatch(model: nn.Module, example: Tensor, exc: Exception) -> ModelLoadError | None:
    """A one-line :class:`ModelLoadError` for a forward that failed because the image is not
    the size the model states it takes (a ViT's position embeddings fit one grid): the error
    speaks of a size and names the model's, and the image's differs. ``None`` otherwise."""
    wanted, given = expected_size(model), _input_size(example)
    if wanted is None or given is None or wanted == given:
        return None
    message = str(exc)
    numbers = set(re.findall(r"\d+", message))
    if not _SIZE_WORDS.search(message) or not {str(wanted[0]), str(wanted[1])} & numbers:
        return None
    h, w = wanted
    size = str(h) if h == w else f"[{h}, {w}]"
    return ModelLoadError(
        f"{type(model).__name__} takes {h}x{w} images but gets {given[0]}x{given[1]} "
        f"(shape {list(example.shape)}); set [preprocess] size = {size} in its model card"
    )


def dry_run(model: nn.Module, example: Tensor, run: DryRun | None = None) -> None:
    """The model run once on ``example`` (or ``run()``).

    A forward that fails where the image has other channels than the model's first convolution
    reads (a 1- or 4-channel model fed RGB) is a :class:`ModelLoadError` naming the model, both
    counts and the fix, not torch's traceback; so is one that fails on an image of another size
    than the model states it takes (:func:`expected_size`: a Hugging Face or timm ViT given a
    card's other ``[preprocess] size``), where the error speaks of the size. Any other error is
    raised as it is.
    """
    try:
        run() if run is not None else model(example)
    except (RuntimeError, ValueError, AssertionError) as exc:
        mismatch = _size_mismatch(model, example, exc) or (
            _channel_mismatch(model, example) if isinstance(exc, RuntimeError) else None
        )
        if mismatch is None:
            raise
        raise mismatch from exc


def _channel_mismatch(model: nn.Module, example: Tensor) -> ModelLoadError | None:
    """A one-line :class:`ModelLoadError` when the image has other channels than the model's
    first convolution reads (:func:`input_channels`), naming both counts and the fix."""
    first = input_channels(model)
    given = int(example.shape[1]) if getattr(example, "ndim", 0) == 4 else None
    if first is None or given is None or first[1] == given:
        return None
    name, channels = first
    fix = (
        "give it a model card whose [preprocess] mean and std have one value each "
        "(mean = [0.5], std = [0.5]): images then reach it in grayscale"
        if channels == 1
        else "seewhy feeds images as RGB (3 channels) or grayscale (1, when the card's "
        "[preprocess] mean and std have one value each): wrap the model so it takes one "
        "of those"
    )
    return ModelLoadError(
        f"{type(model).__name__} reads {channels}-channel images (its first convolution, "
        f"'{name}') but gets {given} channels, shape {list(example.shape)}; {fix}"
    )


def _measure(
    model: nn.Module, spec: LayerSpec, example: Tensor, run: DryRun | None = None
) -> LayerSpec:
    """``spec`` with the layout, shape and calls of one dry run on ``example``."""
    import torch

    from seewhy.core.state import explaining

    with (
        explaining(model),
        torch.no_grad(),
        record_output_shapes([(spec.name, spec.module)]) as rec,
    ):
        dry_run(model, example, run)
    calls = rec.calls.get(spec.name, 0)
    shape = rec.shapes.get(spec.name)
    if calls == 0:
        raise LayerError(
            f"layer '{spec.name}' did not run during the forward pass; pick a layer on the path "
            "from input to output (see `seewhy layers MODEL`)"
        )
    if shape is None:
        raise LayerError(
            f"layer '{spec.name}' does not return a tensor; choose a layer whose output is a "
            "feature map (see `seewhy layers MODEL`)"
        )
    size = _input_size(example)
    layout = _spatial_layout(shape, spec, size)
    if layout is None:
        raise MethodNotApplicableError(
            f"layer '{spec.name}' outputs {shape}, not a spatial map ([B, C, H, W], "
            "[B, H, W, C] with H, W > 1, or [B, tokens, C]), so CAM methods cannot read it; "
            "pick a spatial layer from `seewhy layers MODEL`, or use a gradient method"
        )
    return dataclasses.replace(spec, layout=layout, calls=calls, input_size=size, shape=shape)


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
    """A row of ``seewhy.layers(model)``.

    ``layout``: how its output reads as a map (``nchw``, ``nhwc``, ``tokens``; ``None`` for
    outputs with neither 3 nor 4 dimensions). ``calls``: how many times it ran in the forward.
    """

    name: str
    type: str
    shape: tuple[int, ...]
    spatial: bool
    layout: str | None = None
    calls: int = 1


def list_layers(
    model: nn.Module, example: Tensor | None = None, run: DryRun | None = None
) -> list[LayerInfo]:
    """Every named module's output shape from one dry run, in the order the forward finished.

    Each row's layout is decided from its shape and the example's size (:func:`detect_layout`).
    """
    import torch

    from seewhy.core.state import explaining

    x = example if example is not None else example_input(model)
    named = [(n, m) for n, m in model.named_modules() if n]
    types = {n: type(m).__name__ for n, m in named}
    hints = _module_hints(model)
    spec = LayerSpec("", None, **hints)  # type: ignore[arg-type]
    size = _input_size(x)
    with explaining(model), torch.no_grad(), record_output_shapes(named) as rec:
        dry_run(model, x, run)
    rows = []
    for n in rec.order:
        shape = rec.shapes[n]
        spatial = _spatial_layout(shape, spec, size)
        layout = spatial or detect_layout(shape, size, hints["layout"])
        rows.append(LayerInfo(n, types[n], shape, spatial is not None, layout, rec.calls[n]))
    return rows


# Names of the norm before a transformer block's attention (timm, torchvision, Hugging Face).
PRE_ATTENTION_NORMS = ("norm1", "ln1", "ln_1", "layernorm_before")


def auto_layer(
    model: nn.Module, example: Tensor | None = None, run: DryRun | None = None
) -> LayerSpec:
    """The last spatial feature layer.

    timm models: their ``feature_info`` (the last stage; for class-token ViTs the input of the
    last block's attention). Others: a dry run, taking the last module to finish whose output is
    a spatial map (``h, w > 1``), else a square grid of tokens; where token layers follow the
    last map (a ViT with a convolutional stem), the norm before the last block's attention
    (``norm1``, ``ln_1``, ``ln1``, ``layernorm_before``).

    The spec comes measured (layout, shape, calls) from the dry run, which for timm models
    happens only when an ``example`` is given.
    """
    name = _timm_auto(model)
    if name is not None and name in dict(model.named_modules()):
        return get_layer(model, name, example, run)
    x = example if example is not None else example_input(model)
    rows = list_layers(model, x, run)
    row = _auto_row(model, rows)
    # A module whose output is the same whatever the image (a Swin attention's relative position
    # bias, [1, heads, N, N], read as an N x N map) shows nothing about the image: skip it.
    while not reads_input(model, row.name, x, run):
        rows = [r for r in rows if r.name != row.name]
        row = _auto_row(model, rows)
    return dataclasses.replace(
        get_layer(model, row.name),
        layout=row.layout or "auto",
        calls=row.calls,
        input_size=_input_size(x),
        shape=row.shape,
    )


def _auto_row(model: nn.Module, rows: list[LayerInfo]) -> LayerInfo:
    """The row :func:`auto_layer` picks among a dry run's ``rows``."""
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
    return pick[-1]


def _run_on(model: nn.Module, example: Tensor, image: Tensor, run: DryRun | None) -> bool:
    """The model run once on ``image`` in place of ``example`` (for ``run``, which holds the
    example, written into it and then restored); ``False`` where that cannot be done or the run
    fails."""
    if run is None:
        try:
            model(image)
        except Exception:  # a model that refuses this image: no answer, not an error
            return False
        return True
    saved = example.clone()
    try:
        example.copy_(image)
    except RuntimeError:  # an expanded or inference tensor: not writable
        return False
    try:
        run()
    except Exception:  # as above
        return False
    finally:
        example.copy_(saved)
    return True


def reads_input(
    model: nn.Module, name: str, example: Tensor | None = None, run: DryRun | None = None
) -> bool:
    """Whether the output of layer ``name`` changes with the image: two dry runs, on the
    ``example`` and on another image, must not give the same output (a module computed from the
    weights alone, as a relative position bias, gives it bit for bit).

    With ``run`` (a model with several inputs) the other image is written into ``example`` for
    the second run, and the example restored. Where that cannot be done (an example that is not
    a float image batch, or not writable) or the second run fails, the layer is taken to read
    the image.
    """
    import torch

    from seewhy.core.hooks import capture_output
    from seewhy.core.state import explaining

    x = example if example is not None else example_input(model)
    if _input_size(x) is None or not x.is_floating_point():
        return True
    module = dict(model.named_modules())[name]
    generator = torch.Generator().manual_seed(0)
    other = torch.rand(tuple(x.shape), generator=generator).to(x) * 2 - 1 + x
    seen = []
    with explaining(model), torch.no_grad():
        for image in (x, other):
            with capture_output(module, name, leaf=False) as cap:
                if image is x:
                    dry_run(model, x, run)
                elif not _run_on(model, x, image, run):
                    return True
            if cap.value is None:
                return True
            seen.append(cap.value)
    return seen[0].shape != seen[1].shape or not torch.equal(seen[0], seen[1])


def resolve_layer(
    model: nn.Module,
    layer: str | None = "auto",
    example: Tensor | None = None,
    run: DryRun | None = None,
) -> LayerSpec:
    """``"auto"``/``None`` -> :func:`auto_layer`; a name -> :func:`get_layer`.

    With an ``example`` input the layer is measured by one dry run (its layout, output shape
    and ``calls``) and a layer without a spatial output raises
    :class:`MethodNotApplicableError` here, before any work. ``run`` runs the model on the
    example when ``model(example)`` would not (a model with several inputs); ``example`` is
    then the image batch it holds, for the layer's grid size.
    """
    if layer is None or layer == "auto":
        return auto_layer(model, example, run)
    return get_layer(model, layer, example, run)
