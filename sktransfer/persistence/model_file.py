"""The model file, without pickle: a zip of JSON config and safetensors.

A model file holds ``config.json`` (format version, the estimator's
parameters, classes, history, a sha256 of the weights) and
``model.safetensors`` (the flat state_dict, in the format timm, transformers
and the Hugging Face Hub use: a JSON header and raw tensor bytes, nothing to
unpickle).  Files of format version 1 hold ``state.pt`` instead (written with
``torch.save``, read with ``torch.load(weights_only=True)``) and still load.
Loading (:func:`sktransfer.load`) rebuilds the architecture from the config
and the backbone registry, so nothing in the file can run code; a file from
another format version, or whose weights do not match their recorded hash,
is refused with a clear error.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..extraction.engines import to_onnx
from ..utils.sizes import parse_bytes
from ..utils.files import atomic_write, write_bytes
from ..utils.text import listed
from .stored_params import decode, encode

FORMAT = "sktransfer-model"
#: 2: the tensors in ``model.safetensors``; 1 (read, no longer written): in ``state.pt``.
FORMAT_VERSION = 2
#: The member holding the tensors, by format version.
WEIGHTS_MEMBERS = {1: "state.pt", 2: "model.safetensors"}
WEIGHTS_MEMBER = WEIGHTS_MEMBERS[FORMAT_VERSION]
#: How ``config.json`` stores parameter values (:mod:`sktransfer.persistence.stored_params`).
PARAMS_ENCODING = 2


class ModelFileError(ValueError):
    """A model file cannot be loaded (wrong format, other version, tampered)."""


def _json_params(est):
    params = est.get_params()
    if isinstance(params["backbone"], nn.Module):
        raise ValueError(
            "save() rebuilds the network from its torchvision name; a custom backbone module "
            "cannot be saved this way. Pickle the estimator instead (trusted files only)."
        )
    # callbacks are training-time hooks, not part of the model: never written
    return {name: None if name == "callbacks" else encode(name, value)
            for name, value in params.items()}


def _to_json(value):
    return value.item() if isinstance(value, np.generic) else value


def _from_json_params(params, encoding):
    if encoding != PARAMS_ENCODING:  # only development versions before 0.1.0 wrote others
        raise ValueError(f"parameters stored in encoding {encoding!r}, not "
                         f"{PARAMS_ENCODING}: a file of a development version; fit it again")
    return {name: decode(value) for name, value in params.items()}


def save(est, path):
    """Write a fitted transfer estimator to ``path`` (see the module docstring).

    Parameters
    ----------
    est : TransferClassifier or TransferRegressor
        Fitted, with a backbone named by a string.
    path : str or os.PathLike
    """
    config, weights = model_parts(est)
    with atomic_write(path, "the model") as fh, \
            zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("config.json", json.dumps(config, indent=1))
        zf.writestr(WEIGHTS_MEMBER, weights)


def model_parts(est):
    """What a model file holds: its config (a dict of JSON values) and its weights' bytes.

    Parameters
    ----------
    est : TransferClassifier or TransferRegressor
        Fitted, with a backbone named by a string.

    Returns
    -------
    config : dict
    weights : bytes
        safetensors.
    """
    from sklearn.utils.validation import check_is_fitted

    from .._version import __version__

    check_is_fitted(est, "net_")
    weights = tensors_to_bytes(est.fitted_state())
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sktransfer_version": __version__,
        "estimator": type(est).__name__,
        "params": _json_params(est),
        "params_encoding": PARAMS_ENCODING,
        # what the model learnt of its targets: the classes, or the outputs' scales
        "target": est.target_config(),
        "weights_loaded": est.weights_,
        "history": json.loads(json.dumps(list(est.history_), default=_to_json)),
        "state_sha256": hashlib.sha256(weights).hexdigest(),
        # an int8 engine's calibration (tensor ranges), so the same engine is rebuilt
        "engine_calibration": est.extractor_.calibration,
        # the preprocessing the fit used: load reads it, never the weights' current defaults
        "preprocessing": est.transform_.settings(),
    }
    return config, weights


def tensors_to_bytes(state):
    """``state`` (names to CPU tensors, none sharing memory) as safetensors bytes."""
    from safetensors.torch import save

    return save(state)


def tensors_from_bytes(data, version=FORMAT_VERSION):
    """The tensors of a model file's weights member (of format ``version``), on the CPU."""
    if version == 1:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(bytes(data))
    except SafetensorError as exc:  # its own error type: said as the others are
        raise ValueError(f"unreadable safetensors ({exc})") from None


#: Largest ``config.json`` read: parameters, classes and the training history.
MAX_CONFIG_BYTES = 16 << 20
#: Members are written uncompressed; a member that inflates more than this
#: many times is a zip bomb, not a file sktransfer wrote.
MAX_COMPRESSION_RATIO = 20


def max_model_bytes():
    """Largest weights member read: ``SKTRANSFER_MAX_MODEL_BYTES`` (e.g. ``"8G"``), default 4 GiB."""
    return parse_bytes(os.environ.get("SKTRANSFER_MAX_MODEL_BYTES", "4G"))


def _check_member(path, info, limit):
    """Refuse a member by what it declares, before reading a byte of it."""
    if info.file_size > limit:
        raise ModelFileError(
            f"{path}: member {info.filename!r} declares {info.file_size} bytes, over the "
            f"limit of {limit} bytes; refusing to read it. (For a genuine model larger than "
            "that, raise SKTRANSFER_MAX_MODEL_BYTES.)"
        )
    if (info.compress_type != zipfile.ZIP_STORED
            and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)):
        raise ModelFileError(
            f"{path}: member {info.filename!r} inflates {info.compress_size} bytes to "
            f"{info.file_size} (more than {MAX_COMPRESSION_RATIO}x); a model file sktransfer "
            "wrote is not compressed like that. Refusing to read it."
        )


def _read_member(zf, info):
    """The member's bytes and their sha256, read in chunks (never more than declared)."""
    data, digest = bytearray(), hashlib.sha256()
    with zf.open(info) as fh:  # zipfile stops at the declared size
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            data += chunk
            digest.update(chunk)
    return bytes(data), digest.hexdigest()


def _read(path):
    path = Path(os.fspath(path))
    if path.is_dir():
        config, weights, digest, member = _read_folder(path)
    elif path.is_file():
        config, weights, digest, member = _read_zip(path)
    else:
        raise FileNotFoundError(f"model file not found: {path}")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an sktransfer model file.")
    version = config.get("format_version")
    if version not in WEIGHTS_MEMBERS:
        raise ModelFileError(
            f"{path} has model format version {version!r} (written by sktransfer "
            f"{config.get('sktransfer_version')}); this sktransfer reads versions "
            f"{listed(sorted(WEIGHTS_MEMBERS))}. Load it with the version that wrote it and "
            "re-save."
        )
    if WEIGHTS_MEMBERS[version] != member:
        raise ModelFileError(f"{path}: format version {version} keeps its weights in "
                             f"{WEIGHTS_MEMBERS[version]}, not {member}; the file is "
                             "damaged or was put together by hand. Refusing to load it.")
    if digest != config.get("state_sha256"):
        raise ModelFileError(
            f"{path}: the weights do not match the hash recorded in the file; it was modified "
            "or damaged after saving. Refusing to load it."
        )
    return config, weights


def _read_zip(path):
    """``(config, weights, their sha256, the weights member's name)`` of a model file."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            # the weights member the file has names its format (its config says so too)
            members = ("config.json", next((m for m in WEIGHTS_MEMBERS.values() if m in infos),
                                           WEIGHTS_MEMBER))
            unexpected = sorted(set(infos) - set(members))
            missing = [m for m in members if m not in infos]
            if unexpected or missing:
                raise ModelFileError(
                    f"{path} is not an sktransfer model file: it should hold exactly "
                    f"{', '.join(members)}"
                    + (f"; unexpected: {listed(unexpected, 5)}" if unexpected else "")
                    + (f"; missing: {', '.join(missing)}" if missing else "") + "."
                )
            _check_member(path, infos["config.json"], MAX_CONFIG_BYTES)
            _check_member(path, infos[members[1]], max_model_bytes())
            config = json.loads(_read_member(zf, infos["config.json"])[0])
            weights, digest = _read_member(zf, infos[members[1]])
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, zlib.error,
            NotImplementedError) as exc:
        raise ModelFileError(
            f"{path} is not an sktransfer model file (or it is damaged): {exc}"
        ) from exc
    return config, weights, digest, members[1]


def _read_folder(path):
    """What :func:`_read_zip` reads, from a folder (:func:`save_folder`'s, or a Hub repo's)."""
    member = next((m for m in WEIGHTS_MEMBERS.values() if (path / m).is_file()), None)
    if not (path / "config.json").is_file() or member is None:
        raise ModelFileError(f"{path} is not an sktransfer model folder: it should hold "
                             f"config.json and {WEIGHTS_MEMBER}.")
    parts = []
    for name, limit in (("config.json", MAX_CONFIG_BYTES), (member, max_model_bytes())):
        size = (path / name).stat().st_size
        if size > limit:
            raise ModelFileError(
                f"{path / name} has {size} bytes, over the limit of {limit} bytes; refusing "
                "to read it. (For a genuine model larger than that, raise "
                "SKTRANSFER_MAX_MODEL_BYTES.)")
        parts.append((path / name).read_bytes())
    try:
        config = json.loads(parts[0])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path / 'config.json'} is not JSON: {exc}") from None
    return config, parts[1], hashlib.sha256(parts[1]).hexdigest(), member


def save_folder(est, folder, card):
    """Write ``est`` as a folder: ``config.json``, ``model.safetensors`` and ``README.md``.

    The layout of a Hugging Face Hub model repository; :func:`read_model`
    reads it as it reads a model file.  Each file is written all or nothing.

    Parameters
    ----------
    est : TransferClassifier or TransferRegressor
    folder : str or os.PathLike
    card : callable
        ``card(config) -> str``, the model card (``README.md``).

    Returns
    -------
    pathlib.Path
    """
    config, weights = model_parts(est)
    folder = Path(os.fspath(folder))
    folder.mkdir(parents=True, exist_ok=True)
    # the weights first: a folder is never left with a config naming weights it lacks
    write_bytes(folder / WEIGHTS_MEMBER, weights, "the model's weights")
    write_bytes(folder / "config.json", json.dumps(config, indent=1).encode(), "the model")
    write_bytes(folder / "README.md", card(config).encode(), "the model card")
    return folder


def read_model(path):
    """Read and check a model file; return the estimator's name and what its
    ``from_fitted_state`` takes.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    tuple of (str, dict)
        The estimator's class name, and ``params``, ``target``, ``state``,
        ``history``, ``weights_loaded`` and ``engine_calibration``.

    Raises
    ------
    FileNotFoundError
        When there is no file.
    ModelFileError
        When it is not a model file, comes from another format version, or
        was tampered with.
    """
    config, weights = _read(path)
    try:
        return config["estimator"], fitted_parts(config, weights)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError,
            pickle.UnpicklingError) as exc:
        raise ModelFileError(f"{path} does not describe a loadable model: {exc}") from exc


def fitted_parts(config, weights):
    """What ``from_fitted_state`` takes, from a model's config and weights (:func:`model_parts`).

    Parameters
    ----------
    config : dict
    weights : bytes

    Returns
    -------
    dict
        ``params``, ``target``, ``state``, ``history``, ``weights_loaded``,
        ``engine_calibration`` and ``preprocessing``.
    """
    return {
        "params": _from_json_params(config["params"], config.get("params_encoding")),
        "target": config["target"],
        "state": tensors_from_bytes(weights, config["format_version"]),
        "history": config["history"],
        "weights_loaded": config["weights_loaded"],
        "engine_calibration": config.get("engine_calibration"),
        "preprocessing": config.get("preprocessing"),
    }


class InferenceModel(nn.Module):
    """The whole fitted network: normalised images ``(n, 3, s, s)`` -> what it predicts.

    ``modules``: the estimator's ``inference_modules()`` (blocks, then pooling and head)
    in turn, then ``output`` (softmax, sigmoid, or the targets' units)."""

    def __init__(self, modules, output):
        super().__init__()
        self.layers = nn.ModuleList([*modules, output])

    def forward(self, x):  # noqa: D102 - torch convention
        for module in self.layers:
            x = module(x)
        return x


class FromPixels(nn.Module):
    """``model`` fed with uint8 images ``(n, s, s, 3)``, as decoded and resized: the layout,
    the scaling to [0, 1] and the normalisation of ``transform`` (a
    :class:`~sktransfer.backbones.preprocess.Preprocess`) in the network itself,
    computed as ``transform.normalize`` computes them."""

    def __init__(self, model, transform):
        super().__init__()
        self.model = model
        self.register_buffer("scale", torch.tensor(
            [1.0 / (255.0 * s) for s in transform.std]).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(
            [-m / s for m, s in zip(transform.mean, transform.std)]).view(1, 3, 1, 1))

    def forward(self, x):  # noqa: D102 - torch convention
        x = x.permute(0, 3, 1, 2).to(torch.float32)
        return self.model(x * self.scale + self.shift)


def export_onnx(est, path, preprocessing=False):
    """Export a fitted transfer estimator to ONNX (needs the ``onnx`` extra).

    With ``preprocessing=False`` the model takes a float32 batch ``images``
    of shape ``(n, 3, s, s)``, already resized, center-cropped and
    normalised as ``est.transform_`` does.  With ``preprocessing=True`` it
    takes uint8 images ``(n, s, s, 3)`` (RGB, as an image file decodes,
    already resized to the input size ``s``): the layout, the scaling and the
    normalisation are in the graph, so a runtime needs no code of ours.  A
    classifier's model returns ``probabilities`` ``(n, n_classes)`` in the
    order of ``est.classes_`` (recorded as ``classes``); a regressor's
    ``predictions`` ``(n, n_outputs)`` in the targets' units.  The
    preprocessing is recorded in the file's metadata too (``mean``, ``std``,
    ``resize_size``, ``crop_size``, ``crop``, ``interpolation``, and
    ``input``: what the model takes).  The fitted estimator itself stays
    where it is (its device, its mode).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "net_")
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "export_onnx needs the onnx packages: pip install 'sktransfer[onnx]'"
        ) from None
    output, output_name, output_meta = est.output_layer()
    # a copy on the CPU: the fitted network stays on its device, in its mode
    blocks, tail = est.inference_modules()
    model = copy.deepcopy(InferenceModel([*blocks, *tail], output))
    model = model.to("cpu").eval()
    size = est.transform_.crop_size[0]
    example = torch.zeros(2, 3, size, size)
    if preprocessing:
        model = FromPixels(model, est.transform_).eval()
        example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    proto = onnx.load_from_string(to_onnx(model, example, "images", output_name))
    meta = {
        **{k: json.dumps(v) for k, v in output_meta.items()},
        "mean": json.dumps(list(est.transform_.mean)),
        "std": json.dumps(list(est.transform_.std)),
        "resize_size": json.dumps(est.transform_.resize_size),
        "crop_size": json.dumps(est.transform_.crop_size),
        "crop": json.dumps(est.transform_.crop),
        "interpolation": json.dumps(est.transform_.interpolation),
        "input": json.dumps(f"uint8 (n, {size}, {size}, 3) RGB, resized" if preprocessing
                            else f"float32 (n, 3, {size}, {size}), resized and normalised"),
    }
    onnx.helper.set_model_props(proto, meta)
    write_bytes(path, proto.SerializeToString(), "the ONNX model")
