"""Two models that see the same part of the image at different input sizes (a 224 px ConvNeXt
beside a 384 px EfficientNet): every sample's comparison failed with a numpy broadcast error
before the maps were resampled to one frame (found by a helper; this test failed before)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from cli_runner import invoke
from PIL import Image

from seewhy.checks.agreement import rank_correlation, top_iou

NETS_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build(num_classes=2):
        torch.manual_seed(3)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
        )
    """
)


def test_two_models_at_different_sizes_are_compared_on_one_frame(tmp_path: Path) -> None:
    (tmp_path / "nets.py").write_text(NETS_PY)
    for name, size in (("small", 16), ("large", 24)):
        (tmp_path / f"{name}.toml").write_text(
            f'arch = "nets.py:build"\nlabels = ["a", "b"]\nlayer = "2"\n\n'
            f"[preprocess]\nsize = {size}\n"
        )
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((30, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / "x.png")
    code, output = invoke(
        tmp_path, "explain", "x.png", "-m", "large.toml", "-m", "small.toml",
        "--method", "gradcam", "--out", "o", "--quiet", "--no-report",
    )  # fmt: skip
    assert code == 0, output
    out = tmp_path / "o"
    assert not (out / "errors.jsonl").exists() or not (out / "errors.jsonl").read_text().strip()
    summary = json.loads((out / "summary.json").read_text())
    maps = {r["model"]: np.load(out / r["attributions"][0]["map"]) for r in summary["results"]}
    assert maps["large"].shape == (24, 24) and maps["small"].shape == (16, 16)
    (agreement,) = summary["agreement"]
    assert agreement["models"] == ["large", "small"]
    # the small model's map resampled (bilinear) onto the large model's 24 px frame
    small = F.interpolate(
        torch.from_numpy(maps["small"])[None, None], size=(24, 24), mode="bilinear"
    )[0, 0]
    large = torch.from_numpy(maps["large"])
    assert agreement["rank_correlation"] == round(rank_correlation(large, small), 4)
    assert agreement["top_iou"] == round(top_iou(large, small, 0.1), 4)
    assert (out / agreement["comparison_figure"]).is_file()
