"""The dataset run's figures, checked structurally: the regression overview (points, y = x,
residuals), the confusion matrix (cells and counts where they belong), the cohort's mean map
(colours, scales, panels); bad input gives a typed error or a figure that says what it left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.core.errors import UsageError
from seewhy.render import figures
from seewhy.render.figures import (
    build_cohort_figure,
    build_confusion_figure,
    build_prediction_figure,
    cohort_figure,
    confusion_figure,
    prediction_figure,
)

TRUTH = [1.0, 2.0, 3.0, 4.0, 10.0]
PRED = [1.5, 2.0, float("nan"), 3.0, 12.0]  # the NaN row is left out


def panels(fig: Any) -> list[Any]:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colorbars(fig: Any) -> list[Any]:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_prediction_figure_scatters_rows_against_y_equals_x_and_histograms_residuals(
    tmp_path: Path,
) -> None:
    fig = build_prediction_figure(prediction=PRED, truth=TRUTH, title="m: price $")
    scatter, hist = panels(fig)
    # one dot per row with a finite prediction and truth: x true, y predicted
    (dots,) = scatter.collections
    np.testing.assert_array_equal(
        dots.get_offsets(), [[1.0, 1.5], [2.0, 2.0], [4.0, 3.0], [10.0, 12.0]]
    )
    # the y = x line spans both axes' limits, which are equal and hold every dot
    (line,) = scatter.lines
    xs, ys = line.get_data()
    np.testing.assert_array_equal(xs, ys)
    assert scatter.get_xlim() == scatter.get_ylim() == (xs[0], xs[-1])
    assert xs[0] < 1.0 and xs[-1] > 12.0
    # residuals 0.5, 0, -1, 2: four rows in the bars, a line at 0; R² and MAE in the title
    assert sum(p.get_height() for p in hist.patches) == 4
    lows = [p.get_x() for p in hist.patches]
    assert min(lows) == pytest.approx(-1.0) and max(
        p.get_x() + p.get_width() for p in hist.patches
    ) == pytest.approx(2.0)
    assert [tuple(v.get_xdata()) for v in hist.lines] == [(0.0, 0.0)]
    t, p = np.array([1.0, 2.0, 4.0, 10.0]), np.array([1.5, 2.0, 3.0, 12.0])
    r2 = 1 - ((p - t) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    assert scatter.get_title() == f"n = 4 · R² {r2:.3g} · MAE {0.875:.4g}"
    assert fig._suptitle.get_text() == "m: price $ (1 row(s) with NaN ignored)"
    path = prediction_figure(tmp_path / "o.png", prediction=PRED, truth=TRUTH, title="t")
    with Image.open(path) as im:
        assert im.size == tuple(round(s * figures.DPI) for s in figures.OVERVIEW_SIZE)


def test_prediction_figure_without_truth_is_a_histogram_of_predictions(tmp_path: Path) -> None:
    fig = build_prediction_figure(prediction=[1.0, 2.0, 2.0, None, 3.0], truth=None, title="t")
    (ax,) = panels(fig)
    assert sum(p.get_height() for p in ax.patches) == 4
    assert ax.get_title() == "predictions (n = 4)" and ax.get_xlabel() == "prediction"
    assert "1 row(s) with NaN ignored" in fig._suptitle.get_text()
    path = prediction_figure(tmp_path / "h.png", prediction=[1.0], truth=None, title="t")
    with Image.open(path) as im:
        assert im.size == (round(figures.OVERVIEW_SIZE[0] / 2 * figures.DPI), 420)


def test_prediction_figure_with_nothing_to_show_says_so_and_bad_input_is_typed(
    tmp_path: Path,
) -> None:
    for truth in (None, [], [float("nan")]):
        pred: list[float] = [] if truth == [] else [float("nan")]
        fig = build_prediction_figure(prediction=pred, truth=truth, title="t")
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert texts and all(t.startswith("no ") for t in texts)
        assert not any(ax.patches or ax.collections for ax in fig.axes)
    prediction_figure(tmp_path / "empty.png", prediction=[], truth=[], title="t")  # drawable
    with pytest.raises(UsageError, match="2 predictions and 1 true values"):
        build_prediction_figure(prediction=[1.0, 2.0], truth=[1.0], title="t")
    with pytest.raises(UsageError, match="prediction must be numbers"):
        build_prediction_figure(prediction=["a"], truth=None, title="t")  # type: ignore[list-item]


def test_confusion_figure_puts_counts_in_their_cells() -> None:
    labels = ["cat", "dog", "$bird$"]
    matrix = [[5, 1, 0], [0, 4, 2], [1, 0, 9]]
    fig = build_confusion_figure(labels=labels, matrix=matrix, title="m")
    (ax,) = panels(fig)
    (image,) = ax.images
    np.testing.assert_array_equal(image.get_array(), matrix)  # rows true, columns predicted
    assert image.get_clim() == (0, 9) and image.get_cmap().name == "Blues"
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert {k: int(t.get_text()) for k, t in cells.items()} == {
        (i, j): matrix[i][j] for i in range(3) for j in range(3)
    }
    # dark cells get white text, light ones black
    assert cells[(2, 2)].get_color() == "white" and cells[(0, 1)].get_color() == "black"
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert fig._suptitle.get_text() == f"m (n = 22 · accuracy {18 / 22:.3g})"


def test_confusion_figure_png_and_many_classes_leave_the_cells_unwritten(tmp_path: Path) -> None:
    n = figures.CONFUSION_TEXT_MAX + 1
    fig = build_confusion_figure(
        labels=[f"c{i}" for i in range(n)], matrix=np.eye(n, dtype=int).tolist(), title="t"
    )
    assert len(panels(fig)[0].texts) == 0
    path = confusion_figure(
        tmp_path / "c.png", labels=["a", "b"], matrix=[[1, 0], [0, 1]], title="t"
    )
    with Image.open(path) as im:
        side = 3.0 + 0.45 * 2
        assert im.size == (round((side + 1.2) * figures.DPI), round(side * figures.DPI))


@pytest.mark.parametrize(
    ("labels", "matrix", "match"),
    [
        ([], [], "at least one class label"),
        (["a", "b"], [[1, 0]], r"shape \(1, 2\) for 2 labels"),
        (["a", "b"], [[1, 0], [0, float("nan")]], r"row 1 \('b'\), column 1 \('b'\) holds nan"),
        (["a"], [[-1]], "holds -1"),
        (["a"], [[0.5]], "holds 0.5"),
    ],
)
def test_confusion_figure_refuses_bad_matrices(labels: Any, matrix: Any, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        build_confusion_figure(labels=labels, matrix=matrix, title="t")


Y, X = np.mgrid[0:16, 0:16]
BLOB = np.exp(-((X - 4.0) ** 2 + (Y - 11.0) ** 2) / 8.0).astype(np.float32)  # peak at (11, 4)


def test_unsigned_cohort_map_is_a_heat_panel_from_zero_to_its_max() -> None:
    fig = build_cohort_figure(mean_map=BLOB * 3, title="top $", signed=False)
    (ax,) = panels(fig)
    (image,) = ax.images
    assert image.get_cmap().name == figures.SEQUENTIAL
    assert image.get_clim() == (0.0, pytest.approx(3.0))
    shown = np.asarray(image.get_array())
    assert np.unravel_index(shown.argmax(), shown.shape) == (11, 4)
    assert ax.get_title() == "mean map" and len(colorbars(fig)) == 1
    assert fig._suptitle.get_text() == "top $"
    # a long title wraps to the one panel's width instead of running off the figure
    long = "top decile of true price · tiles · gradcam · mean of 8 members"
    fig = build_cohort_figure(mean_map=BLOB, title=long, signed=False)
    lines = fig._suptitle.get_text().split("\n")
    assert len(lines) == 2 and " ".join(line.strip() for line in lines) == long
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width


def test_signed_cohort_map_is_diverging_and_lowers_make_two_panels_on_one_scale() -> None:
    signed = BLOB - BLOB[::-1, ::-1]  # raises bottom-left, lowers top-right
    fig = build_cohort_figure(mean_map=signed, title="t", signed=True)
    (image,) = panels(fig)[0].images
    m = float(np.abs(signed).max())
    assert image.get_cmap().name == figures.DIVERGING and image.get_clim() == (-m, m)

    lowers = 2 * BLOB[::-1, ::-1]
    fig = build_cohort_figure(mean_map=BLOB, lowers=lowers, title="t", signed=True)
    raises_ax, lowers_ax = panels(fig)
    assert (raises_ax.get_title(), lowers_ax.get_title()) == ("raises", "lowers")
    r, low = raises_ax.images[0], lowers_ax.images[0]
    assert (r.get_cmap().name, low.get_cmap().name) == ("Reds", "Blues")
    assert r.get_clim() == low.get_clim() == (0.0, pytest.approx(2.0))  # the larger max
    shown = np.asarray(low.get_array())
    assert np.unravel_index(shown.argmax(), shown.shape) == (4, 11)


def test_cohort_figure_with_image_and_details(tmp_path: Path) -> None:
    image = np.full((32, 32, 3), 128, np.uint8)
    fig = build_cohort_figure(
        mean_map=BLOB,
        lowers=BLOB[::-1, ::-1],
        title="t",
        signed=True,
        image=image,
        details=["water: 0.60 of what raises", "area 0.23"],
    )
    axes = panels(fig)
    assert len(axes) == 6  # 2 rows x (raises, lowers, text)
    titles = [ax.get_title() for ax in axes]
    assert titles[3:5] == ["raises over the mean image", "lowers over the mean image"]
    # the overlays: raises red where the blob is, lowers blue where its mirror is
    red = np.asarray(axes[3].images[1].get_array())
    blue = np.asarray(axes[4].images[1].get_array())
    assert red[22, 8, 0] == 1.0 and red[22, 8, 3] == pytest.approx(0.75, abs=0.05)
    assert blue[9, 23, 2] == 1.0 and blue[9, 23, 3] == pytest.approx(0.75, abs=0.05)
    assert red[9, 23, 3] < 0.01 and blue[22, 8, 3] < 0.01
    text = axes[2].texts[0].get_text()
    assert text == "water: 0.60 of what raises\narea 0.23"
    path = cohort_figure(tmp_path / "c.png", mean_map=BLOB, title="t", signed=False, details=["x"])
    with Image.open(path) as im:
        cell = figures.COHORT_CELL * figures.DPI
        assert im.size == (round(2 * cell), round(cell + 0.4 * figures.DPI))


def test_cohort_figure_counts_non_finite_values_and_refuses_bad_shapes() -> None:
    heat = BLOB.copy()
    heat[0, :2] = [np.nan, np.inf]
    fig = build_cohort_figure(mean_map=heat, title="t", signed=False)
    shown = np.asarray(panels(fig)[0].images[0].get_array())
    assert np.isfinite(shown).all() and shown[0, 0] == 0.0
    assert panels(fig)[1].texts[0].get_text() == "warning: 2 NaN/inf map values set to 0"
    with pytest.raises(UsageError, match=r"mean map has shape \(0,\)"):
        build_cohort_figure(mean_map=np.zeros(0), title="t", signed=False)
    with pytest.raises(UsageError, match=r"image has shape \(4, 4, 2\)"):
        build_cohort_figure(
            mean_map=BLOB, title="t", signed=False, image=np.zeros((4, 4, 2), np.uint8)
        )
