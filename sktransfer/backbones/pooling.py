"""How the last feature map (or token sequence) of a backbone becomes one vector."""

from __future__ import annotations

import copy

from torch import nn


class TokenPool(nn.Module):
    """Average or maximum over the tokens of a sequence ``(n, tokens, d)`` -> ``(n, d)``."""

    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, x):  # noqa: D102 - torch convention
        return x.mean(1) if self.how == "avg" else x.amax(1)

    def extra_repr(self):
        return self.how


def make_pooling(pooling, shape, own=None):
    """The layer turning the last feature map (or token sequence) of ``shape`` into a vector.

    Parameters
    ----------
    pooling : {"avg", "max", "flatten"}
    shape : tuple of int
        One image's output of the blocks: ``(c, h, w)``, ``(tokens, d)`` or ``(c,)``.
    own : torch.nn.Module or None
        The backbone's own pooling (:attr:`sktransfer.backbones.records.Backbone.pool`), a copy of which
        ``"avg"`` uses: a ViT's class token, a timm model's head norm.
    """
    if len(shape) == 1:  # a custom backbone that already pools
        return nn.Identity()
    if pooling == "flatten":
        return nn.Flatten(1)
    if pooling == "avg" and own is not None:
        return copy.deepcopy(own)
    if len(shape) == 2:
        return TokenPool(pooling)
    adaptive = nn.AdaptiveAvgPool2d(1) if pooling == "avg" else nn.AdaptiveMaxPool2d(1)
    return nn.Sequential(adaptive, nn.Flatten(1))
