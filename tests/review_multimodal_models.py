"""Models for tests/jobs/test_review_multimodal.py (an outside review's reproductions)."""

import torch
from torch import nn

from multimodal_models import ImageTextNet


def heads():
    return ImageTextNet(returns="heads")


def tuple_net():
    return ImageTextNet(returns="tuple")


class FeatsFirst(ImageTextNet):
    """returns (features [B, 64], logits [B, 3]): the first tensor is NOT the logits."""

    def forward(self, pixel_values, input_ids, attention_mask):
        logits, feats = super().forward(pixel_values, input_ids, attention_mask)
        return feats, logits


def feats_first():
    return FeatsFirst(returns="tuple")


class PosOnly(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lin = nn.Linear(3, 4)
        self.head = nn.Linear(8, 1)

    def forward(self, x, /, features):
        return self.head(torch.cat([torch.tanh(self.conv(x)).mean((2, 3)), self.lin(features)], 1))[
            :, 0
        ]


class ImageOnlyOrText(nn.Module):
    """A text-only classifier: forward(input_ids, attention_mask)."""

    def __init__(self):
        super().__init__()
        from multimodal_models import tiny_bert

        self.bert = tiny_bert(0)
        self.head = nn.Linear(32, 2)

    def forward(self, input_ids, attention_mask):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(h[:, 0])
