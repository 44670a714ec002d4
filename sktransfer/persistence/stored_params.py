"""Parameter values as JSON and back, unchanged: what a model file stores of ``get_params()``.

JSON has numbers, strings, lists and objects; parameters also hold tuples,
dicts with non-string keys, paths, torchvision weights enums, optimizer
classes and ``RandomState`` objects.  Each of these is written as a
one-key object naming its kind (``{"tuple": [...]}``), so that
:func:`decode` gives back a value equal to the one :func:`encode` was
given, of the same type.  Only what can be rebuilt without running the
file's code is stored: a class is named inside ``torch.optim`` and looked
up there, a weights enum is looked up by torchvision's ``get_weight``.  Any
other object (a lambda, a module, a user's class) is refused by
:func:`encode`, naming the parameter -- at ``save``, never at load.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

KINDS = ("tuple", "dict", "path", "weights", "class", "random_state", "device")


class UnstorableParameter(ValueError):
    """A parameter value a model file cannot hold; the message names the parameter."""


def encode(name, value):
    """``value`` of parameter ``name`` as JSON data :func:`decode` turns back into it.

    Raises
    ------
    UnstorableParameter
        For a value that cannot be stored and rebuilt safely.
    """
    from torchvision.models import WeightsEnum

    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"tuple": [encode(name, v) for v in value]}
    if isinstance(value, list):
        return [encode(name, v) for v in value]
    if isinstance(value, dict):
        return {"dict": [[encode(name, k), encode(name, v)] for k, v in value.items()]}
    if isinstance(value, os.PathLike):
        return {"path": os.fspath(value)}
    if isinstance(value, WeightsEnum):
        text = f"{type(value).__name__}.{value.name}"
        if _weights(text) is not value:
            raise UnstorableParameter(
                f"parameter {name!r}: {value!r} is not one of torchvision's weights enums; a "
                "model file can name only those. Pass the path of its file instead.")
        return {"weights": text}
    if isinstance(value, type):
        if getattr(torch.optim, value.__name__, None) is not value:
            raise UnstorableParameter(
                f"parameter {name!r}: the class {value.__module__}.{value.__qualname__} is not "
                "in torch.optim; a model file names classes of torch.optim only. Pickle the "
                "estimator instead (trusted files only), or use one of the named optimizers.")
        return {"class": f"torch.optim.{value.__name__}"}
    if isinstance(value, np.random.RandomState):
        kind, keys, pos, has_gauss, gauss = value.get_state(legacy=True)
        return {"random_state": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    raise UnstorableParameter(
        f"parameter {name!r}: a {type(value).__name__} ({value!r:.80}) cannot be stored in a "
        "model file, which holds only data; use a value the parameter documents, or pickle "
        "the estimator instead (trusted files only).")


def decode(data):
    """The parameter value :func:`encode` wrote as ``data``.

    Raises
    ------
    ValueError
        For data :func:`encode` does not write (naming what it found).
    """
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not (isinstance(data, dict) and len(data) == 1 and next(iter(data)) in KINDS):
        raise ValueError(f"a stored parameter value must be JSON data or one of {KINDS}; "
                         f"found {str(data)[:80]}")
    (kind, inner), = data.items()
    if kind == "tuple":
        return tuple(decode(v) for v in inner)
    if kind == "dict":
        return {decode(k): decode(v) for k, v in inner}
    if kind == "path":
        return Path(inner)
    if kind == "weights":
        return _weights(inner)
    if kind == "class":
        module, _, attr = str(inner).rpartition(".")
        found = getattr(torch.optim, attr, None)
        if module != "torch.optim" or not (isinstance(found, type)
                                           and issubclass(found, torch.optim.Optimizer)):
            raise ValueError(f"{inner!r} is not an optimizer class of torch.optim")
        return found
    if kind == "random_state":
        state = np.random.RandomState()
        name, keys, pos, has_gauss, gauss = inner
        state.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        return state
    return torch.device(inner)


def _weights(text):
    from torchvision.models import get_weight

    try:
        return get_weight(text)
    except (ValueError, KeyError, AttributeError):
        raise ValueError(f"{text!r} names no torchvision weights") from None
