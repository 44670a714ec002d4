"""What the estimators' parameters accept (scikit-learn constraints), and a few helpers.

The estimators declare ``_parameter_constraints`` from these and validate
them with scikit-learn's own machinery in ``fit``: an invalid value raises
``InvalidParameterError`` (a ``ValueError``) naming the parameter, the value
and what is allowed.
"""

from __future__ import annotations

import numbers
import os
import re

import torch
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from torch import nn
from torchvision.models import WeightsEnum

from .extraction.engines import ENGINES


def suggest(error, est):
    """``error`` (an ``InvalidParameterError``), with a did-you-mean for a mistyped option."""
    import difflib

    match = re.match(r"The '(\w+)' parameter", str(error))
    if match is None:
        return error
    name = match.group(1)
    value = getattr(est, name, None)
    options = [o for c in est._parameter_constraints.get(name, [])
               if isinstance(c, StrOptions) for o in c.options]
    close = difflib.get_close_matches(value, options, n=1) if isinstance(value, str) else []
    if not close:
        return error
    return InvalidParameterError(f"{error} Did you mean {close[0]!r}?")


def check_hidden_units(est):
    """``hidden_units``: beyond its type constraint, every width must be an int >= 1."""
    units = est.hidden_units
    values = [units] if isinstance(units, numbers.Integral) else list(units)
    if not all(isinstance(u, numbers.Integral) and not isinstance(u, bool) and u >= 1
               for u in values):
        raise InvalidParameterError(
            f"The 'hidden_units' parameter of {type(est).__name__} must be an int >= 1 or a "
            f"tuple of them. Got {units!r} instead.")


def check_optimizer(est):
    """``optimizer``: a class given must be a ``torch.optim.Optimizer`` subclass."""
    opt = est.optimizer
    if not isinstance(opt, str) and not issubclass(opt, torch.optim.Optimizer):
        raise InvalidParameterError(
            f"The 'optimizer' parameter of {type(est).__name__} must be one of the names "
            f"listed or a torch.optim.Optimizer subclass. Got {opt!r} instead.")


#: Largest ``image_size``: the ImageNet backbones were trained at 224 to 600 px
#: (EfficientNet-B7's 600 the largest of torchvision's), and a network's
#: activations grow with the square of the side: at 1,024 px one image's
#: activations through MobileNetV2 already take about 130 MB.
MAX_IMAGE_SIZE = 1024
#: Most views per image (``tta``, ``augment_views``): each one is a whole
#: extraction of every image; the measured gains came from 2 to 5.
MAX_VIEWS = 64

#: Parameters both estimators share, with what each accepts.
COMMON_CONSTRAINTS = {
    "backbone": [str, nn.Module],
    "weights": [str, os.PathLike, WeightsEnum, None],
    "pooling": [StrOptions({"avg", "max", "flatten"})],
    "image_size": [Interval(numbers.Integral, 1, MAX_IMAGE_SIZE, closed="both"), None],
    "crop": ["boolean"],
    "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
    "cache": ["boolean"],
    "cache_dir": [str, os.PathLike, None],
    "device": [str, torch.device],
    "mixed_precision": ["boolean"],
    "engine": [StrOptions(set(ENGINES))],
    "n_jobs": [Interval(numbers.Integral, 1, None, closed="left"),
               Interval(numbers.Integral, None, -1, closed="right"), None],
    "verbose": ["verbose"],
}


def resolve_device(device):
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; check the others."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto'.")
    return str(dev)
