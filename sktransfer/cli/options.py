"""The command line's options, generated from the estimators' parameters and their constraints."""

from __future__ import annotations

import argparse
import difflib
import inspect
import re


# Parameters the command line does not offer: set through --quiet, or objects.
_NOT_OPTIONS = {"verbose", "callbacks"}


def _parameter_help(cls):
    """``{name: first sentence of its numpydoc description}``."""
    from .._docstrings import parameter_docs

    helps = {}
    for name, (_, text) in parameter_docs(inspect.getdoc(cls) or "").items():
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
        helps[name] = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].replace("%", "%%")
    return helps


def _suggest(value, options):
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _converter(name, constraints):
    """argparse ``type`` for a parameter: text -> a value its constraints accept."""
    from numbers import Integral

    from sklearn.utils._param_validation import Interval, StrOptions

    options = [o for c in constraints if isinstance(c, StrOptions) for o in sorted(c.options)]
    intervals = [c for c in constraints if isinstance(c, Interval)]

    def convert(text):
        if text.lower() == "none" and None in constraints:
            return None
        if text in options:
            return text
        if name == "backbone":
            from ..backbones.building import resolve_name

            try:
                resolve_name(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
            return text
        if tuple in constraints:  # hidden_units: "128" or "256,64"
            try:
                return tuple(int(u) for u in text.split(","))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{text!r}: give layer widths as integers, e.g. 128 or 256,64") from None
        for interval in intervals:
            try:
                return int(text) if interval.type is Integral else float(text)
            except ValueError:
                pass
        if "random_state" in constraints:
            try:
                return int(text)
            except ValueError:
                pass
        if str in constraints or any(c.__class__.__name__ == "PathLike" for c in constraints):
            return text
        allowed = ", ".join(options + [
            f"{'an integer' if i.type is Integral else 'a number'}" for i in intervals]
            + (["none"] if None in constraints else []))
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}{_suggest(text, options) if options else ''} "
            f"(choose from {allowed})")

    convert.__name__ = name  # argparse names the option's type in its messages
    return convert


def add_estimator_options(parser, classes, defaults=None):
    """One option per parameter of the estimators ``classes``: default and help from them.

    ``--name VALUE`` (``none`` for None), ``--flag/--no-flag`` for booleans;
    a parameter only some of them take says which in its help; ``defaults``
    replaces some of the classes' defaults.
    """
    defaults = defaults or {}
    names = " and ".join(cls.__name__ for cls in classes)
    group = parser.add_argument_group(f"{names} parameters (defaults are their own"
                                      + (f", but {', '.join(defaults)}" if defaults else "")
                                      + ")")
    seen = set()
    for cls in classes:
        helps = _parameter_help(cls)
        constraints = cls._parameter_constraints
        for name, param in inspect.signature(cls).parameters.items():
            if name in _NOT_OPTIONS or name in seen:
                continue
            seen.add(name)
            takers = [c for c in classes if name in inspect.signature(c).parameters]
            only = (f" ({' and '.join(c.__name__ for c in takers)} only)"
                    if len(takers) < len(classes) else "")
            own = {c.__name__: inspect.signature(c).parameters[name].default for c in takers}
            flag = "--" + name.replace("_", "-")
            if name in defaults or len({repr(v) for v in own.values()}) == 1:
                default = defaults.get(name, param.default)
                shown = repr(default)
            else:  # each estimator keeps its own default unless the option is given
                default = OWN_DEFAULT
                shown = ", ".join(f"{v!r} for {c}" for c, v in own.items())
            text = f"{helps.get(name, '')}{only} (default: {shown})".strip()
            if constraints[name] == ["boolean"]:
                group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                   default=default, help=text)
            else:
                group.add_argument(flag, dest=name, type=_converter(name, constraints[name]),
                                   default=default, metavar=name.upper(), help=text)


#: An option's value when not given and the estimators' defaults differ.
OWN_DEFAULT = type("OwnDefault", (), {"__repr__": lambda self: "the estimator's own"})()


def estimator(args, task, verbose=None):
    """The estimator ``task`` needs, with the parameters of the command line."""
    from .. import TransferClassifier
    from .. import TransferRegressor

    cls = TransferRegressor if task == "regression" else TransferClassifier
    params = {name: getattr(args, name) for name in inspect.signature(cls).parameters
              if name not in _NOT_OPTIONS and getattr(args, name) is not OWN_DEFAULT}
    return cls(**params, verbose=(0 if args.quiet else 1) if verbose is None else verbose)
