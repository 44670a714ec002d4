"""``sktransfer demo``: the main job on real food photos, with cross-validated scores and a report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .common import cross_validate, save_figure, say, write_report

#: ``--quick``: this many images, 2 folds, no HTML report (a check that the job runs).
QUICK_IMAGES = 90


def cmd_demo(args):
    """The main job: IFCT 2017 food photos (or digits), cross-validated, with plots.

    Three models, 5-fold CV each (fold by fold); the best by mean CV
    accuracy is fitted on every image and saved, with its confusion matrix
    (out-of-fold predictions) and learning curve.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline

    from .. import PretrainedFeatures
    from .. import TransferClassifier
    from ..inputs.demo_data import IFCT_GROUPS, DatasetUnavailable, fetch_ifct2017
    from ..inspection.plots import plot_confusion_matrix, plot_learning_curve

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
        keep = np.random.RandomState(0).permutation(len(X))[:QUICK_IMAGES]
        X, y = [X[i] for i in keep], y[keep]
        what += f" (quick: {QUICK_IMAGES} of them)"
    say(args, what)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cv = StratifiedKFold(2 if args.quick else 5, shuffle=True, random_state=0)
    models = {
        "linear probe (PretrainedFeatures + LogisticRegression)": make_pipeline(
            PretrainedFeatures(backbone="mobilenet"), LogisticRegression(max_iter=2000)),
        'TransferClassifier(backbone="mobilenet")': TransferClassifier(backbone="mobilenet",
                                                                       random_state=0),
        "TransferClassifier(unfreeze=2, finetune_epochs=10, finetune_lr=3e-4)":
            TransferClassifier(backbone="mobilenet", unfreeze=2, finetune_epochs=10,
                               finetune_lr=3e-4, random_state=0),
    }
    splits = list(cv.split(X, y))
    results = {name: cross_validate(name, model, X, y, np.asarray(y), splits, _accuracy, args)
               for name, model in models.items()}
    best = max(results, key=lambda name: results[name][1])
    say(args, f"\nbest by CV accuracy (chosen on these folds): {best}\n"
               "fitting it on every image:")
    final = models[best]
    if isinstance(final, TransferClassifier) and not args.quiet:
        final.set_params(verbose=1)  # this fit's progress
    final.fit(X, y)
    display = plot_confusion_matrix(y, results[best][0])
    display.ax_.set_title(f"{best}\n{cv.get_n_splits()}-fold CV predictions, accuracy "
                          f"{results[best][1]:.3f}", fontsize=9)
    written = [out_dir / "confusion.png"]
    save_figure(display, written[0])
    if isinstance(final, TransferClassifier):
        written.append(out_dir / "learning_curve.png")
        save_figure(plot_learning_curve(final), written[-1])
        written.append(out_dir / "model.sktransfer")
        final.save(written[-1])
    else:  # the linear probe is a scikit-learn pipeline: pickle it (trusted file)
        import joblib

        from ..utils.files import atomic_write

        written.append(out_dir / "model.joblib")
        with atomic_write(written[-1], "the model") as fh:
            joblib.dump(final, fh)
    print(f"wrote {', '.join(map(str, written))}")
    report_html = None if args.quick else _demo_report(models, results, X, y, cv, out_dir, args)
    if report_html is not None:
        print(f"report: {report_html}")
    print(f"total time: {time.perf_counter() - start:.1f} s")


def _demo_report(models, results, X, y, cv, out_dir, args):
    """The best TransferClassifier, fitted without the first fold, reported on that fold.

    Held-out images, so the top losses are real mistakes (the saved model has
    seen every image).
    """
    from sklearn.base import clone

    from ..classifier import TransferClassifier

    names = [n for n, m in models.items() if isinstance(m, TransferClassifier)]
    name = max(names, key=lambda n: results[n][1])
    train, test = next(cv.split(X, y))
    say(args, f"\nHTML report: {name}, trained without fold 1, on fold 1's "
               f"{len(test)} images")
    clf = clone(models[name]).fit([X[i] for i in train], y[train])
    clf.set_params(verbose=0 if args.quiet else 1)
    path = out_dir / "report.html"
    title = f"sktransfer demo: {name}, fold 1 held out"
    return path if write_report(clf, [X[i] for i in test], y[test], path, title, args) else None


def _accuracy(y_true, y_pred):
    return float(np.mean(np.asarray(y_true) == y_pred))
