"""Shapes of what blocks output, worked out on the meta device (no arithmetic).

The architecture facts a fit needs before it runs anything: the shape of the
last feature map (to size pooling and head), the largest layer output (to
size batches), the length of a pooled vector.  Facts about a named
architecture are remembered per process, behind a lock.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import nn

def build_model(builder):
    """``builder()``, also under ``torch.device("meta")``: the one way a model is built.

    On the meta device (shapes only: no memory, no arithmetic) a builder that
    computes with tensors (RegNet's widths) cannot run; it is then built on the
    CPU and moved to the meta device, so every family gives a meta skeleton.
    """
    if torch.get_default_device().type != "meta":
        return builder()
    try:
        return builder()
    except NotImplementedError:  # "Cannot copy out of meta tensor": values were needed
        with torch.device("cpu"):
            return builder().to("meta")


_MEMO = {}  # (what, key) -> a shape or a size, for architectures that have a name
_MEMO_LOCK = threading.Lock()


def _remembered(what, key, compute):
    """``compute()``, once per process for a ``key`` that names an architecture (``None``: always)."""
    if key is None:
        return compute()
    with _MEMO_LOCK:
        if (what, key) in _MEMO:
            return _MEMO[what, key]
    value = compute()  # outside the lock: a second thread computing it gets the same fact
    with _MEMO_LOCK:
        return _MEMO.setdefault((what, key), value)


def feature_size(shape):
    """The length of a pooled vector of an output of ``shape``: the channels of a feature
    map ``(c, h, w)``, the width of a token sequence ``(tokens, d)``."""
    return shape[-1] if len(shape) == 2 else shape[0]


def feature_shape(blocks, image_size, device="meta", input_shape=None):
    """Shape of one image's output of ``blocks`` at ``image_size``.

    Computed on the meta device (shapes only, no arithmetic, weights left
    where they are), or by a dry run on ``device`` for modules meta tensors
    cannot go through.  ``input_shape`` (one sample's) replaces the image.

    Raises
    ------
    ValueError
        When the image size is too small for the network.
    """
    model = nn.Sequential(*blocks)
    shape = (3, image_size, image_size) if input_shape is None else tuple(input_shape)
    x = torch.zeros(1, *shape, device=device)
    state = None
    if device == "meta":
        state = {k: torch.empty_like(v, device="meta") for k, v in
                 [*model.named_parameters(), *model.named_buffers()]}
    was_training = [m.training for m in blocks]
    model.eval()
    try:
        with torch.inference_mode():
            out = torch.func.functional_call(model, state, (x,)) if state else model(x)
    except (NotImplementedError, RuntimeError) as exc:
        if device == "meta" and "meta" in str(exc).lower():
            return feature_shape(blocks, image_size, "cpu", input_shape)
        raise ValueError(
            f"image_size={image_size} is too small for this backbone "
            f"({str(exc).splitlines()[0]}); use a larger image_size."
        ) from None
    finally:
        for block, mode in zip(blocks, was_training):
            block.train(mode)
    return tuple(out.shape[1:])


def largest_activation(blocks, image_size, key=None):
    """The most numbers any layer of ``blocks`` outputs for one image (shapes on the meta
    device): what bounds the memory a batch needs on its way through them.

    ``key`` names these blocks exactly (remembered per process); ``None``: not remembered.
    """
    def compute():
        sizes = [3 * image_size * image_size]

        def record(module, args, out):
            if torch.is_tensor(out):
                sizes.append(out.numel())  # a batch of one
        handles = [m.register_forward_hook(record) for block in blocks for m in block.modules()]
        try:
            feature_shape(blocks, image_size)
        finally:
            for handle in handles:
                handle.remove()
        return max(sizes)
    return _remembered("largest", None if key is None else (key, image_size), compute)


def backbone_shape(bb, image_size):
    """Shape of the last feature map of backbone ``bb`` at ``image_size`` (once per architecture)."""
    key = None if bb.name == "custom" else (bb.name, image_size)  # a user's module: no name
    return _remembered("shape", key, lambda: feature_shape(bb.blocks, image_size))


def pooled_size(pool, shape):
    """Length of the vector ``pool`` makes from one feature map of ``shape``."""
    return int(math.prod(feature_shape([pool], None, input_shape=shape)))
