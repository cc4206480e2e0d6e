"""An :class:`~seewhy.core.explanation.Explanation` shown in a notebook: the overlay as inline
HTML (``_repr_html_``) and the 4-panel figure on matplotlib axes (``.plot()``).

Core imports no other room, so this is the small drawing code a notebook needs, drawn as
``seewhy.render.figures`` draws its PNGs: an unsigned map in a sequential colormap from 0 to
its maximum, a signed one (or any map holding negative values) red where it raises the target
and blue where it lowers it, each over the image with an opacity that follows its strength.
numpy, PIL and matplotlib are imported inside the functions, so ``import seewhy`` stays light;
figures are bare ``matplotlib.figure.Figure`` objects on an Agg canvas (no pyplot state).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch import Tensor

    from seewhy.core.explanation import Explanation

SEQUENTIAL = "inferno"
"""The colormap of an unsigned map (as ``seewhy.render.figures``)."""
DIVERGING = "RdBu_r"
"""The colormap of a signed map's heatmap panel: red raises, blue lowers."""
SIGNED_ALPHA = 0.75
UNSIGNED_ALPHA = 0.6
"""The overlay's opacity where the map is strongest (signed: pure red / blue; unsigned: the
sequential colour), falling linearly to 0 where the map is 0."""
HTML_SAMPLES = 8
"""Samples ``_repr_html_`` draws; the rest are counted (``and N more``)."""
DISPLAY_MAX = 512
"""Longest side, in pixels, of an inline PNG (larger images are area-downsampled)."""
DISPLAY_MIN = 128
"""Shortest width, in CSS pixels, an inline PNG is shown at (a 32 x 32 image is enlarged)."""
FIGURE_SIZE = (14.0, 4.0)
DPI = 100


# -- the image ------------------------------------------------------------------------------
def input_image(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor | None:
    """The image the model saw, displayable: the normalised batch ``[B, C, H, W]`` mapped back
    through the preprocess ``mean`` / ``std`` to uint8 ``[B, H, W, 3]`` on the CPU (one channel
    repeated to three). ``None`` when the batch is not an image batch of ``len(mean)`` (1 or 3)
    channels."""
    import torch

    if x.ndim != 4 or x.shape[1] != len(mean) or len(mean) != len(std) or len(mean) not in (1, 3):
        return None
    with torch.no_grad():
        values = x.detach().float()
        m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        pixels = (values * s + m).mul_(255.0).nan_to_num_(0.0).clamp_(0.0, 255.0).round_()
        image = pixels.to(torch.uint8).cpu().permute(0, 2, 3, 1)  # uint8 crosses to the CPU
        if image.shape[-1] == 1:
            image = image.expand(-1, -1, -1, 3)
        return image.contiguous()


# -- arrays ---------------------------------------------------------------------------------
def _finite(heat: Any) -> np.ndarray:
    """A float32 ``H x W`` map with non-finite values set to 0."""
    import numpy as np

    arr = np.asarray(heat, dtype=np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise UsageError(f"a displayed map must be H x W; got shape {arr.shape}")
    return np.where(np.isfinite(arr), arr, np.float32(0.0))


def _resize(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to ``(h, w)`` (PIL, mode F)."""
    import numpy as np
    from PIL import Image

    if heat.shape == shape:
        return heat
    img = Image.fromarray(np.ascontiguousarray(heat, dtype=np.float32))
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.float32)


def _limit(values: np.ndarray) -> float:
    """The largest absolute value (1.0 for an all-zero map, so scales stay valid)."""
    import numpy as np

    m = float(np.abs(values).max()) if values.size else 0.0
    return m if m > 0 else 1.0


def is_signed(heat: np.ndarray, signed: bool) -> bool:
    """Whether a map is shown signed: it says so, or it holds negative values (a 0..max scale
    would hide them)."""
    return signed or bool((heat < 0).any())


def overlay(image: Any, heat: Any, signed: bool = False) -> np.ndarray:
    """The map over the image, as uint8 ``H x W x 3`` at the image's size.

    Signed: pure red where the map is positive, pure blue where negative, with opacity
    ``SIGNED_ALPHA * |map| / max|map|``. Unsigned: the ``SEQUENTIAL`` colour of
    ``map / max`` (negatives clipped) with opacity ``UNSIGNED_ALPHA * map / max``. Where the
    map is 0 the image shows unchanged.

    Args:
        image: uint8 ``H x W x 3`` (or ``H x W``).
        heat: float ``h x w`` (resized bilinearly to the image).
        signed: the map keeps a sign (a map with negative values is shown signed anyway).
    """
    import numpy as np

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    base = img[..., :3].astype(np.float32)
    h = _resize(_finite(heat), base.shape[:2])
    m = _limit(h)
    if is_signed(h, signed):
        colour = np.zeros_like(base)
        colour[..., 0] = np.where(h > 0, 255.0, 0.0)
        colour[..., 2] = np.where(h < 0, 255.0, 0.0)
        alpha = SIGNED_ALPHA * np.abs(h) / m
    else:
        from matplotlib import colormaps

        norm = h.clip(min=0) / m
        colour = colormaps[SEQUENTIAL](norm)[..., :3].astype(np.float32) * 255.0
        alpha = UNSIGNED_ALPHA * norm
    a = alpha[..., None]
    return np.asarray(np.clip(np.rint(base * (1.0 - a) + colour * a), 0, 255).astype(np.uint8))


def heat_image(heat: Any, signed: bool = False) -> np.ndarray:
    """The map alone as uint8 ``H x W x 3``: ``DIVERGING`` from ``-max|map|`` to ``max|map|``
    when signed, ``SEQUENTIAL`` from 0 to its maximum otherwise (the heatmap panel's scale)."""
    import numpy as np
    from matplotlib import colormaps

    h = _finite(heat)
    m = _limit(h)
    if is_signed(h, signed):
        rgba = colormaps[DIVERGING]((h / m + 1.0) / 2.0)
    else:
        rgba = colormaps[SEQUENTIAL](h.clip(min=0) / m)
    return np.asarray(np.rint(rgba[..., :3] * 255.0).astype(np.uint8))


def png_base64(rgb: np.ndarray) -> str:
    """``rgb`` (uint8 ``H x W x 3``) as a base64 PNG, area-downsampled so that its longest
    side is at most ``DISPLAY_MAX``."""
    import base64
    import io

    from PIL import Image

    img = Image.fromarray(rgb)
    scale = DISPLAY_MAX / max(img.size)
    if scale < 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


# -- one sample -----------------------------------------------------------------------------
def _sample(e: Explanation, index: int) -> tuple[np.ndarray | None, np.ndarray, bool]:
    """Sample ``index``'s image (uint8 ``H x W x 3`` or ``None``), its map (float ``H x W`` on
    the image's grid) and whether the map is shown signed."""
    heat = _finite(e.map[index].detach().float().cpu().numpy())
    image = None if e.image is None else e.image[index].cpu().numpy()
    if image is not None:
        heat = _resize(heat, image.shape[:2])
    return image, heat, is_signed(heat, e.is_signed("image"))


def _index(e: Explanation, index: int) -> int:
    """``index`` as a sample number ``0 .. B-1`` (negative counts from the end)."""
    import operator

    n = len(e)
    try:
        i = operator.index(index)
    except TypeError:
        i = None
    if i is None or isinstance(index, bool) or not -n <= i < n:
        raise UsageError(
            f"sample index {index!r} is out of range: this explanation has {n} samples"
        )
    return i % n


def _prediction(e: Explanation, i: int) -> str | None:
    return None if e.predictions is None else str(e.predictions[i])


def details(e: Explanation, index: int) -> list[str]:
    """The details panel's lines: method, target, layer, prediction."""
    i = _index(e, index)
    lines = [f"sample: {i} of {len(e)}", f"method: {e.method}", f"target: {e.target}"]
    if e.target_indices is not None:
        lines.append(f"explained index: {int(e.target_indices[i])}")
    lines.append(f"layer: {e.layer or '-'}")
    pred = _prediction(e, i)
    lines.append(f"prediction: {pred if pred is not None else '-'}")
    return lines


def caption(e: Explanation, index: int) -> str:
    """One sample's caption: ``#0 gradcam · target pred · predicted cat (0.93)``."""
    i = _index(e, index)
    parts = [f"#{i} {e.method}", f"target {e.target}"]
    pred = _prediction(e, i)
    if pred is not None:
        parts.append(f"predicted {pred}")
    return " · ".join(parts)


# -- HTML -----------------------------------------------------------------------------------
def explanation_html(e: Explanation) -> str:
    """The explanation as an HTML snippet: per sample (the first ``HTML_SAMPLES``, then
    ``and N more``) the overlay as an inline PNG (the map alone when no image was kept) with
    its caption. Every string is escaped."""
    esc = html.escape
    n = len(e)
    head = f"{e.method} explanation of {n} sample{'s' if n != 1 else ''}, target {e.target}"
    if e.layer:
        head += f", layer {e.layer}"
    parts = [
        '<div class="seewhy-explanation" style="font-family:sans-serif;font-size:12px">',
        f'<div style="margin-bottom:4px"><b>{esc(head)}</b></div>',
    ]
    if "image" not in e.attributions:
        attributed = ", ".join(e.attributions)
        parts.append(f"<div>{esc(f'no image map; attributions of: {attributed}')}</div></div>")
        return "\n".join(parts)
    parts.append('<div style="display:flex;flex-wrap:wrap;gap:8px">')
    for i in range(min(n, HTML_SAMPLES)):
        image, heat, signed = _sample(e, i)
        rgb = heat_image(heat, signed) if image is None else overlay(image, heat, signed)
        height, width = rgb.shape[:2]
        shown = max(DISPLAY_MIN, round(width * min(1.0, DISPLAY_MAX / max(height, width))))
        text = caption(e, i)
        parts.append(
            '<figure style="margin:0">'
            f'<img src="data:image/png;base64,{png_base64(rgb)}" alt="{esc(text)}" '
            f'style="width:{shown}px;image-rendering:pixelated"/>'
            f'<figcaption style="max-width:{shown}px">{esc(text)}</figcaption></figure>'
        )
    parts.append("</div>")
    if n > HTML_SAMPLES:
        parts.append(f"<div>and {n - HTML_SAMPLES} more</div>")
    parts.append("</div>")
    return "\n".join(parts)


# -- matplotlib -----------------------------------------------------------------------------
def _figure() -> Figure:
    """A bare figure on an Agg canvas: no pyplot state, no backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _draw_overlay(ax: Axes, image: np.ndarray | None, heat: np.ndarray, signed: bool) -> None:
    rgb = heat_image(heat, signed) if image is None else overlay(image, heat, signed)
    ax.imshow(rgb, interpolation="antialiased")
    ax.set_axis_off()


def _draw_panels(e: Explanation, i: int, axes: Sequence[Axes]) -> None:
    """The 4 panels of sample ``i``: image, heatmap with its colour bar, overlay, details."""
    image, heat, signed = _sample(e, i)
    first, second, third, fourth = axes
    if image is None:
        first.text(0.5, 0.5, "no image kept", ha="center", va="center", transform=first.transAxes)
    else:
        first.imshow(image, interpolation="antialiased")
    first.set_axis_off()
    first.set_title("image", fontsize=9)

    m = _limit(heat)
    if signed:
        drawn = second.imshow(heat, cmap=DIVERGING, vmin=-m, vmax=m)
        second.set_title("attribution: red raises, blue lowers", fontsize=9)
    else:
        drawn = second.imshow(heat, cmap=SEQUENTIAL, vmin=0.0, vmax=m)
        second.set_title("heatmap", fontsize=9)
    figure = second.get_figure()
    if figure is not None:
        bar = figure.colorbar(drawn, ax=second, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=7)
    second.set_axis_off()

    _draw_overlay(third, image, heat, signed)
    third.set_title("overlay", fontsize=9)

    fourth.set_axis_off()
    fourth.text(
        0.0,
        1.0,
        "\n".join(details(e, i)),
        va="top",
        ha="left",
        fontsize=8.5,
        family="monospace",
        transform=fourth.transAxes,
        parse_math=False,
        wrap=True,
    )


def plot(e: Explanation, index: int = 0, ax: Any = None) -> Any:
    """Draw sample ``index`` (see :meth:`Explanation.plot`)."""
    from matplotlib.axes import Axes

    i = _index(e, index)
    if "image" not in e.attributions:
        raise UsageError(
            f"this {e.method} explanation has no image map to plot (it attributes "
            f"{', '.join(e.attributions)}); read e.attributions[name]"
        )
    if ax is None:
        fig = _figure()
        axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1.15, 1, 1.1]})
        fig.subplots_adjust(left=0.01, right=0.99, top=0.84, bottom=0.04, wspace=0.12)
        fig.suptitle(caption(e, i), fontsize=11, parse_math=False)
        _draw_panels(e, i, list(axes))
        return fig
    if isinstance(ax, Axes):
        image, heat, signed = _sample(e, i)
        _draw_overlay(ax, image, heat, signed)
        ax.set_title(caption(e, i), fontsize=9, parse_math=False)
        return ax
    if hasattr(ax, "flat"):  # a numpy array of axes, as pyplot.subplots returns them
        ax = list(ax.flat)
    axes = list(ax) if isinstance(ax, Sequence) else []
    if len(axes) != 4 or not all(isinstance(a, Axes) for a in axes):
        raise UsageError(
            f"plot(ax=...) takes one matplotlib Axes (the overlay) or 4 of them (image, "
            f"heatmap, overlay, details); got {type(ax).__name__}"
        )
    _draw_panels(e, i, axes)
    return axes
