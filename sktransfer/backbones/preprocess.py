"""The preprocessing of a backbone's weights: resize (and crop), then normalise.

:class:`Preprocess` is what the weights' own preset does (torchvision's
``ImageClassification``, timm's eval transform), split in a geometric part
(run while decoding, on uint8) and an arithmetic part (run on whole
batches); its ``repr`` names every setting, because the activation cache's
fingerprint relies on it.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(nn.Module):
    """Image tensor ``(3, h, w)`` (uint8 or float in [0, 1]) -> normalised ``(3, s, s)``.

    Attributes
    ----------
    crop_size : list of int
        ``[s]``, the output side.
    resize_size : list of int
        The resize before cropping (``[r]``: shorter side), or ``[s, s]``
        when the whole image is resized without cropping.
    mean, std : tuple of float
    crop : bool
    interpolation : str
        ``torchvision.transforms.InterpolationMode`` value (``"bilinear"``,
        ``"bicubic"``...).
    """

    interpolation = "bilinear"  # what a Preprocess pickled before the setting existed did

    def __init__(self, size, resize, mean, std, crop, interpolation="bilinear"):
        super().__init__()
        self.crop = bool(crop)
        self.crop_size = [int(size)]
        self.resize_size = [int(resize)] if crop else [int(size), int(size)]
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(v) for v in std)
        self.interpolation = InterpolationMode(str(interpolation).lower()).value

    def settings(self):
        """What this preprocessing does, as a :class:`~sktransfer.backbones.records.Preset`'s
        fields (JSON values): what a model file records, so that a loaded model
        preprocesses exactly as its fit did, whatever the weights' defaults are now."""
        return {"input_size": self.crop_size[0], "resize_size": self.resize_size[0],
                "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}

    def forward(self, img):  # noqa: D102 - torch convention
        return self.normalize(self.resize(img))

    def resize(self, img):
        """The geometric part: resize (and crop), in the image's own dtype (uint8 stays uint8)."""
        img = TF.resize(img, self.resize_size, InterpolationMode(self.interpolation),
                        antialias=True)
        return TF.center_crop(img, self.crop_size) if self.crop else img

    def normalize(self, img):
        """The arithmetic part, on one image ``(3, s, s)`` or a batch ``(n, 3, s, s)``.

        ``(x / 255 - mean) / std`` as one multiply and one add per pixel
        (``x * (1 / (255 std)) - mean / std``): within 1e-6 of torchvision's
        ``convert_image_dtype`` then ``normalize`` (tested), at a sixth of
        their time, which mattered once the engines ran faster than decoding.
        Elementwise, so a batch gives exactly what its images give one by one.
        """
        unit = 255.0 if img.dtype == torch.uint8 else 1.0
        x = img.to(torch.float32) if unit != 1.0 else TF.convert_image_dtype(img, torch.float32)
        scale = torch.tensor([1.0 / (unit * s) for s in self.std], device=x.device).view(3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)],
                             device=x.device).view(3, 1, 1)
        # x is a new tensor only when it was converted: never change the caller's
        x = x.mul_(scale) if x is not img else x.mul(scale)
        return x.add_(shift)

    def extra_repr(self):  # the cache fingerprint relies on repr naming every setting
        return (f"crop_size={self.crop_size}, resize_size={self.resize_size}, crop={self.crop}, "
                f"mean={self.mean}, std={self.std}, interpolation={self.interpolation}, "
                "antialias=True")
