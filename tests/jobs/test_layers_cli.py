"""seewhy layers with a card that names its layer: that layer is marked, not auto's, and no
"no auto choice ... name one with --layer" advice follows (a reviewer's finding: the card
already names one)."""

from __future__ import annotations

from pathlib import Path

from cli_runner import invoke


def _card(folder: Path, layer: str) -> None:
    (folder / "c.toml").write_text(
        f'arch = "timm:test_resnet"\nlayer = "{layer}"\n\n[preprocess]\nsize = 32\n'
    )


def test_the_cards_layer_is_marked_and_no_auto_advice_follows(tmp_path: Path) -> None:
    _card(tmp_path, "layer3")
    code, output = invoke(tmp_path, "layers", "c.toml")
    assert code == 0, output
    lines = output.splitlines()
    marked = [line for line in lines if "<-" in line]
    assert len(marked) == 1 and marked[0].split()[0] == "layer3"
    assert marked[0].endswith("[1, 192, 2, 2]  <- the card's layer")
    assert "no auto choice" not in output and "layer4" not in output  # 1x1 at 32 px


def test_a_card_layer_that_is_not_there_is_said_with_the_closest_name(tmp_path: Path) -> None:
    _card(tmp_path, "layer_3")
    code, output = invoke(tmp_path, "layers", "c.toml")
    assert code == 0, output
    last = output.splitlines()[-1]
    assert last.startswith("the card's layer 'layer_3' is not a layer of this model")
    assert "layer3" in last
