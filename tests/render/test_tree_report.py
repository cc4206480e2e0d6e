"""report.html of runs with a tree model (tree-shap), from a hand-built output folder: the
cohort's features table and SHAP figure, the whole table's figure beside the predictions in
the overview, whether the models agree, the image model beside the tree model per cohort, the
explained rows' strongest features in place of a figure link, sample cards without a missing
figure, every value escaped; a summary without these fields renders as before."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_dataset_report import build_output
from test_report_browser import run_chromium

from seewhy.render.report import render_report

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
MINUS = "\u2212"
ROWS = {
    "t001": {"truth": 300.0, "tiles": 310.0, "prices": 312.5},
    "t002": {"truth": 500.0, "tiles": 480.0, "prices": 470.25},
    "t003": {"truth": 120.0, "tiles": 130.0, "prices": 118.0},
}
FEATURES = {  # per row: (name, value, SHAP)
    "t001": [("water_frac", 0.31, 41.2), ("sqft", 1800.0, 12.0), ("road_frac", 0.2, -9.1)],
    "t002": [("sqft", 2600.0, 160.0), (EVIL, 1.0, -0.004), ("water_frac", 0.05, 60.25)],
    "t003": [("road_frac", 0.5, -131.0), ("sqft", 900.0, 0.5)],
}


def png(path: Path, size: tuple[int, int], rgb: tuple[int, int, int]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.full((h, w, 3), rgb, np.uint8)).save(path)
    return path.read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tree_result(sid: str) -> dict[str, Any]:
    return {
        "sample": sid,
        "model": "prices",
        "prediction": {"value": ROWS[sid]["prices"]},
        "explained": "value",
        "attributions": [
            {
                "method": "tree-shap",
                "features": [{"name": n, "value": v, "score": s} for n, v, s in FEATURES[sid]],
                "expected_value": 250.0,
                "algorithm": "tree_path_dependent",
                "background": 0,
            }
        ],
    }


def build_tree_output(out: Path) -> dict[str, bytes]:
    """A dataset run of an image model (tiles) and a tree model (prices) on three rows, with
    the fields the job side writes for tree models (schema seewhy/1)."""
    pictures = {
        "tiles_overview": png(out / "overview/tiles__predictions.png", (50, 30), (255, 140, 0)),
        "prices_overview": png(out / "overview/prices__predictions.png", (40, 30), (0, 255, 0)),
        "importance": png(out / "overview/prices__tree-shap.png", (60, 30), (255, 0, 255)),
        "cohort": png(out / "cohorts/prices__tree-shap__top.png", (70, 30), (0, 200, 255)),
    }
    for sid in ROWS:
        png(out / f"figures/{sid}/tiles__gradcam.png", (20, 10), (10, 10, 10))
    summary = {
        "schema": "seewhy/1",
        "models": [
            {"name": "tiles", "arch": "resnet18", "task": "regression", "layer": "layer4"},
            {
                "name": "prices",
                "arch": "lightgbm:prices.txt",
                "kind": "tree",
                "task": "regression",
                "labels": ["price"],
                "columns": ["sqft", "water_frac", "road_frac", EVIL],
                "checkpoint": "/abs/prices.txt",
            },
        ],
        "samples": [
            {"id": sid, "image_path": f"img/{sid}.png", "target": r["truth"]}
            for sid, r in ROWS.items()
        ],
        "results": [
            *(
                {
                    "sample": sid,
                    "model": "tiles",
                    "prediction": {"value": r["tiles"]},
                    "explained": "value",
                    "attributions": [
                        {
                            "method": "gradcam",
                            "map": f"maps/{sid}/tiles__gradcam.npy",
                            "figure": f"figures/{sid}/tiles__gradcam.png",
                        }
                    ],
                }
                for sid, r in ROWS.items()
            ),
            *(tree_result(sid) for sid in ROWS),
        ],
        "agreement": [],
        "checks": [],
        "cohorts": [
            {
                "name": "top",
                "title": "top decile of true price",
                "model": "prices",
                "method": "tree-shap",
                "sample_ids": ["t002", "t001"],
                "members": [
                    {"id": "t002", "target": 500.0, "prediction": 470.25, "residual": -29.75},
                    {"id": "t001", "target": 300.0, "prediction": 312.5, "residual": 12.5},
                ],
                "explained": 12,
                "features": [
                    {"name": "water_frac", "score": 41.2, "abs_score": 48.5},
                    {"name": "road_frac", "score": -9.1, "abs_score": 20.04},
                    {"name": EVIL, "score": -0.0042, "abs_score": 0.0042},
                ],
                "figure": "cohorts/prices__tree-shap__top.png",
            }
        ],
        "side_by_side": [
            {
                "cohort": "top",
                "title": "top decile of true price",
                "rows": 12,
                "image": {
                    "model": "tiles",
                    "method": "gradcam",
                    "region_share": {"water": 0.6, "road": 0.1, "soil": 0.3},
                    "region_share_lower": {"water": 0.05, "road": 0.7, "soil": 0.25},
                    "region_area": {"water": 0.2, "road": 0.3, "soil": 0.5},
                    "description": "top decile of true price: water raises price",
                },
                "tree": {
                    "model": "prices",
                    "method": "tree-shap",
                    "features": [
                        {"name": "water_frac", "score": 41.2, "abs_score": 48.5},
                        {"name": EVIL, "score": -9.1, "abs_score": 20.04},
                    ],
                },
                "agreement": {"rows": 12, "mean_abs_difference": 3.1, "correlation": 0.93},
            },
            {
                "cohort": "cheap",
                "title": f"cheap {EVIL}",
                "rows": 12,
                "image": {"model": "tiles", "method": "gradcam", "description": f"soil {EVIL}"},
                "tree": {"model": "prices", "method": "tree-shap", "features": []},
                "agreement": {"rows": 12, "same_prediction": 0.83},
            },
            {
                "cohort": "bottom",
                "rows": 5,
                "image": {"model": "tiles", "method": "gradcam"},
                "tree": {
                    "model": "prices",
                    "method": "tree-shap",
                    "features": [{"name": "sqft", "score": 0.0123, "abs_score": 1234.5}],
                },
                "agreement": {"rows": 5, "mean_abs_difference": 0.5, "correlation": None},
            },
        ],
        "prediction_agreement": [
            {
                "models": ["tiles", "prices"],
                "rows": 200,
                "mean_abs_difference": 4.2,
                "correlation": 0.91,
            },
            {"models": ["a", EVIL], "rows": 10, "same_prediction": 0.9},
        ],
        "dataset": {
            "rows": 200,
            "predicted": 200,
            "explained": 3,
            "failed": 0,
            "explain": "cohorts",
            "predictions": "predictions.csv",
            "overview": {
                "tiles": "overview/tiles__predictions.png",
                "prices": "overview/prices__predictions.png",
            },
            "importance": {"prices": "overview/prices__tree-shap.png"},
            "importance_rows": {"prices": 200},
        },
        "metrics": {"tiles": {"rows": 200, "r2": 0.8}, "prices": {"rows": 200, "r2": 0.9}},
    }
    (out / "predictions.csv").write_text("id,model,prediction\n")
    (out / "summary.json").write_text(json.dumps(summary))
    return pictures


@pytest.fixture(scope="module")
def tree_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("tree")
    pictures = build_tree_output(out)
    html = render_report(out).read_text(encoding="utf-8")
    return {"out": out, "html": html, "pictures": pictures}


def section(html: str, anchor: str) -> str:
    """The page from the element with id ``anchor`` up to the next h2 or section."""
    start = html.index(f"id='{anchor}'")
    ends = [html.find(m, start + 1) for m in ("<h2 ", "<section ")]
    return html[start : min([e for e in ends if e > 0] or [len(html)])]


class Tables(HTMLParser):
    """Every table of a piece of the page: its headers and its rows, each cell as
    ``(text, classes, link)``."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self.cell: list[Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self.tables.append({"headers": [], "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self.cell = [tag, "", found.get("class") or "", None]
        elif tag == "span" and self.cell is not None:
            self.cell[2] += f" {found.get('class')}"
        elif tag == "a" and self.cell is not None:
            self.cell[3] = found.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            kind, text, classes, href = self.cell
            if kind == "th":
                self.tables[-1]["headers"].append(text)
            else:
                self.tables[-1]["rows"][-1].append((text, classes.strip(), href))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell[1] += data


def tables(part: str) -> list[dict[str, Any]]:
    parser = Tables()
    parser.feed(part)
    for t in parser.tables:
        t["rows"] = [r for r in t["rows"] if r]  # the header row
    return parser.tables


def texts(table: dict[str, Any]) -> list[list[str]]:
    return [[text for text, _, _ in row] for row in table["rows"]]


def test_the_tree_cohort_shows_its_features_figure_and_members_without_a_gallery(
    tree_report: dict[str, Any],
) -> None:
    part = section(tree_report["html"], "cohort-0")
    assert "<h3>top decile of true price</h3>" in part
    assert "cohort top · model prices · method tree-shap · 2 member(s) · 12 explained" in part
    assert "class='gallery'" not in part and "class='thumb'" not in part
    features, members = tables(part)
    assert features["headers"] == ["feature", "mean SHAP", "mean |SHAP|"]
    # signed mean SHAP coloured by sign, mean |SHAP| beside it; largest mean |SHAP| first
    assert features["rows"] == [
        [("water_frac", "", None), ("+41.2", "num raises", None), ("48.5", "num", None)],
        [("road_frac", "", None), (f"{MINUS}9.1", "num lowers", None), ("20.0", "num", None)],
        [(EVIL, "", None), (f"{MINUS}0.0042", "num lowers", None), ("0.0042", "num", None)],
    ]
    assert members["headers"] == ["id", "target", "prediction", "residual"]
    assert texts(members) == [
        ["t002", "500", "470.25", "-29.75"],
        ["t001", "300", "312.5", "12.5"],
    ]
    uri = f"data:image/png;base64,{b64(tree_report['pictures']['cohort'])}"
    assert (
        f"<figure><img alt='top decile of true price: what drives prices over 12 explained "
        f"row(s)' src='{uri}'>"
    ) in part
    # the index row of the cohort counts its members
    index = tables(section(tree_report["html"], "cohorts"))[0]
    assert texts(index) == [["top decile of true price", "prices", "tree-shap", "2", "-"]]


def test_the_overview_shows_what_drives_the_tree_model_beside_its_predictions(
    tree_report: dict[str, Any],
) -> None:
    part = section(tree_report["html"], "overview")
    pics = tree_report["pictures"]
    # the image model's figure alone; the tree model's two side by side
    assert (
        f"<div class='extra'><figure><img alt='tiles: predictions over the dataset' "
        f"src='data:image/png;base64,{b64(pics['tiles_overview'])}'>"
    ) in part
    beside = re.findall(r"<div class='beside'>(.*?)</div></div>", part)
    assert len(beside) == 1
    alts = re.findall(r"<img alt='([^']*)' src='data:image/png;base64,([^']*)'", beside[0])
    assert alts == [
        ("prices: predictions over the dataset", b64(pics["prices_overview"])),
        ("what drives prices over 200 rows", b64(pics["importance"])),
    ]
    assert "<figcaption>what drives prices over 200 rows</figcaption>" in beside[0]


def test_do_the_models_agree_is_a_table_in_the_overview(tree_report: dict[str, Any]) -> None:
    part = section(tree_report["html"], "overview")
    assert "<h3>Do the models agree?</h3>" in part
    agree = next(t for t in tables(part) if t["headers"][0] == "models")
    assert agree["headers"] == [
        "models",
        "rows",
        "mean |difference|",
        "correlation",
        "same prediction",
    ]
    assert agree["rows"] == [
        [
            ("tiles vs prices", "", None),
            ("200", "num", None),
            ("4.2", "num", None),
            ("0.91", "num", None),
            ("-", "", None),
        ],
        [
            (f"a vs {EVIL}", "", None),
            ("10", "num", None),
            ("-", "", None),
            ("-", "", None),
            ("90%", "num", None),
        ],
    ]


def test_side_by_side_blocks_show_both_models_and_their_agreement(
    tree_report: dict[str, Any],
) -> None:
    html = tree_report["html"]
    assert "<h2 id='side-by-side'>Image model beside tree model</h2>" in html
    assert "<li><a href='#side-by-side'>Image model beside tree model</a></li>" in html
    first = section(html, "pair-0")
    assert "<h3>top decile of true price</h3>" in first
    assert "<p>top decile of true price: water raises price</p>" in first
    regions, features = tables(first)
    assert regions["headers"][0] == "class" and features["headers"][0] == "feature"
    assert texts(regions) == [  # largest share of what raises first; raises ÷ area last
        ["water", "0.6", "0.05", "0.2", "3"],
        ["soil", "0.3", "0.25", "0.5", "0.6"],
        ["road", "0.1", "0.7", "0.3", "0.333"],
    ]
    assert texts(features) == [
        ["water_frac", "+41.2", "48.5"],
        [EVIL, f"{MINUS}9.1", "20.0"],
    ]
    # the image model on the left, the tree model on the right, the agreement under both
    assert first.index("<b>tiles</b>") < first.index("<b>prices</b>")
    agreement = (
        "<p>the two models&#x27; predictions on these 12 rows: mean |difference| 3.1, "
        "correlation 0.93</p>"
    )
    assert agreement in first and first.index(agreement) > first.rindex("</table>")

    second = section(html, "pair-1")
    assert f"<h3>cheap {ESCAPED}</h3>" in second and f"<p>soil {ESCAPED}</p>" in second
    assert "no region maps" not in second and tables(second) == []
    assert "no features recorded" in second
    assert "<p>same prediction on 83% of 12 rows</p>" in second

    third = section(html, "pair-2")
    assert "<h3>bottom</h3>" in third and "<p class='muted'>no region maps</p>" in third
    assert texts(tables(third)[0]) == [["sqft", "+0.0123", "1234.5"]]
    assert "mean |difference| 0.5, correlation not defined</p>" in third


def test_tree_rows_list_their_top_features_and_link_nothing(tree_report: dict[str, Any]) -> None:
    table = tables(section(tree_report["html"], "explained"))[0]
    assert table["headers"][-1] == "figure / top features"
    rows = {(r[0][0], r[1][0]): r for r in table["rows"]}
    assert len(rows) == 6
    assert rows[("t001", "prices")] == [
        ("t001", "", None),
        ("prices", "", None),
        ("tree-shap", "", None),
        ("300", "num", None),
        ("312.5", "num", None),
        ("12.5", "num", None),
        (f"water_frac +41.2, sqft +12.0, road_frac {MINUS}9.1", "", None),
    ]
    assert rows[("t002", "prices")][-1] == (
        f"sqft +160.0, water_frac +60.2, {EVIL} {MINUS}0.004",
        "",
        None,
    )
    assert rows[("t003", "prices")][-1] == (f"road_frac {MINUS}131.0, sqft +0.5", "", None)
    # the image model's rows still link their figures
    assert rows[("t001", "tiles")][-1] == ("figure", "", "figures/t001/tiles__gradcam.png")
    assert all(r[-1][2] is None for (_, model), r in rows.items() if model == "prices")


def test_everything_is_escaped_and_nothing_is_missing(tree_report: dict[str, Any]) -> None:
    html = tree_report["html"]
    assert EVIL not in html and html.count("<script") == 1  # only the inline sort script
    assert ESCAPED in section(html, "cohort-0") and ESCAPED in section(html, "explained")
    assert "figure missing" not in html
    # the tree model's kind and columns in the models table
    models = tables(section(html, "models"))[0]
    assert models["headers"][-1] == "more"
    assert texts(models)[1][-1] == f"kind: tree, columns: sqft, water_frac, road_frac, {EVIL}"


def test_an_explain_report_shows_a_tree_result_without_a_missing_figure(tmp_path: Path) -> None:
    build_tree_output(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("dataset", "metrics", "side_by_side", "prediction_agreement", "cohorts"):
        del summary[key]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    html = render_report(tmp_path).read_text(encoding="utf-8")
    card = section(html, "sample-0")
    assert "<h4>prices: value 312.5 <span class='muted'>(explained: value)</span></h4>" in card
    assert (
        "<p class='muted'>base value (the model&#x27;s mean output) 250 · algorithm "
        "tree_path_dependent</p>"
    ) in card
    features = tables(card)[-1]
    assert features["headers"] == ["feature", "value", "score"]
    assert texts(features) == [
        ["water_frac", "0.31", "41.2"],
        ["sqft", "1800", "12"],
        ["road_frac", "0.2", "-9.1"],
    ]
    assert "figure missing" not in html and html.count("<img") == 3  # the image model's
    assert EVIL not in html


def test_a_summary_without_the_tree_fields_renders_as_before(tmp_path: Path) -> None:
    build_output(tmp_path)  # test_dataset_report's image-model run
    html = render_report(tmp_path).read_text(encoding="utf-8")
    assert re.findall(r"<h2 id='([^']*)'", html) == [
        "overview",
        "models",
        "errors",
        "cohorts",
        "explained",
    ]
    for new in ("side-by-side", "Do the models agree?", "class='beside'", "top features"):
        assert new not in html
    assert "<th>figure</th></tr>" in html
    assert "cohort top · model m · method gradcam · 3 member(s)</p>" in html
    assert "<p class='muted'>features: mean attribution over the members</p>" in html
    assert "<a href='figures/row10/m__gradcam.png'>figure</a>" in html


PROBE = """<script>
window.addEventListener("load", function () {
  var table = document.querySelector("#cohort-0 .extra table");
  var head = Array.prototype.filter.call(table.rows[0].cells, function (h) {
    return h.textContent === "mean SHAP";
  })[0];
  head.click();
  var order = Array.prototype.slice.call(table.rows, 1).map(function (r) {
    return r.cells[1].textContent;
  });
  document.getElementById("probe").textContent = JSON.stringify(order);
});
</script>
<pre id="probe">not run</pre>
"""


def test_the_sort_script_reads_minus_signs_as_negative(tree_report: dict[str, Any]) -> None:
    out = tree_report["out"]
    harness = out / "probe.html"
    harness.write_text(tree_report["html"].replace("</body>", PROBE + "</body>"), "utf-8")
    done = run_chromium(
        out / "profile", "--virtual-time-budget=3000", "--dump-dom", harness.as_uri()
    )
    found = re.search(r'<pre id="probe">([^<]*)</pre>', done.stdout)
    assert found is not None
    assert json.loads(found.group(1)) == [f"{MINUS}9.1", f"{MINUS}0.0042", "+41.2"]
