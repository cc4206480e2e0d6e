"""Regressions from a5eb733/76f8744 found by the second outside review.

From a second outside review; each test failed before its fix.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import seewhy

MODELS = textwrap.dedent(
    '''
    import torch
    from torch import nn

    class ConvHead(nn.Module):
        """A single-logit binary classifier whose head is a 1x1 conv (no nn.Linear)."""
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
            self.head = nn.Conv2d(8, 1, 1)
        def forward(self, x):
            return self.head(self.body(x)).mean((2, 3))

    class Binary(nn.Module):
        """A single-logit binary classifier (factory takes no num_classes)."""
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(8, 1)
        def forward(self, x):
            return self.fc(self.f(x))

    class LateProj(nn.Module):
        """The head is registered before another nn.Linear (used before it)."""
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(16, 3)
            self.proj = nn.Linear(8, 16)
        def forward(self, x):
            return self.fc(torch.relu(self.proj(self.f(x))))

    class Heads(nn.Module):
        """Two heads; the card's output picks the 2-wide one, the last Linear is 3-wide."""
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.size = nn.Linear(8, 2)
            self.kind = nn.Linear(8, 3)
        def forward(self, x):
            h = self.f(x)
            return {"kind": self.kind(h), "size": self.size(h)}
    '''
)

CARDS = {
    "convhead_two_labels": 'arch = "models.py:ConvHead"\nlabels = ["neg", "pos"]\n',
    "binary_num_classes_2": 'arch = "models.py:Binary"\nnum_classes = 2\n',
    "head_before_last_linear": 'arch = "models.py:LateProj"\n',
    "output_picks_narrower_head": 'arch = "models.py:Heads"\noutput = "size"\n',
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "models.py").write_text(MODELS)
    for name, text in CARDS.items():
        (tmp_path / f"{name}.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("card", list(CARDS))
def test_width_check_accepts_legitimate_models(project: Path, card: str) -> None:
    """Each of these explained fine at bc8c048; a5eb733's width check refuses them with
    "gave N outputs, but its card says M ..." although the card never said M."""
    m = seewhy.load_model(project / f"{card}.toml")
    seewhy.explain(m, torch.rand(2, 3, 32, 32), ["saliency"])


def test_torchscript_single_logit_with_two_labels(tmp_path: Path) -> None:
    """`-m torchscript:FILE --labels neg,pos` on a one-logit binary model (README: a single
    output is binary, labels [negative, positive]) worked at bc8c048, refused now."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    x = torch.rand(2, 3, 32, 32)
    torch.jit.trace(net.eval(), x[:1]).save(str(tmp_path / "bin.pt"))
    m = seewhy.load_model(f"torchscript:{tmp_path / 'bin.pt'}", labels=["neg", "pos"])
    seewhy.explain(m, x, ["saliency"])


def test_combined_figure_does_not_call_magnitudes_raises_and_lowers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saliency word scores are magnitudes (a5eb733); the token figure's title says
    'magnitude', but the combined figure labels the same bars 'red raises, blue lowers'."""
    from cli_runner import invoke
    from PIL import Image

    import seewhy.render.figures as figures
    from multimodal_models import tokenizer_path

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "img0.png")
    mm = (Path(__file__).resolve().parents[1] / "multimodal_models.py").as_posix()
    (tmp_path / "imgtext.toml").write_text(
        f'arch = "{mm}:ImageTextNet"\nlabels = ["a", "b", "c"]\n[preprocess]\nsize = 16\n'
        f'[inputs]\nimage = "pixel_values"\n'
        f'text = {{ tokenizer = "{Path(tokenizer_path()).as_posix()}", max_length = 10 }}\n'
    )
    titles: list[str] = []
    build = figures.build_combined_figure

    def spy(**kw):  # type: ignore[no-untyped-def]
        fig = build(**kw)
        titles.extend(ax.get_title() for ax in fig.axes)
        return fig

    monkeypatch.setattr(figures, "build_combined_figure", spy)
    code, out = invoke(
        tmp_path,
        "explain",
        "img0.png",
        "--text",
        "a house by the lake",
        "-m",
        "imgtext.toml",
        "--method",
        "saliency",
        "--out",
        "out",
        "--quiet",
    )
    assert code == 0, out
    words = [t for t in titles if t.startswith("words")]
    assert words and "raises" not in words[0], words


def test_rerun_after_upgrade_reuses_plain_image_results(tmp_path: Path) -> None:
    """A run written before a5eb733 (its requests have no 'inputs'/'output') of a plain image
    model: the same command again recomputes every map, although nothing changed."""
    from cli_runner import invoke
    from PIL import Image

    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "m.toml").write_text('arch = "models.py:LateProj"\nnum_classes = 3\n')
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 90).save(tmp_path / "img0.png")
    args = (
        "explain",
        "img0.png",
        "-m",
        "m.toml",
        "--method",
        "saliency",
        "--out",
        "out",
        "--quiet",
    )
    code, out = invoke(tmp_path, *args)
    assert code == 0, out
    summary = tmp_path / "out" / "summary.json"
    s = json.loads(summary.read_text())
    for r in s["results"]:  # what the previous release wrote
        r["request"].pop("inputs", None), r["request"].pop("output", None)
    summary.write_text(json.dumps(s))
    npy = tmp_path / "out" / s["results"][0]["attributions"][0]["map"]
    before = npy.stat().st_mtime_ns
    code, out = invoke(tmp_path, *args)
    assert code == 0 and npy.stat().st_mtime_ns == before
