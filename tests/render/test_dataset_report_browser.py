"""A dataset run's report.html in headless Chromium: its images decode and show at their size,
the thumbnails link the full figures, and the report's own sort script orders the tables when a
header is clicked (numbers as numbers, text as text, "-" last, a second click descending).

The clicks need the page's script to run: the test copies report.html beside it with a probe
script appended (after the report's own), which clicks headers on load and writes what it saw
into a <pre> that ``--dump-dom`` prints. Skips only where no Chromium is installed.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from test_dataset_report import EVIL, THUMB_SOURCE, build_output
from test_report_browser import Dom, run_chromium

from seewhy.render import report
from seewhy.render.report import render_report

PROBE = """<script>
window.addEventListener("load", function () {
  var out = {};
  try {
    out.scripts = document.scripts.length;
    out.images = Array.prototype.map.call(document.images, function (img) {
      var link = img.closest("a"), box = img.getBoundingClientRect();
      return {alt: img.alt, complete: img.complete, w: img.naturalWidth, h: img.naturalHeight,
              shown: [Math.round(box.width), Math.round(box.height)],
              href: link ? link.href : null};
    });
    function probe(table, key) {
      var heads = Array.prototype.slice.call(table.rows[0].cells);
      function column() {
        return Array.prototype.slice.call(table.rows, 1).map(function (r) {
          return r.cells[key].textContent;
        });
      }
      var seen = {classes: heads.map(function (h) { return h.className; }), before: column()};
      return {
        click: function (name) {
          var th = heads.filter(function (h) { return h.textContent === name; })[0];
          th.click();
          return {order: column(), sort: heads.map(function (h) {
            return h.getAttribute("aria-sort");
          })};
        },
        seen: seen
      };
    }
    var rows = probe(document.querySelector("#explained ~ table"), 0);
    out.explained = rows.seen;
    out.truthAsc = rows.click("truth");
    out.truthDesc = rows.click("truth");
    out.residualAsc = rows.click("residual");
    out.idAsc = rows.click("id");
    out.idDesc = rows.click("id");
    var regions = probe(document.querySelector("#cohort-0 .extra table"), 0);
    out.ratioAsc = regions.click("raises ÷ area");
    out.ratioDesc = regions.click("raises ÷ area");
    out.classAsc = regions.click("class");
  } catch (e) {
    out.error = String(e) + " " + e.stack;
  }
  document.getElementById("probe").textContent = JSON.stringify(out);
});
</script>
<pre id="probe">not run</pre>
"""


class Probe(HTMLParser):
    """The text of <pre id="probe"> in a serialized DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.inside = tag == "pre" and ("id", "probe") in attrs

    def handle_endtag(self, tag: str) -> None:
        self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the probe saw in the dataset report, and the folder."""
    out = tmp_path_factory.mktemp("dataset-browser")
    build_output(out)
    html = render_report(out).read_text(encoding="utf-8")
    harness = out / "probe.html"  # beside report.html: the same relative links
    harness.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = run_chromium(
        tmp_path_factory.mktemp("profile"),
        "--window-size=1280,2000",
        "--virtual-time-budget=5000",
        "--dump-dom",
        harness.as_uri(),
    )
    probe = Probe()
    probe.feed(done.stdout)
    result = json.loads(probe.text)
    assert "error" not in result, result["error"]
    dom = Dom()
    dom.feed(done.stdout)
    return result | {"out": out, "text": "".join(dom.text)}


def test_the_images_decode_and_show_at_their_size_with_links_to_the_full_figures(
    seen: dict[str, Any],
) -> None:
    assert seen["scripts"] == 2  # the report's sort script and the probe: the data adds none
    assert EVIL in seen["text"]  # as text
    images = {img["alt"]: img for img in seen["images"]}
    assert all(img["complete"] and img["w"] > 0 for img in seen["images"])
    w, h = report.THUMB_WIDTH, round(THUMB_SOURCE[1] * report.THUMB_WIDTH / THUMB_SOURCE[0])
    out = seen["out"]
    for sid, cohort in (("row9", "top decile of price"), (EVIL, f"highest error {EVIL}")):
        thumb = images[f"{sid} · {cohort}"]
        assert (thumb["w"], thumb["h"]) == (w, h) and thumb["shown"] == [w, h]
        folder = "evil" if sid == EVIL else sid
        assert thumb["href"] == (out / f"figures/{folder}/m__gradcam.png").as_uri()
    real = images["row10 · top decile of price"]
    assert (real["w"], real["h"]) == (w, round(400 * w / 1400)) and real["shown"] == [w, real["h"]]
    overview = images["m: predictions over the dataset"]
    assert (overview["w"], overview["h"]) == (300, 200) and overview["shown"] == [300, 200]
    assert overview["href"] is None  # figures that are not thumbnails are not links
    assert images["top decile of price: mean map of 3 member(s)"]["shown"] == [320, 160]
    # the scheme-like file name is a path in the folder, not a javascript: link
    assert images[f"js · highest error {EVIL}"]["href"] == (out / "javascript:x.png").as_uri()


def test_a_header_click_sorts_numbers_as_numbers_and_a_second_click_reverses(
    seen: dict[str, Any],
) -> None:
    explained = seen["explained"]
    assert set(explained["classes"]) == {"sortable"}  # every header was made sortable
    assert explained["before"] == ["row9", "row10", "row100", EVIL, "row7"]  # results' order
    # truth 98000, 512000, 1.5e+06, 250000 and "-": as text "1.5e+06" would come first
    assert seen["truthAsc"]["order"] == ["row9", EVIL, "row10", "row100", "row7"]
    assert seen["truthAsc"]["sort"][3] == "ascending"
    assert seen["truthDesc"]["order"] == ["row100", "row10", EVIL, "row9", "row7"]  # "-" last
    assert seen["truthDesc"]["sort"][3] == "descending"
    # residual 1000, -14000, -100000, 10000, "-"; the truth header no longer claims an order
    assert seen["residualAsc"]["order"] == ["row100", "row10", "row9", EVIL, "row7"]
    assert seen["residualAsc"]["sort"] == [None, None, None, None, None, "ascending", None]
    # text: digits inside compare as numbers (row9 < row10 < row100)
    ids = [row for row in seen["idAsc"]["order"] if row != EVIL]
    assert ids == ["row7", "row9", "row10", "row100"]
    assert seen["idDesc"]["order"] == seen["idAsc"]["order"][::-1]


def test_the_cohort_region_table_sorts_too(seen: dict[str, Any]) -> None:
    # raises ÷ area: water 2.61, soil 0.6, vegetation 0.25, road 0.714
    assert seen["ratioAsc"]["order"] == ["vegetation", "soil", "road", "water"]
    assert seen["ratioDesc"]["order"] == ["water", "road", "soil", "vegetation"]
    assert seen["classAsc"]["order"] == ["road", "soil", "vegetation", "water"]
