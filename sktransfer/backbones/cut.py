"""A backbone cut in two for transfer learning: the frozen prefix and the blocks that train.

:func:`cut_backbone` is the one place a backbone is cut: it places the
pooling (the trainable network's, :func:`sktransfer.backbones.pooling.make_pooling`)
after the last block, freezes what comes before the cut, and names the
frozen part exactly (its :attr:`Cut.identity`) when the weights came from
a file.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .pooling import make_pooling
from .shapes import backbone_shape, feature_shape, pooled_size


@dataclass
class Cut:
    """A backbone cut in two for transfer learning.

    Attributes
    ----------
    frozen : list of torch.nn.Module
        The blocks before the cut, plus the pooling when nothing trains.
    trainable : list of torch.nn.Module
        The last blocks, trained in phase 2.
    pool : torch.nn.Module
        The pooling after the trainable blocks (identity when it is frozen).
    n_features : int
        Length of the pooled feature vector.
    transform : torch.nn.Module
        The preprocessing.
    identity : tuple or None
        For :class:`Extractor`: names the frozen part exactly, when the
        backbone's weights came from a file.
    """

    frozen: list
    trainable: list
    pool: nn.Module
    n_features: int
    transform: nn.Module
    identity: tuple | None = None


def check_unfreeze(n, n_blocks, owner, name="unfreeze"):
    """Refuse ``n`` blocks to train when ``owner`` has ``n_blocks``: the one rule for
    ``unfreeze``, checked against the catalog (before any download), the built backbone and
    a user's own module (:class:`~sktransfer.training.callbacks.PartialUnfreeze`).

    Parameters
    ----------
    n : int or "all"
    n_blocks : int
    owner : str
        What has the blocks, as the message names it (``"backbone 'resnet18'"``).
    name : str, default="unfreeze"
        The parameter, as the message names it.

    Raises
    ------
    ValueError
    """
    if n != "all" and not 0 <= n <= n_blocks:
        raise ValueError(f"{name}={n} but {owner} has only {n_blocks} blocks; use "
                         f"{name} <= {n_blocks} (or 'all').")


def cut_backbone(bb, n_trainable=0, pooling="avg", image_size=None, crop=False, top=False):
    """Cut backbone ``bb`` before its last ``n_trainable`` blocks.

    Parameters
    ----------
    bb : sktransfer.backbones.records.Backbone
    n_trainable : int, default=0
        0: everything, pooling included, is frozen.
    pooling : {"avg", "max", "flatten"}, default="avg"
    image_size : int or None, default=None
    crop : bool, default=False
    top : bool, default=False
        Everything frozen, ending with the backbone's own classifier and a
        softmax (its class probabilities) instead of the pooling.

    Returns
    -------
    Cut
    """
    check_unfreeze(n_trainable, bb.n_blocks, f"backbone {bb.name!r}")
    transform = bb.transform(image_size, crop)
    bb.resize_input(transform.crop_size[0])
    if top:
        if bb.top is None:
            raise ValueError("include_top=True needs a named backbone with its ImageNet "
                             "classifier; a custom module has none.")
        frozen = [*bb.blocks, bb.top, nn.Softmax(dim=1)]
        for module in frozen:
            module.requires_grad_(False).eval()
        identity = None if bb.token is None else (bb.token, "top", repr(transform))
        n_out = feature_shape(frozen[:-1], transform.crop_size[0])[0]
        return Cut(frozen, [], nn.Identity(), n_out, transform, identity)
    shape = backbone_shape(bb, transform.crop_size[0])
    pool = make_pooling(pooling, shape, bb.pool)
    cut = bb.n_blocks - n_trainable
    if cut == bb.n_blocks:
        frozen, trainable, pool_after = bb.blocks + [pool], [], nn.Identity()
    else:
        frozen, trainable, pool_after = bb.blocks[:cut], bb.blocks[cut:], pool
    for module in frozen:
        module.requires_grad_(False).eval()
    identity = None if bb.token is None else (bb.token, cut, pooling, repr(transform))
    return Cut(frozen, trainable, pool_after, pooled_size(pool, shape), transform, identity)


def describe(bb, n_frozen, transform, top=False):
    """What an extractor runs, for people reading ``sktransfer cache info``."""
    what = "blocks + ImageNet classifier" if top else (
        "blocks + pooling" if n_frozen == bb.n_blocks else "blocks")
    return {"backbone": bb.name, "weights": bb.weights_tag,
            "frozen": f"{n_frozen} of {bb.n_blocks} {what}",
            "input": f"{transform.crop_size[0]} px"}
