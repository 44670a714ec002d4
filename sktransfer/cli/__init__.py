"""The ``sktransfer`` command: train, predict, evaluate, classify, backbones, weights, cache, demo.

Exit codes, the same for every command: 0 done; 1 bad input or data (a
missing file or folder, unreadable images, one class, a damaged model
file, an invalid parameter value); 2 wrong usage (an unknown option, a
malformed value, a missing argument); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ..inputs.targets import MIN_TAG_COUNT
from .admin import cmd_backbones, cmd_cache, cmd_weights
from .common import (EXIT_DATA, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CLIError, UsageError,
                     positive_int)
from .demo import cmd_demo
from .options import add_estimator_options
from .predict import cmd_classify, cmd_predict
from .train import cmd_evaluate, cmd_train


COMMANDS = ("train", "predict", "evaluate", "classify", "backbones", "weights", "cache", "demo")


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
    group.add_argument("--cv", type=positive_int,
                       help="K-fold cross-validation instead of a held-out split")
    group.add_argument("--test-size", type=float, default=0.2,
                       help="fraction of DIR held out for scoring, never seen by the fit "
                            "(default: 0.2)")
    p.add_argument("--out", default="model.sktransfer",
                   help="model file to write (default: model.sktransfer)")
    if only in (None, "train"):
        from ..classifier import TransferClassifier
        from ..regressor import TransferRegressor

        # the same command gives the same numbers: a fixed seed for the split and the fit
        add_estimator_options(p, [TransferClassifier, TransferRegressor],
                              defaults={"random_state": 0})

    p = command("predict", cmd_predict, "predict images with a saved model (CSV)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("images", metavar="IMAGE_OR_DIR", nargs="+",
                   help="image files, folders of them, or one CSV file of images (its "
                        "columns are written before the predictions)")
    p.add_argument("--out", help="CSV file (default: standard output)")
    p.add_argument("--path-column", metavar="NAME",
                   help="CSV: the column of image paths (default: the first)")

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
    p.add_argument("--top", type=positive_int, default=5,
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
    p.add_argument("--quick", action="store_true",
                   help="90 images, 2 folds, no HTML report: a check that the job runs")
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
        p.add_argument("--min-count", metavar="N", type=positive_int, default=MIN_TAG_COUNT,
                       help="CSV, multi-label: tags on fewer than N images are dropped, named "
                            f"in one line (default: {MIN_TAG_COUNT}, so that each can fall in "
                            "every fold of --cv 5; 1 keeps every tag)")


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
