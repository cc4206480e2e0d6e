"""An Explanation in a notebook: the image ``seewhy.explain`` keeps, the inline HTML overlay
(``_repr_html_``) and ``.plot()`` on matplotlib axes (core/display.py)."""

from __future__ import annotations

import base64
import io
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import seewhy
from seewhy.core.display import heat_image, input_image, overlay
from seewhy.core.errors import UsageError
from seewhy.core.explanation import Explanation
from seewhy.core.model import Model
from seewhy.core.preprocess import Preprocess

GRAY = 100
INFERNO_TOP = (0.988362, 0.998364, 0.644924)  # matplotlib's inferno at 1.0
INFERNO_MID = (0.735683, 0.215906, 0.330245)  # ... and at 0.5


def explanation(
    n: int = 2,
    size: tuple[int, int] = (20, 30),
    *,
    method: str = "gradcam",
    target: str = "pred",
    signed: bool = False,
    with_image: bool = True,
    predictions: list[str] | None = None,
) -> Explanation:
    """``n`` samples over a flat gray image; sample ``i``'s map is ``i + 1`` on one pixel."""
    h, w = size
    maps = torch.zeros(n, h, w)
    for i in range(n):
        maps[i, 5, 7] = i + 1.0
    image = torch.full((n, h, w, 3), GRAY, dtype=torch.uint8) if with_image else None
    return Explanation(
        method=method,
        attributions={"image": maps},
        target=target,
        layer="features.4",
        output=torch.zeros(n, 3),
        target_indices=torch.zeros(n, dtype=torch.long),
        signed=signed,
        image=image,
        predictions=predictions,
    )


def pngs(snippet: str) -> list[np.ndarray]:
    """The inline PNGs of an HTML snippet, decoded."""
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', snippet)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB")) for b in found]


# -- the overlay ----------------------------------------------------------------------------
def test_unsigned_overlay_is_heat_where_the_map_is_strong_and_the_image_where_it_is_zero() -> None:
    image = np.full((6, 8, 3), GRAY, dtype=np.uint8)
    heat = np.zeros((6, 8), dtype=np.float32)
    heat[2, 3] = 2.0  # the peak: inferno(1.0) at opacity 0.6
    heat[4, 5] = 1.0  # half the peak: inferno(0.5) at opacity 0.3
    out = overlay(image, heat).astype(int)
    top = [round(GRAY * 0.4 + 0.6 * 255 * c) for c in INFERNO_TOP]
    mid = [round(GRAY * 0.7 + 0.3 * 255 * c) for c in INFERNO_MID]
    assert np.abs(out[2, 3] - top).max() <= 1  # (191, 193, 139): warm, lighter than the image
    assert np.abs(out[4, 5] - mid).max() <= 1  # (126, 87, 95): red-ish
    assert out[4, 5, 0] > out[4, 5, 1] and out[4, 5, 0] > out[4, 5, 2]
    zero = heat == 0
    assert (out[zero] == GRAY).all()  # where the map is 0 the image shows unchanged


def test_signed_overlay_is_red_where_positive_and_blue_where_negative() -> None:
    image = np.full((4, 3, 3), GRAY, dtype=np.uint8)
    heat = np.zeros((4, 3), dtype=np.float32)
    heat[:, 0] = 2.0
    heat[:, 2] = -2.0
    heat[0, 0] = 1.0  # half strength: opacity 0.375
    out = overlay(image, heat, signed=True).astype(int)
    assert out[1, 0].tolist() == [216, 25, 25]  # 0.25 * 100 + 0.75 * 255, 0.25 * 100
    assert out[1, 2].tolist() == [25, 25, 216]
    assert out[0, 0].tolist() == [158, 62, 62]  # 0.625 * 100 + 0.375 * 255 (rounded)
    assert (out[:, 1] == GRAY).all()
    # a map that says unsigned but holds negative values is shown signed anyway
    assert overlay(image, heat, signed=False).tolist() == out.tolist()


def test_overlay_resizes_the_map_to_the_image_and_zeroes_non_finite_values() -> None:
    image = np.full((8, 8, 3), GRAY, dtype=np.uint8)
    heat = np.array([[1.0, 0.0], [0.0, np.nan]], dtype=np.float32)
    out = overlay(image, heat, signed=True)
    assert out.shape == (8, 8, 3)
    assert out[0, 0].tolist() == [216, 25, 25]  # the corner keeps the full value
    assert (out[7, 7] == GRAY).all()  # NaN drawn as 0


def test_heat_image_scales_unsigned_from_zero_and_signed_symmetrically() -> None:
    unsigned = heat_image(np.array([[0.0, 4.0]], dtype=np.float32))
    assert unsigned[0, 1].tolist() == [round(255 * c) for c in INFERNO_TOP]
    assert unsigned[0, 0].tolist() == [0, 0, 4]  # inferno(0)
    signed = heat_image(np.array([[-3.0, 0.0, 3.0]], dtype=np.float32), signed=True)
    blue, white, red = signed[0].astype(int).tolist()  # -3, 0, 3
    assert red[0] > 100 and red[2] < 50  # RdBu_r: positive is red
    assert blue[2] > 90 and blue[0] < 10  # negative is blue
    assert min(white) > 240  # 0 is (almost) white


# -- HTML -----------------------------------------------------------------------------------
def test_repr_html_draws_each_sample_as_a_png_of_the_image_size() -> None:
    e = explanation(n=3, predictions=["cat (0.93)", "dog (0.51)", "cat (0.70)"])
    snippet = e._repr_html_()
    images = pngs(snippet)
    assert snippet.count("<img") == 3 and len(images) == 3
    assert [im.shape for im in images] == [(20, 30, 3)] * 3
    for i, im in enumerate(images):  # the overlay of sample i, pixel for pixel
        assert im.tolist() == overlay(e.image[i].numpy(), e.map[i].numpy()).tolist()
    assert (images[0][0, 0] == GRAY).all() and (images[0][5, 7] != GRAY).any()
    assert "predicted dog (0.51)" in snippet and "target pred" in snippet
    assert "and " not in snippet.split("</figure>")[-1]  # no "and N more" for 3


def test_repr_html_stops_at_eight_samples() -> None:
    snippet = explanation(n=11)._repr_html_()
    assert snippet.count("<img") == 8
    assert "and 3 more" in snippet


def test_repr_html_escapes_every_string() -> None:
    hostile = '<script>alert("x")</script>'
    e = explanation(
        n=2,
        method=hostile,
        target='"><img src=x onerror=alert(1)>',
        predictions=["<b>cat</b>", "&dog"],
    )
    snippet = e._repr_html_()
    assert "<script" not in snippet and "<b>cat" not in snippet
    assert snippet.count("<img") == 2  # only the two overlays, never the target's
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in snippet
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in snippet
    assert "&lt;b&gt;cat&lt;/b&gt;" in snippet and "&amp;dog" in snippet


def test_repr_html_without_an_image_draws_the_map_alone() -> None:
    e = explanation(n=1, with_image=False)
    (im,) = pngs(e._repr_html_())
    assert im.shape == (20, 30, 3)
    assert im[5, 7].tolist() == [round(255 * c) for c in INFERNO_TOP]  # the peak
    assert im[0, 0].tolist() == [0, 0, 4]  # 0 is inferno's black


def test_repr_html_of_a_map_without_image_input_says_what_it_attributes() -> None:
    e = Explanation(method="ig", attributions={"tabular": torch.ones(2, 4)}, target="value")
    snippet = e._repr_html_()
    assert "<img" not in snippet and "no image map" in snippet and "tabular" in snippet


# -- plot -----------------------------------------------------------------------------------
def test_plot_returns_a_bare_figure_with_the_four_panels() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    before = pyplot.get_fignums() if pyplot is not None else None
    e = explanation(n=2, predictions=["cat (0.93)", "dog (0.51)"])
    fig = e.plot(1)
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    panels = fig.axes[:4]
    assert len(fig.axes) == 5  # the 4 panels and the heatmap's colour bar
    assert [a.get_title() for a in panels] == ["image", "heatmap", "overlay", ""]
    assert np.asarray(panels[0].images[0].get_array()).tolist() == e.image[1].tolist()
    heat = np.asarray(panels[1].images[0].get_array())
    assert heat[5, 7] == 2.0 and panels[1].images[0].get_clim() == (0.0, 2.0)
    drawn = np.asarray(panels[2].images[0].get_array())
    assert drawn.tolist() == overlay(e.image[1].numpy(), e.map[1].numpy()).tolist()
    text = panels[3].texts[0].get_text()
    for line in ("method: gradcam", "target: pred", "layer: features.4", "prediction: dog (0.51)"):
        assert line in text
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert Image.open(buf).size == (1400, 400)
    if pyplot is not None:
        assert pyplot.get_fignums() == before  # no pyplot figure made


def test_plot_on_one_axes_draws_the_overlay_and_on_four_the_panels() -> None:
    from matplotlib.figure import Figure

    e = explanation(n=2, signed=True)
    fig = Figure()
    ax = fig.subplots()
    assert e.plot(-1, ax=ax) is ax
    drawn = np.asarray(ax.images[0].get_array())
    assert drawn[5, 7].tolist() == [round(GRAY * 0.25 + 0.75 * 255), 25, 25]  # red: positive
    assert (drawn[0, 0] == GRAY).all()

    four = Figure().subplots(1, 4)  # a numpy array of axes, as pyplot.subplots gives
    out = e.plot(0, ax=four)
    assert list(out) == list(four)
    assert four[1].get_title() == "attribution: red raises, blue lowers"
    assert four[1].images[0].get_clim() == (-1.0, 1.0)


def test_plot_refuses_bad_indices_and_axes() -> None:
    from matplotlib.figure import Figure

    e = explanation(n=2)
    with pytest.raises(UsageError, match="out of range"):
        e.plot(2)
    with pytest.raises(UsageError, match="4 of them"):
        e.plot(0, ax=list(Figure().subplots(1, 3)))
    tabular = Explanation(method="ig", attributions={"tabular": torch.ones(2, 4)}, target="v")
    with pytest.raises(UsageError, match="no image map"):
        tabular.plot()


# -- the kept image -------------------------------------------------------------------------
def test_input_image_inverts_the_normalisation() -> None:
    pixels = torch.randint(0, 256, (2, 5, 4, 3), generator=torch.Generator().manual_seed(0))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = (pixels.permute(0, 3, 1, 2) / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    image = input_image(x, mean, std)
    assert image is not None and image.dtype == torch.uint8 and image.shape == (2, 5, 4, 3)
    assert torch.equal(image, pixels.to(torch.uint8))
    gray = input_image(torch.tensor([[[[-2.0, 0.0, 2.0, 9.0]]]]), (0.5,), (0.25,))
    assert gray is not None and gray.shape == (1, 1, 4, 3)
    assert gray[0, 0, :, 0].tolist() == [0, 128, 255, 255]  # 0 and 1 clipped; 0.5 -> 127.5 -> 128
    assert torch.equal(gray[..., 0], gray[..., 2])
    assert input_image(torch.ones(2, 4), (0.5,), (0.25,)) is None  # tabular rows
    assert input_image(torch.ones(1, 4, 2, 2), (0.5,) * 3, (0.25,) * 3) is None


class Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).relu().mean(dim=(2, 3)))


def test_explain_keeps_the_image_the_model_saw_and_the_predictions() -> None:
    prep = Preprocess(size=(12, 16), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    model = Model(Linear().eval(), labels=["cat", "dog", "<fox>"], layer="conv", preprocess=prep)
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in "abc"]
    out = seewhy.explain(model, pictures, ["gradcam", "saliency"], batch_size=2)
    framed = np.stack([np.asarray(prep.frame(p)) for p in pictures]).astype(int)
    for e in out:
        assert e.image is not None and e.image.dtype == torch.uint8
        assert e.image.shape == (3, 12, 16, 3)
        assert np.abs(e.image.numpy().astype(int) - framed).max() <= 1
        assert e.image is out[0].image  # one copy for every result
        probs = torch.softmax(e.output, dim=1)  # type: ignore[arg-type]
        best = probs.argmax(dim=1).tolist()
        labels = ["cat", "dog", "<fox>"]
        assert e.predictions == [
            f"{labels[k]} ({float(probs[i, k]):.2f})" for i, k in enumerate(best)
        ]
    snippet = out[0]._repr_html_()
    assert snippet.count("<img") == 3 and "<fox>" not in snippet
    assert [im.shape for im in pngs(snippet)] == [(12, 16, 3)] * 3

    # a normalised tensor given directly: the same image back
    x = prep(pictures)
    (again,) = seewhy.explain(model, x, ["gradcam"])
    assert again.image is not None and torch.equal(again.image, out[0].image)


def test_concat_keeps_the_image_and_the_predictions() -> None:
    a = explanation(n=2, predictions=["a", "b"])
    b = dataclass_with_image(explanation(n=1, predictions=["c"]), 7)
    joined = Explanation.concat([a, b])
    assert joined.image is not None and joined.image.shape == (3, 20, 30, 3)
    assert joined.image[:, 0, 0, 0].tolist() == [GRAY, GRAY, 7]
    assert joined.predictions == ["a", "b", "c"]
    partial = Explanation.concat([a, explanation(n=1, with_image=False)])
    assert partial.image is None and partial.predictions is None
    assert "image=" not in repr(a)  # the pixels stay out of the repr


def dataclass_with_image(e: Explanation, value: int) -> Explanation:
    import dataclasses

    assert e.image is not None
    return dataclasses.replace(e, image=torch.full_like(e.image, value))
