"""Figures, checked structurally: panels, colour maps, limits, sizes, atomic saves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy.render import figures
from seewhy.render.figures import (
    ComparisonRow,
    build_comparison_figure,
    build_explanation_figure,
    explanation_figure,
)

IMAGE = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
HEAT = np.outer(np.linspace(0, 1, 32), np.linspace(0, 2, 32)).astype(np.float32)


def image_axes(fig: object) -> list[object]:
    return [ax for ax in fig.axes if ax.images]  # type: ignore[attr-defined]


def test_four_panels_with_colour_bar_and_details() -> None:
    fig = build_explanation_figure(
        image=IMAGE, heatmap=HEAT, title="t", details=["prediction: a 0.9", "method: gradcam"]
    )
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4
    assert len(image_axes(fig)) == 3  # image, heatmap, overlay (text panel has none)
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    assert "prediction: a 0.9\nmethod: gradcam" in [t.get_text() for t in panels[3].texts]
    heat = panels[1].images[0]
    assert heat.get_cmap().name == figures.SEQUENTIAL
    assert heat.get_array().shape == IMAGE.shape[:2]  # shown on the image's grid
    assert heat.get_clim() == (0.0, pytest.approx(2.0, rel=0.02))


def test_signed_maps_use_a_symmetric_diverging_scale() -> None:
    signed = HEAT - 1.0
    fig = build_explanation_figure(image=IMAGE, heatmap=signed, title="t", details=[], signed=True)
    heat = [ax for ax in fig.axes if ax.images][1].images[0]
    lo, hi = heat.get_clim()
    assert heat.get_cmap().name == figures.DIVERGING and lo == -hi and hi > 0
    # raises and lowers given as two maps: the same picture as one signed map
    fig2 = build_explanation_figure(
        image=IMAGE, heatmap=signed.clip(0), lowers=(-signed).clip(0), title="t", details=[]
    )
    heat2 = [ax for ax in fig2.axes if ax.images][1].images[0]
    np.testing.assert_allclose(heat2.get_array(), heat.get_array(), atol=1e-5)


def test_grayscale_images_are_shown_in_gray() -> None:
    gray = np.repeat(IMAGE[..., :1], 3, axis=2)
    fig = build_explanation_figure(image=gray, heatmap=HEAT, title="t", details=[], grayscale=True)
    first = image_axes(fig)[0].images[0]
    assert first.get_cmap().name == "gray" and first.get_array().ndim == 2


def test_png_size_and_atomic_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = explanation_figure(
        tmp_path / "f.png", image=IMAGE, heatmap=HEAT, title="t", details=["x"]
    )
    with Image.open(path) as im:
        assert im.size == (14 * figures.DPI, 4 * figures.DPI)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        explanation_figure(tmp_path / "g.png", image=IMAGE, heatmap=HEAT, title="t", details=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_comparison_has_a_row_per_model_and_a_column_per_method() -> None:
    rows = [
        ComparisonRow("a", "x (0.9)", {"gradcam": HEAT, "eigencam": HEAT}),
        ComparisonRow("b", "y (0.6)", {"gradcam": HEAT, "eigencam": HEAT}),
    ]
    fig = build_comparison_figure(image=IMAGE, rows=rows, agreement="models disagree")
    assert len(fig.axes) == 2 * 3
    assert [fig.axes[i].get_title() for i in (0, 3)] == ["a: x (0.9)", "b: y (0.6)"]
    assert [fig.axes[i].get_title() for i in (1, 2)] == ["gradcam", "eigencam"]
    assert "models disagree" in [t.get_text() for t in fig.texts]
