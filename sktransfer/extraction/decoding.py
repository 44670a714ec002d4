"""Images decoded and resized for a batch (threads), then stacked and normalised at once."""

from __future__ import annotations

import os

import torch
from joblib import Parallel, delayed

from ..inputs.images import ImageDecodeError


def decode_batch(images, transform, indices, n_jobs):
    """Decode ``images[indices]`` and resize them: a list of ``(tensor, None)`` or ``(None, error)``.

    With a :class:`~sktransfer.backbones.preprocess.Preprocess` the tensors are only
    resized (uint8 stays uint8, four times less to move); :func:`to_batch`
    normalises the whole batch at once.  Any other transform runs whole.
    """
    resize = getattr(transform, "resize_size", None)
    min_size = min(resize) if resize else None
    geometric = getattr(transform, "resize", transform)

    def one(i):
        try:
            return geometric(images.image(i, min_size)), None
        except ImageDecodeError as exc:
            return None, str(exc)
    if n_jobs in (None, 1) or len(indices) == 1:
        return [one(i) for i in indices]
    n_jobs = min(n_jobs, os.cpu_count() or 1)  # more threads than cores only wait
    # Pillow and torch release the GIL while decoding and resizing: threads suffice.
    return Parallel(n_jobs=n_jobs, prefer="threads")(delayed(one)(i) for i in indices)


def to_batch(tensors, transform):
    """Stack what :func:`decode_batch` made into a normalised float batch."""
    if not hasattr(transform, "normalize"):
        return torch.stack(tensors)
    if len({t.dtype for t in tensors}) > 1:  # uint8 and float images in one batch: rare
        return torch.stack([transform.normalize(t) for t in tensors])
    return transform.normalize(torch.stack(tensors))
