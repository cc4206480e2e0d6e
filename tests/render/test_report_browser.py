"""report.html in a real browser: headless Chromium parses it, shows its figures, runs only
its own sort script.

The figures are solid, saturated colours no other part of the page uses, so a screenshot shows
where each one was drawn, and how large, to the pixel. Skips only where no Chromium is installed
(``make test`` installs Debian's ``chromium`` when it can).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.render.report import render_report

EVIL = "<script>alert(1)</script>"
TIMEOUT_S = 60
WINDOW = (1280, 2400)
GREEN, MAGENTA, CYAN = (0, 255, 0), (255, 0, 255), (0, 200, 255)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium binary on PATH (`make test` installs Debian's chromium when it can)")


def run_chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",  # its own profile: xdist workers do not share one
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Dom(HTMLParser):
    """The <img> elements, <script> elements and visible text of a serialized DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "script":
            self.scripts += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def solid(path: Path, size: tuple[int, int], rgb: tuple[int, int, int]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.full((h, w, 3), rgb, np.uint8)).save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A report with two solid figures (inlined as PNG), one noisy one (inlined as WebP) and
    one that is missing; every label is a script tag."""
    out = tmp_path_factory.mktemp("report")
    green = solid(out / "figures/s1/m__gradcam.png", (200, 120), GREEN)
    magenta = solid(out / "figures/s1/m__ig.png", (160, 100), MAGENTA)
    # cyan with grain in green: PNG cannot pack it, so it goes in as a lossy WebP
    grain = np.random.default_rng(0).integers(0, 16, (300, 400))
    noisy = np.zeros((300, 400, 3), np.uint8)
    noisy[..., 1] = 192 + grain
    noisy[..., 2] = 255
    Image.fromarray(noisy).save(out / "figures/s1/m__noisy.png")
    summary = {
        "schema": "seewhy/1",
        "models": [{"name": EVIL, "arch": "a", "task": "classification", "layer": "l"}],
        "samples": [{"id": "s1", "image_path": "s1.png"}],
        "results": [
            {
                "sample": "s1",
                "model": EVIL,
                "prediction": {"label": "fracture", "index": 0, "score": 0.875},
                "explained": "fracture",
                "attributions": [
                    {"method": "gradcam", "figure": "figures/s1/m__gradcam.png"},
                    {"method": "ig", "figure": "figures/s1/m__ig.png"},
                    {"method": "noisy", "figure": "figures/s1/m__noisy.png"},
                    {"method": "gone", "figure": "figures/s1/m__gone.png"},
                ],
            }
        ],
        "agreement": [],
        "checks": [],
        "cohorts": [],
    }
    (out / "summary.json").write_text(json.dumps(summary))
    path = render_report(out)
    return {"path": path, "out": out, "green": green, "magenta": magenta}


def test_the_browser_sees_every_figure_as_a_data_uri_and_only_the_sort_script(
    report: dict[str, Any], tmp_path: Path
) -> None:
    done = run_chromium(tmp_path / "profile", "--dump-dom", report["path"].as_uri())
    dom = Dom()
    dom.feed(done.stdout)
    # the page's inline sort script only: the script tags in the data are text, not elements
    assert dom.scripts == 1
    text = "".join(dom.text)
    # models table, card table, h4, three figure captions and the missing figure's caption
    assert text.count(EVIL) == 7
    assert "fracture (0.88)" in text and "1 figure(s) missing" in text
    assert "figure missing: figures/s1/m__gone.png (file not found)" in text
    srcs = [str(img.get("src")) for img in dom.images]
    assert [img.get("alt") for img in dom.images] == [
        f"s1 · {EVIL} · gradcam",
        f"s1 · {EVIL} · ig",
        f"s1 · {EVIL} · noisy",
    ]
    assert srcs[0] == "data:image/png;base64," + base64.b64encode(report["green"]).decode()
    assert srcs[1] == "data:image/png;base64," + base64.b64encode(report["magenta"]).decode()
    assert srcs[2].startswith("data:image/webp;base64,")


def test_the_figures_render_at_their_size_in_page_order(
    report: dict[str, Any], tmp_path: Path
) -> None:
    shot = tmp_path / "shot.png"
    run_chromium(
        tmp_path / "profile",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={shot}",
        report["path"].as_uri(),
    )
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB")).astype(int)
    assert pixels.shape == (WINDOW[1], WINDOW[0], 3)

    def drawn(mask: np.ndarray) -> tuple[int, int, int, int, int]:
        """(pixels, left, top, width, height) of where ``mask`` is true."""
        assert mask.any(), "figure not drawn"
        ys, xs = np.nonzero(mask)
        box = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        return int(mask.sum()), *(int(v) for v in box)

    def near(rgb: tuple[int, int, int], tol: int) -> np.ndarray:
        return np.all(np.abs(pixels - np.array(rgb)) <= tol, axis=-1)

    # the two PNGs: every pixel of each, exactly the figure's size, nothing else that colour
    g_count, g_left, g_top, g_w, g_h = drawn(near(GREEN, 8))
    m_count, m_left, m_top, m_w, m_h = drawn(near(MAGENTA, 8))
    assert (g_count, g_w, g_h) == (200 * 120, 200, 120)
    assert (m_count, m_w, m_h) == (160 * 100, 160, 100)
    # the WebP: lossy, so its colour within the grain's range
    cyan = (pixels[..., 0] < 40) & (pixels[..., 1] >= 170) & (pixels[..., 2] > 225)
    c_count, c_left, c_top, c_w, c_h = drawn(cyan)
    assert (c_w, c_h) == (400, 300) and c_count >= 0.99 * 400 * 300
    # one under the other, left-aligned in the card, in the summary's order
    assert g_left == m_left == c_left > 0
    assert g_top + g_h < m_top < m_top + m_h < c_top
    # and the page around them is mostly background
    assert near((255, 255, 255), 0).mean() > 0.5
