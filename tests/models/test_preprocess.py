"""Preprocess: image -> normalised batch, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seewhy.models.model import IMAGENET_MEAN, IMAGENET_STD, Preprocess


def test_solid_colour_normalises_to_known_values_at_the_asked_size() -> None:
    img = Image.new("RGB", (7, 5), (255, 0, 51))  # PIL sizes are (width, height)
    batch = Preprocess(size=(2, 3))([img, img])
    assert batch.shape == (2, 3, 2, 3) and batch.dtype == torch.float32
    rgb = torch.tensor([1.0, 0.0, 0.2])
    expected = (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(batch, expected.view(1, 3, 1, 1).expand(2, 3, 2, 3))


def test_pixels_keep_their_place() -> None:
    # no resize (the image is already at size): rows stay rows, columns stay columns
    px = np.array([[[0, 10, 20], [30, 40, 50], [60, 70, 80]], [[90, 100, 110]] * 3], np.uint8)
    img = Image.fromarray(px)  # 2 rows x 3 columns
    batch = Preprocess(size=(2, 3), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))([img])
    torch.testing.assert_close(
        batch[0], torch.tensor(px, dtype=torch.float32).permute(2, 0, 1) / 255
    )


def test_grey_images_and_single_channel_models() -> None:
    grey = Image.new("L", (4, 4), 51)
    (g,) = Preprocess(size=(4, 4), mean=(0.0, 0.0, 0.0), std=(0.5, 0.5, 0.5))([grey])
    torch.testing.assert_close(g, torch.full((3, 4, 4), 0.4))
    one = Preprocess(size=(4, 4), mean=(0.5,), std=(0.25,))
    (c,) = one([Image.new("RGB", (4, 4), (255, 0, 51))])  # channel mean (1 + 0 + 0.2) / 3
    assert c.shape == (1, 4, 4)
    torch.testing.assert_close(c, torch.full((1, 4, 4), (0.4 - 0.5) / 0.25))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_interpolation_is_the_named_pil_filter(interpolation: str) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8))
    pre = Preprocess(size=(5, 6), mean=(0.0,) * 3, std=(1.0,) * 3, interpolation=interpolation)
    resample = getattr(Image.Resampling, interpolation.upper())
    ref = np.asarray(img.resize((6, 5), resample), dtype=np.float32) / 255
    torch.testing.assert_close(pre([img])[0], torch.from_numpy(ref).permute(2, 0, 1))


# --- the model's own geometry: resize, then centre-crop (timm, torchvision) -----------------


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


IMAGES = [noise(251, 173), noise(97, 203, seed=1), noise(400, 400, seed=2)]


@pytest.mark.parametrize(
    "name",
    [
        "test_resnet",  # 160 px, crop_pct 0.95, bilinear
        "resnet18.a1_in1k",  # 224, 0.95, bicubic
        "resnet18.tv_in1k",  # 224, 0.875, bilinear
        "convnext_base.fb_in22k_ft_in1k_384",  # 384, crop_mode squash, crop_pct 1.0
    ],
)
def test_timm_models_preprocess_as_timm_does(name: str) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config

    from seewhy.models.preprocess import resolve_preprocess

    with torch.device("meta"):  # the data config needs the model, not its weights
        model = timm.create_model(name, pretrained=False)
    cfg = resolve_data_config(model=model)
    pre = resolve_preprocess(model, f"timm:{name}", None)
    assert pre.source == "timm" and pre.crop_pct == pytest.approx(cfg["crop_pct"])
    assert pre.crop_mode == cfg["crop_mode"] and pre.size == tuple(cfg["input_size"][1:])
    timm_transform = create_transform(**cfg)
    for img in IMAGES:
        expected = timm_transform(img)
        got = pre([img])[0]
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("size", "crop_pct", "crop_mode", "interpolation"),
    [
        ((96, 64), 0.875, "center", "bicubic"),  # non-square: timm keeps the aspect ratio
        ((64, 64), 0.9, "squash", "bilinear"),
        ((64, 64), 0.8, "border", "bicubic"),
        ((50, 70), 1.0, "border", "nearest"),
        ((48, 48), 1.0, "center", "lanczos"),
    ],
)
def test_every_crop_mode_matches_timms_eval_transform(
    size: tuple[int, int], crop_pct: float, crop_mode: str, interpolation: str
) -> None:
    from timm.data import create_transform

    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    pre = Preprocess(
        size=size,
        mean=mean,
        std=std,
        interpolation=interpolation,
        crop_pct=crop_pct,
        crop_mode=crop_mode,
    )
    ref = create_transform(
        input_size=(3, *size),
        interpolation=interpolation,
        mean=mean,
        std=std,
        crop_pct=crop_pct,
        crop_mode=crop_mode,
    )
    for img in IMAGES:
        torch.testing.assert_close(pre([img])[0], ref(img), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "inception_v3", "swin_t", "efficientnet_b3"])
def test_torchvision_models_preprocess_as_their_weights_transforms(name: str) -> None:
    import torchvision

    from seewhy.models.preprocess import resolve_preprocess

    transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()  # no download
    pre = resolve_preprocess(torch.nn.Identity(), f"torchvision:{name}", None)
    assert pre.source == "torchvision" and pre.crop_mode == "center"
    assert pre.crop_pct == pytest.approx(transforms.crop_size[0] / transforms.resize_size[0])
    for img in IMAGES:
        torch.testing.assert_close(pre([img])[0], transforms(img), rtol=0, atol=1e-5)


def test_centre_crop_by_hand() -> None:
    # 200 wide x 100 high; size 50 at crop_pct 0.5: the short side is already 50 / 0.5 = 100,
    # so nothing is resized and the crop is rows 25..74, columns 75..124
    a = (np.arange(100 * 200 * 3) % 251).astype(np.uint8).reshape(100, 200, 3)
    pre = Preprocess(size=(50, 50), crop_pct=0.5, crop_mode="center", interpolation="nearest")
    frame = pre.frame(Image.fromarray(a))
    assert frame.size == (50, 50) and frame.mode == "RGB"
    assert np.asarray(frame).tolist() == a[25:75, 75:125].tolist()
    # squash at 1.0 (the default) keeps every pixel: the whole image resized
    whole = Preprocess(size=(50, 100), interpolation="nearest").frame(Image.fromarray(a))
    assert np.asarray(whole).tolist() == a[1::2, 1::2].tolist()  # PIL samples pixel centres


def test_the_batch_is_the_normalised_frame() -> None:
    pre = Preprocess(size=(40, 56), crop_pct=0.8, crop_mode="center", interpolation="bicubic")
    img = noise(90, 70, seed=3).convert("L")  # grey in: the frame is RGB
    frame = pre.frame(img)
    assert frame.mode == "RGB" and frame.size == (56, 40)
    px = torch.from_numpy(np.asarray(frame, dtype=np.float32) / 255).permute(2, 0, 1)
    expected = (px - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        3, 1, 1
    )
    torch.testing.assert_close(pre([img])[0], expected, rtol=0, atol=1e-6)


def test_card_keys_crop_pct_crop_mode_and_bit_depth() -> None:
    from seewhy.core.errors import ModelLoadError
    from seewhy.models.preprocess import resolve_preprocess

    plain = resolve_preprocess(torch.nn.Identity(), "x.py:f", None)
    assert (plain.crop_pct, plain.crop_mode, plain.bit_depth) == (1.0, "squash", "minmax")
    card = resolve_preprocess(
        torch.nn.Identity(),
        "x.py:f",
        {"crop_pct": 0.875, "crop_mode": "center", "bit_depth": "full"},
    )
    assert (card.crop_pct, card.crop_mode, card.bit_depth, card.source) == (
        0.875,
        "center",
        "full",
        "card",
    )
    assert resolve_preprocess(torch.nn.Identity(), "x.py:f", {"crop_pct": 1}).crop_pct == 1.0
    for overrides, pattern in (
        ({"crop_pct": 0}, r"crop_pct = 0: expected a number in \(0, 1\]"),
        ({"crop_pct": 1.5}, r"crop_pct = 1.5: expected a number in \(0, 1\]"),
        ({"crop_pct": "0.9"}, r"crop_pct = '0.9'"),
        ({"crop_mode": "middle"}, r"crop_mode = 'middle': expected one of center, squash, border"),
        ({"bit_depth": 16}, r'bit_depth = 16: expected "minmax" .* or "full"'),
    ):
        with pytest.raises(ModelLoadError, match=pattern):
            resolve_preprocess(torch.nn.Identity(), "x.py:f", overrides)
    with pytest.raises(ModelLoadError) as e:
        resolve_preprocess(torch.nn.Identity(), "x.py:f", {"crop": 0.9})
    for key in ("bit_depth", "crop_mode", "crop_pct", "interpolation", "mean", "size", "std"):
        assert key in str(e.value)


def test_describe_records_the_preprocessing() -> None:
    import json

    from seewhy import load_model

    m = load_model("timm:test_resnet", device="cpu")
    d = m.describe()
    assert d["preprocess"] == {
        "size": [160, 160],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bilinear",
        "crop_pct": 0.95,
        "crop_mode": "center",
        "bit_depth": "minmax",
        "source": "timm",
    }
    assert json.loads(json.dumps(d)) == d
