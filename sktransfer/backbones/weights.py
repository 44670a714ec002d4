"""torchvision's weights, offline first: ``"imagenet"`` | enum | ``None`` | path -> one record.

``"imagenet"`` means torchvision's own ImageNet weights for the model.  They
are looked up on this machine first: torch's hub cache
(``$TORCH_HOME/hub/checkpoints``, torchvision's file name), then installed
packages known to ship the exact file.  Only when neither has them is the
file downloaded, the way :func:`torch.hub.download_url_to_file` does it (a
temporary file, the sha256 prefix checked, then moved into the hub cache)
but with a timeout of its own connection, unless ``SKTRANSFER_OFFLINE=1``
forbids any connection.  ``SKTRANSFER_WEIGHTS_URL`` names a mirror (a base
URL serving torchvision's file names).  Every file is checked against the
sha256 prefix in torchvision's file name before use, and loaded with
``torch.load(weights_only=True)`` (no code can run from it).
"""

from __future__ import annotations

import http.client
import os
import pickle
import sys
import zipfile
from pathlib import Path

import torch
from torchvision import models as tv_models
from torchvision.models import WeightsEnum

from .catalog import env_flag, find_file, hash_prefix, hub_checkpoint_dir, verify_file
from .records import Preset, WeightsRecord

# Environment variables a user sets (documented in docs/weights.md).
OFFLINE_ENV = "SKTRANSFER_OFFLINE"  # "1": never connect; only files on this machine
MIRROR_ENV = "SKTRANSFER_WEIGHTS_URL"  # base URL serving torchvision's file names
# Seconds a download may wait for the server (to connect, or for the next bytes).
DOWNLOAD_TIMEOUT = 30


class WeightsNotFoundError(FileNotFoundError):
    """The requested pretrained weights are not on this machine and were not downloaded."""


class WeightsDownloadError(WeightsNotFoundError):
    """Downloading pretrained weights failed; nothing was left in the destination folder."""


def downloads_forbidden():
    """Whether ``SKTRANSFER_OFFLINE`` forbids downloading (any value but ``""``, ``0``, ``false``, ``no``)."""
    return env_flag(OFFLINE_ENV)


def file_name(enum):
    """torchvision's file name for weights ``enum`` (``mobilenet_v2-b0353104.pth``)."""
    return enum.url.rsplit("/", 1)[-1]


def find_weights_file(enum):
    """Find the file of torchvision weights ``enum`` on this machine, without network.

    Parameters
    ----------
    enum : torchvision WeightsEnum member

    Returns
    -------
    pathlib.Path or None
        A file whose sha256 prefix was verified, or ``None`` when not found.

    Raises
    ------
    ValueError
        When a candidate file exists but its hash does not match.
    """
    return find_file(file_name(enum))


def weights_url(enum):
    """Where torchvision's weights ``enum`` are downloaded from (``SKTRANSFER_WEIGHTS_URL`` first)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{file_name(enum)}" if mirror else enum.url


def _download_url(url, target, expected_prefix, progress, timeout=None):
    """``torch.hub.download_url_to_file`` with a timeout on this connection alone.

    torch.hub opens its URL without a timeout (a server that accepts and then
    says nothing would hang the fit forever), and the only other way to give
    it one is the process-wide socket default.  The same steps otherwise: a
    temporary file beside ``target``, the sha256 prefix checked, then the
    rename; a transfer cut short (fewer bytes than the server declared) fails.
    """
    import hashlib
    import urllib.request

    from tqdm.auto import tqdm

    from ..utils.files import atomic_write

    request = urllib.request.Request(url, headers={"User-Agent": "torch.hub"})
    with urllib.request.urlopen(request, timeout=timeout or DOWNLOAD_TIMEOUT) as response:
        declared = response.headers.get("Content-Length")
        declared = int(declared) if declared and declared.isdigit() else None
        digest, received = hashlib.sha256(), 0
        with atomic_write(target, "the weights") as fh, \
                tqdm(total=declared, disable=not progress, unit="B", unit_scale=True,
                     unit_divisor=1024) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                fh.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            if declared is not None and received != declared:
                raise http.client.IncompleteRead(b"", declared - received)
            if expected_prefix and not digest.hexdigest().startswith(expected_prefix):
                raise RuntimeError(f'invalid hash value (expected "{expected_prefix}", got '
                                   f'"{digest.hexdigest()}")')


def download_weights(enum, progress=None):
    """Download torchvision's weights ``enum`` into the hub cache (``$TORCH_HOME/hub/checkpoints``).

    The file is fetched as :func:`torch.hub.download_url_to_file` would, with a
    timeout on its own connection: written to a temporary file beside the
    destination, its sha256 prefix (from
    torchvision's file name) checked, and only then moved into place, so a
    failed or corrupted download leaves nothing behind.  The caller decides
    whether downloading is allowed (:func:`downloads_forbidden`).

    Parameters
    ----------
    enum : torchvision WeightsEnum member
    progress : bool or None, default=None
        Show a progress bar on stderr; ``None``: when stderr is a terminal.

    Returns
    -------
    pathlib.Path
        The verified file.

    Raises
    ------
    WeightsDownloadError
        When the download fails for any reason (no network, refused, timeout,
        HTTP error, truncated or altered file); the message names the model's
        file, the URL, the folder and how to place the file by hand.
    """
    folder = hub_checkpoint_dir()
    name = file_name(enum)
    target = folder / name
    url = weights_url(enum)
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _download_url(url, target, hash_prefix(name), bool(progress))
    # What urllib, http.client and torch.hub raise: URLError/HTTPError/timeouts are
    # OSErrors, a cut connection an HTTPException, a wrong file a RuntimeError.
    except (OSError, http.client.HTTPException, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsDownloadError(
            f"Could not download the weights {enum} ({name}) from {url}: {reason}. Nothing "
            f"was saved. Check the connection (or set {MIRROR_ENV} to a mirror), or download "
            f"the file by hand and put it into {folder}; set {OFFLINE_ENV}=1 to never "
            "connect.") from exc
    return target


def _declared_size(path):
    """Bytes the file holds, or, for a zip (torch's format), the bytes its members declare."""
    size = path.stat().st_size
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            size = max(size, sum(info.file_size for info in zf.infolist()))
    return size


def weights_bound(model):
    """The most bytes a weights file for ``model`` may reasonably hold (before reading it).

    Its tensors at 8 bytes an element, twice over (other dtypes, leftovers), plus room
    for the container; anything larger is refused unread.
    """
    tensors = [*model.state_dict().values()]
    return 2 * sum(t.numel() * 8 for t in tensors) + (16 << 20)


def load_state_dict_file(path, max_bytes=None):
    """Load a state_dict saved with ``torch.save``, refusing pickled code.

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int, optional
        Refuse, before reading, a file (or zip members) larger than this:
        the caller knows how large the weights of its architecture are.

    Raises
    ------
    FileNotFoundError
        Naming the path when it does not exist.
    ValueError
        Naming the path when it is not a state_dict that loads with
        ``weights_only=True``.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if max_bytes is not None:
        try:
            size = _declared_size(path)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"Could not read weights from {path}: {exc}") from exc
        if size > max_bytes:
            raise ValueError(
                f"The weights file {path} holds {size} bytes, far more than the weights of "
                f"this architecture need (at most {max_bytes} bytes); refusing to read it. "
                "Is it the file for another model?"
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        # What torch.load raises for a damaged file, a non-zip file or a pickle
        # that weights_only refuses.
        raise ValueError(
            f"Could not load weights from {path}: it is not a torch state_dict file "
            f"that loads safely with weights_only=True ({type(exc).__name__})."
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict (a dict of tensors).")
    return state


def imagenet_candidates(model_name):
    """torchvision's ImageNet weights of ``model_name``, the default first."""
    enum_cls = tv_models.get_model_weights(model_name)
    default = enum_cls.DEFAULT
    others = [w for w in enum_cls if w is not default and w.name.startswith("IMAGENET1K")]
    return [default, *others]


def _missing_message(model_name, enums):
    files = ", ".join(file_name(e) for e in enums)
    return (
        f"No ImageNet weights for {model_name!r} were found on this machine, and "
        f"{OFFLINE_ENV} forbids downloading them. Put one of these torchvision files: {files} "
        f"into the folder {hub_checkpoint_dir()} (set TORCH_HOME to move it; `sktransfer "
        "weights download` fetches them on a machine with internet), unset "
        f"{OFFLINE_ENV}, or use weights=None (random initialisation) or weights=PATH (a "
        "state_dict file)."
    )


def preset_of(enum):
    """The preprocessing of torchvision's weights ``enum`` as a :class:`~sktransfer.backbones.records.Preset`."""
    t = enum.transforms()
    return Preset(int(t.crop_size[0]), int(t.resize_size[0]), tuple(t.mean), tuple(t.std),
                  t.interpolation.value)


def locate(model_name, weights="imagenet", progress=None):
    """Resolve the ``weights`` parameter of torchvision's ``model_name`` to one record.

    Reads no weights (a torchvision file is hash-checked once per process);
    downloads the file when it is on this machine nowhere and downloading is
    allowed.

    Parameters
    ----------
    model_name : str
        A torchvision model name (aliases already resolved).
    weights : {"imagenet"}, str, os.PathLike, WeightsEnum or None
        ``"imagenet"``: torchvision's default ImageNet weights, or another of
        its ImageNet weights for this model when only that file is available
        offline.  The name of a member of the model's weights enum
        (``"IMAGENET1K_V1"``) or the member itself: exactly those.  ``None``:
        random initialisation.  Any other string or path: a local state_dict
        file; one named like torchvision's file (``mobilenet_v2-b0353104.pth``)
        is hash-checked and treated as those weights (their preprocessing and
        class names).
    progress : bool or None, default=None
        Progress bar for a download (see :func:`download_weights`).

    Returns
    -------
    sktransfer.backbones.records.WeightsRecord

    Raises
    ------
    WeightsNotFoundError
        When the file is not on this machine and downloading is forbidden;
        the message names the model, the file, the folder to put it in, and
        the alternatives.
    WeightsDownloadError
        When downloading it failed (see :func:`download_weights`).
    FileNotFoundError, ValueError, TypeError
        For a path that does not exist, weights of another model, or a value
        of another type.
    """
    path, enum = _locate_file(model_name, weights, progress)
    if enum is None:  # random, or a user's own file: the model's default preprocessing
        preset = preset_of(tv_models.get_model_weights(model_name).DEFAULT)
        tag = "random" if path is None else os.fspath(weights)
        return WeightsRecord(model_name, path, tag, preset)
    return WeightsRecord(model_name, path, enum.name, preset_of(enum),
                         tuple(enum.meta.get("categories", ())), enum)


def _locate_file(model_name, weights, progress):
    """``(path, enum)``: the file to load (``None``: random) and the torchvision weights it is."""
    enum_cls = tv_models.get_model_weights(model_name)
    if weights is None:
        return None, None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        enums = imagenet_candidates(model_name)
    elif isinstance(weights, WeightsEnum):
        if type(weights) is not enum_cls:
            raise ValueError(f"weights={weights} are not weights of {model_name!r}.")
        enums = [weights]
    elif isinstance(weights, str) and weights.upper() in enum_cls.__members__:
        enums = [enum_cls[weights.upper()]]
    elif isinstance(weights, (str, os.PathLike)):
        path = Path(os.fspath(weights))
        known = [e for e in enum_cls if file_name(e) == path.name]
        if known and path.is_file():
            # A copy of torchvision's own file: verify it and use what it is.
            verify_file(path, path.name)
            return path, known[0]
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        return path, None
    else:
        raise TypeError(
            "weights must be 'imagenet', None, a torchvision weights name or a path to a "
            f"state_dict file; got {type(weights).__name__}."
        )
    for enum in enums:
        path = find_weights_file(enum)
        if path is not None:
            return path, enum
    if downloads_forbidden():
        raise WeightsNotFoundError(_missing_message(model_name, enums))
    return download_weights(enums[0], progress=progress), enums[0]
