"""Registry of backbones: a name (or a user's module) becomes ordered blocks.

A backbone is a pretrained network cut into an ordered list of *blocks* -- the
unit of "freeze depth": ``unfreeze=2`` trains the last two blocks.  Running
the blocks in order maps a normalised image batch ``(n, 3, s, s)`` to the
last feature map ``(n, c, h, w)`` (or, for a vision transformer, the token
sequence ``(n, tokens, d)``); the original ImageNet classifier is kept apart
as ``top`` (used by ``PretrainedFeatures(include_top=True)``).

Three families: torchvision's CNNs (by name or alias), timm's zoo
(``"timm/<name>"`` and the EfficientNet-Lite models, see
:mod:`sktransfer.timm_family`), and a user's own module.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from . import catalog, timm_family
from .catalog import ALIASES
from .files import copy_file
from .rng import global_rng
from . import weights as weights_mod


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(eq=False)
class Backbone:
    """A CNN split into ordered blocks, with its preprocessing.

    Attributes
    ----------
    name : str
        torchvision model name, or ``"custom"`` for a user's module.
    blocks : list of torch.nn.Module
        Ordered; running them in turn gives the last feature map.
    top : torch.nn.Module or None
        The original classifier (last feature map -> ImageNet logits).
    input_size : int
        The side in pixels the weights were trained at.
    resize_size : int
        Side of the resize before the center crop, at ``input_size``.
    mean, std : tuple of float
        Normalisation of the weights' preprocessing.
    weights_tag : str
        Which weights were loaded (``"IMAGENET1K_V1"``, ``"random"``, a file name...).
    categories : list of str or None
        Names of the outputs of ``top`` (ImageNet classes), when known.
    token : tuple or None
        Identifies the architecture and the weights file, when the weights
        came from a file (``None`` for random or a user's module's own
        weights): equal tokens mean equal blocks.
    interpolation : str
        The weights' resize interpolation (``"bilinear"``, ``"bicubic"``...).
    pool : torch.nn.Module or None
        The model's own pooling (timm's ``forward_head(pre_logits=True)``),
        used for ``pooling="avg"``; ``None``: plain average pooling.
    """

    name: str
    blocks: list
    top: nn.Module | None
    input_size: int
    resize_size: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    weights_tag: str = "random"
    categories: list | None = field(default=None, repr=False)
    token: tuple | None = field(default=None, repr=False)
    interpolation: str = "bilinear"
    pool: nn.Module | None = field(default=None, repr=False)

    def resize_input(self, image_size):
        """Prepare the blocks for ``image_size`` inputs (a ViT resamples its position embedding).

        A no-op for convolutional networks, which take any size.
        """
        first = self.blocks[0] if self.blocks else None
        if image_size is not None and hasattr(first, "resize_input"):
            first.resize_input(int(image_size))

    @property
    def n_blocks(self):
        """Number of blocks (the largest meaningful ``unfreeze``)."""
        return len(self.blocks)

    def transform(self, image_size=None, crop=False):
        """The deterministic preprocessing of this backbone.

        Parameters
        ----------
        image_size : int or None
            Network input side in pixels; ``None`` uses the weights' own
            ``input_size``.
        crop : bool, default=False
            ``True``: torchvision's preset (resize the shorter side, keeping
            the weights' resize/crop ratio, then center-crop).  ``False``:
            resize the whole image to a square, so nothing at the borders is
            lost (better on wide photos; see docs/benchmarks.md).

        Returns
        -------
        Preprocess
        """
        size = self.input_size if image_size is None else int(image_size)
        resize = round(size * self.resize_size / self.input_size) if crop else size
        return Preprocess(size, resize, self.mean, self.std, crop, self.interpolation)


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


def _family(name):
    for pattern, splitter, kwargs in _FAMILIES:
        if re.fullmatch(pattern, name):
            return splitter, kwargs
    return None


def supported_names():
    """Return the torchvision model names this registry can split into blocks.

    Returns
    -------
    list of str
        Sorted model names; the aliases of :data:`ALIASES` map onto them.
    """
    return sorted(n for n in tv_models.list_models(module=tv_models) if _family(n))


def resolve_name(backbone):
    """Map an alias or torchvision name to a supported torchvision name.

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
        return timm_family.PREFIX + timm_family.timm_name(backbone)
    name = ALIASES.get(backbone.lower(), backbone.lower())
    if _family(name) is None or name not in tv_models.list_models(module=tv_models):
        names = supported_names()
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


def _from_module(module, weights):
    """Wrap a user's module under the documented contract (see ``build_backbone``)."""
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
    return Backbone(
        name="custom",
        blocks=blocks,
        top=None,
        input_size=size,
        resize_size=int(getattr(module, "resize_size", round(size * 256 / 224))),
        mean=tuple(getattr(module, "mean", IMAGENET_MEAN)),
        std=tuple(getattr(module, "std", IMAGENET_STD)),
        weights_tag="custom" if weights in (None, "imagenet") else str(weights),
    )


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
        See :func:`sktransfer.weights.resolve_weights` (torchvision) and
        :func:`sktransfer.timm_family.create` (timm).
    progress : bool or None, default=None
        Progress bar for a download; ``None``: when stderr is a terminal.
    seed : int or None, default=None
        Seeds random weights (``weights=None``), which torchvision and timm
        draw from torch's global generator (see :func:`sktransfer.rng.global_rng`);
        ``None``: that generator as it is.

    Returns
    -------
    Backbone
    """
    if isinstance(backbone, nn.Module):
        return _from_module(backbone, weights)
    name = resolve_name(backbone)
    if timm_family.is_timm_name(name):
        if weights is None:  # random weights: a new draw each time, nothing to reuse
            with global_rng(seed):
                return _build_timm(name, weights)
        token = timm_family.weights_token(name, weights)
        return _template(token, lambda: _build_timm(name, weights))
    path, enum = weights_mod.locate_weights(name, weights, progress=progress)
    if path is None:
        with global_rng(seed):
            return _build_torchvision(name, weights)
    stat = path.stat()
    token = (name, str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(enum))
    return _template(token, lambda: _build_torchvision(name, weights))


def _template(token, build):
    """A copy of the backbone ``token`` names, built once per process.

    Every caller gets its own copy, so fitted estimators never share modules.
    ``token=None`` (weights not from a known file): built afresh.
    """
    if token is None:
        return build()
    with _TEMPLATES_LOCK:  # one build per token, also when threads ask at once
        template = _TEMPLATES.get(token)
        if template is None:
            # Off everyone's random stream (the file overwrites the random
            # initialisation anyway): a seeded fit gives the same result whether the
            # template was cached or not.
            with global_rng(0):
                template = build()
            template.token = token
            _TEMPLATES[token] = template
            while len(_TEMPLATES) > 3:
                _TEMPLATES.popitem(last=False)
        _TEMPLATES.move_to_end(token)
    return deep_copy(template)


_SHARED = (str, bytes, int, float, complex, bool, type(None), type, torch.dtype, torch.device,
           functools.partial)


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


def _build_torchvision(name, weights):
    splitter, kwargs = _family(name)
    model = tv_models.get_model(name, weights=None, **kwargs)
    resolved = weights_mod.resolve_weights(name, weights,
                                           max_bytes=weights_mod.weights_bound(model))
    if resolved.state_dict is not None:
        try:
            model.load_state_dict(resolved.state_dict)
        except RuntimeError as exc:
            raise ValueError(
                f"The weights {resolved.tag!r} do not fit torchvision's {name}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
    if name == "inception_v3":
        # Only ImageNet weights expect the [-1, 1] input; torchvision flips this too.
        model.transform_input = resolved.enum is not None
        model.AuxLogits = None
    model.eval()
    blocks, top = splitter(model)
    preset = resolved.preset
    return Backbone(
        name=name,
        blocks=blocks,
        top=top,
        input_size=int(preset.crop_size[0]),
        resize_size=int(preset.resize_size[0]),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        weights_tag=resolved.tag,
        categories=resolved.categories,
        interpolation=preset.interpolation.value,
    )


def _build_timm(name, weights):
    built = timm_family.create(name, weights)
    blocks, pool, top = timm_family.split(built.model)
    cfg = built.cfg
    size = int(cfg["input_size"][-1])
    return Backbone(
        name=name,
        blocks=blocks,
        top=top,
        input_size=size,
        # timm's eval transform: resize to floor(size / crop_pct), then center-crop.
        resize_size=math.floor(size / cfg["crop_pct"]),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        weights_tag=built.weights_tag,
        categories=built.categories,
        interpolation=cfg["interpolation"],
        pool=pool,
    )


def feature_shape(blocks, image_size, device="meta", input_shape=None):
    """Shape of one image's output of ``blocks`` at ``image_size``.

    Computed on the meta device (shapes only, no arithmetic, weights left
    where they are), or by a dry run on ``device`` for modules meta tensors
    cannot go through.  ``input_shape`` (one sample's) replaces the image.

    Raises
    ------
    ValueError
        When the image size is too small for the network.
    """
    model = nn.Sequential(*blocks)
    shape = (3, image_size, image_size) if input_shape is None else tuple(input_shape)
    x = torch.zeros(1, *shape, device=device)
    state = None
    if device == "meta":
        state = {k: torch.empty_like(v, device="meta") for k, v in
                 [*model.named_parameters(), *model.named_buffers()]}
    was_training = [m.training for m in blocks]
    model.eval()
    try:
        with torch.inference_mode():
            out = torch.func.functional_call(model, state, (x,)) if state else model(x)
    except (NotImplementedError, RuntimeError) as exc:
        if device == "meta" and "meta" in str(exc).lower():
            return feature_shape(blocks, image_size, "cpu", input_shape)
        raise ValueError(
            f"image_size={image_size} is too small for this backbone "
            f"({str(exc).splitlines()[0]}); use a larger image_size."
        ) from None
    finally:
        for block, mode in zip(blocks, was_training):
            block.train(mode)
    return tuple(out.shape[1:])


def largest_activation(blocks, image_size):
    """The most numbers any layer of ``blocks`` outputs for one image (shapes on the meta
    device): what bounds the memory a batch needs on its way through them."""
    sizes = [3 * image_size * image_size]

    def record(module, args, out):
        if torch.is_tensor(out):
            sizes.append(out.numel())  # a batch of one
    handles = [m.register_forward_hook(record) for block in blocks for m in block.modules()]
    try:
        feature_shape(blocks, image_size)
    finally:
        for handle in handles:
            handle.remove()
    return max(sizes)


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
        rows = [*describe_torchvision(), *describe_packaged()]
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
    if timm_family.is_timm_name(name):
        packaged = catalog.packaged_file(name)
        if packaged is not None and folder is None:
            return packaged
        return timm_family.fetch(name, cache_dir=folder)
    path, enum = weights_mod.locate_weights(name, weights, progress=progress)
    if folder is None:
        return path
    target = Path(folder) / weights_mod.file_name(enum)
    if not target.is_file():
        Path(folder).mkdir(parents=True, exist_ok=True)
        copy_file(path, target, "weights")
    catalog.verify_file(target)
    return target


def check_offline(names):
    """Print where each backbone's ImageNet weights resolve offline (``make weights``).

    Returns
    -------
    int
        0 when all were found (and hash-checked), 1 otherwise.
    """
    rows = {r["name"]: r for r in _rows()}
    status = 0
    for name in names:
        found = catalog.offline(rows[resolve_name(name)])  # only the rows asked about
        print(f"{name}: ImageNet weights {'found and verified' if found else 'NOT found'} offline")
        status |= not found
    return status


def describe_torchvision(names=None):
    """The architecture facts of supported torchvision models (slow: builds each).

    Parameters
    ----------
    names : list of str, optional
        Default: every supported model.
    """
    rows = []
    for name in supported_names() if names is None else names:
        splitter, kwargs = _family(name)
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


def describe_packaged():
    """The architecture facts of the EfficientNet-Lite backbones (needs timm)."""
    rows = []
    for name, entry in catalog.PACKAGED.items():
        bb = _build_timm(name, None)
        rows.append({"name": name, "source": "timm", "blocks": bb.n_blocks,
                     "feature_size": feature_shape(bb.blocks, bb.input_size)[0],
                     "input_size": bb.input_size, "top1": entry.top1,
                     "imagenet_files": [Path(entry.path).name]})
    return rows


def write_table(path=catalog.TABLE):
    """Write the table :func:`list_backbones` ships, for the installed torchvision (slow)."""
    catalog.write([*describe_torchvision(), *describe_packaged()], path)


class TokenPool(nn.Module):
    """Average or maximum over the tokens of a sequence ``(n, tokens, d)`` -> ``(n, d)``."""

    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, x):  # noqa: D102 - torch convention
        return x.mean(1) if self.how == "avg" else x.amax(1)

    def extra_repr(self):
        return self.how


def make_pooling(pooling, shape, own=None):
    """The layer turning the last feature map (or token sequence) of ``shape`` into a vector.

    Parameters
    ----------
    pooling : {"avg", "max", "flatten"}
    shape : tuple of int
        One image's output of the blocks: ``(c, h, w)``, ``(tokens, d)`` or ``(c,)``.
    own : torch.nn.Module or None
        The backbone's own pooling (:attr:`Backbone.pool`), a copy of which
        ``"avg"`` uses: a ViT's class token, a timm model's head norm.
    """
    if len(shape) == 1:  # a custom backbone that already pools
        return nn.Identity()
    if pooling == "flatten":
        return nn.Flatten(1)
    if pooling == "avg" and own is not None:
        return copy.deepcopy(own)
    if len(shape) == 2:
        return TokenPool(pooling)
    adaptive = nn.AdaptiveAvgPool2d(1) if pooling == "avg" else nn.AdaptiveMaxPool2d(1)
    return nn.Sequential(adaptive, nn.Flatten(1))


def pooled_size(pool, shape):
    """Length of the vector ``pool`` makes from one feature map of ``shape``."""
    return int(math.prod(feature_shape([pool], None, input_shape=shape)))
