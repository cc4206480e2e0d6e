"""Two or more models on one sample: the comparison figure and the agreement entries."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from seewhy.checks.agreement import COMPARE_SIDE
from seewhy.checks.agreement import place as _place
from seewhy.data.output import OutputFolder
from seewhy.data.samples import Sample
from seewhy.data.summary import prediction_text, upsert

if TYPE_CHECKING:
    import numpy as np

    from seewhy.core.model import Model


def compare_models(
    models: Sequence[Model],
    methods: Sequence[str],
    out: OutputFolder,
    summary: dict[str, Any],
    sample: Sample,
    decoded: Any,
    per_model: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]],
) -> None:
    """The comparison figure and agreement entries of one sample (two or more models)."""

    from seewhy.render.figures import ComparisonRow, comparison_figure

    models = [m for m in models if m.name in per_model]
    if len(models) < 2:
        return
    image, framed = _common_frame(models, decoded.image, per_model)
    rows, lines = [], []
    for a, b in itertools.combinations(models, 2):
        ea, ma = per_model[a.name]
        eb, mb = per_model[b.name]
        metrics = []
        for method in methods:
            if method not in ma or method not in mb:
                continue
            fa, ca = framed[a.name][method]
            fb, cb = framed[b.name][method]
            both = ca & cb  # compared where both models saw the image
            agreement = _agreement(sample.id, a.name, b.name, method, ea, eb, fa[both], fb[both])
            agreement.update(word_agreement(ea, eb, method))
            upsert(summary["agreement"], agreement, "sample", "models", "method")
            metrics.append(
                f"{method}: rank correlation {agreement['rank_correlation']:.2f}, "
                f"top-10% IoU {agreement['top_iou']:.2f}"
                + (
                    f", words {agreement['word_rank_correlation']:.2f}"
                    if "word_rank_correlation" in agreement
                    else ""
                )
            )
        if metrics:
            lines += [_pair_line(a.name, b.name, ea, eb, len(models) > 2), *metrics]
    for model in models:
        entry, _ = per_model[model.name]
        maps = {m: shown for m, (shown, _) in framed[model.name].items()}
        rows.append(
            ComparisonRow(
                model=model.name, prediction=prediction_text(entry["prediction"]), maps=maps
            )
        )
    path = out.comparison(sample.id)
    comparison_figure(
        path,
        image=image,
        rows=rows,
        agreement="\n".join(lines),
        grayscale=decoded.grayscale,
    )
    for a in summary["agreement"]:
        if a["sample"] == sample.id:
            a["comparison_figure"] = out.rel(path)


def _common_frame(
    models: Sequence[Model],
    image: Any,
    per_model: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]],
) -> tuple[np.ndarray, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """The image and every model's maps in one frame, with where each map covers it.

    Models that resize and crop alike (the usual case) share their input frame: the image is
    the first model's frame and the maps are used as they are. Models that crop differently
    (a timm model with ``crop_pct = 0.875`` beside one at 1.0) see different parts of the
    image: their maps are placed where their frame lies on the original image, on a grid of
    :data:`COMPARE_SIDE` pixels along its longer side, and agreement is computed only where
    both maps cover it.
    """
    import numpy as np

    width, height = image.size
    boxes = [m.preprocess.box(width, height) for m in models]
    if all(np.allclose(b, boxes[0], atol=1e-6) for b in boxes):
        # the same part of the image, maybe at other sizes (a 224 px model beside a 384 px
        # one): every map resampled to the first model's frame
        shown = np.asarray(models[0].preprocess.frame(image))
        side = shown.shape[:2]
        return shown, {
            m.name: {
                k: (r, np.ones(r.shape, bool))
                for k, r in ((k, _resized(v, side)) for k, v in per_model[m.name][1].items())
            }
            for m in models
        }
    scale = min(1.0, COMPARE_SIDE / max(width, height))
    grid = (max(1, round(width * scale)), max(1, round(height * scale)))
    framed = {
        m.name: {k: _place(v, box, (width, height), grid) for k, v in per_model[m.name][1].items()}
        for m, box in zip(models, boxes, strict=True)
    }
    return np.asarray(image.convert("RGB")), framed


def _resized(heat: np.ndarray, side: tuple[int, int]) -> np.ndarray:
    """``heat`` (h, w) bilinearly resampled to ``side`` (h, w); as it is when it fits."""
    import numpy as np

    if heat.shape[-2:] == tuple(side):
        return heat
    import torch
    import torch.nn.functional as F

    src = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    out = F.interpolate(src, size=tuple(side), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def _agreement(
    sample: str,
    a: str,
    b: str,
    method: str,
    ea: dict[str, Any],
    eb: dict[str, Any],
    ma: np.ndarray,
    mb: np.ndarray,
) -> dict[str, Any]:
    import torch

    from seewhy.checks.agreement import rank_correlation, top_iou

    pa, pb = ea["prediction"], eb["prediction"]
    same = pa.get("label") == pb.get("label") if "label" in pa else False
    ta, tb = torch.from_numpy(ma), torch.from_numpy(mb)
    return {
        "sample": sample,
        "models": [a, b],
        "method": method,
        "same_prediction": bool(same),
        "rank_correlation": round(rank_correlation(ta, tb), 4),
        "top_iou": round(top_iou(ta, tb, 0.1), 4),
    }


def word_agreement(ea: dict[str, Any], eb: dict[str, Any], method: str) -> dict[str, Any]:
    """Two image+text models on one sample's text (the same words): Spearman's rho of their
    word scores (``word_rank_correlation``) and whether their top word is the same
    (``same_top_word``). Empty when either has no words, or their words differ (another
    tokenizer splits the text otherwise)."""
    import torch

    from seewhy.checks.agreement import rank_correlation

    def words(entry: dict[str, Any]) -> list[dict[str, Any]]:
        found = [a for a in entry.get("attributions", []) if a.get("method") == method]
        return list(found[0].get("words", [])) if found else []

    wa, wb = words(ea), words(eb)
    if not wa or [w["word"] for w in wa] != [w["word"] for w in wb]:
        return {}
    sa = torch.tensor([w["score"] for w in wa])
    sb = torch.tensor([w["score"] for w in wb])
    return {
        "word_rank_correlation": round(rank_correlation(sa, sb), 4),
        "same_top_word": bool(int(sa.argmax()) == int(sb.argmax())),
    }


def _pair_line(a: str, b: str, ea: dict[str, Any], eb: dict[str, Any], named: bool) -> str:
    """What two models predict, in words (prefixed with their names when there are more)."""
    pa, pb = ea["prediction"], eb["prediction"]
    if "label" not in pa and "label" not in pb:
        return f"{a}: {pa['value']:.4g}, {b}: {pb['value']:.4g}"
    if "label" not in pa or "label" not in pb:  # a classifier beside a regressor
        return f"{a}: {prediction_text(pa)}, {b}: {prediction_text(pb)}"
    if pa.get("label") != pb.get("label"):
        return f"models disagree: {a} says {pa['label']}, {b} says {pb['label']}"
    return (
        f"{a} vs {b}: both predict {pa['label']}" if named else f"both models predict {pa['label']}"
    )
