"""What every command shares: its errors and exit codes, messages, image folders and paths, figures and reports written."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CLIError(Exception):
    """A problem with the input or data, reported in one line (exit code 1)."""


class UsageError(CLIError):
    """The command was called wrongly (exit code 2)."""


def say(args, *text):
    """Progress and context; results are printed even with --quiet."""
    if not args.quiet:
        print(*text, flush=True)


def load_folder(directory):
    from ..inputs.images import load_image_folder

    paths, labels = load_image_folder(directory)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise CLIError(
            f"{directory} has one class folder ({str(classes[0])!r}) with images; training needs "
            "at least two (root/<class>/<image>)."
        )
    return paths, labels


def collect_images(inputs):
    from ..inputs.images import is_image_file

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


def model_paths(out):
    out = Path(out)
    stem = out.with_suffix("") if out.suffix else out
    return (out, Path(f"{stem}.confusion.png"), Path(f"{stem}.learning_curve.png"),
            Path(f"{stem}.report.html"))


def save_figure(ax_or_display, path):
    import matplotlib.pyplot as plt

    from ..utils.files import atomic_write

    fig = getattr(ax_or_display, "figure_", None) or ax_or_display.figure
    fig.tight_layout()
    try:
        with atomic_write(path, "the figure") as fh:
            fig.savefig(fh, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
    finally:
        plt.close(fig)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return value


def write_report(clf, X, y, path, title, args):
    """Write the HTML report; without the explain extra, say so and go on (False)."""
    from ..inspection.report import report

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


def take(data, rows):
    """Rows ``rows`` of a list (of paths or images), an array, or a pandas object (its
    columns kept)."""
    if hasattr(data, "iloc"):
        return data.iloc[rows]
    if isinstance(data, list):
        return [data[i] for i in rows]
    return np.asarray(data)[rows]


def cross_validate(name, model, X, y, y_true, splits, score, args, score_name="accuracy"):
    """Out-of-fold predictions of clones of ``model`` over ``splits`` (made once, so each
    fold is scored on the images its own fit never saw), a line per fold with the time
    elapsed and left.

    ``y``: what ``fit`` takes (labels, a DataFrame of targets); ``y_true``: the array the
    predictions are scored against with ``score(y_true, y_pred)``.  Returns the
    predictions and the mean score.
    """
    from sklearn.base import clone

    pred, scores, start, n = None, [], time.perf_counter(), len(splits)
    say(args, f"{name}:")
    for k, (train, test) in enumerate(splits, 1):
        fold = clone(model).fit(take(X, train), take(y, train))
        fold_pred = np.asarray(fold.predict(take(X, test)))
        if pred is None:
            pred = np.empty((len(y_true), *fold_pred.shape[1:]), dtype=fold_pred.dtype)
        pred[test] = fold_pred
        scores.append(float(score(take(y_true, test), fold_pred)))
        elapsed = time.perf_counter() - start
        say(args, f"  fold {k}/{n}: {score_name} {scores[-1]:.3f}  ({elapsed:.0f} s elapsed, "
                  f"about {elapsed / k * (n - k):.0f} s left)")
    print(f"{name}: {n}-fold CV {score_name} {np.mean(scores):.3f} +/- {np.std(scores):.3f} "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
    return pred, float(np.mean(scores))
