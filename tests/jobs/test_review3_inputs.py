"""Inputs a new user brings (third review): float images with NaN/inf pixels, one-channel
models without a card, and `seewhy layers` where the auto layer is not spatial."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import invoke
from PIL import Image
from torch import nn

from seewhy.core.errors import ImageError, ModelLoadError
from seewhy.core.layers import input_channels, list_layers
from seewhy.data.images import decode_image
from seewhy.models.preprocess import resolve_preprocess

QUIET = ("--quiet", "--no-report")

NETS_PY = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, num_classes=2, in_chans=3):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            )
            self.fc = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.fc(self.features(x).mean(dim=(2, 3)))


    class Flat(nn.Module):
        """No spatial layer: the image is flattened at once."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 2)

        def forward(self, x):
            return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))


    def gray(num_classes=2):
        torch.manual_seed(1)
        return Net(num_classes, in_chans=1)


    def four(num_classes=2):
        torch.manual_seed(1)
        return Net(num_classes, in_chans=4)


    def flat(num_classes=2):
        torch.manual_seed(1)
        return Flat()
    '''
)


@pytest.fixture
def nets(tmp_path: Path) -> Path:
    (tmp_path / "nets.py").write_text(NETS_PY)
    ramp = np.linspace(0, 255, 40 * 48 * 3).reshape(40, 48, 3).astype(np.uint8)
    Image.fromarray(ramp).save(tmp_path / "img0.png")
    return tmp_path


def gray_of(img: Image.Image) -> np.ndarray:
    a = np.asarray(decode_image(img).image).astype(int)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    return a[..., 0]


# -- float images with non-finite pixels --------------------------------------------------------


def test_a_nan_pixel_is_black_and_the_others_are_scaled_by_the_finite_ones() -> None:
    values = np.array([[np.nan, 10.0, 20.0], [30.0, 40.0, 50.0]], np.float32)
    got = gray_of(Image.fromarray(values))
    # min..max over the finite pixels (10..50): 10 -> 0, 20 -> 63.75, 30 -> 127.5 ...
    assert got.tolist() == [[0, 0, 64], [128, 191, 255]]


def test_inf_pixels_are_white_and_black_beyond_the_finite_scale() -> None:
    values = np.array([[np.inf, -np.inf, 0.0], [1.0, 2.0, 4.0]], np.float32)
    assert gray_of(Image.fromarray(values)).tolist() == [[255, 0, 0], [64, 128, 255]]


def test_a_float_image_in_0_1_with_a_nan_keeps_the_full_range() -> None:
    values = np.array([[np.nan, 0.2, 0.4, 0.6]], np.float32)
    decoded = decode_image(Image.fromarray(values), bit_depth="full")
    # the finite pixels lie in 0..1: divided by 1, not stretched 0.2..0.6
    assert np.asarray(decoded.image)[..., 0].tolist() == [[0, 51, 102, 153]]


def test_a_constant_float_image_with_a_nan_is_black_but_for_its_inf() -> None:
    values = np.array([[np.nan, 7.0, 7.0, np.inf]], np.float32)
    assert gray_of(Image.fromarray(values)).tolist() == [[0, 0, 0, 255]]


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
def test_an_image_with_no_finite_pixel_is_refused_naming_the_file(
    tmp_path: Path, fill: float
) -> None:
    Image.fromarray(np.full((8, 8), fill, np.float32)).save(tmp_path / "void.tif")
    with pytest.raises(ImageError, match=r"void\.tif has no finite pixel .*NaN or inf"):
        decode_image(tmp_path / "void.tif")


def test_explain_fails_only_the_all_nan_image_and_reads_the_nan_one(nets: Path) -> None:
    rng = np.random.default_rng(3)
    pixels = (rng.random((40, 40)) * 3000).astype(np.float32)
    Image.fromarray(pixels).save(nets / "ok.tif")
    pixels[5, 7] = np.nan
    Image.fromarray(pixels).save(nets / "nan.tif")
    Image.fromarray(np.full((40, 40), np.nan, np.float32)).save(nets / "void.tif")
    args = ["explain", "ok.tif", "nan.tif", "void.tif", "-m", "nets.py:gray", "--labels", "a,b"]
    code, output = invoke(nets, *args, "--method", "saliency", "--out", "o", *QUIET)
    assert code == 1, output
    (error,) = [json.loads(x) for x in (nets / "o" / "errors.jsonl").read_text().splitlines()]
    assert error["id"] == "void" and "NaN or inf" in error["reason"]
    summary = json.loads((nets / "o" / "summary.json").read_text())
    maps = {
        r["sample"]: np.load(nets / "o" / r["attributions"][0]["map"]) for r in summary["results"]
    }
    assert sorted(maps) == ["nan", "ok"]
    assert np.isfinite(maps["nan"]).all() and np.abs(maps["nan"]).max() > 0


# -- one-channel models without a card ----------------------------------------------------------


def test_the_channel_count_is_read_from_the_first_convolution() -> None:
    import timm

    one = timm.create_model("test_resnet", pretrained=False, in_chans=1)
    three = timm.create_model("test_resnet", pretrained=False)
    assert one.pretrained_cfg["input_size"][0] == 3  # timm's cfg does not say it: first_conv does
    assert (input_channels(one), input_channels(three)) == (("conv1.0", 1), ("conv1.0", 3))
    assert input_channels(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) is None
    timm_three = resolve_preprocess(three, "timm:test_resnet")
    assert (timm_three.mean, timm_three.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # its cfg's
    timm_one = resolve_preprocess(one, "timm:test_resnet")
    assert (timm_one.mean, timm_one.std, timm_one.source) == ((0.5,), (0.5,), "timm")
    plain = resolve_preprocess(nn.Sequential(nn.Conv2d(1, 2, 3)), "nets.py:gray")
    assert (plain.mean, plain.std) == ((0.449,), (0.226,))  # ImageNet's, averaged


def test_a_card_mean_and_std_win_over_the_one_channel_default() -> None:
    one = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    p = resolve_preprocess(one, "nets.py:gray", {"mean": [0.5], "std": [0.25], "size": 32})
    assert (p.mean, p.std, p.size, p.source) == ((0.5,), (0.25,), (32, 32), "card")
    assert resolve_preprocess(one, "nets.py:gray", {"size": 32}).mean == (0.449,)


def test_a_one_channel_model_is_explained_on_the_grayscale_image(nets: Path) -> None:
    args = ["explain", "img0.png", "-m", "nets.py:gray", "--labels", "a,b", "--out", "o"]
    code, output = invoke(nets, *args, "--method", "gradcam,saliency", *QUIET)
    assert code == 0, output
    summary = json.loads((nets / "o" / "summary.json").read_text())
    (result,) = summary["results"]
    assert result["attributions"][0]["params"]["layer"] == "features"
    for a in result["attributions"]:
        assert np.isfinite(np.load(nets / "o" / a["map"])).all()
    # the score is the model's on the image's grey mean, normalised by 0.449 / 0.226
    import importlib.util

    spec = importlib.util.spec_from_file_location("nets_gray", nets / "nets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.gray().eval()
    rgb = Image.open(nets / "img0.png").convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(rgb, np.float32) / 255.0).mean(dim=-1)[None, None]
    with torch.no_grad():
        probs = model((x - 0.449) / 0.226).softmax(dim=1)[0]
    assert result["prediction"]["index"] == int(probs.argmax())
    assert result["prediction"]["score"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_a_model_of_other_channels_is_one_line_naming_both_counts(nets: Path) -> None:
    for args in (
        ("layers", "nets.py:four"),
        ("explain", "img0.png", "-m", "nets.py:four", "--labels", "a,b", "--out", "o", *QUIET),
    ):
        code, output = invoke(nets, *args)
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, output
        assert lines[0].startswith(
            "seewhy: error: Net reads 4-channel images (its first convolution, 'features.0') "
            "but gets 3 channels, shape [1, 3, 224, 224]; seewhy feeds images as RGB"
        )


@pytest.mark.parametrize("method", ["saliency", "ig(steps=4)", "occlusion(window=8,stride=8)"])
def test_without_a_cam_a_model_of_other_channels_is_one_line_too(nets: Path, method: str) -> None:
    """With no CAM there was no probe: every sample failed with torch's error (exit 1). A dry
    run now refuses it before any work (this test failed before)."""
    code, output = invoke(
        nets, "explain", "img0.png", "-m", "nets.py:four", "--labels", "a,b", "--method",
        method, "--out", "o", *QUIET,
    )  # fmt: skip
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, output
    assert lines[0].startswith("seewhy: error: Net reads 4-channel images"), lines[0]
    assert not (nets / "o").exists()


def test_without_a_cam_other_errors_still_fail_each_sample_alone(nets: Path) -> None:
    """The dry run converts only a channel mismatch: a model that fails otherwise still fails
    its samples one by one (exit 1, errors.jsonl), as before."""
    (nets / "boom.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Boom(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 2, 3)\n"
        "    def forward(self, x):\n        raise RuntimeError('boom')\n\n"
        "def build(num_classes=2):\n    return Boom()\n"
    )
    code, output = invoke(
        nets, "explain", "img0.png", "-m", "boom.py:build", "--labels", "a,b", "--method",
        "saliency", "--out", "o", *QUIET,
    )  # fmt: skip
    assert code == 1, output
    errors = (nets / "o" / "errors.jsonl").read_text().splitlines()
    assert len(errors) == 1 and "boom" in errors[0]


def test_a_card_with_three_means_for_a_one_channel_model_names_the_fix(nets: Path) -> None:
    (nets / "card.toml").write_text(
        'arch = "nets.py:gray"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 32\n'
        "mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n"
    )
    code, output = invoke(nets, "layers", "card.toml")
    assert code == 2, output
    assert "Net reads 1-channel images" in output and "mean = [0.5], std = [0.5]" in output


def test_other_errors_of_the_dry_run_are_raised_as_they_are() -> None:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.conv(x)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match=r"^boom$"):
        list_layers(Boom())
    with pytest.raises(ModelLoadError, match=r"Sequential reads 4-channel images .*'0'"):
        list_layers(nn.Sequential(nn.Conv2d(4, 2, 3)))


# -- seewhy layers when auto has no spatial layer ------------------------------------------------


def test_layers_marks_nothing_and_names_the_last_spatial_layer(tmp_path: Path) -> None:
    (tmp_path / "r32.toml").write_text(
        'arch = "timm:test_resnet"\nlabels = ["a", "b"]\n\n[preprocess]\nsize = 32\n'
    )
    code, output = invoke(tmp_path, "layers", "r32.toml")
    assert code == 0, output
    lines = output.splitlines()
    assert "<- auto" not in output
    assert lines[-2].split() == ["layer3", "Sequential", "[1,", "192,", "2,", "2]"]
    assert lines[-1].startswith("no auto choice: layer 'layer4' outputs (1, 96, 1, 1)")
    assert "--layer layer3" in lines[-1]
    assert "layer4" not in "".join(lines[:-1])  # 1x1: not listed without --all
    code, output = invoke(tmp_path, "layers", "r32.toml", "--all")
    assert code == 0 and any(line.split()[0] == "layer4" for line in output.splitlines())


def test_layers_of_a_model_without_a_spatial_layer_says_so(nets: Path) -> None:
    code, output = invoke(nets, "layers", "nets.py:flat")
    assert code == 0, output
    (line,) = [x for x in output.splitlines() if x.strip()]
    assert line.startswith("no auto choice: Flat has no layer with a spatial output")
    assert "use a gradient or perturbation method" in line
