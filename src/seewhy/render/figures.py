"""Figures: the 4-panel explanation, the model comparison, token and feature importances.

Every figure is a bare ``matplotlib.figure.Figure`` drawn by the Agg canvas (no pyplot, so no
global figure registry to leak into and no change to the user's backend), written atomically
(temp file + rename) and cleared after saving.

Colours: an unsigned map uses a sequential colormap from 0 to its maximum; a signed map (what
raises vs what lowers an output) a diverging one centred at 0 with symmetric limits, red raising
and blue lowering, in the heatmap, the overlay, the token figure (words and bars) and the feature
bars alike. A map given as unsigned that holds negative values is shown signed anyway: a 0..max
scale would hide them.

User text (titles, labels, tokens, feature names and values) is drawn literally: ``$`` never
starts mathtext.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.atomic import atomic_path
from seewhy.core.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
"""Pixels per inch of every saved PNG."""
EXPLANATION_SIZE = (14.0, 4.0)
"""The 4-panel figure's size in inches (1400 x 400 pixels)."""
DISPLAY_MAX = 512
"""Longest side, in pixels, an image is shown at; larger images are downsampled first (a
panel is about 330 pixels wide, so more would only cost time)."""
SEQUENTIAL = "inferno"
DIVERGING = "RdBu_r"
DETAIL_WIDTH = 40
"""Characters per line in the details panel (longer lines wrap)."""
DETAIL_LINES = 22
"""Lines the details panel holds; the rest is summarised as ``... (n more lines)``."""
MAX_TOKENS = 48
"""Tokens the token figure's bars show: the largest by absolute score, in their text order."""
MAX_FEATURES = 20
"""Features the feature figure shows: the largest by absolute score, largest first."""
TITLE_FONT = 10.0
"""Points of the token figure's title."""
SENTENCE_FONT = 9.0
"""Points of the words in the token figure's sentence panel."""
SENTENCE_BOX_PAD = 0.2
"""Padding of a word's coloured box, in font sizes."""
SENTENCE_LINES = 8
"""Lines the sentence panel holds; the words after them are counted in a note."""
SENTENCE_WORD_CHARS = 30
"""Characters a word keeps in the sentence panel (longer ones end in an ellipsis)."""
SENTENCE_MARGIN = 0.12
SENTENCE_PAD = 0.08
SENTENCE_GAP = 0.06
TITLE_LINE = 0.22
WORD_LINE = 0.27
"""Inches: side margins of the sentence panel, space above the title and below the sentence,
between title and sentence, and the height of a title line and of a sentence line."""
BARS_HEIGHT = 2.49
"""Inches of the token figure below its title and sentence (the bars and their labels): with one
line of title and one of sentence the figure is 3.2 inches high."""
COMPARISON_CELL = 2.6
"""Width and height, in inches, of one cell of the comparison figure."""


@dataclass(frozen=True)
class ComparisonRow:
    """A model's row in the comparison figure.

    Attributes:
        model: the model's name (row label).
        prediction: its prediction in words, e.g. ``"fracture (0.91)"``.
        maps: method name -> heatmap (float, any resolution; resized to the image).
        signed: whether the maps are signed (raise > 0, lower < 0).
    """

    model: str
    prediction: str
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    signed: bool = False


# -- arrays ---------------------------------------------------------------------------------
def _as_image(image: Any) -> np.ndarray:
    """The image as uint8 HxW or HxWxC (C in 1, 3, 4); floats in [0, 1] are scaled to 255."""
    import numpy as np

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise UsageError(
            f"figure image has shape {arr.shape}; expected a non-empty HxW or HxWx3 array "
            "(uint8, as decoded from the image file)"
        )
    if arr.dtype == np.uint8:
        return arr
    values = arr.astype(np.float32)
    if arr.dtype.kind == "f" and np.nanmax(values) <= 1.0:
        values = values * 255.0
    return np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8)


def _as_map(heatmap: Any, name: str = "heatmap") -> tuple[np.ndarray, int]:
    """A float32 HxW map (leading singleton axes dropped) and its count of non-finite values,
    which are set to 0 (the figure says how many)."""
    import numpy as np

    arr = np.asarray(heatmap, dtype=np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise UsageError(
            f"figure {name} has shape {np.shape(heatmap)}; expected a non-empty HxW map"
        )
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    if count:
        arr = np.where(bad, np.float32(0), arr)
    return arr, count


def _display_image(image: np.ndarray) -> np.ndarray:
    """The image downsampled (area average) so that its longest side is at most DISPLAY_MAX."""
    import numpy as np
    from PIL import Image

    h, w = image.shape[:2]
    scale = DISPLAY_MAX / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def _resize(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (h, w) (PIL, mode F)."""
    import numpy as np
    from PIL import Image

    if heat.shape == shape:
        return heat.astype(np.float32, copy=False)
    img = Image.fromarray(np.ascontiguousarray(heat, dtype=np.float32))
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def _limit(values: np.ndarray) -> float:
    """The largest absolute value (1.0 for an all-zero map, so scales stay valid)."""
    import numpy as np

    m = float(np.abs(values).max()) if values.size else 0.0
    return m if m > 0 else 1.0


def _combine(
    heatmap: np.ndarray, signed: bool, lowers: np.ndarray | None
) -> tuple[np.ndarray, bool]:
    """The map to show and whether it is signed.

    With ``lowers``, ``heatmap`` is what raises and ``lowers`` what lowers: one signed map
    ``raises - lowers`` (both clipped at 0). A map with negative values is always signed.
    """
    if lowers is not None:
        lowers = _resize(lowers, heatmap.shape)
        return heatmap.clip(min=0) - lowers.clip(min=0), True
    return heatmap, signed or bool((heatmap < 0).any())


# -- drawing --------------------------------------------------------------------------------
def _figure(width: float, height: float, *, constrained: bool = False) -> Figure:
    """A bare figure on an Agg canvas: no pyplot state, no backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _show_image(ax: Axes, image: np.ndarray, grayscale: bool) -> None:
    if grayscale:
        gray = image if image.ndim == 2 else image[..., 0]
        ax.imshow(gray, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
    else:
        ax.imshow(image, interpolation="antialiased")
    ax.set_axis_off()


def _overlay(ax: Axes, image: np.ndarray, heat: np.ndarray, grayscale: bool, signed: bool) -> None:
    """The image with the map on top; the map's opacity follows its strength."""
    import numpy as np
    from matplotlib import colormaps

    _show_image(ax, image, grayscale)
    h = _resize(heat, image.shape[:2])
    m = _limit(h)
    if signed:
        rgba = np.zeros((*h.shape, 4), dtype=np.float32)
        rgba[..., 0] = h > 0  # red raises
        rgba[..., 2] = h < 0  # blue lowers
        rgba[..., 3] = 0.75 * np.abs(h) / m
    else:
        norm = h.clip(min=0) / m
        rgba = colormaps[SEQUENTIAL](norm).astype(np.float32)
        rgba[..., 3] = 0.6 * norm
    ax.imshow(rgba)


def _wrap(lines: Sequence[str], width: int, limit: int) -> list[str]:
    """Lines wrapped at ``width`` (continuations indented like their line), at most ``limit``."""
    out: list[str] = []
    for line in lines:
        text = str(line).rstrip()
        indent = " " * (len(text) - len(text.lstrip()))
        out.extend(
            textwrap.wrap(
                text,
                width=width,
                subsequent_indent=indent + "  ",
            )
            or [""]
        )
    if len(out) > limit:
        out = [*out[: limit - 1], f"... ({len(out) - limit + 1} more lines)"]
    return out


def build_explanation_figure(
    *,
    image: np.ndarray,
    heatmap: np.ndarray,
    title: str,
    details: Sequence[str],
    signed: bool = False,
    grayscale: bool = False,
    lowers: np.ndarray | None = None,
) -> Figure:
    """The 4-panel figure, drawn but not saved (see :func:`explanation_figure`)."""
    image = _display_image(_as_image(image))
    heat, bad = _as_map(heatmap)
    low = None
    if lowers is not None:
        low, bad_low = _as_map(lowers, "lowers")
        bad += bad_low
    heat = _resize(heat, image.shape[:2])  # shown on the image's own grid
    shown, is_signed = _combine(heat, signed, low)

    fig = _figure(*EXPLANATION_SIZE)
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1.15, 1, 1.1]})
    fig.subplots_adjust(left=0.01, right=0.99, top=0.84, bottom=0.04, wspace=0.12)
    fig.suptitle(title, fontsize=11, parse_math=False)

    _show_image(axes[0], image, grayscale)
    axes[0].set_title("image", fontsize=9)

    m = _limit(shown)
    if is_signed:
        drawn = axes[1].imshow(shown, cmap=DIVERGING, vmin=-m, vmax=m)
        bar = fig.colorbar(drawn, ax=axes[1], fraction=0.046, pad=0.03)
        bar.set_ticks([-m, 0.0, m], labels=[f"{-m:.2g}", "0", f"{m:.2g}"])
        bar.ax.set_title("raises", fontsize=8, color="#b2182b")  # top of the bar
        bar.ax.set_xlabel("lowers", fontsize=8, color="#2166ac")  # its bottom
        axes[1].set_title("attribution: red raises, blue lowers", fontsize=9)
    else:
        drawn = axes[1].imshow(shown, cmap=SEQUENTIAL, vmin=0.0, vmax=m)
        bar = fig.colorbar(drawn, ax=axes[1], fraction=0.046, pad=0.03)
        axes[1].set_title("heatmap", fontsize=9)
    bar.ax.tick_params(labelsize=7)
    axes[1].set_axis_off()

    _overlay(axes[2], image, shown, grayscale, signed=is_signed)
    axes[2].set_title("overlay", fontsize=9)

    lines = [str(d) for d in details]
    if bad:  # first, so that truncation never hides it
        lines.insert(0, f"warning: {bad} NaN/inf map values set to 0")
    axes[3].set_axis_off()
    axes[3].text(
        0.0,
        1.0,
        "\n".join(_wrap(lines, DETAIL_WIDTH, DETAIL_LINES)),
        va="top",
        ha="left",
        fontsize=8.5,
        family="monospace",
        transform=axes[3].transAxes,
        parse_math=False,
    )
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as a PNG atomically (temp file + rename), then clear it.

    Args:
        fig: a figure from one of the ``build_*`` functions.
        path: the final file; its folder is created.

    Returns:
        ``path``.
    """
    try:
        with atomic_path(path) as tmp:
            # zlib level 1: a third less encoding time for a tenth more bytes (the report
            # inlines noisy figures as WebP anyway)
            fig.savefig(tmp, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    finally:
        fig.clear()  # free the artists now, whether or not the save worked
    return Path(path)


def explanation_figure(
    path: str | Path,
    *,
    image: np.ndarray,
    heatmap: np.ndarray,
    title: str,
    details: Sequence[str],
    signed: bool = False,
    grayscale: bool = False,
    lowers: np.ndarray | None = None,
) -> Path:
    """Write the 4-panel PNG for one (sample, model, method).

    Panels: (1) the image as given, (2) the heatmap with a colour bar, (3) the heatmap over the
    image, (4) the ``details`` text. 1400 x 400 pixels.

    Args:
        path: the PNG to write (atomically).
        image: uint8 HxWx3 (or HxW) at the image's original resolution; shown downsampled to
            at most DISPLAY_MAX pixels a side.
        heatmap: float HxW, any resolution (resized to the image). Unsigned: a sequential
            colormap from 0 to the max. With ``lowers``: what raises the output.
        title: the figure's title.
        details: lines for the text panel (prediction, explained target, method, layer,
            checkpoint metadata); long lines wrap.
        signed: ``heatmap`` holds raise > 0 / lower < 0: a diverging colormap centred at 0,
            red raising and blue lowering.
        grayscale: show the image with a gray colormap (X-rays).
        lowers: optional non-negative map of what lowers the output; shown signed together
            with ``heatmap``.

    Returns:
        ``path``.

    Raises:
        UsageError: an image or map that is not a 2-D (image: or HxWx3) array.
    """
    fig = build_explanation_figure(
        image=image,
        heatmap=heatmap,
        title=title,
        details=details,
        signed=signed,
        grayscale=grayscale,
        lowers=lowers,
    )
    return save_figure(fig, path)


def build_comparison_figure(
    *,
    image: np.ndarray,
    rows: Sequence[ComparisonRow],
    agreement: str,
    grayscale: bool = False,
    title: str = "model comparison",
) -> Figure:
    """The comparison figure, drawn but not saved (see :func:`comparison_figure`)."""
    if not rows:
        raise UsageError("comparison figure needs at least one model row; got none")
    image = _display_image(_as_image(image))
    methods = list(dict.fromkeys(m for r in rows for m in r.maps))
    ncols = 1 + len(methods)
    width = COMPARISON_CELL * ncols
    chars = max(30, int(width * DPI / 6.5))  # about 6.5 pixels per character at 9 points
    lines = _wrap(agreement.splitlines(), chars, 12) if agreement.strip() else []
    # Heights in inches: title, agreement lines, then per row a title band and the cell.
    header = 0.45 + 0.17 * len(lines)
    band = 0.42
    height = header + (band + COMPARISON_CELL) * len(rows) + 0.1
    fig = _figure(width, height)
    grid = fig.add_gridspec(
        len(rows),
        ncols,
        left=0.01,
        right=0.99,
        bottom=0.1 / height,
        top=1.0 - (header + band) / height,
        hspace=band / COMPARISON_CELL,
        wspace=0.05,
    )
    fig.suptitle(title, fontsize=12, y=1.0 - 0.1 / height, va="top", parse_math=False)
    if lines:
        fig.text(
            0.5,
            1.0 - 0.4 / height,
            "\n".join(lines),
            ha="center",
            va="top",
            fontsize=9,
            parse_math=False,
        )
    label_width = max(12, int(COMPARISON_CELL * DPI / 7.0))
    for i, row in enumerate(rows):
        first = fig.add_subplot(grid[i, 0])
        _show_image(first, image, grayscale)
        label = "\n".join(_wrap([f"{row.model}: {row.prediction}"], label_width, 2))
        first.set_title(label, fontsize=9, fontweight="bold", parse_math=False)
        for j, method in enumerate(methods, start=1):
            ax = fig.add_subplot(grid[i, j])
            if method in row.maps:
                heat, _ = _as_map(row.maps[method], f"map '{method}' of model '{row.model}'")
                shown, is_signed = _combine(heat, row.signed, None)
                _overlay(ax, image, shown, grayscale, signed=is_signed)
            else:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "not computed", ha="center", va="center", fontsize=8)
            if i == 0:
                ax.set_title(method, fontsize=10, parse_math=False)
    return fig


def comparison_figure(
    path: str | Path,
    *,
    image: np.ndarray,
    rows: Sequence[ComparisonRow],
    agreement: str,
    grayscale: bool = False,
    title: str = "model comparison",
) -> Path:
    """Write the figure that compares models on one image.

    A row per model: the image titled with the model's name and prediction, then the overlay
    of each method's map (column titles = method names; a cell the model lacks says so).

    Args:
        path: the PNG to write (atomically).
        image: uint8 HxWx3 (or HxW), the image as given.
        rows: one :class:`ComparisonRow` per model.
        agreement: text under the title (e.g. "both models predict fracture; rank correlation
            0.82; top-10% IoU 0.61"); may hold several lines.
        grayscale: show the image with a gray colormap.
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        UsageError: no rows, or an image or map of the wrong shape.
    """
    fig = build_comparison_figure(
        image=image, rows=rows, agreement=agreement, grayscale=grayscale, title=title
    )
    return save_figure(fig, path)


def _sentence_layout(
    fig: Figure, words: Sequence[str], width_px: float
) -> tuple[list[list[int]], int, list[float]]:
    """The sentence panel's lines (each a list of word indices, in text order), how many words
    did not fit in SENTENCE_LINES lines (a note at the end of the last line says so) and the
    width of each word's text in pixels (measured up to the last line only; 0 after it)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    measured: dict[str, float] = {}  # a text is measured once (words repeat)

    def measure(text: str) -> float:
        if text not in measured:
            measured[text] = _text_px(renderer, text, SENTENCE_FONT)
        return measured[text]

    pad, gap = 2 * _box_pad_px(), _word_gap_px(renderer)
    widths = [0.0] * len(words)
    lines: list[list[int]] = []
    used = 0.0
    for i, word in enumerate(words):
        widths[i] = measure(word)
        box = widths[i] + pad
        if lines and used + gap + box <= width_px:
            lines[-1].append(i)
            used += gap + box
        elif len(lines) == SENTENCE_LINES:
            break
        else:
            lines.append([i])
            used = box
    shown = sum(len(line) for line in lines)
    if shown == len(words):
        return lines, 0, widths
    last = lines[-1]
    while last:  # room on the last line for the note
        note = measure(_more_words(len(words) - shown))
        if sum(widths[i] + pad + gap for i in last) + note <= width_px:
            break
        last.pop()
        shown -= 1
    return lines, len(words) - shown, widths


def _more_words(n: int) -> str:
    return f"… ({n} more words)"


def _text_px(renderer: Any, text: str, size: float) -> float:
    """The width in pixels of ``text`` drawn literally (no mathtext) at ``size`` points."""
    from matplotlib.font_manager import FontProperties

    width, _, _ = renderer.get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False
    )
    return float(width)


def _word_gap_px(renderer: Any) -> float:
    """The space between two words' boxes, in pixels."""
    return _text_px(renderer, " ", SENTENCE_FONT) + 2.0


def _box_pad_px() -> float:
    """The padding of a word's coloured box, in pixels (``pad`` is in font sizes)."""
    return SENTENCE_BOX_PAD * SENTENCE_FONT * DPI / 72.0


def _wrap_px(fig: Figure, text: str, size: float, width_px: float, limit: int) -> list[str]:
    """``text`` wrapped at spaces to lines of at most ``width_px`` pixels (a longer word keeps a
    line of its own); after ``limit`` lines an ellipsis ends the last."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    lines: list[str] = []
    for word in text.split(" "):
        if lines and _text_px(renderer, f"{lines[-1]} {word}", size) <= width_px:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > limit:
        lines = [*lines[: limit - 1], lines[limit - 1] + " …"]
    return lines


def _signed_color(cmap: Any, score: float, limit: float) -> tuple[float, float, float, float]:
    """``score``'s colour on the diverging colormap centred at 0 with limits ``±limit``."""
    return tuple(cmap(0.5 + 0.5 * max(-1.0, min(1.0, score / limit))))


def build_token_figure(*, tokens: Sequence[str], scores: Sequence[float], title: str) -> Figure:
    """The token figure, drawn but not saved (see :func:`token_figure`)."""
    import numpy as np
    from matplotlib import colormaps

    if len(tokens) != len(scores):
        raise UsageError(
            f"token figure got {len(tokens)} tokens but {len(scores)} scores; "
            "pass one score per token"
        )
    values = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    words = [_short(" ".join(str(t).split()), SENTENCE_WORD_CHARS) for t in tokens]
    keep = np.arange(len(values))
    note = ""
    if len(values) > MAX_TOKENS:
        keep = np.sort(np.argsort(-np.abs(values), kind="stable")[:MAX_TOKENS])
        note = f"bars: top {MAX_TOKENS} of {len(values)} tokens by |score|, in text order"
    shown = values[keep]
    labels = [_short(str(tokens[int(i)])) for i in keep]
    m = _limit(values)  # the largest |score| is always shown: one scale for both panels
    cmap = colormaps[DIVERGING]

    width = min(16.0, max(4.0, 0.32 * len(shown) + 1.2))
    fig = _figure(width, 1.0)  # measured on first; its height is set once the lines are known
    inner = (width - 2 * SENTENCE_MARGIN) * DPI
    heads = _wrap_px(fig, title, TITLE_FONT, inner, 3)
    lines, hidden, widths = _sentence_layout(fig, words, inner)
    top = SENTENCE_PAD + TITLE_LINE * len(heads) + SENTENCE_GAP
    band = top + WORD_LINE * max(1, len(lines)) + SENTENCE_PAD
    height = round(band + BARS_HEIGHT, 2)
    fig.set_size_inches(width, height)
    fig.set_layout_engine("constrained", rect=(0.0, 0.0, 1.0, BARS_HEIGHT / height))

    ax = fig.subplots()  # the bars: the figure's first (and only) axes
    colors = [_signed_color(cmap, float(s), m) for s in shown]
    ax.bar(range(len(shown)), shown, color=colors, edgecolor="0.3", linewidth=0.4)
    ax.set_xticks(
        range(len(shown)), labels=labels, rotation=60, ha="right", fontsize=8, parse_math=False
    )
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("importance\n(red raises, blue lowers)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    if not len(shown):
        ax.text(0.5, 0.5, "no tokens", ha="center", va="center", transform=ax.transAxes)
    if note:
        ax.set_title(note, fontsize=8, parse_math=False)

    inches = fig.dpi_scale_trans
    fig.text(
        width / 2,
        height - SENTENCE_PAD,
        "\n".join(heads),
        ha="center",
        va="top",
        fontsize=TITLE_FONT,
        transform=inches,
        parse_math=False,
        gid="title",
    )
    gap = _word_gap_px(fig.canvas.get_renderer())  # type: ignore[attr-defined]
    pad = _box_pad_px()
    for row, line in enumerate(lines):
        y = height - top - WORD_LINE * (row + 0.5)
        x = SENTENCE_MARGIN * DPI + pad
        for i in line:
            score = float(values[i])
            strong = abs(score) / m > 0.55
            fig.text(
                x / DPI,
                y,
                words[i],
                ha="left",
                va="center",
                fontsize=SENTENCE_FONT,
                color="white" if strong else "black",
                transform=inches,
                parse_math=False,
                gid=f"word-{i}",
                bbox={
                    "boxstyle": f"round,pad={SENTENCE_BOX_PAD}",
                    "facecolor": _signed_color(cmap, score, m),
                    "edgecolor": "none",
                },
            )
            x += widths[i] + 2 * pad + gap
        if hidden and row == len(lines) - 1:
            fig.text(
                (x - pad) / DPI,
                y,
                _more_words(hidden),
                ha="left",
                va="center",
                fontsize=SENTENCE_FONT,
                color="0.4",
                transform=inches,
                parse_math=False,
            )
    if not lines:
        fig.text(
            SENTENCE_MARGIN,
            height - top - WORD_LINE / 2,
            "(no words)",
            ha="left",
            va="center",
            fontsize=SENTENCE_FONT,
            color="0.4",
            transform=inches,
        )
    return fig


def _short(token: str, width: int = 16) -> str:
    return token if len(token) <= width else token[: width - 1] + "…"


def token_figure(
    path: str | Path, *, tokens: Sequence[str], scores: Sequence[float], title: str
) -> Path:
    """Write token (or word) importances: the sentence, then a bar chart, in signed colours.

    Top: the title, then the sentence itself, its words in order, each on a background of its
    score's colour (diverging colormap centred at 0, limits ``±max|score|``: red raises, blue
    lowers, white is 0; all scores >= 0 run from white to red), wrapped to the figure's width
    (SENTENCE_LINES lines at most; a note counts the words left out). Below: one bar per token
    on the same colour scale (the MAX_TOKENS largest by ``|score|`` where there are more, in
    text order). NaN scores count as 0. 3.2 inches high with one line of title and sentence.

    Args:
        path: the PNG to write (atomically).
        tokens: the tokens in text order.
        scores: one importance per token (signed).
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        UsageError: ``tokens`` and ``scores`` differ in length.
    """
    return save_figure(build_token_figure(tokens=tokens, scores=scores, title=title), path)


def _value_text(value: Any) -> str:
    """A feature's value as its label shows it: numbers to 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_feature_figure(
    *,
    names: Sequence[str],
    values: Sequence[Any],
    scores: Sequence[float],
    title: str,
) -> Figure:
    """The feature figure, drawn but not saved (see :func:`feature_figure`)."""
    import numpy as np
    from matplotlib import colormaps

    if not len(names) == len(values) == len(scores):
        raise UsageError(
            f"feature figure got {len(names)} names, {len(values)} values and {len(scores)} "
            "scores; pass one value and one score per feature"
        )
    all_scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0) + 0.0  # -0 as 0
    order = np.argsort(-np.abs(all_scores), kind="stable")[:MAX_FEATURES]
    if len(all_scores) > MAX_FEATURES:
        title = f"{title} (top {MAX_FEATURES} of {len(all_scores)} features by |score|)"
    shown = all_scores[order]
    labels = [_short(f"{names[int(i)]} = {_value_text(values[int(i)])}", 40) for i in order]
    m = _limit(shown)
    cmap = colormaps[DIVERGING]
    fig = _figure(7.0, round(1.1 + 0.26 * max(1, len(shown)), 2), constrained=True)
    ax = fig.subplots()
    rows = np.arange(len(shown))
    bars = ax.barh(
        rows,
        shown,
        color=[_signed_color(cmap, float(s), m) for s in shown],
        edgecolor="0.3",
        linewidth=0.4,
    )
    ax.set_yticks(rows, labels=labels, fontsize=8, parse_math=False)
    ax.invert_yaxis()  # the largest on top
    ax.axvline(0, color="black", linewidth=0.6)
    if len(shown):
        ax.bar_label(bars, labels=[f"{s:.3g}" for s in shown], padding=2, fontsize=7)
        lo, hi = min(0.0, float(shown.min())), max(0.0, float(shown.max()))
        span = (hi - lo) or 1.0
        ax.set_xlim(lo - (0.2 if lo < 0 else 0.05) * span, hi + (0.2 if hi > 0 else 0.05) * span)
    else:
        ax.text(0.5, 0.5, "no features", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("attribution (red raises, blue lowers)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title, fontsize=10, parse_math=False)
    return fig


def feature_figure(
    path: str | Path,
    *,
    names: Sequence[str],
    values: Sequence[Any],
    scores: Sequence[float],
    title: str,
) -> Path:
    """Write tabular feature attributions as horizontal bars in signed colours.

    One bar per feature, labelled ``name = value``, the MAX_FEATURES largest by ``|score|``
    from the top down, coloured on the diverging colormap centred at 0 with limits
    ``±max|score|`` (red raises, blue lowers), each with its score written beside it.
    NaN scores count as 0.

    Args:
        path: the PNG to write (atomically).
        names: the features' names (the manifest's columns).
        values: each feature's value as given (numbers to 4 significant digits, None as -).
        scores: one attribution per feature (signed).
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        UsageError: ``names``, ``values`` and ``scores`` differ in length.
    """
    fig = build_feature_figure(names=names, values=values, scores=scores, title=title)
    return save_figure(fig, path)


def build_combined_figure(
    *,
    image: np.ndarray,
    heatmap: np.ndarray,
    title: str,
    signed: bool,
    grayscale: bool = False,
    words: Sequence[tuple[str, float]] = (),
    features: Sequence[tuple[str, float]] = (),
    shares: dict[str, float] | None = None,
    words_signed: bool = True,
    features_signed: bool = True,
) -> Figure:
    """The combined figure, drawn but not saved (see :func:`combined_figure`)."""
    import numpy as np
    from matplotlib import colormaps

    panels = 1 + bool(words) + bool(features) + bool(shares)
    fig = _figure(3.6 * panels, 3.6, constrained=True)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    img = _display_image(_as_image(image))
    heat, _ = _as_map(heatmap)
    heat = _resize(heat, img.shape[:2])
    _overlay(axes[0], img, heat, grayscale, signed)
    axes[0].set_title("image", fontsize=9)
    cmap = colormaps[DIVERGING]
    k = 1
    for name, items, sign in (
        ("words", words, words_signed),
        ("features", features, features_signed),
    ):
        if not items:
            continue
        ax = axes[k]
        k += 1
        top = sorted(items, key=lambda t: -abs(float(t[1])))[:12][::-1]
        values = np.nan_to_num(np.array([float(v) for _, v in top], dtype=np.float64))
        m = _limit(values)
        ax.barh(
            range(len(top)),
            values,
            color=[_signed_color(cmap, float(v), m) for v in values],
            edgecolor="0.3",
            linewidth=0.4,
        )
        ax.set_yticks(
            range(len(top)), labels=[_short(str(n)) for n, _ in top], fontsize=8, parse_math=False
        )
        ax.axvline(0, color="black", linewidth=0.6)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{name} ({'red raises, blue lowers' if sign else 'magnitude'})", fontsize=9)
    if shares:
        ax = axes[k]
        names = list(shares)
        share_values = [float(shares[n]) for n in names]
        ax.bar(range(len(names)), share_values, color="0.45")
        ax.set_xticks(range(len(names)), labels=names, fontsize=8, parse_math=False)
        ax.set_ylim(0, 1.15)  # room for the labels above full bars
        for i, v in enumerate(share_values):
            ax.text(i, v + 0.02, f"{v:.0%}", ha="center", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title("share of |attribution|", fontsize=9)
    fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


def combined_figure(
    path: str | Path,
    *,
    image: np.ndarray,
    heatmap: np.ndarray,
    title: str,
    signed: bool,
    grayscale: bool = False,
    words: Sequence[tuple[str, float]] = (),
    features: Sequence[tuple[str, float]] = (),
    shares: dict[str, float] | None = None,
    words_signed: bool = True,
    features_signed: bool = True,
) -> Path:
    """Write one sample's explanation by a multimodal model in one row of panels: the map over
    the image, the strongest words and features as signed bars (the 12 largest by |score|,
    largest on top), and each input's share of the total |attribution|.

    Args:
        path: the PNG to write (atomically).
        image: uint8 HxWx3 (or HxW), the image as the model saw it.
        heatmap: float HxW, resized to the image.
        title: the figure's title.
        signed: whether the map keeps a sign (diverging colours).
        grayscale: show the image in gray.
        words: ``(word, score)`` pairs; none: no words panel.
        features: ``(name, score)`` pairs; none: no features panel.
        shares: input name -> share; none: no shares panel.
        words_signed, features_signed: whether those scores keep a sign (else magnitudes:
            the panel says so instead of "red raises, blue lowers").

    Returns:
        ``path``.
    """
    fig = build_combined_figure(
        image=image,
        heatmap=heatmap,
        title=title,
        signed=signed,
        grayscale=grayscale,
        words=words,
        features=features,
        shares=shares,
        words_signed=words_signed,
        features_signed=features_signed,
    )
    return save_figure(fig, path)


def build_check_figure(record: dict[str, Any]) -> Figure:
    """The curves behind one model x method's trust checks (a ``checks[]`` entry): deletion
    and insertion of the map's pixels beside a random order, and the randomization cascade's
    rank correlation and SSIM per randomized block."""
    curves = record.get("curves") or {}
    cascade = [c for c in curves.get("randomization") or [] if isinstance(c, dict)]
    panels = 3 if cascade else 2
    fig = _figure(4.2 * panels, 3.4, constrained=True)
    axes = fig.subplots(1, panels)
    ylabel = "explained score"
    for ax, kind in zip(axes[:2], ("deletion", "insertion"), strict=True):
        ours, rand = curves.get(kind) or [], curves.get(f"{kind}_random") or []
        for values, label, style in ((ours, "map order", "-"), (rand, "random order", "--")):
            if values:
                xs = [i / max(len(values) - 1, 1) for i in range(len(values))]
                auc = record.get(f"{kind}_auc" if label == "map order" else f"{kind}_auc_random")
                tag = f" (AUC {auc:.2f})" if isinstance(auc, (int, float)) else ""
                ax.plot(xs, values, style, label=f"{label}{tag}")
        ax.set_title(f"{kind}: {'lower' if kind == 'deletion' else 'higher'} is better")
        ax.set_xlabel(f"share of pixels {'removed' if kind == 'deletion' else 'put back'}")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best", fontsize=8)
    if cascade:
        ax = axes[2]
        names = [str(c.get("layer")) for c in cascade]
        xs = list(range(len(names)))
        for key, label in (("rank_correlation", "rank correlation"), ("ssim", "SSIM")):
            ys = [
                c.get(key) if isinstance(c.get(key), (int, float)) else float("nan")
                for c in cascade
            ]
            ax.plot(xs, ys, "o-", label=label)
        ax.set_xticks(xs, [_short(n, 12) for n in names], rotation=60, fontsize=7)
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0.0, color="#999", lw=0.6)
        independent = record.get("randomization_mode") == "independent"
        ax.set_title(
            "randomization, one block at a time"
            if independent
            else "randomization, from the head down"
        )
        ax.set_ylabel("similarity to the trained map")
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(
        f"{record.get('model')} / {record.get('method')}: {str(record.get('verdict', '')).upper()}"
    )
    return fig


def check_figure(record: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`build_check_figure` of ``record`` to ``path`` (a PNG, atomically)."""
    return save_figure(build_check_figure(record), path)


# -- dataset runs: predictions overview, confusion matrix, cohort mean maps --------------------
OVERVIEW_SIZE = (10.0, 4.2)
"""The regression overview's size in inches with truth (scatter + residual histogram); without
truth it is half as wide."""
CONFUSION_TEXT_MAX = 30
"""Classes up to which the confusion matrix writes its counts in the cells."""
COHORT_CELL = 3.4
"""Width and height, in inches, of one panel of the cohort figure."""


def _finite(values: Sequence[float] | None, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array (None as NaN), or a typed error naming ``name``."""
    import numpy as np

    try:
        arr = np.asarray(
            [np.nan if v is None else v for v in (values or [])], dtype=np.float64
        ).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"prediction figure: {name} must be numbers (None or NaN for a missing one); {exc}"
        ) from exc
    return arr


def _bins(n: int) -> int:
    """Histogram bins for ``n`` values: about sqrt(n), between 10 and 50."""
    return int(min(50, max(10, round(n**0.5))))


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, parse_math=False)
    ax.set_xticks([])
    ax.set_yticks([])


def build_prediction_figure(
    *, prediction: Sequence[float], truth: Sequence[float] | None, title: str
) -> Figure:
    """The regression overview, drawn but not saved (see :func:`prediction_figure`)."""
    import numpy as np

    pred = _finite(prediction, "prediction")
    if truth is None:
        keep = np.isfinite(pred)
        dropped = int((~keep).sum())
        fig = _figure(OVERVIEW_SIZE[0] / 2, OVERVIEW_SIZE[1], constrained=True)
        ax = fig.subplots()
        values = pred[keep]
        if values.size:
            ax.hist(values, bins=_bins(values.size), color="0.45", edgecolor="white", linewidth=0.4)
            ax.set_xlabel("prediction")
            ax.set_ylabel("rows")
        else:
            _no_data(ax, "no finite predictions")
        ax.set_title(f"predictions (n = {values.size})", fontsize=9)
    else:
        true = _finite(truth, "truth")
        if true.size != pred.size:
            raise UsageError(
                f"prediction figure got {pred.size} predictions and {true.size} true values; "
                "pass one true value per prediction (NaN where it is unknown)"
            )
        keep = np.isfinite(pred) & np.isfinite(true)
        dropped = int((~keep).sum())
        p, t = pred[keep], true[keep]
        fig = _figure(*OVERVIEW_SIZE, constrained=True)
        scatter, hist = fig.subplots(1, 2)
        if p.size:
            residual = p - t
            lo = float(min(p.min(), t.min()))
            hi = float(max(p.max(), t.max()))
            pad = 0.05 * ((hi - lo) or max(abs(hi), 1.0))
            lo, hi = lo - pad, hi + pad
            scatter.plot([lo, hi], [lo, hi], "-", color="0.3", linewidth=0.8, label="y = x")
            scatter.scatter(t, p, s=9, alpha=0.6, color="#1f77b4", linewidths=0, label="rows")
            scatter.set_xlim(lo, hi)
            scatter.set_ylim(lo, hi)
            scatter.set_aspect("equal", adjustable="box")
            scatter.legend(loc="upper left", fontsize=8)
            ss_res = float((residual**2).sum())
            ss_tot = float(((t - t.mean()) ** 2).sum())
            r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
            mae = float(np.abs(residual).mean())
            scatter.set_title(f"n = {p.size} · R² {r2:.3g} · MAE {mae:.4g}", fontsize=9)
            hist.hist(
                residual, bins=_bins(residual.size), color="0.45", edgecolor="white", linewidth=0.4
            )
            hist.axvline(0.0, color="black", linewidth=0.8)
            hist.set_title("residual (prediction - truth)", fontsize=9)
            hist.set_xlabel("residual")
            hist.set_ylabel("rows")
        else:
            _no_data(scatter, "no row with a finite prediction and truth")
            _no_data(hist, "no residuals")
        scatter.set_xlabel("true value")
        scatter.set_ylabel("prediction")
    if dropped:
        title = f"{title} ({dropped} row(s) with NaN ignored)"
    fig.suptitle(title, fontsize=TITLE_FONT, parse_math=False)
    return fig


def prediction_figure(
    path: str | Path,
    *,
    prediction: Sequence[float],
    truth: Sequence[float] | None,
    title: str,
) -> Path:
    """Write a regression model's predictions over a dataset.

    With ``truth``: predicted against true values (one dot per row, the line y = x, equal axes;
    its title gives n, R² and the mean absolute error) beside a histogram of the residuals
    (prediction - truth) with 0 marked. Without: a histogram of the predictions. Rows where a
    prediction (or its truth) is NaN, None or infinite are left out and counted in the title;
    no row left gives panels that say so.

    Args:
        path: the PNG to write (atomically).
        prediction: one predicted value per row.
        truth: the true values, one per prediction, or None.
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        UsageError: ``truth`` of another length than ``prediction``, or values that are not
            numbers.
    """
    return save_figure(
        build_prediction_figure(prediction=prediction, truth=truth, title=title), path
    )


def build_confusion_figure(
    *, labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str
) -> Figure:
    """The confusion matrix, drawn but not saved (see :func:`confusion_figure`)."""
    import numpy as np

    n = len(labels)
    if n == 0:
        raise UsageError("confusion figure needs at least one class label; got none")
    try:
        counts = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"confusion figure: the matrix must be {n} rows of {n} counts ({exc})"
        ) from exc
    if counts.shape != (n, n):
        raise UsageError(
            f"confusion figure got a matrix of shape {counts.shape} for {n} labels; expected "
            f"({n}, {n}): rows are true classes, columns predicted ones"
        )
    wrong = ~np.isfinite(counts) | (counts < 0) | (counts != np.round(counts))
    if wrong.any():
        i, j = (int(k) for k in np.argwhere(wrong)[0])
        raise UsageError(
            f"confusion figure: counts must be whole numbers >= 0; row {i} ({labels[i]!r}), "
            f"column {j} ({labels[j]!r}) holds {counts[i, j]}"
        )
    counts = counts.astype(np.int64)
    side = float(min(20.0, 3.0 + 0.45 * n))
    fig = _figure(side + 1.2, side, constrained=True)
    ax = fig.subplots()
    drawn = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, int(counts.max())))
    fig.colorbar(drawn, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    names = [_short(str(label), 20) for label in labels]
    font = 8 if n <= 12 else 6
    ax.set_xticks(
        range(n),
        labels=names,
        rotation=45 if n > 3 else 0,
        ha="right" if n > 3 else "center",
        fontsize=font,
        parse_math=False,
    )
    ax.set_yticks(range(n), labels=names, fontsize=font, parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= CONFUSION_TEXT_MAX:
        half = counts.max() / 2
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if counts[i, j] > half else "black",
                )
    total = int(counts.sum())
    accuracy = f" · accuracy {np.trace(counts) / total:.3g}" if total else ""
    fig.suptitle(f"{title} (n = {total}{accuracy})", fontsize=TITLE_FONT, parse_math=False)
    return fig


def confusion_figure(
    path: str | Path,
    *,
    labels: Sequence[str],
    matrix: Sequence[Sequence[int]],
    title: str,
) -> Path:
    """Write a classifier's confusion matrix: rows are true classes, columns predicted ones,
    cells shaded by count (0 white) with the count written in each (up to CONFUSION_TEXT_MAX
    classes); the title gives the rows counted and the accuracy.

    Args:
        path: the PNG to write (atomically).
        labels: the class names, in the matrix's order.
        matrix: ``matrix[i][j]`` = rows of true class i predicted as class j.
        title: the figure's title.

    Returns:
        ``path``.

    Raises:
        UsageError: no labels, a matrix that is not len(labels) x len(labels), or counts that
            are negative, fractional or NaN.
    """
    return save_figure(build_confusion_figure(labels=labels, matrix=matrix, title=title), path)


def build_cohort_figure(
    *,
    mean_map: np.ndarray,
    title: str,
    signed: bool,
    lowers: np.ndarray | None = None,
    image: np.ndarray | None = None,
    details: Sequence[str] = (),
) -> Figure:
    """The cohort figure, drawn but not saved (see :func:`cohort_figure`)."""

    heat, bad = _as_map(mean_map, "mean map")
    panels: list[tuple[str, np.ndarray, str, float, float, bool]] = []
    # (title, map, colormap, vmin, vmax, signed overlay)
    if lowers is not None:
        low, bad_low = _as_map(lowers, "lowers map")
        bad += bad_low
        raises, low = heat.clip(min=0), _resize(low, heat.shape).clip(min=0)
        m = max(_limit(raises), _limit(low))  # one scale: the two panels compare
        panels.append(("raises", raises, "Reds", 0.0, m, True))
        panels.append(("lowers", low, "Blues", 0.0, m, True))
    else:
        shown, is_signed = _combine(heat, signed, None)
        m = _limit(shown)
        if is_signed:
            panels.append(("mean map: red raises, blue lowers", shown, DIVERGING, -m, m, True))
        else:
            panels.append(("mean map", shown, SEQUENTIAL, 0.0, m, False))
    lines = [str(d) for d in details]
    if bad:
        lines.insert(0, f"warning: {bad} NaN/inf map values set to 0")
    base = _display_image(_as_image(image)) if image is not None else None
    ncols = len(panels) + bool(lines)
    nrows = 1 + (base is not None)
    fig = _figure(COHORT_CELL * ncols, COHORT_CELL * nrows + 0.4, constrained=True)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, (name, values, cmap, vmin, vmax, overlay_signed) in enumerate(panels):
        ax = axes[0][k]
        drawn = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
        fig.colorbar(drawn, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
        if base is not None:
            # what lowers is drawn blue: as a negative map on the signed overlay
            over = -values if name == "lowers" else values
            _overlay(axes[1][k], base, over, False, signed=overlay_signed)
            axes[1][k].set_title(f"{name.split(':')[0]} over the mean image", fontsize=9)
    if lines:
        text_ax = axes[0][-1]
        text_ax.set_axis_off()
        text_ax.text(
            0.0,
            1.0,
            "\n".join(_wrap(lines, DETAIL_WIDTH, DETAIL_LINES)),
            va="top",
            ha="left",
            fontsize=8,
            family="monospace",
            transform=text_ax.transAxes,
            parse_math=False,
        )
        if base is not None:
            axes[1][-1].set_axis_off()
    # a one-panel figure is narrow: the title wraps to its width (at most 8 pixels a character)
    chars = max(20, int(COHORT_CELL * ncols * DPI / 8))
    fig.suptitle("\n".join(_wrap([title], chars, 3)), fontsize=TITLE_FONT, parse_math=False)
    return fig


def cohort_figure(
    path: str | Path,
    *,
    mean_map: np.ndarray,
    title: str,
    signed: bool,
    lowers: np.ndarray | None = None,
    image: np.ndarray | None = None,
    details: Sequence[str] = (),
) -> Path:
    """Write a cohort's mean map.

    Unsigned: one heat panel from 0 to the maximum. Signed: one panel on the diverging colormap
    with symmetric limits (red raises, blue lowers). With ``lowers``: two panels on one scale,
    "raises" (``mean_map`` clipped at 0, reds) and "lowers" (``lowers`` clipped at 0, blues).
    With ``image``, a second row shows each panel over the cohort's mean image; with
    ``details``, a text panel on the right. NaN or infinite map values are drawn as 0 and
    counted in the text.

    Args:
        path: the PNG to write (atomically).
        mean_map: float HxW, the mean of the members' maps (what raises, with ``lowers``).
        title: the figure's title.
        signed: whether ``mean_map`` keeps a sign.
        lowers: optional non-negative mean map of what lowers the output (regressors).
        image: optional mean image (uint8 HxWx3 or HxW, or floats in [0, 1]).
        details: lines for the text panel (cohort, members, region shares).

    Returns:
        ``path``.

    Raises:
        UsageError: a map or image that is not a non-empty 2-D (image: or HxWx3) array.
    """
    fig = build_cohort_figure(
        mean_map=mean_map, title=title, signed=signed, lowers=lowers, image=image, details=details
    )
    return save_figure(fig, path)


# -- tree models: the tree-SHAP summary (mean |SHAP| bars beside a beeswarm) -------------------
TREE_TOP = 12
"""Features the tree-SHAP figure shows by default; the rest share one last bar."""
TREE_DOTS = 2000
"""Dots the beeswarm draws per feature at most (a seeded subsample of the rows beyond)."""
TREE_SEED = 0
"""Seed of the beeswarm's subsample and vertical jitter: the same data draws the same PNG."""
TREE_BINS = 50
"""Bins along the SHAP axis that measure where a feature's dots crowd (wider spread there)."""
TREE_SPREAD = 0.4
"""Half the height, in rows, of the beeswarm's densest spot (rows are 1 apart)."""
TREE_MISSING = "#a0a0a0"
"""Colour of a dot whose feature value is missing (NaN or infinite)."""
TREE_LOW, TREE_HIGH = "#2166ac", "#b2182b"
"""The beeswarm's colours for a feature's lowest and highest value (blue to red, through
purple: every shade stays visible on white)."""


class TreeFigureError(UsageError, ValueError):
    """Data the tree-SHAP figure cannot draw (no rows, mismatched shapes).

    A :class:`UsageError` (the CLI's exit 2) and a :class:`ValueError` (what numpy-minded
    callers catch)."""


def _tree_arrays(
    values: Any, data: Any, names: Sequence[str], top: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``values`` and ``data`` as float64 [N, F] arrays (NaN SHAP values as 0) and the names as
    strings, or a :class:`TreeFigureError` that says what does not fit."""
    import numpy as np

    try:
        shap = np.asarray(values, dtype=np.float64)
        feats = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TreeFigureError(
            f"tree-SHAP figure: values and data must be numbers (NaN for a missing one); {exc}"
        ) from exc
    if shap.ndim != 2:
        raise TreeFigureError(
            f"tree-SHAP figure: values has shape {shap.shape}; expected [rows, features]"
        )
    if shap.shape[0] == 0:
        raise TreeFigureError(
            "tree-SHAP figure: no rows to draw (values has 0 rows); explain at least one row"
        )
    if shap.shape[1] == 0:
        raise TreeFigureError("tree-SHAP figure: values has no feature column; expected >= 1")
    if feats.shape != shap.shape:
        raise TreeFigureError(
            f"tree-SHAP figure: data has shape {feats.shape} but values {shap.shape}; pass "
            "the feature values of the explained rows, one per SHAP value"
        )
    if len(names) != shap.shape[1]:
        raise TreeFigureError(
            f"tree-SHAP figure got {len(names)} feature names for {shap.shape[1]} columns; "
            "pass one name per column"
        )
    if top < 1:
        raise TreeFigureError(f"tree-SHAP figure: top must be at least 1; got {top}")
    shap = np.where(np.isfinite(shap), shap, 0.0)
    return shap, feats, [str(n) for n in names]


def _scaled(column: np.ndarray) -> np.ndarray:
    """A feature's values scaled to [0, 1] by its finite minimum and maximum (a constant
    feature at 0.5); missing (non-finite) values stay NaN."""
    import numpy as np

    out = np.full(column.shape, np.nan)
    finite = np.isfinite(column)
    if not finite.any():
        return out
    lo, hi = float(column[finite].min()), float(column[finite].max())
    out[finite] = (column[finite] - lo) / (hi - lo) if hi > lo else 0.5
    return out


def _jitter(x: np.ndarray, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Vertical offsets for one feature's dots: uniform noise whose spread follows how many
    dots share the dot's stretch of the SHAP axis (TREE_BINS bins over ``lo..hi``), up to
    ±TREE_SPREAD where they crowd most."""
    import numpy as np

    noise = rng.uniform(-1.0, 1.0, size=x.size)
    if hi <= lo:
        return TREE_SPREAD * noise
    bins = np.clip(((x - lo) / (hi - lo) * TREE_BINS).astype(np.int64), 0, TREE_BINS - 1)
    counts = np.bincount(bins, minlength=TREE_BINS)
    return TREE_SPREAD * noise * counts[bins] / counts.max()


def build_tree_shap_figure(
    *,
    values: Any,
    data: Any,
    names: Sequence[str],
    title: str,
    top: int = TREE_TOP,
) -> tuple[Figure, dict[str, Any]]:
    """The tree-SHAP figure, drawn but not saved, and what it drew (see
    :func:`tree_shap_figure`). The beeswarm's dots are one scatter per feature, top-down, each
    with the gid ``feature-K``."""
    import numpy as np
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgba

    shap, feats, labels = _tree_arrays(values, data, names, top)
    n = shap.shape[0]
    mean_abs = np.abs(shap).mean(axis=0)
    ranked = np.argsort(-mean_abs, kind="stable")
    shown, rest = ranked[:top], ranked[top:]
    order = [labels[int(i)] for i in shown]
    bars = [float(mean_abs[int(i)]) for i in shown]
    if rest.size:
        order.append(f"{rest.size} other features")
        bars.append(float(mean_abs[rest].sum()))

    rng = np.random.default_rng(TREE_SEED)
    rows = np.arange(n)
    if n > TREE_DOTS:  # one subsample for every feature: a row is a dot in each or in none
        rows = np.sort(rng.choice(n, size=TREE_DOTS, replace=False))
    drawn = shap[rows][:, shown]
    lo, hi = float(drawn.min()), float(drawn.max())

    height = round(max(2.6, 1.3 + 0.38 * len(order)), 2)
    fig = _figure(12.0, height, constrained=True)
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.0, 1.7]})
    ys = np.arange(len(order))
    patches = left.barh(ys, bars, color="0.45", edgecolor="0.3", linewidth=0.4)
    left.bar_label(patches, labels=[f"{b:.3g}" for b in bars], padding=2, fontsize=7)
    left.set_yticks(ys, labels=[_short(o, 28) for o in order], fontsize=8, parse_math=False)
    left.invert_yaxis()  # the largest on top (shared with the beeswarm)
    widest = max(bars)
    left.set_xlim(0.0, 1.2 * widest if widest > 0 else 1.0)
    left.set_xlabel("mean |SHAP value|", fontsize=8)
    left.tick_params(axis="x", labelsize=7)
    left.set_title("mean |SHAP| per feature", fontsize=9)

    cmap = LinearSegmentedColormap.from_list("seewhy_low_high", [TREE_LOW, TREE_HIGH])
    grey = np.asarray(to_rgba(TREE_MISSING))
    points = 0
    for k, i in enumerate(shown):
        x = drawn[:, k]
        scale = _scaled(feats[rows, int(i)])
        colors = cmap(np.nan_to_num(scale, nan=0.0))
        colors[np.isnan(scale)] = grey
        dots = right.scatter(
            x, k + _jitter(x, lo, hi, rng), s=8, c=colors, linewidths=0, alpha=0.85, zorder=2
        )
        dots.set_gid(f"feature-{k}")
        points += x.size
    right.axvline(0.0, color="0.2", linewidth=0.8, zorder=1)
    right.tick_params(axis="y", labelleft=False)
    right.tick_params(axis="x", labelsize=7)
    right.set_xlabel("SHAP value (impact on the model output)", fontsize=8)
    shown_rows = f"{rows.size} of {n} rows" if rows.size < n else f"{n} row(s)"
    right.set_title(f"one dot per row · {shown_rows} · grey: value missing", fontsize=9)
    if rest.size:
        right.text(0.0, len(order) - 1, "  (not drawn)", va="center", fontsize=7, color="0.4")
    bar = fig.colorbar(
        ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), ax=right, fraction=0.04, pad=0.02
    )
    bar.set_ticks([0.0, 1.0], labels=["low", "high"])
    bar.ax.tick_params(labelsize=7)
    bar.set_label("feature value", fontsize=8)
    fig.suptitle(title, fontsize=TITLE_FONT, parse_math=False)
    return fig, {"order": order, "mean_abs": bars, "points": points}


def tree_shap_figure(
    path: str | Path,
    values: Any,
    data: Any,
    names: Sequence[str],
    title: str,
    top: int = TREE_TOP,
) -> dict[str, Any]:
    """Write the tree-SHAP summary of many rows: what drives a tree model over them.

    Left, a horizontal bar per feature of its mean |SHAP value| over the rows, the ``top``
    largest from the top down; where there are more features, a last bar "N other features"
    holds their summed mean |SHAP|. Right, on the same rows of the page, a beeswarm: per
    feature one dot per row at its SHAP value, spread vertically where dots crowd (seeded
    noise: the same data draws the same PNG), coloured by the row's value of that feature
    scaled to [0, 1] within the feature (blue low, red high; a constant feature midway; a
    missing value grey), a line at 0 and a colour bar. Beyond TREE_DOTS rows, a seeded
    subsample of TREE_DOTS rows is drawn (the bars use every row). NaN SHAP values count as 0.

    Args:
        path: the PNG to write (atomically).
        values: float [N, F], the SHAP values of N rows (rows x features).
        data: float [N, F], the rows' feature values (NaN where missing).
        names: the F features' names.
        title: the figure's title.
        top: how many features get a bar and a row of dots of their own.

    Returns:
        What was drawn: ``order`` (the bars' labels, top-down, the "N other features" bar
        last where there is one), ``mean_abs`` (each bar's length, in that order) and
        ``points`` (the dots drawn).

    Raises:
        TreeFigureError: (a ``ValueError`` and a ``UsageError``) no rows or no features,
            ``data`` of another shape than ``values``, one name per column missing, or
            ``top`` < 1.
    """
    fig, drawn = build_tree_shap_figure(values=values, data=data, names=names, title=title, top=top)
    save_figure(fig, path)
    return drawn
