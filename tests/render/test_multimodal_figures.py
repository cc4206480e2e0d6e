"""Multimodal figures and report parts: the token figure's sentence panel, the feature figure,
and the report's words, features and modality shares (numbers read back, text escaped)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.text import Text
from PIL import Image

from seewhy.core.errors import UsageError
from seewhy.render import figures
from seewhy.render.figures import (
    build_feature_figure,
    build_token_figure,
    feature_figure,
    token_figure,
)
from seewhy.render.report import render_report

EVIL = "<script>alert(1)</script>"
CMAP = colormaps[figures.DIVERGING]


def words_of(fig: Any) -> list[Text]:
    """The sentence panel's word artists, in text order."""
    found = [t for t in fig.texts if str(t.get_gid() or "").startswith("word-")]
    return sorted(found, key=lambda t: int(t.get_gid().removeprefix("word-")))


def box_rgba(t: Text) -> np.ndarray:
    patch = t.get_bbox_patch()
    assert patch is not None
    return np.asarray(patch.get_facecolor())


def expected(score: float, limit: float) -> np.ndarray:
    return np.asarray(CMAP(0.5 + 0.5 * score / limit))


# -- the token figure's sentence panel --------------------------------------------------------
def test_sentence_words_are_coloured_by_sign_and_magnitude_on_the_bars_scale() -> None:
    tokens = ["good", "bad", "meh", "$x$", "<b>", "ok"]
    scores = [2.0, -1.0, 0.0, 0.5, -2.0, float("nan")]
    fig = build_token_figure(tokens=tokens, scores=scores, title="t")
    words = words_of(fig)
    assert [w.get_text() for w in words] == tokens  # drawn literally, in order, all of them
    colours = np.array([box_rgba(w) for w in words])
    # the diverging colormap centred at 0 with limits +-max|score| (NaN counts as 0)
    for rgba, score in zip(colours, [2.0, -1.0, 0.0, 0.5, -2.0, 0.0], strict=True):
        np.testing.assert_allclose(rgba, expected(score, 2.0), atol=1e-6)
    good, bad, meh, small, worst, nan = colours
    assert good[0] > good[2] and small[0] > small[2]  # raises: red
    assert bad[2] > bad[0] and worst[2] > worst[0]  # lowers: blue
    assert np.allclose(meh, nan) and abs(meh[0] - meh[2]) < 0.05  # 0: the neutral middle
    # magnitude: the stronger, the darker (less green), each side
    assert good[1] < small[1] and worst[1] < bad[1]
    # the same colours as the bars below (one scale for both panels)
    bars = [np.asarray(p.get_facecolor()) for p in fig.axes[0].patches]
    np.testing.assert_allclose(np.array(bars), colours, atol=1e-6)
    # dark boxes get white text, light ones black
    assert [w.get_color() for w in words] == ["white", "black", "black", "black", "white", "black"]
    # the panel is above the bars: every word's box lies above the bars' axes
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    top_of_bars = fig.axes[0].get_window_extent(renderer).y1
    assert all(w.get_bbox_patch().get_window_extent(renderer).y0 > top_of_bars for w in words)


def test_unsigned_scores_run_from_white_to_red() -> None:
    scores = [0.0, 0.25, 1.0, 4.0]
    fig = build_token_figure(tokens=list("abcd"), scores=scores, title="t")
    colours = [box_rgba(w) for w in words_of(fig)]
    for rgba, score in zip(colours, scores, strict=True):
        np.testing.assert_allclose(rgba, expected(score, 4.0), atol=1e-6)
        assert rgba[0] >= rgba[2] - 1e-9  # never blue
    greens = [c[1] for c in colours]
    assert greens == sorted(greens, reverse=True)  # darker red as the score grows


def test_a_long_sentence_wraps_in_reading_order_and_counts_what_is_left_out() -> None:
    n = 400
    tokens = [f"word{i % 37}" for i in range(n)]
    scores = list(np.sin(np.arange(n)))
    fig = build_token_figure(tokens=tokens, scores=scores, title="a title")
    fig.canvas.draw()
    words = words_of(fig)
    k = len(words)
    # the first k words, in order, on SENTENCE_LINES lines at most (and more than one)
    assert [w.get_gid() for w in words] == [f"word-{i}" for i in range(k)]
    rows = sorted({round(w.get_position()[1], 6) for w in words}, reverse=True)
    assert 1 < len(rows) <= figures.SENTENCE_LINES
    # reading order: left to right within a line, lines top down
    spots = [(rows.index(round(w.get_position()[1], 6)), w.get_position()[0]) for w in words]
    assert spots == sorted(spots)
    # boxes inside the figure, never overlapping on a line
    renderer = fig.canvas.get_renderer()
    boxes = [w.get_bbox_patch().get_window_extent(renderer) for w in words]
    width_px = fig.get_figwidth() * figures.DPI
    assert min(b.x0 for b in boxes) >= 0 and max(b.x1 for b in boxes) <= width_px
    for (r1, _), (r2, _), b1, b2 in zip(spots, spots[1:], boxes, boxes[1:], strict=False):
        if r1 == r2:
            assert b1.x1 < b2.x0
    # the rest is counted at the end of the last line
    notes = [t.get_text() for t in fig.texts if "more words" in t.get_text()]
    assert notes == [f"… ({n - k} more words)"]
    # the figure grows by a line's height per extra line
    height = (
        figures.SENTENCE_PAD
        + figures.TITLE_LINE
        + figures.SENTENCE_GAP
        + figures.WORD_LINE * len(rows)
        + figures.SENTENCE_PAD
        + figures.BARS_HEIGHT
    )
    assert fig.get_figheight() == pytest.approx(height, abs=0.006)
    # the bars still show the MAX_TOKENS strongest, and say so
    assert len(fig.axes[0].patches) == figures.MAX_TOKENS
    assert f"top {figures.MAX_TOKENS} of {n}" in fig.axes[0].get_title()


def test_a_short_sentence_keeps_one_line_and_the_old_size(tmp_path: Path) -> None:
    fig = build_token_figure(tokens=["a", "red", "cat"], scores=[1.0, -1.0, 0.5], title="t")
    assert len({w.get_position()[1] for w in words_of(fig)}) == 1
    titles = [t.get_text() for t in fig.texts if t.get_gid() == "title"]
    assert titles == ["t"]
    path = token_figure(
        tmp_path / "t.png", tokens=["a", "red", "cat"], scores=[1, -1, 0.5], title="t"
    )
    with Image.open(path) as im:
        assert im.size == (4 * figures.DPI, round(3.2 * figures.DPI))
        pixels = np.asarray(im.convert("RGB")).astype(int)
    # the sentence band (above the bars) holds a saturated red and a saturated blue box
    band = pixels[: round((3.2 - figures.BARS_HEIGHT) * figures.DPI)]
    red = (band[..., 0] > 80) & (band[..., 0] - band[..., 2] > 60)
    blue = (band[..., 2] > 80) & (band[..., 2] - band[..., 0] > 60)
    assert red.sum() > 50 and blue.sum() > 50


def test_no_tokens_still_draws_a_figure() -> None:
    fig = build_token_figure(tokens=[], scores=[], title="t")
    assert words_of(fig) == []
    assert "(no words)" in [t.get_text() for t in fig.texts]


# -- the feature figure -------------------------------------------------------------------------
def test_feature_bars_are_sorted_by_absolute_score_with_signed_colours(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 25
    names = [f"col{i}" for i in range(n)]
    values: list[Any] = [float(i) * 100.5 for i in range(n)]
    values[1], values[2] = "high", None
    scores = list(rng.normal(size=n))
    scores[1], scores[2] = 9.0, -8.0  # the two strongest
    fig = build_feature_figure(names=names, values=values, scores=scores, title="f")
    ax = fig.axes[0]
    bars = ax.patches
    order = sorted(range(n), key=lambda i: -abs(scores[i]))[: figures.MAX_FEATURES]
    assert len(bars) == figures.MAX_FEATURES == 20
    assert [p.get_width() for p in bars] == pytest.approx([scores[i] for i in order])
    # the largest on top: y grows downwards, the first bar at the top row
    assert ax.yaxis_inverted()
    ys = [p.get_y() + p.get_height() / 2 for p in bars]
    assert ys == sorted(ys)
    # labels "name = value", numbers to 4 significant digits
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:2] == ["col1 = high", "col2 = -"]
    assert labels[2] == f"col{order[2]} = {float(order[2]) * 100.5:.4g}"
    # colours: the diverging map, centred at 0, limits +-max|score|
    for p, i in zip(bars, order, strict=True):
        np.testing.assert_allclose(p.get_facecolor(), expected(scores[i], 9.0), atol=1e-6)
        rgba = p.get_facecolor()
        assert (rgba[0] > rgba[2]) if scores[i] > 0 else (rgba[2] > rgba[0])
    # each bar's score written beside it
    written = [t.get_text() for t in ax.texts if isinstance(t, Text)]
    assert written[: len(order)] == [f"{scores[i]:.3g}" for i in order]
    assert "top 20 of 25 features" in ax.get_title()
    path = feature_figure(tmp_path / "f.png", names=names, values=values, scores=scores, title="f")
    with Image.open(path) as im:
        assert im.size[0] == 7 * figures.DPI


def test_feature_figure_checks_lengths_and_shows_few_features_as_given() -> None:
    with pytest.raises(UsageError, match="2 names, 1 values and 2 scores"):
        build_feature_figure(names=["a", "b"], values=[1], scores=[1.0, 2.0], title="f")
    fig = build_feature_figure(
        names=["$x$", "b", "c"],
        values=[1500.0, 3, None],
        scores=[-0.5, 0.25, -0.0],
        title="plain $t$",
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["$x$ = 1500", "b = 3", "c = -"]
    assert [p.get_width() for p in ax.patches] == [-0.5, 0.25, 0.0]
    assert [t.get_text() for t in ax.texts] == ["-0.5", "0.25", "0"]
    assert ax.get_title() == "plain $t$"


# -- the report -------------------------------------------------------------------------------
def summary_with_multimodal_parts(out: Path) -> dict[str, Any]:
    words = [
        {"word": "a", "score": 0.01, "abs_score": 0.05, "tokens": ["a"]},
        {"word": "<script>", "score": -0.3, "abs_score": 0.4, "tokens": ["<", "script", ">"]},
        {"word": "fracture", "score": 0.2, "abs_score": 0.25, "tokens": ["fracture"]},
        {"word": "near", "score": -0.0, "abs_score": 0.02, "tokens": ["near"]},
        {"word": EVIL, "score": 0.05, "abs_score": 0.06, "tokens": ["x"]},
    ]
    token_figure(
        out / "figures/s1/m__ig__tokens.png",
        tokens=[w["word"] for w in words],
        scores=[w["score"] for w in words],
        title="s1 · m · ig · words",
    )
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(out / "figures/s1/m__ig.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(out / "figures/s1/m__plain.png")
    features = [
        {"name": "sqft", "value": 1500.0, "score": 0.0145},
        {"name": "grade", "value": "high", "score": 0.0221},
        {"name": "<b>water</b>", "value": 1.0, "score": -0.0549},
        {"name": "age", "value": None, "score": -0.0},
    ]
    feature_figure(
        out / "figures/s1/m__ig__features.png",
        names=[f["name"] for f in features],
        values=[f["value"] for f in features],
        scores=[f["score"] for f in features],
        title="s1 · m · ig · features",
    )
    return {
        "schema": "seewhy/1",
        "models": [{"name": "m", "arch": "a", "task": "classification", "layer": "l"}],
        "samples": [{"id": "s1", "image_path": "s1.png", "text": "a <script> fracture near"}],
        "results": [
            {
                "sample": "s1",
                "model": "m",
                "prediction": {"label": "fracture", "index": 0, "score": 0.9},
                "explained": "fracture",
                "attributions": [
                    {
                        "method": "ig",
                        "map": "maps/s1/m__ig.npy",
                        "figure": "figures/s1/m__ig.png",
                        "tokens": [{"token": w["word"], "score": w["score"]} for w in words],
                        "words": words,
                        "tokens_figure": "figures/s1/m__ig__tokens.png",
                        "features": features,
                        "features_figure": "figures/s1/m__ig__features.png",
                        "modality_share": {"image": 0.6234, "text": 0.3766},
                    },
                    {"method": "plain", "map": "p.npy", "figure": "figures/s1/m__plain.png"},
                ],
            }
        ],
        "agreement": [],
        "checks": [],
        "cohorts": [],
    }


def rows_after(html: str, caption: str) -> list[list[str]]:
    """The body rows (cell texts) of the table captioned ``caption``."""
    match = re.search(re.escape(f"<p class='muted'>{caption}</p>") + r"(<table>.*?</table>)", html)
    assert match, caption
    rows = re.findall(r"<tr>(.*?)</tr>", match.group(1))[1:]
    return [re.findall(r"<td[^>]*>(?:<span[^>]*>)?(.*?)(?:</span>)?</td>", r) for r in rows]


def test_the_report_shows_shares_words_and_features_escaped(tmp_path: Path) -> None:
    (tmp_path / "figures/s1").mkdir(parents=True)
    data = summary_with_multimodal_parts(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps(data))
    html = render_report(tmp_path).read_text(encoding="utf-8")

    # nothing from the data runs: every script tag and bold tag is text
    # only the page's own inline sort script
    assert html.count("<script") == 1 and EVIL not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;water&lt;/b&gt;" in html
    # modality shares in percent, the exact values on hover
    assert "<p title='image: 0.623, text: 0.377'>modality share: image 62% · text 38%</p>" in html
    # the words in text order, coloured by sign, alpha by |score| / max|score| (0.8 at most)
    spans = re.findall(
        r"<span style='background:rgba\(([\d,]+),([\d.]+)\)' title='([^']*)'>(.*?)</span>",
        html.split("<p class='tokens'>words: ", 1)[1].split("</p>", 1)[0],
    )
    assert [s[3] for s in spans] == [
        "a",
        "&lt;script&gt;",
        "fracture",
        "near",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ]
    red, blue = "214,39,40", "31,119,180"
    assert [s[0] for s in spans] == [red, blue, red, red, red]
    assert [float(s[1]) for s in spans] == pytest.approx(
        [0.8 * abs(x) / 0.3 for x in (0.01, -0.3, 0.2, 0.0, 0.05)], abs=0.006
    )
    assert [s[2] for s in spans] == ["0.01", "-0.3", "0.2", "0", "0.05"]
    # the strongest words by |score|: word, score (coloured), |attribution|
    assert rows_after(html, "strongest words") == [
        ["&lt;script&gt;", "-0.3", "0.4"],
        ["fracture", "0.2", "0.25"],
        ["&lt;script&gt;alert(1)&lt;/script&gt;", "0.05", "0.06"],
        ["a", "0.01", "0.05"],
        ["near", "0", "0.02"],
    ]
    assert "<td class='num'><span class='lowers'>-0.3</span></td>" in html
    assert "<td class='num'><span class='raises'>0.2</span></td>" in html
    # the features by |score|: name, value (as given), score (coloured)
    assert rows_after(html, "features (largest |score| first)") == [
        ["&lt;b&gt;water&lt;/b&gt;", "1", "-0.0549"],
        ["grade", "high", "0.0221"],
        ["sqft", "1500", "0.0145"],
        ["age", "-", "0"],
    ]
    assert "<td class='num'><span class='lowers'>-0.0549</span></td>" in html
    # the token and feature figures, inlined as their PNGs, after the explanation's figure
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    shown = [base64.b64decode(u) for u in uris]
    assert shown == [
        (tmp_path / f"figures/s1/{name}.png").read_bytes()
        for name in ("m__ig", "m__ig__tokens", "m__ig__features", "m__plain")
    ]
    assert "<figcaption>ig: token importances</figcaption>" in html
    assert "<figcaption>ig: feature importances</figcaption>" in html
    # the entry without these parts: its figure and nothing else
    assert html.count("modality share:") == 1 and html.count("class='tokens'") == 1
    plain = "<figcaption>s1 · m · plain</figcaption></figure>\n</div>\n</section>"
    assert plain in html


def test_tokens_without_words_and_shares_of_three_inputs(tmp_path: Path) -> None:
    (tmp_path / "figures/s1").mkdir(parents=True)
    data = summary_with_multimodal_parts(tmp_path)
    entry = data["results"][0]["attributions"][0]
    del entry["words"], entry["features"], entry["features_figure"]
    entry["tokens"] = [{"token": "frac", "score": 1.0}, {"token": "##ture", "score": -0.5}]
    entry["modality_share"] = {"image": 0.5, "text": 0.3, "tabular": 0.2, "odd": "n/a"}
    (tmp_path / "summary.json").write_text(json.dumps(data))
    html = render_report(tmp_path).read_text(encoding="utf-8")
    # word pieces side by side (no space), no words table, no features table
    assert re.search(
        r"<p class='tokens'>tokens: <span [^>]*>frac</span><span [^>]*>##ture</span></p>", html
    )
    assert "strongest words" not in html and "features (largest" not in html
    assert "modality share: image 50% · text 30% · tabular 20% · odd n/a</p>" in html


# -- in a browser -------------------------------------------------------------------------------
class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_a_browser_shows_the_words_as_text_and_runs_none_of_them(tmp_path: Path) -> None:
    browser = next(
        (
            found
            for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
            if (found := shutil.which(name))
        ),
        None,
    )
    if browser is None:
        pytest.skip("no chromium binary on PATH")
    out = tmp_path / "out"
    (out / "figures/s1").mkdir(parents=True)
    (out / "summary.json").write_text(json.dumps(summary_with_multimodal_parts(out)))
    path = render_report(out)
    done = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    assert dom.scripts == 1  # the sort script; the data's script tags are text
    text = "".join(dom.text)
    assert "modality share: image 62% · text 38%" in text
    assert "words: a <script> fracture near " + EVIL in text
    assert "<b>water</b>" in text


def test_combined_figure_panels_follow_the_scores_and_shares() -> None:
    import numpy as np
    from matplotlib.patches import Rectangle

    from seewhy.render.figures import build_combined_figure

    image = np.zeros((20, 20, 3), dtype=np.uint8)
    heat = np.linspace(-1, 1, 400, dtype=np.float32).reshape(20, 20)
    words = [("red", 0.5), ("the", -0.1), ("fracture", -0.9)]
    feats = [("sqft", 2.0), ("grade", -1.0)]
    fig = build_combined_figure(
        image=image,
        heatmap=heat,
        title="t",
        signed=True,
        words=words,
        features=feats,
        shares={"image": 0.25, "text": 0.5, "tabular": 0.25},
    )
    img_ax, word_ax, feat_ax, share_ax = fig.axes[:4]
    bars = [p for p in word_ax.patches if isinstance(p, Rectangle)]
    # largest |score| on top (the last bar drawn), signs kept
    assert [round(b.get_width(), 3) for b in bars] == [-0.1, 0.5, -0.9]
    labels = [t.get_text() for t in word_ax.get_yticklabels()]
    assert labels == ["the", "red", "fracture"]
    assert bars[1].get_facecolor()[0] > bars[1].get_facecolor()[2]  # red raises
    assert bars[2].get_facecolor()[2] > bars[2].get_facecolor()[0]  # blue lowers
    heights = [p.get_height() for p in share_ax.patches if isinstance(p, Rectangle)]
    assert heights == [0.25, 0.5, 0.25]
    assert [t.get_text() for t in share_ax.texts] == ["25%", "50%", "25%"]
    assert [round(p.get_width(), 3) for p in feat_ax.patches if isinstance(p, Rectangle)] == [
        -1.0,
        2.0,
    ]
    del img_ax
