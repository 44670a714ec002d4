"""Backbones by name: a name (or a user's module) resolves to one weights record, then blocks.

A backbone is a pretrained network cut into an ordered list of *blocks* -- the
unit of "freeze depth": ``unfreeze=2`` trains the last two blocks.  A fit's
path through this module goes one way: :func:`resolve_name` (alias, family),
:func:`locate` (the weights file, found or downloaded once, as a
:class:`~sktransfer.backbones.records.WeightsRecord`), then :func:`build_backbone`
(the record built into a :class:`~sktransfer.backbones.records.Backbone`, once per
process and file, each caller getting its own copy).

Three families: torchvision's CNNs (by name or alias,
:mod:`sktransfer.backbones.torchvision_family`), timm's zoo (``"timm/<name>"`` and the
EfficientNet-Lite models, :mod:`sktransfer.backbones.timm_family`), and a user's own
module.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from . import catalog
from . import timm_family
from . import torchvision_family
from . import weights as weights_mod
from .catalog import ALIASES
from ..utils.files import copy_file
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .records import Backbone, Preset, WeightsRecord
from ..utils.rng import global_rng
from .shapes import feature_shape, feature_size


def resolve_name(backbone):
    """The name a backbone is built under: an alias or torchvision name becomes a supported
    torchvision name, a timm name ``"timm/<name>[@revision]"`` (the revision kept: it
    names other weights), an EfficientNet-Lite its lower-case name.

    Raises
    ------
    ValueError
        Naming the backbone and listing the supported names.
    """
    if not isinstance(backbone, str):
        raise TypeError(
            f"backbone must be a model name (str) or a torch.nn.Module, got "
            f"{type(backbone).__name__}."
        )
    if timm_family.is_timm_name(backbone):
        if backbone.lower() in catalog.PACKAGED:
            return backbone.lower()
        pinned = timm_family.revision(backbone)
        return timm_family.PREFIX + timm_family.timm_name(backbone) + (
            f"@{pinned}" if pinned else "")
    name = catalog.normalise(backbone)
    known = name in tv_models.list_models(module=tv_models)
    if torchvision_family.family(name) is None or not known:
        names = torchvision_family.supported_names()
        close = difflib.get_close_matches(
            backbone.lower(), [*ALIASES, *names, *catalog.PACKAGED], n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown or unsupported backbone {backbone!r}.{hint} Use an alias "
            f"({', '.join(sorted(ALIASES))}), one of the {len(names)} supported torchvision "
            "models (sktransfer.list_backbones() or `sktransfer backbones` lists them), "
            "'timm/<name>' for a model of timm's zoo, or pass your own torch.nn.Module."
        )
    return name


def _custom(module, weights):
    """A user's module under the documented contract (see :func:`build_backbone`)."""
    if weights not in (None, "imagenet"):
        state = weights_mod.load_state_dict_file(weights, weights_mod.weights_bound(module))
        module.load_state_dict(state)
    if hasattr(module, "blocks"):
        blocks = list(module.blocks)
    elif isinstance(module, nn.Sequential):
        blocks = list(module)
    else:
        raise TypeError(
            "A custom backbone must be an nn.Sequential (its children are the blocks) or "
            f"have a `blocks` attribute listing them; got {type(module).__name__} with neither."
        )
    if not blocks or not all(isinstance(b, nn.Module) for b in blocks):
        raise TypeError("A custom backbone's blocks must be a non-empty list of nn.Module.")
    size = int(getattr(module, "input_size", 224))
    preset = Preset(size, int(getattr(module, "resize_size", round(size * 256 / 224))),
                    tuple(getattr(module, "mean", IMAGENET_MEAN)),
                    tuple(getattr(module, "std", IMAGENET_STD)))
    tag = "custom" if weights in (None, "imagenet") else os.fspath(weights)
    return Backbone(WeightsRecord("custom", None, tag, preset), blocks)


def locate(name, weights="imagenet", progress=None):
    """Resolve a backbone name's ``weights`` to one record, finding (or downloading) the file once.

    Parameters
    ----------
    name : str
        As :func:`resolve_name` returns it.
    weights : {"imagenet"}, str, path, torchvision WeightsEnum or None
        See :func:`sktransfer.backbones.weights.locate` (torchvision) and
        :func:`sktransfer.backbones.timm_family.locate` (timm).
    progress : bool or None, default=None
        Progress bar for a download.

    Returns
    -------
    sktransfer.backbones.records.WeightsRecord
    """
    if timm_family.is_timm_name(name):
        return timm_family.locate(name, weights)
    return weights_mod.locate(name, weights, progress=progress)


def build(record):
    """The blocks ``record`` describes, with its weights (a new build every call)."""
    family = timm_family if timm_family.is_timm_name(record.name) else torchvision_family
    return family.build(record)


def build_backbone(backbone="mobilenet", weights="imagenet", progress=None, seed=None):
    """Build a backbone split into blocks, with its weights loaded.

    Parameters
    ----------
    backbone : str or torch.nn.Module
        An alias (``mobilenet``, ``resnet``, ``vgg``, ``inception``,
        ``efficientnet``), a supported torchvision model name, or your own
        module.  **Custom module contract**: an ``nn.Sequential`` whose children
        are the blocks, or any module with a ``blocks`` attribute (a list of
        modules run in order); the last block outputs ``(n, c, h, w)`` or
        ``(n, c)``.  Optional attributes ``input_size`` (default 224),
        ``resize_size``, ``mean`` and ``std`` (default ImageNet's) define the
        preprocessing.  The module's weights are used as they are (``weights``
        ``"imagenet"`` or ``None``), or loaded from a state_dict file (a path).
    weights : {"imagenet"}, str, path, torchvision WeightsEnum or None
        See :func:`locate`.
    progress : bool or None, default=None
        Progress bar for a download; ``None``: when stderr is a terminal.
    seed : int or None, default=None
        Seeds random weights (``weights=None``), which torchvision and timm
        draw from torch's global generator (see :func:`sktransfer.utils.rng.global_rng`);
        ``None``: that generator as it is.

    Returns
    -------
    sktransfer.backbones.records.Backbone
    """
    if isinstance(backbone, nn.Module):
        return _custom(backbone, weights)
    record = locate(resolve_name(backbone), weights, progress)
    if record.token is None:  # random weights: a new draw each time, nothing to reuse
        with global_rng(seed):
            return build(record)
    return _template(record)


def _template(record):
    """A copy of the backbone ``record`` describes, built once per process and weights file.

    Every caller gets its own copy, so fitted estimators never share modules.
    """
    token = record.token
    with _TEMPLATES_LOCK:  # one build per token, also when threads ask at once
        template = _TEMPLATES.get(token)
        if template is None:
            # Off everyone's random stream (the file overwrites the random
            # initialisation anyway): a seeded fit gives the same result whether the
            # template was cached or not.
            with global_rng(0):
                template = build(record)
            _TEMPLATES[token] = template
            while len(_TEMPLATES) > 3:
                _TEMPLATES.popitem(last=False)
        _TEMPLATES.move_to_end(token)
    return deep_copy(template)


_SHARED = (WeightsRecord, str, bytes, int, float, complex, bool, type(None), type, torch.dtype,
           torch.device, functools.partial)


def deep_copy(obj, memo=None):
    """``copy.deepcopy`` for backbones, about three times faster.

    A fit copies its backbone from the process's template, and on cached
    features that copy was the largest fixed cost of a fit.  Modules and
    dataclasses are copied attribute by attribute (tensors cloned, shared
    and tied ones once, containers rebuilt); anything unusual goes through
    ``copy.deepcopy`` with the same memo.
    """
    memo = {} if memo is None else memo
    if isinstance(obj, _SHARED) or callable(obj) and not isinstance(obj, nn.Module):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    cls = type(obj)
    if cls is nn.Parameter:
        new = nn.Parameter(obj.detach().clone(), obj.requires_grad)
    elif cls is torch.Tensor and not obj.requires_grad:
        new = obj.clone()
    elif cls in (list, tuple, set):
        new = cls(deep_copy(v, memo) for v in obj)
    elif cls in (dict, OrderedDict):
        new = cls((k, deep_copy(v, memo)) for k, v in obj.items())
    elif isinstance(obj, Backbone) or (isinstance(obj, nn.Module)
                                       and not hasattr(obj, "__deepcopy__")):
        new = cls.__new__(cls)
        memo[id(obj)] = new
        new.__dict__.update({k: deep_copy(v, memo) for k, v in obj.__dict__.items()})
    else:
        return copy.deepcopy(obj, memo)
    memo[id(obj)] = new
    return new


_TEMPLATES = OrderedDict()  # token -> Backbone with its weights loaded, never handed out
_TEMPLATES_LOCK = threading.Lock()


def forget_templates():
    """Drop the built backbones this process keeps, one per weights file (:func:`sktransfer.clear_caches`)."""
    with _TEMPLATES_LOCK:
        _TEMPLATES.clear()


def list_backbones():
    """Describe every backbone that has a name: torchvision's and the EfficientNet-Lites.

    Instant: the architecture facts come from a table shipped with the
    package (written by :func:`write_table` for the torchvision version it
    names); another torchvision version rebuilds them once per process.
    Any ``"timm/<name>"`` also works (``timm.list_models(pretrained=True)``).

    Returns
    -------
    list of dict
        One row per model: ``name``, ``aliases``, ``source`` (``"torchvision"``
        or ``"timm"``), ``blocks``, ``feature_size`` (channels of the last
        feature map), ``input_size``, ImageNet ``top1`` (of the default
        weights), ``imagenet_files`` and ``offline`` (whether ImageNet
        weights for it are on this machine, hash-checked).  Nothing is
        downloaded.
    """
    return catalog.with_status(_rows())


@functools.lru_cache(maxsize=1)
def _rows():
    rows = catalog.shipped_rows()
    if rows is None:  # another torchvision: its models may differ
        rows = [*torchvision_family.describe(), *describe_packaged()]
    return tuple(rows)


def fetch_weights(backbone, weights="imagenet", folder=None, progress=None):
    """Make sure ImageNet weights of ``backbone`` are on this machine (download ahead of use).

    For air-gapped machines: fetch on a machine with internet, copy the
    folder.  torchvision's files go into ``folder`` (default: the hub cache,
    ``$TORCH_HOME/hub/checkpoints``); a file already on this machine is
    copied there rather than downloaded.  timm's go into ``folder`` as a
    Hugging Face cache (default: huggingface_hub's own).

    Parameters
    ----------
    backbone : str
        A backbone name or alias, ``"timm/<name>"`` or an EfficientNet-Lite.
    weights : str, default="imagenet"
        ``"imagenet"`` or the name of torchvision weights (``"IMAGENET1K_V2"``).
    folder : path, optional
    progress : bool or None, default=None

    Returns
    -------
    pathlib.Path
        The verified file.
    """
    name = resolve_name(backbone)
    if timm_family.is_timm_name(name) and folder is not None:
        return timm_family.fetch(name, cache_dir=folder)  # a Hugging Face cache to carry
    record = locate(name, weights, progress=progress)
    if folder is None:
        return record.path
    target = Path(folder) / weights_mod.file_name(record.enum)
    if not target.is_file():
        Path(folder).mkdir(parents=True, exist_ok=True)
        copy_file(record.path, target, "weights")
    catalog.verify_file(target)
    return target


def check_on_this_machine(names):
    """Print whether each backbone's ImageNet weights are on this machine (``make weights``).

    Returns
    -------
    int
        0 when all were found (and hash-checked), 1 otherwise.
    """
    status = 0
    for name in names:
        found = imagenet_on_this_machine(name)
        print(f"{name}: ImageNet weights {'found and verified' if found else 'NOT found'} offline")
        status |= not found
    return status


def imagenet_on_this_machine(backbone):
    """Whether ImageNet weights of a named backbone are on this machine (hash-checked; no
    network, no weights read).

    Parameters
    ----------
    backbone : str
        A name or alias of the table (``sktransfer backbones``).

    Returns
    -------
    bool
    """
    name = resolve_name(backbone)
    row = catalog.row(name) or next(r for r in _rows() if r["name"] == name)
    return catalog.on_this_machine(row)


def describe_packaged():
    """The architecture facts of the EfficientNet-Lite backbones (needs timm)."""
    rows = []
    for name, entry in catalog.PACKAGED.items():
        bb = timm_family.build(timm_family.locate(name, None))
        rows.append({"name": name, "source": "timm", "blocks": bb.n_blocks,
                     "feature_size": feature_size(feature_shape(bb.blocks, bb.input_size)),
                     "input_size": bb.input_size, "top1": entry.top1,
                     "imagenet_files": [Path(entry.path).name]})
    return rows


def write_table(path=catalog.TABLE):
    """Write the table :func:`list_backbones` ships, for the installed torchvision (slow)."""
    catalog.write([*torchvision_family.describe(), *describe_packaged()], path)
