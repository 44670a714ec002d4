"""``sktransfer train`` and ``sktransfer evaluate``: fit on a folder or a CSV, score, report."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from ..utils.text import listed
from .common import (CLIError, cross_validate, load_folder, model_paths, save_figure, say,
                     take, write_report)
from .options import estimator


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
    from ..inputs.images import ImageDecodeError

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
    from ..inputs.tables import Table, read_table

    if Path(args.data).suffix.lower() == ".csv" and Path(args.data).is_file():
        table = read_table(args.data, args.path_column, args.target, args.task)
        say(args, f"{len(table.paths)} images in {args.data}; task: {table.task} "
                   f"({table.why}{'' if args.task else '; --task changes it'})")
        if table.task == "multilabel":
            table.y = _common_tags(table.y, args)
        return table
    if args.task not in (None, "classification"):
        raise CLIError(f"--task {args.task} needs a CSV file of paths and targets; a folder "
                       "DIR/<class>/<image> holds classes.")
    paths, labels = load_folder(args.data)
    say(args, f"{len(paths)} images, {len(np.unique(labels))} classes in {args.data}")
    return Table(paths, labels, "classification", "class folders", [])


def _report(y_true, y_pred):
    from sklearn.metrics import accuracy_score, classification_report

    print(f"accuracy: {accuracy_score(y_true, y_pred):.3f}")
    print(classification_report(y_true, y_pred, zero_division=0))


def _score(task, y_true, y_pred, names, args):
    """Print the scores of ``task``: accuracy and per class, R² and MAE, or per-label F1."""
    from sklearn.metrics import classification_report, f1_score, mean_absolute_error, r2_score

    if task == "classification":
        _report(y_true, y_pred)
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
    targets: numbers that are not whole (or whole numbers that do not repeat
    like class codes) train a regressor, class codes and text a classifier,
    ';'-separated tags (or several 0/1 columns) a multi-label classifier (--task chooses instead).  Ctrl-C saves the best
    model so far as MODEL.interrupted.sktransfer (the library's ``fit``
    itself is all-or-nothing) and exits with code 130.
    """
    from sklearn.model_selection import (GroupKFold, KFold, StratifiedGroupKFold,
                                         StratifiedKFold, train_test_split)

    from ..inputs.images import content_groups
    from ..inspection.plots import plot_confusion_matrix, plot_learning_curve

    start = time.perf_counter()
    table = _training_data(args)
    paths, labels, task = table.paths, table.y, table.task
    names = list(getattr(labels, "columns", table.targets))
    labels = labels.to_numpy() if hasattr(labels, "to_numpy") else labels
    y_fit = table.y if task != "classification" else labels  # a DataFrame names the targets
    out, confusion_png, curve_png, report_html = model_paths(args.out)
    held_out = None
    stratified = task == "classification"
    from ..training.callbacks import KeepBest

    if stratified:
        _check_splittable(labels, args)
    groups = content_groups(paths)
    n_copies = len(paths) - len(np.unique(groups))
    if n_copies:
        say(args, f"{n_copies} image(s) repeat another's content (the same file bytes): each "
                   "copy stays with its original, on one side of every split")
    clf = estimator(args, task)
    keep_best = KeepBest(clf)  # what Ctrl-C saves
    clf.set_params(callbacks=[("keep_best", keep_best)])
    try:
        if args.cv:
            kinds = ((StratifiedKFold, KFold) if not n_copies else
                     (StratifiedGroupKFold, GroupKFold))
            cv = kinds[0 if stratified else 1](args.cv, shuffle=True,
                                               random_state=args.random_state)
            splits = list(cv.split(paths, labels if stratified else None, groups))
            pred, _ = cross_validate(
                clf.backbone, estimator(args, task, verbose=0), paths, y_fit, labels, splits,
                lambda t, p: _one_score(task, t, p), args, _SCORE_NAMES[task])
            _score(task, labels, pred, names, args)
            y_true, y_pred = labels, pred
            clf.fit(paths, y_fit)  # the saved model sees every image
        else:
            # one image per content is split; its copies follow it
            index = np.unique(groups, return_index=True)[1]
            train, test = train_test_split(index, test_size=args.test_size,
                                           stratify=labels[index] if stratified else None,
                                           random_state=args.random_state)
            if n_copies:
                train, test = (np.flatnonzero(np.isin(groups, groups[part]))
                               for part in (train, test))
            # Held out means held out: the scored images never reach fit, not even for
            # early stopping, which splits its own validation images off the training part
            # (as many as fit's train_test_split takes: it rounds the test part up).
            n_valid = (math.ceil(args.validation_fraction * len(train))
                       if args.early_stopping else 0)
            say(args, f"{len(train) - n_valid} images to train on"
                       + (f", {n_valid} of the rest for early stopping" if n_valid else "")
                       + f", {len(test)} held out for scoring (random state "
                       f"{args.random_state}; --random-state changes the split and the fit)")
            clf.fit([paths[i] for i in train], take(y_fit, train))
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
        save_figure(plot_confusion_matrix(y_true, y_pred, labels=clf.classes_), confusion_png)
        figures.insert(0, confusion_png)
    save_figure(plot_learning_curve(clf), curve_png)
    say(args, f"saved {out}, {', '.join(map(str, figures))}")
    if held_out is None:
        say(args, "no HTML report with --cv (no held-out images): `sktransfer evaluate "
                   f"{out} DATA --report report.html` writes one")
    elif write_report(clf, *held_out, report_html,
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


def cmd_evaluate(args):
    """Scores of MODEL on DATA (a folder DIR/<class>/<image>, or a CSV file laid out as for
    train): accuracy and per-class scores, R² and MAE per target, or per-label F1."""
    from sklearn.base import is_regressor

    from ..loading import load
    from ..inspection.plots import plot_confusion_matrix

    start = time.perf_counter()
    model = load(args.model)
    model.set_params(verbose=0)
    task = ("regression" if is_regressor(model) else
            "multilabel" if model.multilabel_ else "classification")
    if Path(args.data).suffix.lower() == ".csv" and Path(args.data).is_file():
        from ..inputs.tables import read_table
        from ..inputs.targets import align_tags

        targets = args.target
        if targets is None and task == "regression" and model.target_names_ is not None:
            targets = list(model.target_names_)
        table = read_table(args.data, args.path_column, targets, task)
        paths = table.paths
        if task == "multilabel":  # the model's tags, in its order (unknown ones: warned)
            labels = align_tags(table.y, model.classes_, args.data)
        else:
            labels = table.y.to_numpy() if hasattr(table.y, "to_numpy") else table.y
    elif task != "classification":
        raise CLIError(f"{args.model} is a {task} model: evaluate it on a CSV file of paths "
                       "and targets.")
    else:
        from ..inputs.images import load_image_folder

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
        _report(labels.astype(str), pred.astype(str))
        if args.out:  # a figure only when asked for
            save_figure(plot_confusion_matrix(labels.astype(str), pred.astype(str)), args.out)
            say(args, f"saved {args.out}")
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
        if write_report(model, [paths[i] for i in known], np.asarray(labels)[known],
                         args.report, f"{Path(args.model).name} on {args.data}", args):
            print(f"report: {args.report}")
    unknown_images = len(paths) - len(known)
    print(f"images: {len(paths)}" + (f" ({unknown_images} of classes the model does not know)"
                                     if unknown_images else "")
          + f"; time: {time.perf_counter() - start:.1f} s")


def _common_tags(indicator, args):
    """The tag columns seen on at least --min-count images; the dropped ones named in a line."""
    from ..inputs.targets import drop_rare_tags

    kept, dropped = drop_rare_tags(indicator, args.min_count)
    if dropped:
        say(args, f"dropped {len(dropped)} of {indicator.shape[1]} tags, on fewer than "
                   f"{args.min_count} images (--min-count): "
                   f"{listed([f'{t} ({n})' for t, n in dropped.items()])}")
    if not kept.shape[1]:
        raise CLIError(f"no tag is on {args.min_count} images or more; lower --min-count "
                       f"(the most common tag is on {int(indicator.sum(axis=0).max())}).")
    untagged = int((kept.sum(axis=1) == 0).sum())
    if untagged:
        say(args, f"{untagged} image(s) have no tag (an empty cell, or only dropped tags): "
                   "they teach the model what none of the tags looks like")
    return kept


def _check_splittable(labels, args):
    """One line naming the classes too small for --cv's folds or the held-out split, and the
    fix (before any fit: scikit-learn's own error lists every class on one line)."""
    n_parts = args.cv or 2
    classes, counts = np.unique(labels, return_counts=True)
    small = counts < n_parts
    if not small.any():
        return
    order = np.argsort(counts[small], kind="stable")
    shown = listed([f"{c!s} ({n})" for c, n in zip(classes[small][order], counts[small][order])])
    numeric = np.issubdtype(np.asarray(labels).dtype, np.number)
    fix = ("; if the column is a quantity, train a regressor: --task regression" if numeric
           else "")
    split = f"--cv {args.cv}" if args.cv else "the held-out split"
    raise CLIError(f"{small.sum()} of {len(classes)} classes have fewer than {n_parts} images, "
                   f"too few for {split}: {shown}. Add images of them or drop those rows"
                   f"{fix}.")
