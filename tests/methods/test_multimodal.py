"""Multimodal models (image + text, image + tabular): gradient methods attribute every input
together from the same passes; text at the embedding layer through a temporary hook; outputs
that are not one tensor; bad input as one-line errors.

Models: tests/multimodal_models.py (a tiny BERT with the offline MiniLM tokenizer; no
downloads).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from model_state import assert_same, snapshot
from multimodal_models import ImageTextNet, image_tabular_model, image_text_model
from seewhy import explain
from seewhy.core.errors import ModelOutputError, UsageError
from seewhy.core.model import Model

TEXTS = ["a red fracture near the border", "hello", "the cat sat on the mat today", "x ray"]
GRADIENT = ["saliency", "inputxgrad", "ig", "smoothgrad", "expected-gradients"]


def _images(n: int, seed: int = 1) -> Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _column(model: Model, batch: dict, classes: Tensor) -> Tensor:  # type: ignore[type-arg]
    from seewhy.api import as_inputs

    with torch.no_grad():
        return model.forward(as_inputs(model, batch)).gather(1, classes[:, None])[:, 0]


def test_every_gradient_method_attributes_image_and_text_together() -> None:
    model = image_text_model()
    out = explain(model, {"image": _images(4), "text": TEXTS}, GRADIENT, target="pred")
    for e in out:
        assert set(e.attributions) == {"image", "text"}
        assert tuple(e.attributions["image"].shape) == (4, 16, 16)
        assert tuple(e.attributions["text"].shape) == (4, 12)
        assert tuple(e.raw["text"].shape) == (4, 12, 32)
        share = e.modality_share()
        torch.testing.assert_close(share["image"] + share["text"], torch.ones(4))
        assert bool((share["text"] > 0).all()) and bool((share["image"] > 0).all())
        # special tokens and padding get nothing; every real token is listed
        ids = model.text.encode(TEXTS)[0]["input_ids"]  # type: ignore[union-attr]
        assert [len(t) for t in e.per_sample["tokens"]] == [
            int(((r != 101) & (r != 102) & (r != 0)).sum()) for r in ids
        ]
        if e.is_signed("text"):
            special = (ids == 101) | (ids == 102) | (ids == 0)
            assert float(e.attributions["text"][special].abs().max()) == 0.0
    words = out[2].per_sample["words"][0]
    assert [w["word"] for w in words] == ["a", "red", "fracture", "near", "the", "border"]
    scores = {t["token"]: t["score"] for t in out[2].per_sample["tokens"][0]}
    assert words[1]["score"] == pytest.approx(scores["red"])


def test_ig_completeness_over_image_and_text_within_one_percent_at_64_steps() -> None:
    model = image_text_model()
    with torch.no_grad():  # make the model far from linear along the path
        model.module.head.weight.mul_(20)
    batch = {"image": _images(4), "text": TEXTS}
    (e,) = explain(model, batch, ["ig(steps=64)"], target="pred")
    assert e.target_indices is not None
    # f(baseline): zero image, [PAD] at every non-special position
    from seewhy.api import as_inputs

    x = model.with_text_embedding(as_inputs(model, batch))
    base = x.replace(image=torch.zeros_like(x["image"]), text=model.text_baseline(x))
    with torch.no_grad():
        fx = model.forward(x).gather(1, e.target_indices[:, None])[:, 0]
        fb = model.forward(base).gather(1, e.target_indices[:, None])[:, 0]
    total = e.raw["image"].flatten(1).sum(1) + e.raw["text"].flatten(1).sum(1)
    delta = fx - fb
    assert float(delta.abs().min()) > 0.1
    assert bool(((total - delta).abs() <= 0.01 * delta.abs()).all()), (total - delta) / delta
    torch.testing.assert_close(e.extras["completeness_gap"], total - delta, atol=1e-4, rtol=0)
    # the text's own share is real: both inputs carry part of f(x) - f(b)
    assert float(e.raw["text"].flatten(1).sum(1).abs().min()) > 1e-3


def test_expected_gradients_agree_with_shap_per_modality() -> None:
    shap = pytest.importorskip("shap")
    model = image_text_model()
    with torch.no_grad():
        model.module.head.weight.mul_(10)
    from seewhy.api import as_inputs
    from seewhy.core.hooks import replace_output

    bg_texts = ["one", "two words", "three small words", "four words are here", "five"]
    sample = as_inputs(model, {"image": _images(1, seed=3), "text": ["a red fracture"]})
    background = as_inputs(model, {"image": _images(5, seed=4), "text": bg_texts})
    (ours,) = explain(
        model,
        sample,
        ["expected-gradients(samples=1000)"],
        target=0,
        background=background,
        batch_size=250,
    )
    x = model.with_text_embedding(sample)
    bg = model.with_text_embedding(background)
    name = model.embedding_name()
    net = model.module

    class Wrapped(nn.Module):
        def forward(self, image: Tensor, embeds: Tensor) -> Tensor:
            n = image.shape[0]
            with replace_output(dict(net.named_modules())[name], name, embeds):
                return net(  # type: ignore[no-any-return]
                    image, x["input_ids"].expand(n, -1), x["attention_mask"].expand(n, -1)
                )[:, :1]

    explainer = shap.GradientExplainer(Wrapped(), [bg["image"], bg["text"]], batch_size=250)
    torch.manual_seed(0)
    theirs = explainer.shap_values([x["image"], x["text"]], nsamples=1000)
    for i, key in enumerate(["image", "text"]):
        t = torch.as_tensor(theirs[i]).squeeze(-1).flatten()
        o = ours.raw[key].flatten()
        r = float(torch.corrcoef(torch.stack([o, t.float()]))[0, 1])
        assert r >= 0.9, (key, r)


def test_image_tabular_regressor_attributes_features_with_their_names() -> None:
    model = image_tabular_model()
    rows = [{"sqft": 1200, "grade": 7, "water": 1}, [800, 3, 0]]
    (e,) = explain(model, {"image": _images(2), "tabular": rows}, ["ig(steps=64)"], target="value")
    assert tuple(e.attributions["tabular"].shape) == (2, 3)
    # normalisation from the card: the second row's water feature is at its baseline (0)
    assert float(e.attributions["tabular"][1, 2]) == 0.0
    share = e.modality_share()
    assert set(share) == {"image", "tabular"}
    # completeness over both inputs
    with torch.no_grad():
        from seewhy.api import as_inputs

        x = as_inputs(model, {"image": _images(2), "tabular": rows})
        fx = model.forward(x)[:, 0]
        fb = model.forward(
            x.replace(image=torch.zeros_like(x["image"]), tabular=torch.zeros_like(x["tabular"]))
        )[:, 0]
    total = e.raw["image"].flatten(1).sum(1) + e.raw["tabular"].sum(1)
    torch.testing.assert_close(total, fx - fb, atol=2e-3, rtol=1e-2)


@pytest.mark.parametrize(
    ("returns", "output"),
    [
        ("tuple", None),
        ("tuple", 0),
        ("dict", None),
        ("dict", "logits"),
        ("model_output", None),
        ("heads", "kind"),
    ],
)
def test_outputs_that_are_not_one_tensor(returns: str, output: str | int | None) -> None:
    plain = image_text_model()
    other = image_text_model(returns=returns, output=output)
    batch = {"image": _images(2), "text": TEXTS[:2]}
    (a,) = explain(plain, batch, ["ig(steps=8)"], target="pred")
    (b,) = explain(other, batch, ["ig(steps=8)"], target="pred")
    torch.testing.assert_close(a.raw["text"], b.raw["text"])
    torch.testing.assert_close(a.output, b.output)


def test_a_multi_task_head_is_chosen_by_name_and_a_wrong_name_is_named() -> None:
    size = image_text_model(returns="heads", output="size", labels=[])
    (e,) = explain(size, {"image": _images(2), "text": TEXTS[:2]}, ["saliency"], target=1)
    assert e.output is not None and tuple(e.output.shape) == (2, 2)
    bad = image_text_model(returns="heads", output="sizes")
    with pytest.raises(ModelOutputError, match=r"'sizes'.*kind, size.*did you mean 'size'"):
        explain(bad, {"image": _images(1), "text": TEXTS[:1]}, ["saliency"])
    no_key = image_text_model(returns="heads")
    with pytest.raises(ModelOutputError, match="output = "):
        explain(no_key, {"image": _images(1), "text": TEXTS[:1]}, ["saliency"])


@pytest.mark.parametrize("method", [*GRADIENT, "gradcam"])
def test_hooks_gone_and_model_unchanged_after_success_and_error(method: str) -> None:
    model = image_text_model()
    model.module.train()
    before = snapshot(model.module)
    explain(model, {"image": _images(2), "text": TEXTS[:2]}, [method])
    assert_same(snapshot(model.module), before)
    # an error inside forward: NaN image -> refused, hooks still removed
    bad = _images(2)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(Exception, match="NaN"):
        explain(model, {"image": bad, "text": TEXTS[:2]}, [method])
    assert_same(snapshot(model.module), before)
    assert not any(m._forward_hooks for m in model.module.modules())


def test_batched_equals_per_sample_with_ragged_texts() -> None:
    model = image_text_model()
    x = _images(4)
    ids = ["a", "b", "c", "d"]
    for method in ["ig(steps=8)", "smoothgrad(samples=4)", "shap(samples=4)"]:
        (whole,) = explain(
            model,
            {"image": x, "text": TEXTS},
            [method],
            sample_ids=ids,
            batch_size=3,
            background=[],
        )
        for i in range(4):
            (one,) = explain(
                model,
                {"image": x[i : i + 1], "text": TEXTS[i : i + 1]},
                [method],
                sample_ids=ids[i : i + 1],
                background=[],
            )
            torch.testing.assert_close(
                one.raw["text"][0], whole.raw["text"][i], atol=1e-5, rtol=1e-4
            )
            torch.testing.assert_close(
                one.raw["image"][0], whole.raw["image"][i], atol=1e-5, rtol=1e-4
            )
            a, b = one.per_sample["words"][0], whole.per_sample["words"][i]
            assert [w["word"] for w in a] == [w["word"] for w in b]
            assert [w["score"] for w in a] == pytest.approx([w["score"] for w in b], abs=1e-5)


def test_long_text_is_truncated_with_a_warning() -> None:
    model = image_text_model(max_length=6)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        (e,) = explain(model, {"image": _images(1), "text": [TEXTS[2]]}, ["saliency"])
    assert any("truncated" in str(w.message) and "max_length=6" in str(w.message) for w in seen)
    assert [t["token"] for t in e.per_sample["tokens"][0]] == ["the", "cat", "sat", "on"]


def test_bad_text_and_tabular_inputs_are_one_line_errors(tmp_path: object) -> None:
    missing = Model(
        module=ImageTextNet(),
        inputs={"image": "pixel_values", "text": {"tokenizer": "/nowhere/tokenizer"}},
    )
    with pytest.raises(UsageError, match="tokenizer /nowhere/tokenizer does not exist"):
        explain(missing, {"image": _images(1), "text": ["hi"]}, ["saliency"])
    wrong_layer = image_text_model()
    wrong_layer.modalities.text.embedding = "bert.embeddings.word_embedding"  # type: ignore[union-attr]
    with pytest.raises(UsageError, match=r"did you mean 'bert\.embeddings\.word_embeddings'"):
        explain(wrong_layer, {"image": _images(1), "text": ["hi"]}, ["saliency"])
    tab = image_tabular_model()
    with pytest.raises(UsageError, match=r"no column 'water'.*did you mean 'waters'"):
        explain(
            tab, {"image": _images(1), "tabular": [{"sqft": 1, "grade": 2, "waters": 0}]}, ["ig"]
        )
    with pytest.raises(UsageError, match="column 'grade' = 'high' is not a number"):
        explain(
            tab,
            {"image": _images(1), "tabular": [{"sqft": 1, "grade": "high", "water": 0}]},
            ["ig"],
        )
    with pytest.raises(UsageError, match="takes no text"):
        explain(tab, {"image": _images(1), "text": ["hi"]}, ["ig"])
    with pytest.raises(
        UsageError,
        match=r"\[inputs\] text has an unknown key 'tokeniser'.*"
        "did you mean 'tokenizer'",
    ):
        Model(module=ImageTextNet(), inputs={"text": {"tokeniser": "x"}})


def test_target_head_colon_label_picks_a_head_of_a_multi_task_model() -> None:
    kind = image_text_model(returns="heads", output="kind")
    batch = {"image": _images(2), "text": TEXTS[:2]}
    (size,) = explain(kind, batch, ["ig(steps=8)"], target="size:1")
    assert size.output is not None and tuple(size.output.shape) == (2, 2)
    assert size.target_indices is not None and size.target_indices.tolist() == [1, 1]
    only_size = image_text_model(returns="heads", output="size", labels=[])
    (same,) = explain(only_size, batch, ["ig(steps=8)"], target=1)
    torch.testing.assert_close(size.raw["text"], same.raw["text"])
    # the card's own head keeps its labels: kind:c is class 2
    (c,) = explain(kind, batch, ["saliency"], target="kind:c")
    assert c.target_indices is not None and c.target_indices.tolist() == [2, 2]
    with pytest.raises(ModelOutputError, match=r"'sise'.*did you mean 'size'"):
        explain(kind, batch, ["saliency"], target="sise:1")


def test_occlusion_removes_each_token_and_feature_alone() -> None:
    from seewhy.api import as_inputs

    model = image_text_model()
    batch = {"image": _images(2), "text": TEXTS[:2]}
    (e,) = explain(model, batch, ["occlusion"], target="pred")
    x = as_inputs(model, batch)
    assert e.target_indices is not None
    cls = e.target_indices
    with torch.no_grad():
        clean = model.forward(x).gather(1, cls[:, None])[:, 0]
        for row, pos in [(0, 2), (0, 6), (1, 1)]:  # 'red', 'border', 'hello'
            ids = x["input_ids"].clone()
            ids[row, pos] = 0
            removed = model.forward(x.replace(input_ids=ids))[row, int(cls[row])]
            assert float(e.attributions["text"][row, pos]) == pytest.approx(
                float(clean[row] - removed), abs=1e-5
            )
    special = (x["input_ids"] == 101) | (x["input_ids"] == 102) | (x["input_ids"] == 0)
    assert float(e.attributions["text"][special].abs().max()) == 0.0
    assert [w["word"] for w in e.per_sample["words"][1]] == ["hello"]
    # tabular: each feature set to 0 (its mean) alone
    tab = image_tabular_model()
    rows = [[1500, 7, 1], [800, 3, 0]]
    (t,) = explain(tab, {"image": _images(2), "tabular": rows}, ["occlusion"], target="value")
    xt = as_inputs(tab, {"image": _images(2), "tabular": rows})
    with torch.no_grad():
        f = tab.forward(xt)[:, 0]
        for j in range(3):
            feats = xt["tabular"].clone()
            feats[:, j] = 0
            torch.testing.assert_close(
                t.attributions["tabular"][:, j], f - tab.forward(xt.replace(tabular=feats))[:, 0]
            )


def test_rise_finds_the_feature_a_regressor_reads_and_is_batch_independent() -> None:
    class OneFeature(nn.Module):
        def forward(self, image: Tensor, features: Tensor) -> Tensor:
            return 3.0 * features[:, 1] + 0.0 * image.mean(dim=(1, 2, 3))

    model = Model(
        OneFeature(),
        task="regression",
        labels=["price"],
        num_outputs=1,
        inputs={"tabular": {"arg": "features", "columns": ["a", "b", "c"]}},
    )
    rows = [[0.5, 2.0, -1.0], [1.0, -1.0, 2.0], [0.0, 1.5, 0.3]]
    batch = {"image": _images(3), "tabular": rows}
    (e,) = explain(model, batch, ["rise(masks=400)"], target="value", sample_ids=["p", "q", "r"])
    scores = e.attributions["tabular"]
    # E[s | b kept] - E[s] = 3 * b * (1 - p) = 1.5 * b (up to sampling noise); a and c ~ 0
    torch.testing.assert_close(
        scores[:, 1], 1.5 * torch.tensor([2.0, -1.0, 1.5]), atol=0.35, rtol=0
    )
    assert float(scores[:, [0, 2]].abs().max()) < 0.35
    assert float(e.attributions["image"].abs().max()) < 0.35  # not read: sampling noise only
    (one,) = explain(
        model,
        {"image": _images(3)[1:2], "tabular": rows[1:2]},
        ["rise(masks=400)"],
        target="value",
        sample_ids=["q"],
    )
    torch.testing.assert_close(one.attributions["tabular"][0], scores[1])


def test_rise_text_scores_follow_the_words_a_model_reads() -> None:
    model = image_text_model()
    batch = {"image": _images(2), "text": TEXTS[:2]}
    (e,) = explain(model, batch, ["rise(masks=64)"], target="pred")
    assert tuple(e.attributions["text"].shape) == (2, 12)
    ids = model.text.encode(TEXTS[:2])[0]["input_ids"]  # type: ignore[union-attr]
    special = (ids == 101) | (ids == 102) | (ids == 0)
    assert float(e.attributions["text"][special].abs().max()) == 0.0
    assert float(e.attributions["text"][~special].abs().min()) > 0.0


def test_a_head_on_a_model_that_returns_one_tensor_is_refused() -> None:
    model = image_text_model()  # returns the logits tensor itself
    with pytest.raises(ModelOutputError, match=r"output 'junk'.*one tensor"):
        explain(model, {"image": _images(1), "text": TEXTS[:1]}, ["saliency"], target="junk:1")
