"""torchvision's CNNs: a model name becomes ordered blocks, each family by its own splitter.

A family is a name pattern and a splitter (model -> ordered blocks + the
original classifier).  :func:`build` turns a
:class:`~sktransfer.backbones.records.WeightsRecord` of torchvision weights into a
:class:`~sktransfer.backbones.records.Backbone`; :func:`describe` gives the
architecture facts the shipped catalog table holds.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import models as tv_models

from . import weights as weights_mod
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .records import Backbone
from .shapes import build_model, feature_shape, feature_size


class InceptionInput(nn.Module):
    """Re-normalise ImageNet-normalised input as torchvision's InceptionV3 weights expect.

    torchvision's ``inception_v3(transform_input=True)`` does this inside
    ``forward``; splitting the model into blocks skips that ``forward``.  The
    per-channel affine map is kept in buffers (identity when disabled), so a
    saved state_dict says whether it applies.
    """

    def __init__(self, enabled=True):
        super().__init__()
        mean = torch.tensor(IMAGENET_MEAN)
        std = torch.tensor(IMAGENET_STD)
        enabled = bool(enabled)
        self.register_buffer("scale", std / 0.5 if enabled else torch.ones(3))
        self.register_buffer("shift", (mean - 0.5) / 0.5 if enabled else torch.zeros(3))

    def forward(self, x):  # noqa: D102 - torch convention
        return x * self.scale.view(1, 3, 1, 1) + self.shift.view(1, 3, 1, 1)


class PatchEmbedding(nn.Module):
    """The input of torchvision's ViT: patches projected to tokens, the class token put
    first, the position embedding added -- what ``VisionTransformer.forward`` does
    before its encoder layers, as a block of its own."""

    def __init__(self, vit):
        super().__init__()
        self.patch_size = vit.patch_size
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout

    def forward(self, x):  # noqa: D102 - torch convention
        tokens = self.conv_proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.dropout(tokens + self.pos_embedding)

    def resize_input(self, image_size):
        """Resample the position embedding (bicubic, as torchvision's
        ``interpolate_embeddings``) to ``image_size`` inputs."""
        grid, side = image_size // self.patch_size, math.isqrt(self.pos_embedding.shape[1] - 1)
        if grid == side:
            return
        first, rest = self.pos_embedding[:, :1], self.pos_embedding[:, 1:]
        rest = rest.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        rest = F.interpolate(rest, size=(grid, grid), mode="bicubic", align_corners=False)
        rest = rest.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
        self.pos_embedding = nn.Parameter(torch.cat([first, rest], dim=1).detach())


class ClassToken(nn.Module):
    """How torchvision's ViT pools: its last LayerNorm on the class token."""

    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def forward(self, x):  # noqa: D102 - torch convention
        return self.norm(x[:, 0])


class WindowedInput(nn.Sequential):
    """A first block whose network takes input sides that are a multiple of ``step`` only
    (MaxViT: each stage's map must split into its attention windows)."""

    def __init__(self, block, step):
        super().__init__(block)
        self.step = step

    def resize_input(self, image_size):
        """Refuse an input size the network cannot split, naming the ones it can."""
        if image_size % self.step:
            raise ValueError(f"this backbone takes inputs whose side is a multiple of "
                             f"{self.step} px; got image_size={image_size}. Use "
                             f"image_size=None ({self.step}) or another multiple.")


def _pooled_classifier(*parts):
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), *parts)


def _split_features(model):
    return list(model.features), _pooled_classifier(model.classifier)


def _split_at_maxpool(model):
    # VGG / AlexNet: one block per convolution stage, ending at its max-pool.
    blocks, current = [], []
    for layer in model.features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(nn.Sequential(*current))
            current = []
    if current:
        blocks.append(nn.Sequential(*current))
    top = nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)
    return blocks, top


def _split_resnet(model):
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    blocks = [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    return blocks, _pooled_classifier(model.fc)


def _split_inception(model):
    stem1 = nn.Sequential(
        InceptionInput(model.transform_input), model.Conv2d_1a_3x3, model.Conv2d_2a_3x3,
        model.Conv2d_2b_3x3, model.maxpool1,
    )
    stem2 = nn.Sequential(model.Conv2d_3b_1x1, model.Conv2d_4a_3x3, model.maxpool2)
    mixed = [getattr(model, n) for n in (
        "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
        "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
    )]
    return [stem1, stem2, *mixed], _pooled_classifier(model.dropout, model.fc)


def _split_densenet(model):
    # torchvision's DenseNet applies a ReLU after `features` in forward().
    return list(model.features) + [nn.ReLU()], _pooled_classifier(model.classifier)


def _split_regnet(model):
    return [model.stem, *model.trunk_output], _pooled_classifier(model.fc)


def _split_shufflenet(model):
    stem = nn.Sequential(model.conv1, model.maxpool)
    blocks = [stem, model.stage2, model.stage3, model.stage4, model.conv5]
    return blocks, _pooled_classifier(model.fc)


def _split_mnasnet(model):
    return list(model.layers), _pooled_classifier(model.classifier)


def _split_googlenet(model):
    stem1 = nn.Sequential(InceptionInput(model.transform_input), model.conv1, model.maxpool1)
    stem2 = nn.Sequential(model.conv2, model.conv3, model.maxpool2)
    blocks = [stem1, stem2, model.inception3a, nn.Sequential(model.inception3b, model.maxpool3),
              model.inception4a, model.inception4b, model.inception4c, model.inception4d,
              nn.Sequential(model.inception4e, model.maxpool4), model.inception5a,
              model.inception5b]
    return blocks, _pooled_classifier(model.dropout, model.fc)


def _split_convnext(model):
    # ConvNeXt pools, then normalises (LayerNorm2d) before its last linear layer.
    pool = nn.Sequential(model.avgpool, model.classifier[0], model.classifier[1])
    return list(model.features), nn.Sequential(pool, model.classifier[2]), pool


def _split_vit(model):
    pool = ClassToken(model.encoder.ln)
    return [PatchEmbedding(model), *model.encoder.layers], nn.Sequential(pool, model.heads), pool


def _split_swin(model):
    # Swin's stages run channels-last; its last block also normalises and turns the
    # map channels-first, so the pooling (and Grad-CAM) see (n, c, h, w) as elsewhere.
    *stages, last = list(model.features)
    blocks = [*stages, nn.Sequential(last, model.norm, model.permute)]
    return blocks, nn.Sequential(model.avgpool, model.flatten, model.head)


def _split_maxvit(model):
    # avgpool, flatten, LayerNorm, Linear, Tanh: the pre-logits of its classifier
    pool = nn.Sequential(*model.classifier[:5])
    # the map shrinks 32-fold; each stage's must split into partition_size windows
    stem = WindowedInput(model.stem, 32 * model.partition_size)
    return [stem, *model.blocks], nn.Sequential(pool, model.classifier[5]), pool


def _split_squeezenet(model):
    # SqueezeNet's classifier is convolutional and pools itself.
    return list(model.features), nn.Sequential(model.classifier, nn.Flatten(1))


# (name pattern, splitter, extra builder kwargs). Order matters: first match wins.
_FAMILIES = [
    (r"vgg\d+(_bn)?|alexnet", _split_at_maxpool, {}),
    (r"resnet\d+|resnext\d+_\w+|wide_resnet\d+_\d+", _split_resnet, {}),
    (r"inception_v3", _split_inception, {"aux_logits": True, "init_weights": False}),
    (r"mobilenet_v[23].*|efficientnet_(b\d|v2_[sml])", _split_features, {}),
    (r"densenet\d+", _split_densenet, {}),
    (r"regnet_[xy]_\w+", _split_regnet, {}),
    (r"shufflenet_v2_\w+", _split_shufflenet, {}),
    (r"mnasnet\w+", _split_mnasnet, {}),
    (r"squeezenet1_[01]", _split_squeezenet, {}),
    (r"googlenet", _split_googlenet, {"aux_logits": True, "init_weights": False}),
    (r"convnext_\w+", _split_convnext, {}),
    (r"vit_[bhl]_\d+", _split_vit, {}),
    (r"swin_(v2_)?[tsb]", _split_swin, {}),
    (r"maxvit_t", _split_maxvit, {}),
]


def family(name):
    """``(splitter, builder keyword arguments)`` of torchvision's model ``name``, or ``None``."""
    for pattern, splitter, kwargs in _FAMILIES:
        if re.fullmatch(pattern, name):
            return splitter, kwargs
    return None


def supported_names():
    """Return the torchvision model names this registry can split into blocks.

    Returns
    -------
    list of str
        Sorted model names; the aliases of :data:`sktransfer.backbones.catalog.ALIASES` map onto them.
    """
    return sorted(n for n in tv_models.list_models(module=tv_models) if family(n))


def build(record):
    """The blocks of torchvision's ``record.name`` holding the weights ``record`` names.

    Parameters
    ----------
    record : sktransfer.backbones.records.WeightsRecord

    Returns
    -------
    sktransfer.backbones.records.Backbone

    Raises
    ------
    ValueError
        When the file's tensors do not fit the architecture (naming both).
    """
    name = record.name
    splitter, kwargs = family(name)
    if name.startswith("vit_") and record.enum is not None:  # positions for its own size
        kwargs = {**kwargs, "image_size": record.enum.meta["min_size"][0]}
    model = build_model(lambda: tv_models.get_model(name, weights=None, **kwargs))
    if record.path is not None:
        state = weights_mod.load_state_dict_file(record.path, weights_mod.weights_bound(model))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"The weights {record.tag!r} do not fit torchvision's {name}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
    if name in ("inception_v3", "googlenet"):
        # Only ImageNet weights expect the [-1, 1] input; torchvision flips this too.
        model.transform_input = record.enum is not None
        model.AuxLogits = model.aux1 = model.aux2 = None
    model.eval()
    blocks, top, *pool = splitter(model)
    return Backbone(record, blocks, top, *pool)


def describe(names=None):
    """The architecture facts of supported torchvision models (slow: builds each).

    Parameters
    ----------
    names : list of str, optional
        Default: every supported model.
    """
    rows = []
    for name in supported_names() if names is None else names:
        splitter, kwargs = family(name)
        enum = tv_models.get_model_weights(name).DEFAULT
        with torch.device("meta"):  # shapes only: no memory, no arithmetic
            model = build_model(lambda: tv_models.get_model(name, weights=None, **kwargs))
        blocks = splitter(model)[0]
        rows.append({
            "name": name,
            "source": "torchvision",
            "blocks": len(blocks),
            "feature_size": feature_size(feature_shape(blocks, 224)),
            "input_size": int(enum.transforms().crop_size[0]),
            "top1": enum.meta["_metrics"]["ImageNet-1K"]["acc@1"],
            "imagenet_files": [weights_mod.file_name(e) for e in
                               weights_mod.imagenet_candidates(name)],
        })
    return rows
