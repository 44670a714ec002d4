"""Deterministic augmented views of an image: what ``augment_views`` trains on and ``tta`` averages.

A view is a fixed geometric and photometric change (a crop box in
fractions of the image, a horizontal flip, a brightness and contrast
factor).  View ``k`` is the same for every image, estimator, process and
seed, so its activations are cached like the original's: keyed by the
image's content and the view's :attr:`View.token`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2 import functional as F

# Random-resized-crop ranges of the views after the flip: mild, because each
# view is computed once and reused, not redrawn every epoch.
CROP_AREA = (0.6, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.1  # brightness and contrast factors within 1 +- JITTER


@dataclass(frozen=True)
class View:
    """One deterministic change of an image.

    Attributes
    ----------
    flip : bool
        Mirror left-right.
    box : tuple of float
        ``(top, left, height, width)`` as fractions of the image.
    brightness, contrast : float
        Factors (1: unchanged), as in ``torchvision.transforms.v2.functional``.
    """

    flip: bool = False
    box: tuple = (0.0, 0.0, 1.0, 1.0)
    brightness: float = 1.0
    contrast: float = 1.0

    @property
    def token(self):
        """The view's parameters as text: part of the cache key of its activations."""
        box = ",".join(f"{v:.4f}" for v in self.box)
        return (f"flip={int(self.flip)};box={box};"
                f"brightness={self.brightness:.4f};contrast={self.contrast:.4f}")

    @property
    def scale(self):
        """The crop's side relative to the image (the smaller of height and width)."""
        return min(self.box[2], self.box[3])

    def __call__(self, img):
        """Apply to a ``(3, h, w)`` tensor, uint8 or float (the dtype is kept)."""
        h, w = img.shape[-2:]
        top, left, height, width = self.box
        if self.box != (0.0, 0.0, 1.0, 1.0):
            img = F.crop(img, round(top * h), round(left * w),
                         max(1, round(height * h)), max(1, round(width * w)))
        if self.flip:
            img = F.horizontal_flip(img)
        if self.brightness != 1.0:
            img = F.adjust_brightness(img, self.brightness)
        if self.contrast != 1.0:
            img = F.adjust_contrast(img, self.contrast)
        return img


def make_views(k):
    """The first ``k`` views: a flip, then mild random-resized crops (every other one flipped).

    Parameters
    ----------
    k : int

    Returns
    -------
    list of View
        The same list for the same ``k`` everywhere; ``make_views(k)`` is a
        prefix of ``make_views(k + 1)``.
    """
    views = []
    for index in range(1, k + 1):
        if index == 1:
            views.append(View(flip=True))
            continue
        rng = np.random.default_rng(index)  # view k is fixed by k alone
        area = rng.uniform(*CROP_AREA)
        ratio = math.exp(rng.uniform(*np.log(CROP_RATIO)))
        height = min(1.0, math.sqrt(area / ratio))
        width = min(1.0, math.sqrt(area * ratio))
        top = rng.uniform(0, 1 - height)
        left = rng.uniform(0, 1 - width)
        brightness, contrast = 1 + rng.uniform(-JITTER, JITTER, size=2)
        views.append(View(flip=index % 2 == 1, box=(top, left, height, width),
                          brightness=float(brightness), contrast=float(contrast)))
    return views


class ViewPreprocess(nn.Module):
    """A backbone's preprocessing with a :class:`View` applied first.

    Exposes the same parts as :class:`sktransfer.backbones.preprocess.Preprocess`
    (``resize``, ``normalize``, ``crop_size``, ``resize_size``) so the
    extractor batches it the same way.

    Parameters
    ----------
    base : sktransfer.backbones.preprocess.Preprocess
    view : View
    """

    def __init__(self, base, view):
        super().__init__()
        self.base, self.view = base, view
        self.crop_size = base.crop_size
        # a crop of the image must still be decoded large enough for the resize
        self.resize_size = [math.ceil(s / view.scale) for s in base.resize_size]

    def resize(self, img):  # noqa: D102 - see Preprocess.resize
        return self.base.resize(self.view(img))

    def normalize(self, img):  # noqa: D102 - see Preprocess.normalize
        return self.base.normalize(img)

    def forward(self, img):  # noqa: D102 - torch convention
        return self.normalize(self.resize(img))

    def extra_repr(self):
        return self.view.token


def with_view(transform, view):
    """``transform`` preceded by ``view`` (``None``: ``transform`` itself)."""
    return transform if view is None else ViewPreprocess(transform, view)


def stack_views(original, views):
    """Rows of the original, then of each view, in that order: ``(n * (1 + k), ...)``."""
    return torch.cat([original, *views]) if views else original
