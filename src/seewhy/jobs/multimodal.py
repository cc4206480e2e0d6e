"""The text and tabular inputs of a ``seewhy explain`` run: what each sample gives the model
beside its image, and what summary.json and the figures say about them.

A multimodal model's card names its inputs (SPEC 3 ``[inputs]``): a sample's text comes from
``--text`` or the manifest's ``--text-col``, its tabular features from the manifest's columns
that the card lists (normalised as the card says). summary.json's ``attributions[]`` entry of a
method then holds, beside the image map:

- ``tokens[]`` {``token``, ``score``} and ``words[]`` {``word``, ``score``, ``abs_score``,
  ``tokens``} (word pieces merged; special tokens and padding left out);
- ``features[]`` {``name``, ``value`` (as in the manifest), ``score``};
- ``modality_share`` {``image``, ``text``, ``tabular``}: each input's share of the total
  ``|attribution|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from torch import Tensor

    from seewhy.core.explanation import Explanation
    from seewhy.core.model import Model
    from seewhy.data.samples import Sample


def check_samples(model: Model, samples: Sequence[Sample]) -> None:
    """Run-level checks before any work (exit 2): a text model needs a text per sample; a
    tabular model needs its columns in the manifest."""
    if model.text is not None:
        if samples and all(s.text is None for s in samples):  # a forgotten --text
            raise UsageError(
                f"model '{model.name}' takes text, but no sample has any; give --text \"...\" "
                "or a manifest with --text-col"
            )
        model.text.load_tokenizer()  # a bad tokenizer path fails here, once
    if model.tabular is not None:
        if not model.tabular.columns:
            raise UsageError(
                f"model '{model.name}': [inputs] tabular lists no columns; name the manifest "
                "columns the model takes"
            )
        for s in samples:
            lacking = [c for c in model.tabular.columns if c not in s.row]
            if lacking:
                columns = [str(k) for k in s.row] or ["none: give a manifest with --data"]
                raise UsageError(
                    f"model '{model.name}' takes tabular column '{lacking[0]}', which the "
                    f"manifest lacks{did_you_mean(lacking[0], columns)} Columns: "
                    f"{', '.join(columns)}"
                )


def named_batch(model: Model, images: Tensor, samples: Sequence[Sample]) -> tuple[Any, list[bool]]:
    """The batch ``seewhy.explain`` takes for ``samples`` (the image tensor alone for an image
    model; named inputs otherwise) and, per sample, whether its text was truncated."""
    if not model.modalities.multimodal:
        return images, [False] * len(samples)
    inputs: dict[str, Any] = {"image": images}
    truncated = [False] * len(samples)
    if model.text is not None:
        for s in samples:  # a blank text cell fails its sample alone
            if s.text is None:
                raise UsageError(f"sample {s.id} has no text (a blank --text-col cell)")
        texts = [str(s.text) for s in samples]
        entries, truncated = model.text.encode(texts)
        inputs.update(entries)
    if model.tabular is not None:
        inputs["tabular"] = model.tabular.encode(
            [s.row for s in samples], labels=[f"sample {s.id}" for s in samples]
        )
    return inputs, truncated


def usable_row(model: Model, sample: Sample) -> bool:
    """Whether a sample can be a background row: its text present, its features numbers."""
    if model.text is not None and sample.text is None:
        return False
    if model.tabular is not None:
        try:
            model.tabular.encode([sample.row])
        except UsageError:
            return False
    return True


def request_inputs(model: Model, sample: Sample) -> dict[str, Any]:
    """What a result depends on beside the image: the text and the tabular values."""
    out: dict[str, Any] = {}
    if model.text is not None:
        out["text"] = sample.text
        out["max_length"] = model.text.max_length
    if model.tabular is not None:
        out["tabular"] = [str(sample.row.get(c)) for c in model.tabular.columns]
    return out


def records(model: Model, e: Explanation, i: int, sample: Sample) -> dict[str, Any]:
    """Row ``i``'s ``tokens``, ``words``, ``features`` and ``modality_share`` for its
    ``attributions[]`` entry (only what the model takes)."""
    out: dict[str, Any] = {}
    if "tokens" in e.per_sample:
        out["tokens"] = [
            {"token": t["token"], "score": t["score"]} for t in e.per_sample["tokens"][i]
        ]
        out["words"] = [dict(w) for w in e.per_sample["words"][i]]
    if model.tabular is not None and "tabular" in e.attributions:
        scores = e.attributions["tabular"][i].tolist()
        out["features"] = [
            {"name": c, "value": _value(sample.row.get(c)), "score": float(v)}
            for c, v in zip(model.tabular.columns, scores, strict=False)
        ]
    if len(e.attributions) > 1:
        out["modality_share"] = {k: float(v[i]) for k, v in e.modality_share().items()}
    return out


def _value(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None if v is None else str(v)
