"""Parameter checks shared by the estimators; each error names the parameter."""

from __future__ import annotations

import numbers

import torch


def check_int(name, value, minimum=0, allow_none=False):
    """Check an integer parameter ``>= minimum``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")


def check_float(name, value, low=0.0, high=None, low_inclusive=False):
    """Check a real parameter in ``(low, high]`` (``[low, high]`` when ``low_inclusive``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = value >= low if low_inclusive else value > low
        ok = ok and (high is None or value <= high)
    if not ok:
        bracket = "[" if low_inclusive else "("
        upper = f"{high}]" if high is not None else "inf)"
        raise ValueError(f"{name} must be a number in {bracket}{low}, {upper}; got {value!r}.")


def check_choice(name, value, choices):
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")


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


def check_common(est):
    """Checks shared by TransferClassifier and PretrainedFeatures."""
    check_choice("pooling", est.pooling, ("avg", "max", "flatten"))
    check_int("batch_size", est.batch_size, 1)
    check_int("image_size", est.image_size, 1, allow_none=True)
    check_int("n_jobs", est.n_jobs, -1, allow_none=True)
    if est.n_jobs == 0:
        raise ValueError("n_jobs must be None, -1 or a positive integer; got 0.")
    check_int("verbose", est.verbose, 0)
    if not isinstance(est.cache, bool):
        raise ValueError(f"cache must be True or False; got {est.cache!r}.")
    return resolve_device(est.device)


def parse_bytes(text):
    """``"500M"``, ``"2G"``, ``"1.5GiB"``, ``"1000"`` -> a number of bytes.

    Raises
    ------
    ValueError
        Naming the text and the accepted forms.
    """
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        value = float(t[:len(t) - len(unit)])
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{text!r} is not a size; use bytes or a number with K, M, G or T "
                         "(e.g. 500M, 2G).")
    return int(value * units[unit])
