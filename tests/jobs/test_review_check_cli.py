"""An outside review of ``seewhy check`` from the shell: one test per defect found. Each failed
on the code as reviewed and passes once the defect is fixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from cli_runner import invoke

from seewhy.checks.flags import border_share

FAST = ("--steps", "5", "--quiet", "--no-report")


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _card(path: Path, name: str, arch: str, extra: str = "", labels: str = '"normal", "fracture"'):
    path.write_text(
        f'name = "{name}"\narch = "{arch}"\nlabels = [{labels}]\n{extra}\n'
        "[preprocess]\nsize = 32\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n"
    )
    return path


def test_check_takes_method_settings_in_brackets(project: Path) -> None:
    """SPEC 2: --method takes settings in brackets ('ig(steps=32),occlusion(window=32,...)').
    `seewhy explain --method 'occlusion(window=8,stride=8)'` runs; `seewhy check` with the same
    flag explains first and then stops with "unknown method 'occlusion(window=8,stride=8)'"
    (exit 2, no checks): the check re-reads the raw flag, brackets included."""
    code, output = invoke(
        project,
        "check",
        "img0.png",
        "img1.png",
        "-m",
        "small.toml",
        "--method",
        "occlusion(window=8,stride=8),saliency",
        "--randomization",
        "none",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    checks = _summary(project / "out")["checks"]
    assert sorted(c["method"] for c in checks) == ["occlusion", "saliency"]
    # the checked occlusion maps are the ones explain saved, with its window and stride
    occ = next(c for c in checks if c["method"] == "occlusion")
    maps = torch.tensor(
        np.stack(
            [
                np.load(project / "out" / "maps" / i / "small__occlusion.npy")
                for i in ("img0", "img1")
            ]
        )
    )
    assert abs(occ["border_share"] - float(border_share(maps).nanmean())) < 1e-9


def test_check_of_a_method_named_twice_or_by_alias_is_one_check(project: Path) -> None:
    """`--method gradcam,GradCAM` (or gradcampp,gradcam++): explain computes one gradcam, but
    summary.json gets two identical checks[] entries for (small, gradcam), each "agreeing"
    with itself (method_agreement {"gradcam": 1.0}). One entry per model x method, and no
    method compared with itself."""
    code, output = invoke(
        project,
        "check",
        "img0.png",
        "img1.png",
        "-m",
        "small.toml",
        "--method",
        "gradcam,GradCAM,gradcampp,gradcam++",
        "--randomization",
        "none",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    checks = _summary(project / "out")["checks"]
    pairs = [(c["model"], c["method"]) for c in checks]
    assert sorted(pairs) == [("small", "gradcam"), ("small", "gradcam++")]
    for c in checks:
        assert c["method"] not in (c.get("method_agreement") or {})


def test_check_of_a_torchscript_model_never_crashes(project: Path) -> None:
    """SPEC 3: `torchscript:FILE` models take the gradient methods. `seewhy check` on one with
    the default `--randomization blocks` dies with a Python traceback (RuntimeError:
    get_submodule is not supported on ScriptModules) after explaining. It must either
    randomize the copy (figures in checks[]), refuse in one line (exit 2) naming the
    randomization, or run the other checks and say why randomization did not run."""
    import importlib.util

    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("review_models", project / "models.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.small()
    net.load_state_dict(load_file(str(project / "small.safetensors")))
    torch.jit.script(net.eval()).save(str(project / "small_script.pt"))
    _card(project / "ts.toml", "ts", "torchscript:small_script.pt")
    code, output = invoke(
        project,
        "check",
        "img0.png",
        "img1.png",
        "-m",
        "ts.toml",
        "--method",
        "saliency",
        "--out",
        "out",
        *FAST,
    )
    if code == 2:
        last = output.strip().splitlines()[-1]
        assert "randomiz" in last.lower() and "Traceback" not in output, output
    else:  # the other checks run; the verdict says why randomization did not
        assert code == 0, output
        check = _summary(project / "out")["checks"][0]
        assert "randomization_similarity" not in check
        assert "TorchScript" in check["randomization_skipped"]
        assert "randomization" in check["flags"] and check["verdict"] != "pass"
        assert any(
            r.startswith("randomization not run: model 'ts' is TorchScript")
            for r in check["reasons"]
        )
        assert isinstance(check["deletion_auc"], float)


NAN_ON_SMOOTH = '''

class NaNOnSmooth(Net):
    """Finite on the photos, NaN on smooth inputs (a blurred copy): a model that breaks only on
    the check's perturbed images."""

    def forward(self, x):
        out = super().forward(x)
        tv = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
        return torch.where((tv < 0.3)[:, None], torch.full_like(out, float("nan")), out)


def nan_on_smooth(num_classes=2):
    torch.manual_seed(1)
    return NaNOnSmooth(num_classes, 8)
'''


def test_check_goes_on_when_the_model_gives_nan_on_a_perturbed_image(project: Path) -> None:
    """SPEC 2: one bad sample fails alone (errors.jsonl, exit 1). A model that explains both
    images fine but returns NaN on their blurred copies (deletion/insertion's start and end)
    stops the whole check with exit 2 ("the model's output is NaN or infinite for batch rows
    [1, 4, 5, 6, 7]"): summary.json keeps no checks[] at all. The check must finish (its
    faithfulness figures undefined or the samples in errors.jsonl), with exit 0 or 1."""
    with (project / "models.py").open("a") as f:
        f.write(NAN_ON_SMOOTH)
    _card(project / "nans.toml", "nans", "models.py:nan_on_smooth")
    code, output = invoke(
        project,
        "check",
        "img0.png",
        "img1.png",
        "-m",
        "nans.toml",
        "--method",
        "gradcam",
        "--randomization",
        "none",
        "--out",
        "out",
        *FAST,
    )
    assert code in (0, 1), output
    checks = _summary(project / "out").get("checks", [])
    assert [(c["model"], c["method"]) for c in checks] == [("nans", "gradcam")]
    assert checks[0]["verdict"] in ("pass", "warn", "fail")
    assert isinstance(checks[0]["border_share"], float)


MULTI_HEAD = """

class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.species = nn.Linear(8, 3)
        self.sex = nn.Linear(8, 2)

    def forward(self, x):
        h = self.features(x).mean((2, 3))
        return {"species": self.species(h), "sex": self.sex(h)}


def two_heads():
    torch.manual_seed(4)
    return TwoHeads()
"""


def test_card_output_picks_a_head_wider_than_the_last_linear(project: Path) -> None:
    """SPEC 3: the card's `output` says which item of a dict output is explained. A model with
    heads {"species": 3 classes, "sex": 2} and a card `output = "species"`, `labels = [cat,
    dog, bird]` is refused before any work: "3 labels given but models.py:two_heads has 2
    outputs" (the width is guessed from the last nn.Linear, the "sex" head, not from the head
    the card picks)."""
    with (project / "models.py").open("a") as f:
        f.write(MULTI_HEAD)
    _card(
        project / "heads.toml",
        "heads",
        "models.py:two_heads",
        'output = "species"',
        labels='"cat", "dog", "bird"',
    )
    code, output = invoke(
        project,
        "check",
        "img0.png",
        "img1.png",
        "-m",
        "heads.toml",
        "--method",
        "saliency",
        "--randomization",
        "none",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    s = _summary(project / "out")
    assert {r["prediction"]["label"] for r in s["results"]} <= {"cat", "dog", "bird"}
    assert [c["method"] for c in s["checks"]] == ["saliency"]


def test_check_judges_the_expected_gradients_maps_that_explain_saved(project: Path) -> None:
    """`--n-background 0` makes explain use the zero baseline for expected gradients (the
    maps in maps/ and the figures), but the check recomputes the maps with the batch as
    background, so its figures (border share, agreement, the verdict) judge other maps than
    the ones saved and shown. For every other method the check's border_share equals the one
    of the saved maps; for expected-gradients it must too."""
    code, output = invoke(
        project,
        "check",
        "img0.png",
        "img1.png",
        "-m",
        "small.toml",
        "--method",
        "expected-gradients",
        "--n-background",
        "0",
        "--randomization",
        "none",
        "--out",
        "out",
        *FAST,
    )
    assert code == 0, output
    check = _summary(project / "out")["checks"][0]
    maps = torch.tensor(
        np.stack(
            [
                np.load(project / "out" / "maps" / i / "small__expected-gradients.npy")
                for i in ("img0", "img1")
            ]
        )
    )
    assert abs(check["border_share"] - float(border_share(maps).nanmean())) < 1e-6
