"""`seewhy explain` on image+text and image+tabular models from cards: --text, --text-col, the
manifest's tabular columns; summary.json read back (tokens, words, features, modality shares),
token figures, reruns, and bad input (exit 2, or one sample failing alone)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import invoke
from PIL import Image

from multimodal_models import tokenizer_path
from seewhy import explain, load_model
from seewhy.data.summary import validate_summary

MODELS = Path(__file__).resolve().parents[1] / "multimodal_models.py"


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for i in range(3):
        _image(tmp_path / f"img{i}.png", i)
    (tmp_path / "imgtext.toml").write_text(
        f'arch = "{MODELS.as_posix()}:ImageTextNet"\n'
        'labels = ["a", "b", "c"]\n'
        "[preprocess]\nsize = 16\n"
        "[inputs]\n"
        'image = "pixel_values"\n'
        f'text = {{ tokenizer = "{Path(tokenizer_path()).as_posix()}", max_length = 10 }}\n'
    )
    (tmp_path / "fusion.toml").write_text(
        f'arch = "{MODELS.as_posix()}:ImageTabularNet"\n'
        'task = "regression"\nlabels = ["price"]\n'
        "[preprocess]\nsize = 16\n"
        "[inputs]\n"
        'tabular = { arg = "features", columns = ["sqft", "grade", "water"], '
        "mean = [1000.0, 5.0, 0.0], std = [500.0, 2.0, 1.0] }\n"
    )
    rows = [
        {
            "id": "h0",
            "image_path": "img0.png",
            "sqft": 1500,
            "grade": 7,
            "water": 1,
            "caption": "a house by the lake with a long garden",
        },
        {
            "id": "h1",
            "image_path": "img1.png",
            "sqft": 700,
            "grade": 3,
            "water": 0,
            "caption": "small flat",
        },
        {
            "id": "h2",
            "image_path": "img2.png",
            "sqft": 900,
            "grade": "high",
            "water": 0,
            "caption": "a flat",
        },
    ]
    with (tmp_path / "houses.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path


def _result(summary: dict, sample: str, model: str) -> dict:  # type: ignore[type-arg]
    (r,) = [x for x in summary["results"] if x["sample"] == sample and x["model"] == model]
    return r  # type: ignore[no-any-return]


def test_image_and_text_from_the_command_line(folder: Path) -> None:
    code, out = invoke(
        folder,
        "explain",
        "img0.png",
        "img1.png",
        "--text",
        "a red fracture near the border",
        "-m",
        "imgtext.toml",
        "--method",
        "ig(steps=8),gradcam",
        "--out",
        "out",
        "--quiet",
    )
    assert code == 0, out
    summary = json.loads((folder / "out" / "summary.json").read_text())
    assert validate_summary(summary) == []
    r = _result(summary, "img0", "imgtext")
    ig, cam = r["attributions"]
    assert [w["word"] for w in ig["words"]] == ["a", "red", "fracture", "near", "the", "border"]
    assert [t["token"] for t in ig["tokens"]] == ["a", "red", "fracture", "near", "the", "border"]
    assert set(ig["modality_share"]) == {"image", "text"}
    assert sum(ig["modality_share"].values()) == pytest.approx(1.0)
    assert (folder / "out" / ig["tokens_figure"]).is_file()
    assert ig["tokens_figure"].endswith("imgtext__ig__tokens.png")
    assert "words" not in cam and "modality_share" not in cam
    assert r["text"] == {"truncated": False, "max_length": 10}
    # the same numbers as seewhy.explain on the same inputs
    model = load_model(folder / "imgtext.toml", device="cpu")
    (e,) = explain(
        model,
        {"image": [folder / "img0.png"], "text": ["a red fracture near the border"]},
        ["ig(steps=8)"],
        sample_ids=["img0"],
    )
    assert [w["score"] for w in ig["words"]] == pytest.approx(
        [w["score"] for w in e.per_sample["words"][0]], abs=1e-5
    )
    # a rerun with another text recomputes; with the same text it reuses
    before = (folder / "out" / ig["map"]).stat().st_mtime_ns
    code, _ = invoke(
        folder,
        "explain",
        "img0.png",
        "img1.png",
        "--text",
        "a red fracture near the border",
        "-m",
        "imgtext.toml",
        "--method",
        "ig(steps=8),gradcam",
        "--out",
        "out",
        "--quiet",
    )
    assert code == 0 and (folder / "out" / ig["map"]).stat().st_mtime_ns == before
    code, _ = invoke(
        folder,
        "explain",
        "img0.png",
        "--text",
        "the quick brown fox jumps over the lazy dog again",
        "-m",
        "imgtext.toml",
        "--method",
        "ig(steps=8)",
        "--out",
        "out",
        "--quiet",
    )
    assert code == 0
    summary = json.loads((folder / "out" / "summary.json").read_text())
    r = _result(summary, "img0", "imgtext")
    assert r["text"]["truncated"] is True  # 11 words + [CLS]/[SEP] > 10 tokens
    assert [w["word"] for w in r["attributions"][0]["words"]][:3] == ["the", "quick", "brown"]


def test_text_column_and_tabular_columns_from_a_manifest(folder: Path) -> None:
    code, out = invoke(
        folder,
        "explain",
        "--data",
        "houses.csv",
        "-m",
        "fusion.toml",
        "--method",
        "ig(steps=16)",
        "--target",
        "value",
        "--out",
        "out",
        "--quiet",
    )
    # h2's grade is not a number: it fails alone, the others are explained
    assert code == 1, out
    errors = [json.loads(x) for x in (folder / "out" / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["h2"]
    assert errors[0]["reason"].startswith("sample h2: column 'grade' = 'high' is not a number")
    assert "grade" in errors[0]["reason"] and "not a number" in errors[0]["reason"]
    summary = json.loads((folder / "out" / "summary.json").read_text())
    r = _result(summary, "h0", "fusion")
    (ig,) = r["attributions"]
    assert [f["name"] for f in ig["features"]] == ["sqft", "grade", "water"]
    assert [f["value"] for f in ig["features"]] == [1500.0, 7.0, 1.0]
    model = load_model(folder / "fusion.toml", device="cpu")
    (e,) = explain(
        model,
        {"image": [folder / "img0.png"], "tabular": [{"sqft": 1500, "grade": 7, "water": 1}]},
        ["ig(steps=16)"],
        target="value",
    )
    assert [f["score"] for f in ig["features"]] == pytest.approx(
        e.attributions["tabular"][0].tolist(), abs=1e-5
    )
    assert set(ig["modality_share"]) == {"image", "tabular"}
    assert ig["features_figure"].endswith("fusion__ig__features.png")
    assert ig["combined_figure"].endswith("fusion__ig__combined.png")
    assert (folder / "out" / ig["combined_figure"]).is_file()
    assert (folder / "out" / ig["features_figure"]).is_file()
    assert "sqft" in (folder / "out" / "report.html").read_text()


def test_bad_multimodal_input_exits_2_with_the_fix(folder: Path) -> None:
    code, out = invoke(
        folder, "explain", "img0.png", "-m", "imgtext.toml", "--method", "ig", "--out", "o1"
    )
    assert code == 2 and "takes text" in out and "--text" in out
    code, out = invoke(
        folder,
        "explain",
        "--data",
        "houses.csv",
        "--text-col",
        "captions",
        "-m",
        "imgtext.toml",
        "--out",
        "o2",
    )
    assert code == 2 and "no column 'captions'" in out and "did you mean 'caption'" in out
    bad = folder / "bad.toml"
    bad.write_text(
        (folder / "imgtext.toml")
        .read_text()
        .replace(tokenizer_path(), "/no/tok")
        .replace(Path(tokenizer_path()).as_posix(), "/no/tok")
    )
    code, out = invoke(
        folder, "explain", "img0.png", "--text", "hi", "-m", "bad.toml", "--out", "o3"
    )
    assert code == 2 and "tokenizer /no/tok does not exist" in out
    code, out = invoke(folder, "explain", "img0.png", "-m", "fusion.toml", "--out", "o4")
    assert code == 2 and "tabular column 'sqft'" in out
    wrong = folder / "wrong.toml"
    wrong.write_text((folder / "fusion.toml").read_text().replace('"water"]', '"waterfront"]'))
    code, out = invoke(folder, "explain", "--data", "houses.csv", "-m", "wrong.toml", "--out", "o5")
    assert code == 2 and "'waterfront'" in out and "did you mean 'water'" in out
    code, out = invoke(
        folder,
        "explain",
        "img0.png",
        "--text",
        "x",
        "--text-col",
        "caption",
        "-m",
        "imgtext.toml",
        "--out",
        "o6",
    )
    assert code == 2 and "not both" in out
    assert not any((folder / f"o{i}" / "summary.json").exists() for i in range(1, 7))


def test_teacher_and_student_agree_on_maps_and_word_rankings(folder: Path) -> None:
    card = (folder / "imgtext.toml").read_text()
    (folder / "student.toml").write_text(card.replace(":ImageTextNet", ":student"))
    code, out = invoke(
        folder,
        "explain",
        "img0.png",
        "--text",
        "a red fracture near the border",
        "-m",
        "imgtext.toml",
        "-m",
        "student.toml",
        "--method",
        "ig(steps=8)",
        "--out",
        "out",
        "--quiet",
    )
    assert code == 0, out
    summary = json.loads((folder / "out" / "summary.json").read_text())
    (agreement,) = summary["agreement"]
    scores = []
    for name in ("imgtext", "student"):
        (ig,) = _result(summary, "img0", name)["attributions"]
        scores.append(np.array([w["score"] for w in ig["words"]]))
    ranks = [np.argsort(np.argsort(s)).astype(float) for s in scores]
    rho = np.corrcoef(ranks[0], ranks[1])[0, 1]
    assert agreement["word_rank_correlation"] == pytest.approx(rho, abs=1e-4)
    assert agreement["same_top_word"] == (int(scores[0].argmax()) == int(scores[1].argmax()))
    assert "rank_correlation" in agreement  # the image maps' agreement beside it
