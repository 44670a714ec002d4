"""The trainable network of a TransferClassifier, and how training batches reach it.

:class:`TransferNet` is what the skorch net trains: the blocks that may be
unfrozen, the pooling and the new head (and, with ``augment``, the frozen
prefix run on fresh images).  :class:`Labelled` pairs inputs with labels as
skorch expects, and :class:`Batches` feeds cached activations to skorch a
whole batch at a time.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TransferNet(nn.Module):
    """The trainable part: frozen modules (with ``augment``), the blocks that may train,
    pooling and head.

    Parameters
    ----------
    frozen : list of torch.nn.Module
        Modules run first, without gradients and in inference mode (the
        frozen prefix when ``augment=True``; empty when the input is cached
        activations).
    blocks : list of torch.nn.Module
        The backbone blocks that phase 2 trains (frozen in phase 1).
    pool : torch.nn.Module
    head : torch.nn.Module

    Attributes
    ----------
    head_only : bool
        When True, the input is already pooled features: only the head runs
        (phase 1 trains on features computed once).
    """

    def __init__(self, frozen, blocks, pool, head):
        super().__init__()
        self.frozen = nn.ModuleList(frozen)
        self.blocks = nn.ModuleList(blocks)
        self.pool = pool
        self.head = head
        self.head_only = False

    def train(self, mode=True):
        """Like ``nn.Module.train``, but the frozen modules stay in inference mode."""
        super().train(mode)
        if len(self.frozen):
            self.frozen.eval()
        return self

    @torch.inference_mode()
    def features(self, x, batch_size=256):
        """Pooled features of ``x`` through the frozen modules, blocks and pooling."""
        was_training = self.training
        self.eval()
        try:
            out = []
            for start in range(0, len(x), batch_size):
                h = x[start:start + batch_size].to(next(self.head.parameters()).device)
                for module in (*self.frozen, *self.blocks, self.pool):
                    h = module(h)
                out.append(h.float().cpu())
            return torch.cat(out)
        finally:
            self.train(was_training)

    def forward(self, x):  # noqa: D102 - torch convention
        if self.head_only:
            return self.head(x)
        if len(self.frozen):
            with torch.no_grad():
                for module in self.frozen:
                    x = module(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(x))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask: the same inverted dropout.

    The head trains on cached features, so drawing the mask was the largest
    part of a phase-1 step.  Torch's CPU dropout samples a Bernoulli per
    element; here each element gets 16 random bits, drawn four to a 64-bit
    integer (``p`` is resolved to 1/65536).
    """

    def forward(self, x):  # noqa: D102 - torch convention
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        words = torch.randint(-2**63, 2**63 - 1, (-(-n // 4),), dtype=torch.int64,
                              device=x.device)
        bits = words.view(torch.int16)[:n].view(x.shape)  # uniform in [-32768, 32767]
        keep = bits >= round(self.p * 65536) - 32768
        return torch.mul(x, keep).mul_(1.0 / (1.0 - self.p))


def make_head(in_features, hidden_units, dropout, n_classes):
    """``[Linear, ReLU] * len(hidden_units)``, then dropout and the output layer."""
    layers, width = [], in_features
    for units in hidden_units:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    if dropout > 0:
        layers.append(Dropout(dropout))
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


class Labelled(Dataset):
    """Images (or activations) paired with encoded labels, as skorch expects."""

    def __init__(self, data, y):
        self.data, self.y = data, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.data[i], self.y[i]


class Batches:
    """skorch's iterator for activations in memory: whole batches indexed at once.

    A ``DataLoader`` fetches each row and collates the batch again at every
    step; on cached activations that bookkeeping costs as much as the
    head's arithmetic.  Anything else (images decoded on the fly with
    ``augment``) goes through a ``DataLoader`` as usual.

    Parameters
    ----------
    dataset : Labelled or any Dataset
    batch_size : int
    shuffle : bool, default=False
        A new order each pass, drawn from torch's (seeded) generator.
    **kwargs
        Passed to ``DataLoader`` for datasets that are not in memory.
    """

    def __init__(self, dataset, batch_size, shuffle=False, **kwargs):
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.kwargs = kwargs
        self.in_memory = isinstance(dataset, Labelled) and torch.is_tensor(dataset.data)

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        if not self.in_memory:
            return iter(DataLoader(self.dataset, batch_size=self.batch_size,
                                   shuffle=self.shuffle, **self.kwargs))
        return self._batches()

    def _batches(self):
        data, y = self.dataset.data, torch.as_tensor(self.dataset.y)
        if self.kwargs.get("pin_memory"):  # as a DataLoader would, for fast copies to the GPU
            data, y = data.pin_memory(), y.pin_memory()
        n = len(y)
        order = torch.randperm(n) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield data[start:start + self.batch_size], y[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size]
                yield data[index], y[index]
