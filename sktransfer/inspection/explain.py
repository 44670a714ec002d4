"""Where a fitted network looks: Grad-CAM heatmaps at each image's own size.

Built on pytorch-grad-cam (the ``grad-cam`` package, the ``explain`` extra):
it is maintained, takes any target layer, and handles vision transformers
through a ``reshape_transform`` (their token sequence becomes a feature map),
which Captum's ``LayerGradCam`` leaves to the caller.  The heatmap comes from
the last backbone block -- the last feature map of a CNN, the last token
sequence but one of a ViT -- and is mapped back onto the whole image (or the center
crop, with ``crop=True``), so ``heatmap[y, x]`` matches ``image[y, x]``.

The frozen prefix runs here, on the images asked about, whatever the
activation cache holds: gradients need the full network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..backbones.shapes import feature_shape
from ..inputs.images import ImageDecodeError, as_images
from ..utils.progress import progress


class _Network(nn.Module):
    """Normalised images -> logits, through the blocks, the pooling and the head."""

    def __init__(self, blocks, tail):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.tail = nn.ModuleList(tail)

    def forward(self, x):  # noqa: D102 - torch convention
        for module in (*self.blocks, *self.tail):
            x = module(x)
        return x


def tokens_to_map(tokens):
    """A ViT's token sequence ``(n, prefix + g*g, d)`` -> feature map ``(n, d, g, g)``.

    The class and register tokens come first (timm's layout); the patch
    tokens of a square image form a ``g x g`` grid.
    """
    if tokens.dim() != 3:
        return tokens
    g = math.isqrt(tokens.shape[1])
    grid = tokens[:, tokens.shape[1] - g * g:, :]
    return grid.reshape(tokens.shape[0], g, g, tokens.shape[2]).permute(0, 3, 1, 2)


def _on_image(cam, transform, height, width):
    """A ``(s, s)`` map over the network input -> ``(height, width)`` over the image."""
    cam = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    if not getattr(transform, "crop", False):
        out = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)
        return out[0, 0].clamp(0, 1).numpy()
    # crop=True: the input is the center of the image resized so its shorter side is r.
    side = transform.crop_size[0] * min(height, width) / transform.resize_size[0]
    box_h, box_w = min(height, round(side)), min(width, round(side))
    top, left = (height - box_h) // 2, (width - box_w) // 2
    out = np.zeros((height, width), dtype=np.float32)
    out[top:top + box_h, left:left + box_w] = F.interpolate(
        cam, size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    return out


def _target_layer(blocks, transform):
    """The last block -- or, for a ViT, the one before it.

    A ViT's head reads only its class token, and its last block ends with a
    per-token norm: the patch tokens there get no gradient.  One block
    earlier, they reach the head through the last block's attention (as
    pytorch-grad-cam's ViT example does).
    """
    tokens = len(feature_shape(blocks, transform.crop_size[0])) == 2
    return blocks[-2] if tokens and len(blocks) > 1 else blocks[-1]


def grad_cam(blocks, tail, transform, X, targets=None, device="cpu", batch_size=8, verbose=0):
    """Grad-CAM heatmaps of ``X`` for ``targets`` (class indices; default: the predicted ones).

    Parameters
    ----------
    blocks : list of torch.nn.Module
        The backbone's blocks in order; the heatmap is taken at the last one
        (a ViT's: the one before).
    tail : list of torch.nn.Module
        What turns the last block's output into logits (pooling, head).
    transform : sktransfer.backbones.preprocess.Preprocess
    X : images accepted by :func:`sktransfer.inputs.images.as_images`
    targets : sequence of int or None
        One class index per image.
    device : str, default="cpu"
    batch_size : int, default=8
    verbose : int, default=0
        ``>= 1`` shows progress.

    Returns
    -------
    list of ndarray
        One ``(h, w)`` float32 array in [0, 1] per image, at its own size.

    Raises
    ------
    ImportError
        When the ``grad-cam`` package is missing (``pip install 'sktransfer[explain]'``).
    ImageDecodeError
        Listing every image that could not be decoded.
    """
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise ImportError("explain() needs the grad-cam package: pip install "
                          "'sktransfer[explain]' (or pip install grad-cam).") from None
    images = as_images(X)
    if targets is not None and len(targets) != len(images):
        raise ValueError(f"target has {len(targets)} entries for {len(images)} images; give "
                         "one class per image, or one class for all.")
    network = _Network(blocks, tail).to(device).eval()
    heatmaps, errors = [], []
    shown = progress(len(images), "Explaining", unit="img", enabled=verbose >= 1)
    cam = GradCAM(model=network, target_layers=[_target_layer(blocks, transform)],
                  reshape_transform=tokens_to_map)
    # Gradients flow from the input (BaseCAM's own switch), so frozen blocks need not
    # require them: the user's modules are left as they are.
    cam.compute_input_gradient = True
    try:
        for start in range(0, len(images), batch_size):
            batch, sizes = [], []
            for i in range(start, min(start + batch_size, len(images))):
                try:
                    img = images.image(i)
                except ImageDecodeError as exc:
                    errors.append((i, str(exc)))
                    continue
                sizes.append(tuple(img.shape[1:]))
                batch.append(transform(img))
            shown.update(len(sizes))
            if errors or not batch:
                continue
            x = torch.stack(batch).to(device)
            wanted = None if targets is None else [
                ClassifierOutputTarget(int(t)) for t in targets[start:start + len(batch)]]
            maps = cam(input_tensor=x, targets=wanted)  # None: each image's predicted class
            heatmaps += [_on_image(m, transform, h, w) for m, (h, w) in zip(maps, sizes)]
    finally:
        cam.activations_and_grads.release()  # the hooks leave the user's modules
        shown.close()
    if errors:
        raise ImageDecodeError.listing(errors)
    return heatmaps
