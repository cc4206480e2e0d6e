"""Figures, checked structurally: panels, colour maps, limits, values shown, sizes, atomic saves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.core.errors import UsageError
from seewhy.render import figures
from seewhy.render.figures import (
    ComparisonRow,
    build_comparison_figure,
    build_explanation_figure,
    build_token_figure,
    comparison_figure,
    explanation_figure,
    save_figure,
    token_figure,
)

IMAGE = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
HEAT = np.outer(np.linspace(0, 1, 32), np.linspace(0, 2, 32)).astype(np.float32)


def image_axes(fig: Any) -> list[Any]:
    return [ax for ax in fig.axes if ax.images]


def colorbar_axes(fig: Any) -> list[Any]:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_four_panels_with_colour_bar_and_details() -> None:
    fig = build_explanation_figure(
        image=IMAGE, heatmap=HEAT, title="t", details=["prediction: a 0.9", "method: gradcam"]
    )
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4
    assert len(image_axes(fig)) == 3  # image, heatmap, overlay; the text panel has none
    assert len(colorbar_axes(fig)) == 1
    assert not panels[3].axison and panels[3].texts[0].get_text() == (
        "prediction: a 0.9\nmethod: gradcam"
    )
    assert fig._suptitle.get_text() == "t"
    first = panels[0].images[0]
    np.testing.assert_array_equal(first.get_array(), IMAGE)  # the image as given
    heat = panels[1].images[0]
    assert heat.get_cmap().name == figures.SEQUENTIAL
    shown = np.asarray(heat.get_array())
    assert shown.shape == IMAGE.shape[:2]  # resized onto the image's grid
    assert shown.max() == pytest.approx(2.0, rel=0.03) and shown.min() == pytest.approx(0, abs=0.01)
    assert heat.get_clim() == (0.0, pytest.approx(float(shown.max())))  # 0..max
    # The overlay: alpha follows the map (0.6 at its maximum, 0 where it is 0).
    layer = np.asarray(panels[2].images[1].get_array())
    peak = np.unravel_index(shown.argmax(), shown.shape)
    assert layer[peak][3] == pytest.approx(0.6) and layer[0, 0][3] == pytest.approx(0, abs=0.01)


def test_signed_maps_use_a_symmetric_diverging_scale_and_red_blue_overlay() -> None:
    signed = HEAT - 1.0  # lowers on the top-left, raises on the bottom-right
    fig = build_explanation_figure(image=IMAGE, heatmap=signed, title="t", details=[], signed=True)
    heat = image_axes(fig)[1].images[0]
    shown = np.asarray(heat.get_array())
    m = float(np.abs(shown).max())
    assert heat.get_cmap().name == figures.DIVERGING
    assert heat.get_clim() == (-m, m) and m == pytest.approx(1.0, rel=0.03)
    (bar,) = colorbar_axes(fig)
    assert (bar.get_title(), bar.get_xlabel()) == ("raises", "lowers")
    layer = np.asarray(image_axes(fig)[2].images[1].get_array())
    hi = np.unravel_index(shown.argmax(), shown.shape)
    lo = np.unravel_index(shown.argmin(), shown.shape)
    np.testing.assert_allclose(layer[hi], [1, 0, 0, 0.75 * shown[hi] / m], atol=1e-6)  # red
    np.testing.assert_allclose(layer[lo], [0, 0, 1, 0.75 * -shown[lo] / m], atol=1e-6)  # blue
    # Raises and lowers given as two non-negative maps: the same picture as one signed map.
    fig2 = build_explanation_figure(
        image=IMAGE, heatmap=signed.clip(0), lowers=(-signed).clip(0), title="t", details=[]
    )
    heat2 = image_axes(fig2)[1].images[0]
    assert heat2.get_cmap().name == figures.DIVERGING
    np.testing.assert_allclose(heat2.get_array(), shown, atol=1e-5)


def test_an_unsigned_map_with_negative_values_is_shown_signed() -> None:
    fig = build_explanation_figure(image=IMAGE, heatmap=HEAT - 0.5, title="t", details=[])
    heat = image_axes(fig)[1].images[0]
    lo, hi = heat.get_clim()
    assert heat.get_cmap().name == figures.DIVERGING and lo == -hi


def test_grayscale_images_are_shown_in_gray() -> None:
    gray = np.repeat(IMAGE[..., :1], 3, axis=2)
    fig = build_explanation_figure(image=gray, heatmap=HEAT, title="t", details=[], grayscale=True)
    for ax in image_axes(fig)[::2]:  # the image panel and the overlay's base
        first = ax.images[0]
        assert first.get_cmap().name == "gray" and first.get_clim() == (0, 255)
        np.testing.assert_array_equal(first.get_array(), IMAGE[..., 0])


def test_large_images_are_shown_downsampled_with_the_map_on_their_grid() -> None:
    big = np.zeros((1500, 1000, 3), np.uint8)
    big[:, 500:] = 200  # right half bright: survives the area-average downsampling
    fig = build_explanation_figure(image=big, heatmap=HEAT, title="t", details=[])
    shown_image = np.asarray(image_axes(fig)[0].images[0].get_array())
    assert shown_image.shape == (figures.DISPLAY_MAX, round(1000 * figures.DISPLAY_MAX / 1500), 3)
    assert shown_image[:, :100].max() == 0 and shown_image[:, -100:].min() == 200
    assert np.asarray(image_axes(fig)[1].images[0].get_array()).shape == shown_image.shape[:2]


def test_details_wrap_and_truncate_and_text_is_literal() -> None:
    long = "prediction: " + "x" * 100
    many = [long, *[f"line {i}" for i in range(60)]]
    fig = build_explanation_figure(
        image=IMAGE, heatmap=HEAT, title="price $5 \\frac{ $", details=many
    )
    text = next(ax for ax in fig.axes if ax.texts).texts[0].get_text().split("\n")
    assert len(text) == figures.DETAIL_LINES
    assert all(len(line) <= figures.DETAIL_WIDTH for line in text)
    assert "".join(t.strip() for t in text[:4]).startswith("prediction: " + "x" * 100)
    wrapped = text.index("line 0")  # lines the long one took
    assert wrapped == 3
    assert text[-1] == f"... ({wrapped + 60 - (figures.DETAIL_LINES - 1)} more lines)"
    assert fig._suptitle.get_text() == "price $5 \\frac{ $"


def test_non_finite_map_values_are_shown_as_zero_and_reported_first(tmp_path: Path) -> None:
    heat = HEAT.copy()
    heat[0, :3] = [np.nan, np.inf, -np.inf]
    fig = build_explanation_figure(image=IMAGE, heatmap=heat, title="t", details=["a"] * 40)
    shown = np.asarray(image_axes(fig)[1].images[0].get_array())
    assert np.isfinite(shown).all()
    text = next(ax for ax in fig.axes if ax.texts).texts[0].get_text()
    assert text.startswith("warning: 3 NaN/inf map values set to 0\na\n")
    save_figure(fig, tmp_path / "nan.png")  # still drawable


@pytest.mark.parametrize(
    ("image", "heatmap", "match"),
    [
        (np.zeros((4, 4, 5), np.uint8), HEAT, r"image has shape \(4, 4, 5\)"),
        (np.zeros((0, 4, 3), np.uint8), HEAT, "image has shape"),
        (IMAGE, np.zeros((2, 4, 4), np.float32), r"heatmap has shape \(2, 4, 4\)"),
    ],
)
def test_bad_arrays_raise_a_typed_error(image: Any, heatmap: Any, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        build_explanation_figure(image=image, heatmap=heatmap, title="t", details=[])


def test_png_size_cleared_figure_and_atomic_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = explanation_figure(
        tmp_path / "f.png", image=IMAGE, heatmap=HEAT[None], title="t", details=["x"]
    )
    with Image.open(path) as im:
        assert im.size == (14 * figures.DPI, 4 * figures.DPI)
    fig = build_explanation_figure(image=IMAGE, heatmap=HEAT, title="t", details=[])
    save_figure(fig, tmp_path / "h.png")
    assert fig.axes == []  # cleared after saving: nothing kept alive

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        explanation_figure(tmp_path / "g.png", image=IMAGE, heatmap=HEAT, title="t", details=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "h.png"]  # no g.png, no temp


def test_comparison_has_a_row_per_model_and_a_column_per_method(tmp_path: Path) -> None:
    signed = HEAT - 1.0
    rows = [
        ComparisonRow("a", "x (0.9)", {"gradcam": HEAT, "eigencam": HEAT}),
        ComparisonRow("b", "y (0.6)", {"gradcam": signed}, signed=True),
    ]
    fig = build_comparison_figure(image=IMAGE, rows=rows, agreement="models disagree\nline 2")
    assert len(fig.axes) == 2 * 3
    assert [fig.axes[i].get_title() for i in (0, 3)] == ["a: x (0.9)", "b: y (0.6)"]
    assert [fig.axes[i].get_title() for i in (1, 2)] == ["gradcam", "eigencam"]
    assert "models disagree\nline 2" in [t.get_text() for t in fig.texts]
    # a's overlays are sequential (alpha follows the map); b's gradcam is red/blue
    a_layer = np.asarray(fig.axes[1].images[1].get_array())
    b_layer = np.asarray(fig.axes[4].images[1].get_array())
    assert a_layer[..., 3].max() == pytest.approx(0.6)
    assert set(np.unique(b_layer[..., :3])) == {0.0, 1.0}
    assert b_layer[..., 0].any() and b_layer[..., 2].any()
    # b has no eigencam: its cell says so instead of showing a picture
    assert not fig.axes[5].images and fig.axes[5].texts[0].get_text() == "not computed"
    path = comparison_figure(tmp_path / "c.png", image=IMAGE, rows=rows, agreement="x")
    with Image.open(path) as im:
        width = 3 * figures.COMPARISON_CELL * figures.DPI
        assert im.size[0] == round(width)


def test_comparison_without_rows_is_a_typed_error() -> None:
    with pytest.raises(UsageError, match="at least one model row"):
        build_comparison_figure(image=IMAGE, rows=[], agreement="")


def test_token_figure_bars_follow_scores_with_signed_colours(tmp_path: Path) -> None:
    tokens, scores = ["a", "$x$", "c"], [0.5, -0.25, 0.0]
    fig = build_token_figure(tokens=tokens, scores=scores, title="t")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == scores
    red, blue, mid = (p.get_facecolor() for p in ax.patches)
    assert red[0] > red[2] and blue[2] > blue[0]  # raises red, lowers blue
    assert mid[0] == pytest.approx(mid[2], abs=0.05)  # zero: the neutral middle
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    path = token_figure(tmp_path / "t.png", tokens=tokens, scores=scores, title="t")
    with Image.open(path) as im:
        assert im.size == (4 * figures.DPI, round(3.2 * figures.DPI))


def test_token_figure_keeps_the_strongest_tokens_in_order() -> None:
    n = figures.MAX_TOKENS + 10
    scores = [float(i % 7) - 3.0 + i * 1e-3 for i in range(n)]
    fig = build_token_figure(tokens=[f"t{i}" for i in range(n)], scores=scores, title="t")
    heights = [p.get_height() for p in fig.axes[0].patches]
    keep = sorted(np.argsort(-np.abs(scores), kind="stable")[: figures.MAX_TOKENS])
    assert heights == [scores[i] for i in keep]
    assert f"top {figures.MAX_TOKENS} of {n}" in fig.axes[0].get_title()
    with pytest.raises(UsageError, match="2 tokens but 1 scores"):
        build_token_figure(tokens=["a", "b"], scores=[1.0], title="t")
