"""``hf:PATH``: transformers image classifiers saved on disk (SPEC section 3), built here with
tiny random configs and ``save_pretrained`` (nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import invoke
from PIL import Image

from seewhy.core.errors import ModelLoadError
from seewhy.models.loader import load_model

transformers = pytest.importorskip("transformers")

LABELS = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vit/ (labels, a processor: 32 px squash, mean/std 0.5), rn/ (placeholder labels, no
    processor), cnx/ (ConvNeXt processor: shortest edge 32, crop_pct 0.875), deit/ (squash to
    40, crop 32)."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(
        transformers.ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=3,
            id2label=dict(enumerate(LABELS)),
            label2id={v: k for k, v in enumerate(LABELS)},
        )
    ).eval()
    vit.save_pretrained(root / "vit")
    transformers.ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(root / "vit")
    rn = transformers.ResNetForImageClassification(
        transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2
        )
    ).eval()
    rn.save_pretrained(root / "rn")
    (root / "cnx").mkdir()
    (root / "cnx" / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ConvNextImageProcessor",
                "size": {"shortest_edge": 32},
                "crop_pct": 0.875,
                "resample": 3,
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
            }
        )
    )
    (root / "deit").mkdir()
    (root / "deit" / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"height": 40, "width": 40},
                "do_center_crop": True,
                "crop_size": {"height": 32, "width": 32},
                "image_mean": 0.5,
                "image_std": 0.25,
            }
        )
    )
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "img.png")
    return root


def test_a_saved_vit_loads_with_its_labels_and_processor(saved: Path) -> None:
    model = load_model(f"hf:{saved / 'vit'}", device="cpu")
    assert model.labels == LABELS and model.num_outputs == 3
    p = model.preprocess
    assert p.size == (32, 32) and p.mean == (0.5, 0.5, 0.5) and p.std == (0.5, 0.5, 0.5)
    assert p.crop_pct == 1.0 and p.source == "hf"
    # the image as transformers' own processor prepares it gives the same logits
    image = Image.open(saved / "img.png").convert("RGB")
    theirs = transformers.ViTImageProcessor.from_pretrained(saved / "vit")(
        image, return_tensors="pt"
    )["pixel_values"]
    ours = p([image])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    direct = transformers.ViTForImageClassification.from_pretrained(saved / "vit").eval()
    with torch.no_grad():
        want = direct(theirs).logits
        got = model.forward(theirs)
    torch.testing.assert_close(got, want)


def test_placeholder_labels_are_not_labels_and_card_labels_win(saved: Path, tmp_path: Path) -> None:
    assert load_model(f"hf:{saved / 'rn'}", device="cpu").labels is None
    card = tmp_path / "rn.toml"
    card.write_text(f'arch = "hf:{saved / "rn"}"\nlabels = ["benign", "malignant"]\n')
    model = load_model(card, device="cpu")
    assert model.labels == ["benign", "malignant"] and model.num_outputs == 2
    assert model.preprocess.size == (224, 224)  # no processor: config.image_size


def test_processor_geometry_convnext_and_deit(saved: Path) -> None:
    from seewhy.models.hf import hf_preprocess

    cnx = hf_preprocess(torch.nn.Identity(), saved / "cnx")
    assert (cnx.size, cnx.crop_pct, cnx.crop_mode, cnx.interpolation) == (
        (32, 32),
        0.875,
        "center",
        "bicubic",
    )
    deit = hf_preprocess(torch.nn.Identity(), saved / "deit")
    assert (deit.size, deit.crop_pct, deit.crop_mode) == ((32, 32), 0.8, "squash")
    assert deit.mean == (0.5,) * 3 and deit.std == (0.25,) * 3


def test_explain_a_saved_vit_from_the_cli(saved: Path, tmp_path: Path) -> None:
    code, output = invoke(
        saved, "explain", "img.png", "-m", "hf:vit", "--method", "gradcam,ig(steps=8)",
        "--out", str(tmp_path / "o"), "--quiet", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    (result,) = summary["results"]
    model = load_model(f"hf:{saved / 'vit'}", device="cpu")
    image = Image.open(saved / "img.png").convert("RGB")
    with torch.no_grad():
        logits = model.forward(model.preprocess([image]))
    assert result["prediction"]["label"] == LABELS[int(logits.argmax())]
    assert summary["models"][0]["labels"] == LABELS
    for entry in result["attributions"]:
        grid = np.load(tmp_path / "o" / entry["map"])
        assert grid.shape == (32, 32) and np.isfinite(grid).all() and np.abs(grid).max() > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hf:nowhere", "is not a folder"),
        ("hf:empty", "has no config.json"),
    ],
)
def test_a_bad_hf_folder_is_one_line(saved: Path, spec: str, message: str) -> None:
    (saved / "empty").mkdir(exist_ok=True)
    with pytest.raises(ModelLoadError, match=message):
        load_model(spec.replace("hf:", f"hf:{saved}/"), device="cpu")
    code, output = invoke(saved, "explain", "img.png", "-m", spec, "--quiet")
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], output


def test_processor_switches_and_factor_in_mean_and_std(tmp_path: Path) -> None:
    from seewhy.models.hf import hf_preprocess

    def pre(**cfg: object) -> tuple[tuple[float, ...], tuple[float, ...]]:
        (tmp_path / "preprocessor_config.json").write_text(
            json.dumps(
                {
                    "size": {"height": 8, "width": 8},
                    "image_mean": [0.5] * 3,
                    "image_std": [0.25] * 3,
                    **cfg,
                }
            )
        )
        p = hf_preprocess(torch.nn.Identity(), tmp_path)
        return p.mean, p.std

    assert pre() == ((0.5,) * 3, (0.25,) * 3)
    assert pre(do_normalize=False) == ((0.0,) * 3, (1.0,) * 3)
    mean, std = pre(do_rescale=False)  # (255 x - 0.5) / 0.25
    assert mean == pytest.approx((0.5 / 255,) * 3) and std == pytest.approx((0.25 / 255,) * 3)
    mean, std = pre(do_rescale=False, do_normalize=False)  # 255 x
    assert mean == (0.0,) * 3 and std == pytest.approx((1 / 255,) * 3)
    mean, std = pre(rescale_factor=2 / 255)  # (2 x - 0.5) / 0.25
    assert mean == pytest.approx((0.25,) * 3) and std == pytest.approx((0.125,) * 3)


def test_non_square_crop_frames_masks_and_describes_the_squashed_size(tmp_path: Path) -> None:
    from seewhy.models.hf import hf_preprocess

    transformers.DeiTImageProcessor(
        size={"height": 40, "width": 56}, crop_size={"height": 32, "width": 48}
    ).save_pretrained(tmp_path)
    pre = hf_preprocess(torch.nn.Identity(), tmp_path)
    assert pre.size == (32, 48) and pre.describe()["resize"] == [40, 56]
    assert pre.frame_mask(Image.new("L", (50, 30), 255)).shape == (32, 48)
    assert pre.frame_labels(np.zeros((30, 50), dtype=np.int64)).shape == (32, 48)
    # the frame lies over the centre 32/40 x 48/56 of any image
    left, top, right, bottom = pre.box(560, 400)
    assert (left, top, right, bottom) == pytest.approx((40, 40, 520, 360))
    # a square crop of a square size needs no squashed size: a plain crop_pct
    transformers.DeiTImageProcessor(
        size={"height": 256, "width": 256}, crop_size={"height": 224, "width": 224}
    ).save_pretrained(tmp_path)
    plain = hf_preprocess(torch.nn.Identity(), tmp_path)
    assert plain.crop_pct == 0.875 and "resize" not in plain.describe()


def test_card_keys_that_leave_the_geometry_keep_the_processors_exact_crop(tmp_path: Path) -> None:
    """A card setting only mean/std (or bit_depth) rebuilt a plain Preprocess and lost the
    non-square squashed size; one setting the size takes its own geometry (failed before)."""
    from seewhy.models.preprocess import resolve_preprocess

    transformers.DeiTImageProcessor(
        size={"height": 40, "width": 56}, crop_size={"height": 32, "width": 48}
    ).save_pretrained(tmp_path)
    module = torch.nn.Identity()
    module.name_or_path = str(tmp_path)  # type: ignore[assignment]
    kept = resolve_preprocess(module, f"hf:{tmp_path}", {"mean": [0.5], "std": [0.5]})
    assert kept.describe()["resize"] == [40, 56] and kept.mean == (0.5,) and kept.source == "card"
    assert kept.box(560, 400) == pytest.approx((40, 40, 520, 360))
    own = resolve_preprocess(module, f"hf:{tmp_path}", {"size": 32})
    assert own.size == (32, 32) and "resize" not in own.describe()


def test_a_one_output_model_with_two_labels_is_binary_and_num_classes_checked(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    transformers.ResNetForImageClassification(
        transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=1
        )
    ).eval().save_pretrained(tmp_path / "rn1")
    arch = f"hf:{tmp_path / 'rn1'}"
    model = load_model(arch, labels=["no", "yes"], device="cpu")
    assert model.labels == ["no", "yes"] and model.num_outputs == 1
    model = load_model(arch, labels=["yes"], device="cpu")
    assert model.labels == ["not yes", "yes"] and model.num_outputs == 1
    with pytest.raises(ModelLoadError, match=r"1 outputs .* num_classes = 2"):
        load_model(arch, num_classes=2, device="cpu")
    with pytest.raises(ModelLoadError, match="1 outputs"):
        load_model(arch, labels=["a", "b", "c"], device="cpu")
