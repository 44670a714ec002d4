"""Random draws that belong to one fit, and the one door to torch's global generator.

A fit draws from generators of its own, seeded from its ``random_state``
(:func:`fit_generator`): the head's initial weights, the order of batches,
the dropout masks.  Fits running at the same time in threads (joblib's
threading backend, a Dask worker with several threads) then get the results
they get alone.

Some draws cannot be given a generator: torchvision and timm initialise a
network they build from torch's process-global generator, and so do
torchvision's random augmentations and the stochastic depth of some
backbones' blocks.  Those run inside :func:`global_rng`: one caller at a
time in the process, seeded, and the global generator's state restored
afterwards, so that a fit leaves it as it found it.
"""

from __future__ import annotations

import contextlib
import threading

import torch

_GLOBAL = threading.RLock()


def fit_generator(seed, device="cpu"):
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


@contextlib.contextmanager
def global_rng(seed=None, devices=()):
    """Use torch's global generator alone, seeded with ``seed``, and restore it afterwards.

    Parameters
    ----------
    seed : int or None, default=None
        ``None``: draw from the global generator as it is (an unseeded
        caller's own stream), without restoring it.
    devices : sequence of int, default=()
        CUDA devices whose generators are seeded and restored too.
    """
    with _GLOBAL:
        if seed is None:
            yield
            return
        with torch.random.fork_rng(devices=list(devices)):
            torch.manual_seed(int(seed))
            yield
