"""The trainable network of an estimator, and how training batches reach it.

:class:`TransferNet` is what the skorch net trains: the blocks that may be
unfrozen, the pooling (:func:`sktransfer.backbones.pooling.make_pooling`) and the new head (and, with
``augment``, the frozen prefix run on fresh images).  :class:`Labelled` pairs inputs with labels as
skorch expects, and :class:`Batches` feeds cached activations to skorch a
whole batch at a time.
"""

from __future__ import annotations


import math

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
    """``nn.Dropout`` with a cheaper mask, drawn from a generator of its own.

    The head trains on cached features, so drawing the mask was the largest
    part of a phase-1 step.  Torch's CPU dropout samples a Bernoulli per
    element; here each element gets 16 random bits, drawn four to a 64-bit
    integer (``p`` is resolved to 1/65536).

    Attributes
    ----------
    generator : torch.Generator or None
        Where the masks come from (a fit sets its own, on the device the
        head trains on); ``None``: torch's global generator.  Not pickled.
    """

    generator = None

    def forward(self, x):  # noqa: D102 - torch convention
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        words = torch.randint(-2**63, 2**63 - 1, (-(-n // 4),), dtype=torch.int64,
                              device=x.device, generator=self.generator)
        bits = words.view(torch.int16)[:n].view(x.shape)  # uniform in [-32768, 32767]
        keep = bits >= round(self.p * 65536) - 32768
        return torch.mul(x, keep).mul_(1.0 / (1.0 - self.p))

    def __getstate__(self):
        # A CUDA generator would not unpickle on a machine without one.
        state = self.__dict__.copy()
        state.pop("generator", None)
        return state


def _linear(n_in, n_out, generator):
    """``nn.Linear(n_in, n_out)`` with its own initialisation, drawn from ``generator``."""
    # made on the meta device, then given memory where tensors are made now (the meta
    # device itself when a model file's architecture is checked before it is built)
    layer = nn.Linear(n_in, n_out, device="meta").to_empty(device=torch.get_default_device())
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(n_in) if n_in else 0
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def make_head(in_features, hidden_units, dropout, n_classes, generator, dropout_generator=None):
    """``[Linear, ReLU] * len(hidden_units)``, then dropout and the output layer.

    The initial weights are drawn from ``generator`` (a ``torch.Generator``
    on the CPU), as ``nn.Linear`` draws them from torch's global one; the
    dropout masks from ``dropout_generator`` (on the device it trains on).
    """
    layers, width = [], in_features
    for units in hidden_units:
        layers += [_linear(width, units, generator), nn.ReLU()]
        width = units
    if dropout > 0:
        layers.append(Dropout(dropout))
        layers[-1].generator = dropout_generator
    layers.append(_linear(width, n_classes, generator))
    return nn.Sequential(*layers)


#: The logit of an output that never fires: sigmoid(-30) is about 1e-13.
NEVER = -30.0


def silence_outputs(head, outputs):
    """Make the head's ``outputs`` (indices) constant at :data:`NEVER`, whatever the input.

    For the labels of a multi-label ``y`` that no training image has: their
    weights are zeroed and their bias set in the head itself, so every path
    that runs the network (predict, a model file, ONNX, explain) agrees.
    """
    last = head[-1]
    with torch.no_grad():
        last.weight[outputs] = 0
        last.bias[outputs] = NEVER


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
             nn.FeatureAlphaDropout)


def _drop_rate(m):
    if isinstance(m, Dropout):  # ours draws from the fit's generator
        return 0
    if isinstance(m, _DROPOUTS) or type(m).__name__ == "StochasticDepth":  # torchvision's
        return m.p
    return getattr(m, "drop_prob", 0) if type(m).__name__ == "DropPath" else 0  # timm's


def draws_globally(modules):
    """Whether training ``modules`` draws from torch's global generator: dropout other than
    :class:`Dropout`, or stochastic depth, at a rate above 0."""
    return any(_drop_rate(m) for module in modules for m in module.modules())


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
        A new order each pass, drawn from ``generator``.
    **kwargs
        Passed to ``DataLoader`` for datasets that are not in memory;
        ``generator`` (a ``torch.Generator``, the fit's own) draws the order
        in both cases.
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
        order = torch.randperm(n, generator=self.kwargs.get("generator")) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield data[start:start + self.batch_size], y[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size]
                yield data[index], y[index]
