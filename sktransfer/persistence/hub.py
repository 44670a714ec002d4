"""Models on the Hugging Face Hub: ``hf://owner/name[@revision]`` read offline first, and a
saved folder pushed with ``huggingface_hub``.

A repository holds what :func:`~sktransfer.persistence.model_file.save_folder`
writes: ``config.json``, ``model.safetensors`` and the model card
``README.md``.  Reading fetches the first two into the Hugging Face cache (or
finds them there) and reads the folder as a model file is read: hash-checked,
no code run.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ..backbones.catalog import env_flag
from ..backbones.timm_family import download_hub_file, first_line
from ..backbones.weights import downloads_forbidden
from .model_file import WEIGHTS_MEMBER, ModelFileError, save_folder

#: How a model on the Hub is named where a path is expected.
SCHEME = "hf://"
_SPEC = re.compile(r"hf://([\w.-]+/[\w.-]+)(?:@([\w./-]+))?")


def is_hub_name(path):
    """Whether ``path`` names a model on the Hub (``hf://owner/name[@revision]``)."""
    return isinstance(path, str) and path.startswith(SCHEME)


def _parse(spec):
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ValueError(f"{spec!r} is not a Hub model name; write hf://owner/name or "
                         "hf://owner/name@revision (a branch, tag or commit).")
    return match.group(1), match.group(2)


def _offline():
    return downloads_forbidden() or env_flag("HF_HUB_OFFLINE")


def hub_folder(spec, cache_dir=None):
    """The local folder of Hub model ``spec``: from the Hugging Face cache, else downloaded.

    Parameters
    ----------
    spec : str
        ``hf://owner/name`` or ``hf://owner/name@revision``.
    cache_dir : path, optional
        A Hugging Face cache folder (default: huggingface_hub's).

    Returns
    -------
    pathlib.Path
        A folder holding ``config.json`` and ``model.safetensors``.

    Raises
    ------
    ModelFileError
        When the model is not in the cache and downloading is forbidden
        (``SKTRANSFER_OFFLINE``, ``HF_HUB_OFFLINE``) or failed.
    ImportError
        Without huggingface_hub.
    """
    repo_id, revision = _parse(spec)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise ImportError("loading a model from the Hugging Face Hub needs huggingface_hub: "
                          "pip install 'sktransfer[hub]'") from None
    files = {}
    for name in ("config.json", WEIGHTS_MEMBER):
        cached = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision)
        if isinstance(cached, str):
            files[name] = Path(cached)
    missing = [n for n in ("config.json", WEIGHTS_MEMBER) if n not in files]
    if missing and _offline():
        raise ModelFileError(
            f"{spec} is not in the Hugging Face cache, and SKTRANSFER_OFFLINE or HF_HUB_OFFLINE "
            "forbids downloading it. Load it once on a machine with internet and copy the "
            "cache folder (HF_HUB_CACHE), or download the repository and load its folder.")
    for name in missing:
        try:
            files[name] = download_hub_file(repo_id, name, cache_dir, revision)
        except Exception as exc:  # noqa: BLE001 - httpx, huggingface_hub and OS errors
            raise ModelFileError(f"Could not download {name} of {spec} from the Hugging Face "
                                 f"Hub: {first_line(exc)}") from None
    folders = {path.parent for path in files.values()}
    if len(folders) != 1:  # two revisions: the cache moved between the files
        raise ModelFileError(f"{spec}: config.json and {WEIGHTS_MEMBER} come from different "
                             "revisions of the repository; name one with @revision.")
    return folders.pop()


def push_folder(est, repo_id, card, private=None, token=None, commit_message=None):
    """Write ``est`` as :func:`save_folder` does and upload the folder to ``repo_id``.

    Parameters
    ----------
    est : TransferClassifier or TransferRegressor
    repo_id : str
        ``owner/name``; the repository is created if it does not exist.
    card : callable
        ``card(config, repo_id) -> str``.
    private : bool, optional
    token : str, optional
        Default: huggingface_hub's (``HF_TOKEN``, ``huggingface-cli login``).
    commit_message : str, optional

    Returns
    -------
    str
        The URL of the commit.
    """
    if _offline():
        raise ModelFileError(f"pushing to {repo_id} needs the network, which "
                             "SKTRANSFER_OFFLINE or HF_HUB_OFFLINE forbids.")
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError("pushing to the Hugging Face Hub needs huggingface_hub: "
                          "pip install 'sktransfer[hub]'") from None
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    with tempfile.TemporaryDirectory(prefix="sktransfer-push-") as folder:
        save_folder(est, folder, lambda config: card(config, repo_id))
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder,
                                 commit_message=commit_message or f"{type(est).__name__} "
                                 "saved by sktransfer")
    return str(getattr(info, "commit_url", info))
