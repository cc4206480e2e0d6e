"""explain's resume and the model: a rerun reuses a result only while the model it came from is
the same (its weights, the file its arch names), and text no model takes is refused up front."""

from __future__ import annotations

import json
import json.decoder
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_runner import invoke
from PIL import Image

from multimodal_models import tokenizer_path
from seewhy.jobs.resume import arch_file

QUIET = ("--quiet", "--no-report")
MODELS = Path(__file__).resolve().parents[1] / "multimodal_models.py"

NETS_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    SEED = 1


    class Net(nn.Module):
        def __init__(self, num_classes=2):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


    def build(num_classes=2):
        torch.manual_seed(SEED)
        return Net(num_classes)
    """
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """tmp_path with cards/nets.py, a card beside it naming it relatively, and an image."""
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "nets.py").write_text(NETS_PY)
    (tmp_path / "cards" / "net.toml").write_text(
        'arch = "nets.py:build"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 24\n'
    )
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((30, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "img0.png")
    return tmp_path


def _result(out: Path) -> dict[str, Any]:
    (result,) = json.loads((out / "summary.json").read_text())["results"]
    return result


def _map(out: Path) -> tuple[np.ndarray, int]:
    """The first map of the one result, and its file's modification time."""
    path = out / _result(out)["attributions"][0]["map"]
    return np.load(path), path.stat().st_mtime_ns


def _explain(folder: Path, model: str, out: str, *more: str) -> None:
    args = ["explain", "img0.png", "-m", model, "--method", "saliency", *more, "--out", out]
    code, output = invoke(folder, *args, *QUIET)
    assert code == 0, output


def test_the_arch_file_is_found_as_the_loader_finds_it() -> None:
    assert arch_file("nets.py:build", "cards/net.toml") == Path("cards/nets.py")
    assert arch_file("nets.py:build", "nets.py:build") == Path("nets.py")
    assert arch_file("torchscript:m/ts.pt", "c/card.TOML") == Path("c/m/ts.pt")
    assert arch_file("torchscript:/abs/ts.pt", "c/card.toml") == Path("/abs/ts.pt")
    assert arch_file("torchscript:ts.pt") == Path("ts.pt")
    for arch in ("timm:resnet18", "torchvision:resnet18", "pkg.module:build", "module"):
        assert arch_file(arch, "card.toml") is None
    # hf:DIR: its config.json, relative to the card's folder as the loader reads it
    assert arch_file("hf:../vit", "cards/net.toml") == Path("cards/../vit/config.json")
    assert arch_file("hf:vit") == Path("vit/config.json")
    # package.module:FACTORY: the module's source file, wherever Python finds it
    assert arch_file("json.decoder:JSONDecoder", "card.toml") == Path(json.decoder.__file__)
    assert arch_file("no_such_pkg_here.nets:build") is None


def test_an_unchanged_factory_model_is_reused_and_its_file_and_weights_recorded(
    folder: Path,
) -> None:
    _explain(folder, "cards/net.toml", "o")
    before, mtime = _map(folder / "o")
    request = _result(folder / "o")["request"]
    assert request["arch_file"][0] == str(Path("cards") / "nets.py")  # the card's folder
    assert request["arch_file"][1] == (folder / "cards" / "nets.py").stat().st_size
    assert len(request["weights"]) == 1
    _explain(folder, "cards/net.toml", "o")
    after, again = _map(folder / "o")
    assert again == mtime  # reused, not recomputed
    np.testing.assert_array_equal(before, after)


def test_editing_the_factory_code_with_the_same_weights_recomputes(folder: Path) -> None:
    _explain(folder, "cards/net.toml", "o")
    nets = folder / "cards" / "nets.py"
    nets.write_text(nets.read_text().replace(".mean(dim=(2, 3))", ".amax(dim=(2, 3))"))
    _explain(folder, "cards/net.toml", "o")
    _explain(folder, "cards/net.toml", "fresh")
    assert (
        _result(folder / "o")["request"]["weights"]
        == _result(folder / "fresh")["request"]["weights"]
    )  # the same weights: the file's stamp alone tells the models apart
    np.testing.assert_allclose(_map(folder / "o")[0], _map(folder / "fresh")[0], rtol=1e-6)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_an_unchanged_torchscript_file_is_reused(folder: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1))
    net = torch.nn.Sequential(net, torch.nn.Flatten()).eval()
    with torch.no_grad():
        torch.jit.trace(net, torch.randn(1, 3, 24, 24)).save(str(folder / "ts.pt"))
    _explain(folder, "torchscript:ts.pt", "o", "--labels", "a,b")
    mtime = _map(folder / "o")[1]
    assert _result(folder / "o")["request"]["arch_file"][0] == "ts.pt"
    _explain(folder, "torchscript:ts.pt", "o", "--labels", "a,b")
    assert _map(folder / "o")[1] == mtime


def test_explain_fingerprints_the_weights_as_the_dataset_job_does(folder: Path) -> None:
    from seewhy import load_model
    from seewhy.jobs import dataset, resume

    assert dataset._weights is resume.weights  # one function: dataset folders keep resuming
    _explain(folder, "cards/net.toml", "o")
    model = load_model(folder / "cards" / "net.toml", device="cpu")
    assert _result(folder / "o")["request"]["weights"] == dataset._weights(model)


def test_text_col_for_image_models_only_is_a_usage_error(folder: Path) -> None:
    (folder / "m.csv").write_text("id,image_path,caption\nr0,img0.png,a red fracture\n")
    code, output = invoke(
        folder, "explain", "--data", "m.csv", "--text-col", "caption", "-m", "cards/net.toml",
        "--out", "o", *QUIET,
    )  # fmt: skip
    lines = [x for x in output.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, output
    assert "--text-col caption" in lines[0] and "no model takes text" in lines[0]
    assert not (folder / "o").exists()  # before any work


def test_dataset_text_col_for_image_models_only_is_a_usage_error(folder: Path) -> None:
    """seewhy dataset ignored --text-col with image-only models (exit 0); it now refuses it
    as explain does (this test failed before)."""
    (folder / "m.csv").write_text("id,image_path,caption\nr0,img0.png,a red fracture\n")
    code, output = invoke(
        folder, "dataset", "m.csv", "--text-col", "caption", "-m", "cards/net.toml",
        "--out", "o", "--workers", "0", *QUIET,
    )  # fmt: skip
    lines = [x for x in output.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, output
    assert "--text-col caption" in lines[0] and "no model takes text" in lines[0]
    assert not (folder / "o").exists()  # before any work


def test_text_goes_to_the_model_that_takes_it_beside_an_image_model(folder: Path) -> None:
    (folder / "imgtext.toml").write_text(
        f'arch = "{MODELS.as_posix()}:ImageTextNet"\n'
        'labels = ["a", "b", "c"]\n'
        "[preprocess]\nsize = 16\n"
        "[inputs]\n"
        'image = "pixel_values"\n'
        f'text = {{ tokenizer = "{Path(tokenizer_path()).as_posix()}", max_length = 10 }}\n'
    )
    # the same size for both: maps of different sizes fail the comparison (a defect of its own)
    card = (folder / "cards" / "net.toml").read_text()
    (folder / "cards" / "net.toml").write_text(card.replace("size = 24", "size = 16"))
    code, output = invoke(
        folder, "explain", "img0.png", "--text", "a red fracture", "-m", "imgtext.toml",
        "-m", "cards/net.toml", "--method", "saliency", "--out", "o", *QUIET,
    )  # fmt: skip
    assert code == 0, output
    summary = json.loads((folder / "o" / "summary.json").read_text())
    results = {r["model"]: r for r in summary["results"]}
    assert set(results) == {"imgtext", "net"}
    assert results["imgtext"]["request"]["text"] == "a red fracture"
    assert "text" not in results["net"]["request"]  # the image model leaves it
    assert "words" in results["imgtext"]["attributions"][0]
