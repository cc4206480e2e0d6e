"""Figures: the 4-panel explanation, the model comparison, token importances.

Every figure is written atomically and closed after saving. Signed maps (what raises vs what
lowers a regression output) use a diverging colormap centred at zero, red raising and blue
lowering; unsigned maps a sequential one from zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from seewhy.core.atomic import atomic_path

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

DPI = 100
SEQUENTIAL = "inferno"
DIVERGING = "RdBu_r"


@dataclass(frozen=True)
class ComparisonRow:
    """A model's row in the comparison figure: its prediction and a map per method."""

    model: str
    prediction: str
    maps: dict[str, Any] = field(default_factory=dict)
    signed: bool = False


def _figure(
    width: float, height: float, layout: Literal["constrained"] | None = "constrained"
) -> Figure:
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot): no global state, nothing to leak between figures.
    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def _resize(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (h, w) with PIL (mode F)."""
    import numpy as np
    from PIL import Image

    if heat.shape == shape:
        return heat.astype(np.float32)
    img = Image.fromarray(np.asarray(heat, dtype=np.float32))
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def signed_map(heatmap: np.ndarray, signed: bool, lowers: np.ndarray | None) -> np.ndarray | None:
    """One map with raise > 0 / lower < 0, or None for an unsigned map."""
    if lowers is not None:
        return heatmap.clip(min=0) - _resize(lowers, heatmap.shape).clip(min=0)
    return heatmap if signed else None


def _show_image(ax: Any, image: np.ndarray, grayscale: bool) -> None:
    if grayscale:
        ax.imshow(image[..., 0] if image.ndim == 3 else image, cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image)
    ax.set_axis_off()


def _overlay(ax: Any, image: np.ndarray, heat: np.ndarray, grayscale: bool, signed: bool) -> None:
    """The image with the map on top: alpha follows the map's strength."""
    import numpy as np
    from matplotlib import colormaps

    _show_image(ax, image, grayscale)
    h = _resize(heat, image.shape[:2])
    if signed:
        m = float(np.abs(h).max()) or 1.0
        rgba = np.zeros((*h.shape, 4), dtype=np.float32)
        rgba[..., 0] = h > 0  # red raises
        rgba[..., 2] = h < 0  # blue lowers
        rgba[..., 3] = 0.75 * np.abs(h) / m
    else:
        lo, hi = float(h.min()), float(h.max())
        norm = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
        rgba = colormaps[SEQUENTIAL](norm).astype(np.float32)
        rgba[..., 3] = 0.6 * norm
    ax.imshow(rgba)


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
    """The 4-panel figure (image, heatmap + colour bar, overlay, details), not yet saved."""
    import numpy as np

    fig = _figure(14, 4)
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1.15, 1, 1.1]})
    fig.suptitle(title, fontsize=11)
    _show_image(axes[0], image, grayscale)
    axes[0].set_title("image", fontsize=9)
    heatmap = _resize(heatmap, image.shape[:2])  # show the map on the image's own grid
    both = signed_map(heatmap, signed, lowers)
    if both is not None:
        m = float(np.abs(both).max()) or 1.0
        shown = axes[1].imshow(both, cmap=DIVERGING, vmin=-m, vmax=m)
        bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
        bar.set_ticks([-m, 0, m], labels=["lowers", "0", "raises"])
        axes[1].set_title("attribution (red raises, blue lowers)", fontsize=9)
        _overlay(axes[2], image, both, grayscale, signed=True)
    else:
        shown = axes[1].imshow(heatmap, cmap=SEQUENTIAL, vmin=0, vmax=float(heatmap.max()) or 1.0)
        fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
        axes[1].set_title("heatmap", fontsize=9)
        _overlay(axes[2], image, heatmap, grayscale, signed=False)
    axes[1].set_axis_off()
    axes[2].set_title("overlay", fontsize=9)
    axes[3].set_axis_off()
    axes[3].text(
        0.0,
        1.0,
        "\n".join(details),
        va="top",
        ha="left",
        fontsize=9,
        family="monospace",
        transform=axes[3].transAxes,
        wrap=True,
    )
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save a figure as PNG atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def explanation_figure(path: str | Path, **kwargs: Any) -> Path:
    """Write the 4-panel figure (see :func:`build_explanation_figure`) to ``path``."""
    return save_figure(build_explanation_figure(**kwargs), path)


def build_comparison_figure(
    *, image: np.ndarray, rows: Sequence[ComparisonRow], agreement: str, grayscale: bool = False
) -> Figure:
    """Rows = models (image + prediction, then an overlay per method); agreement below the title."""
    methods = list(dict.fromkeys(m for r in rows for m in r.maps))
    ncols = 1 + len(methods)
    fig = _figure(3.0 * ncols, 3.0 * len(rows) + 0.9, layout=None)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    fig.suptitle("model comparison", fontsize=12)
    fig.text(0.5, 0.93 - 0.02 * agreement.count("\n"), agreement, ha="center", va="top", fontsize=9)
    for i, row in enumerate(rows):
        _show_image(axes[i][0], image, grayscale)
        axes[i][0].set_title(f"{row.model}: {row.prediction}", fontsize=9)
        for j, method in enumerate(methods, start=1):
            ax = axes[i][j]
            if method in row.maps:
                _overlay(ax, image, row.maps[method], grayscale, signed=row.signed)
            else:
                ax.set_axis_off()
            if i == 0:
                ax.set_title(method, fontsize=10)
    fig.subplots_adjust(top=0.82 - 0.02 * agreement.count("\n"), hspace=0.25)
    return fig


def comparison_figure(path: str | Path, **kwargs: Any) -> Path:
    """Write the comparison figure (see :func:`build_comparison_figure`) to ``path``."""
    return save_figure(build_comparison_figure(**kwargs), path)


def token_figure(
    path: str | Path, *, tokens: Sequence[str], scores: Sequence[float], title: str
) -> Path:
    """Token importances as a signed bar chart (red raises, blue lowers)."""
    fig = _figure(max(4.0, 0.35 * len(tokens)), 3)
    ax = fig.subplots()
    ax.bar(range(len(tokens)), scores, color=["tab:red" if s >= 0 else "tab:blue" for s in scores])
    ax.set_xticks(range(len(tokens)), labels=list(tokens), rotation=60, fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
