"""torchvision's CNNs: a model name becomes ordered blocks, each family by its own splitter.

A family is a name pattern and a splitter (model -> ordered blocks + the
original classifier).  :func:`build` turns a
:class:`~sktransfer.backbones.records.WeightsRecord` of torchvision weights into a
:class:`~sktransfer.backbones.records.Backbone`; :func:`describe` gives the
architecture facts the shipped catalog table holds.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torchvision import models as tv_models

from . import weights as weights_mod
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .records import Backbone
from .shapes import feature_shape


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
    model = tv_models.get_model(name, weights=None, **kwargs)
    if record.path is not None:
        state = weights_mod.load_state_dict_file(record.path, weights_mod.weights_bound(model))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"The weights {record.tag!r} do not fit torchvision's {name}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
    if name == "inception_v3":
        # Only ImageNet weights expect the [-1, 1] input; torchvision flips this too.
        model.transform_input = record.enum is not None
        model.AuxLogits = None
    model.eval()
    blocks, top = splitter(model)
    return Backbone(record, blocks, top)


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
        try:
            with torch.device("meta"):  # shapes only: no memory, no arithmetic
                model = tv_models.get_model(name, weights=None, **kwargs)
        except NotImplementedError:  # RegNet's builder computes widths with tensors
            model = tv_models.get_model(name, weights=None, **kwargs)
        blocks, _ = splitter(model)
        rows.append({
            "name": name,
            "source": "torchvision",
            "blocks": len(blocks),
            "feature_size": feature_shape(blocks, 224)[0],
            "input_size": int(enum.transforms().crop_size[0]),
            "top1": enum.meta["_metrics"]["ImageNet-1K"]["acc@1"],
            "imagenet_files": [weights_mod.file_name(e) for e in
                               weights_mod.imagenet_candidates(name)],
        })
    return rows
