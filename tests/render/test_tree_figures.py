"""The tree-SHAP summary figure (mean |SHAP| bars beside a beeswarm), checked on generated
values: the bars against numpy, the dots at their SHAP values and coloured by the feature's
value (not by SHAP), the subsample and jitter seeded, the edge cases drawn or refused."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from seewhy.core.errors import UsageError
from seewhy.render import figures
from seewhy.render.figures import build_tree_shap_figure, tree_shap_figure


def generated(n: int = 300, f: int = 20, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values whose scale falls with the column, and feature values with some missing."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, f))
    values = data * rng.uniform(0.1, 5.0, size=f) + rng.normal(scale=0.05, size=(n, f))
    data[rng.random((n, f)) < 0.05] = np.nan
    return values, data


def dots(fig: Any) -> list[Any]:
    """The beeswarm's scatters, top-down (gid feature-0, feature-1, ...)."""
    found = {c.get_gid(): c for ax in fig.axes for c in ax.collections if c.get_gid()}
    return [found[f"feature-{k}"] for k in range(len(found))]


def rgb(color: str) -> np.ndarray:
    return np.asarray(to_rgba(color))[:3]


def panels(fig: Any) -> list[Any]:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_bars_are_numpys_mean_abs_largest_first_and_the_rest_share_one_bar(
    tmp_path: Path,
) -> None:
    values, data = generated()
    names = [f"x{i}" for i in range(values.shape[1])]
    fig, drawn = build_tree_shap_figure(values=values, data=data, names=names, title="t", top=12)
    mean_abs = np.abs(values).mean(axis=0)
    ranked = np.argsort(-mean_abs)
    assert drawn["order"] == [names[i] for i in ranked[:12]] + ["8 other features"]
    np.testing.assert_allclose(drawn["mean_abs"][:12], mean_abs[ranked[:12]], rtol=1e-12)
    assert drawn["mean_abs"][12] == pytest.approx(mean_abs[ranked[12:]].sum(), rel=1e-12)
    assert drawn["points"] == 12 * 300  # no dots for the "other" row
    # the bars drawn are those numbers, top-down, labelled with the names
    bars, swarm = panels(fig)
    np.testing.assert_allclose([p.get_width() for p in bars.patches], drawn["mean_abs"])
    assert [t.get_text() for t in bars.get_yticklabels()] == drawn["order"]
    assert bars.yaxis_inverted()
    # each feature's dots sit at its SHAP values, row by row, within ±TREE_SPREAD of its row
    for k, (collection, i) in enumerate(zip(dots(fig), ranked[:12], strict=True)):
        xy = collection.get_offsets()
        np.testing.assert_allclose(xy[:, 0], values[:, i])
        assert np.abs(xy[:, 1] - k).max() <= figures.TREE_SPREAD
    assert swarm.get_xlabel() == "SHAP value (impact on the model output)"
    assert [tuple(line.get_xdata()) for line in swarm.lines] == [(0.0, 0.0)]

    path = tmp_path / "deep" / "tree.png"
    assert tree_shap_figure(path, values, data, names, "t", top=12) == drawn
    with Image.open(path) as im:
        im.load()
        height = max(2.6, 1.3 + 0.38 * 13)
        assert im.format == "PNG" and im.size == (1200, round(height * figures.DPI))
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 20  # drawn, not blank
    assert [p.name for p in path.parent.iterdir()] == ["tree.png"]  # no temp file left


def test_dots_are_coloured_by_the_feature_value_not_by_shap() -> None:
    n = 40
    value = np.linspace(10.0, 50.0, n)  # feature value rises with the row
    values = np.stack([2.0 * value, -3.0 * value], axis=1)  # a rises with it, b falls
    data = np.stack([value, value], axis=1)
    data[7, 1] = np.nan
    fig, drawn = build_tree_shap_figure(values=values, data=data, names=["a", "b"], title="t")
    assert drawn["order"] == ["b", "a"]
    low, high, grey = (rgb(c) for c in (figures.TREE_LOW, figures.TREE_HIGH, figures.TREE_MISSING))
    for collection, sign in zip(dots(fig), (-1, 1), strict=True):
        xs = collection.get_offsets()[:, 0]
        colors = collection.get_facecolors()[:, :3]
        assert colors.shape == (n, 3)
        # red minus blue follows the feature value: strictly up along the rows
        shade = colors[:, 0] - colors[:, 2]
        keep = np.any(colors != grey, axis=1)
        assert np.all(np.diff(shade[keep]) > 0)
        # and so along the SHAP axis for a, against it for b (coloured by SHAP, b would rise)
        by_x = shade[keep][np.argsort(xs[keep])]
        assert np.all(sign * np.diff(by_x) > 0)
        # the lowest value is the low colour, the highest the high colour
        np.testing.assert_allclose(colors[0], low, atol=1 / 255)
        np.testing.assert_allclose(colors[-1], high, atol=1 / 255)
    b = dots(fig)[0].get_facecolors()[:, :3]
    np.testing.assert_allclose(b[7], grey)  # the missing value is grey
    assert np.sum(np.all(np.isclose(b, grey), axis=1)) == 1


def test_beyond_the_dot_limit_a_seeded_subsample_is_drawn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(figures, "TREE_DOTS", 50)
    values, data = generated(n=120, f=3)
    first, drawn = build_tree_shap_figure(values=values, data=data, names="abc", title="t")
    again, _ = build_tree_shap_figure(values=values, data=data, names="abc", title="t")
    assert drawn["points"] == 3 * 50
    for one, two in zip(dots(first), dots(again), strict=True):
        np.testing.assert_array_equal(one.get_offsets(), two.get_offsets())
    # the same rows in every feature: their SHAP values are a subset, in row order
    (i,) = [k for k, name in enumerate("abc") if name == drawn["order"][0]]
    xs = dots(first)[0].get_offsets()[:, 0]
    rows = [int(np.flatnonzero(values[:, i] == x)[0]) for x in xs]
    assert rows == sorted(rows) and len(set(rows)) == 50
    # the bars still average every row
    assert drawn["mean_abs"][0] == pytest.approx(np.abs(values[:, i]).mean())


def test_one_row_one_feature_zeros_constants_and_missing_values_draw(tmp_path: Path) -> None:
    drawn = tree_shap_figure(tmp_path / "one.png", [[1.0, -2.0]], [[np.nan, 3.0]], "ab", "t")
    assert drawn == {"order": ["b", "a"], "mean_abs": [2.0, 1.0], "points": 2}
    fig, drawn = build_tree_shap_figure(
        values=np.zeros((5, 1)), data=np.full((5, 1), 4.0), names=["c"], title="t"
    )
    assert drawn == {"order": ["c"], "mean_abs": [0.0], "points": 5}
    midway = (rgb(figures.TREE_LOW) + rgb(figures.TREE_HIGH)) / 2  # a constant feature
    np.testing.assert_allclose(dots(fig)[0].get_facecolors()[:, :3], [midway] * 5, atol=2 / 255)
    fig, drawn = build_tree_shap_figure(
        values=np.zeros((4, 3)), data=np.full((4, 3), np.nan), names="xyz", title="t", top=1
    )
    assert drawn == {"order": ["x", "2 other features"], "mean_abs": [0.0, 0.0], "points": 4}
    grey = rgb(figures.TREE_MISSING)
    np.testing.assert_allclose(dots(fig)[0].get_facecolors()[:, :3], [grey] * 4)
    # NaN SHAP values count as 0
    _, drawn = build_tree_shap_figure(
        values=[[np.nan, 1.0], [2.0, 1.0]], data=[[0.0, 0.0], [1.0, 1.0]], names="pq", title="t"
    )
    assert drawn["order"] == ["p", "q"] and drawn["mean_abs"] == [1.0, 1.0]
    for name in ("one.png",):
        with Image.open(tmp_path / name) as im:
            assert im.size == (1200, 260)


@pytest.mark.parametrize(
    ("values", "data", "names", "top", "message"),
    [
        (np.zeros((0, 3)), np.zeros((0, 3)), "abc", 12, "no rows to draw"),
        (np.zeros((2, 0)), np.zeros((2, 0)), [], 12, "no feature column"),
        (np.zeros(3), np.zeros(3), "abc", 12, "expected [rows, features]"),
        (np.zeros((2, 3)), np.zeros((3, 3)), "abc", 12, "data has shape (3, 3)"),
        (np.zeros((2, 3)), np.zeros((2, 3)), "ab", 12, "2 feature names for 3 columns"),
        (np.zeros((2, 3)), np.zeros((2, 3)), "abc", 0, "top must be at least 1"),
        ([["a"]], [[1.0]], "a", 12, "must be numbers"),
    ],
)
def test_what_cannot_be_drawn_is_a_value_error_that_says_why(
    tmp_path: Path, values: Any, data: Any, names: Any, top: int, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        tree_shap_figure(tmp_path / "x.png", values, data, list(names), "t", top=top)
    assert isinstance(err.value, UsageError)  # the CLI's exit 2
    assert not (tmp_path / "x.png").exists()


def test_render_code_does_not_import_shap() -> None:
    for name in ("figures.py", "report.py"):
        tree = ast.parse((Path(figures.__file__).parent / name).read_text(encoding="utf-8"))
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            str(node.module).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert "shap" not in imported, name
