"""``sktransfer predict`` and ``sktransfer classify``: a saved model (or ImageNet's head) on new images."""

from __future__ import annotations

import contextlib
import csv
import sys
from pathlib import Path

import numpy as np

from .common import CLIError, collect_images, say


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


def _predict_rows(rows, paths, writer, cells=None):
    """Write one row per image, a batch at a time; unreadable images are all
    listed at the end (nothing of a batch with one is written).  ``cells``: the
    CSV's own row of each image, written in place of its path."""
    from ..inputs.images import ImageDecodeError, as_images, find_unreadable

    bad = []
    for start in range(0, len(paths), PREDICT_BATCH):
        batch = paths[start:start + PREDICT_BATCH]
        if bad:  # the file will not be complete: only look for more unreadable images
            bad += [(start + i, msg) for i, msg in find_unreadable(as_images(batch))]
            continue
        try:
            predicted = rows(batch)
            if cells is not None:
                predicted = [[*cells[start + i], *row[1:]] for i, row in enumerate(predicted)]
            writer.writerows(predicted)
        except ImageDecodeError:
            bad += [(start + i, msg) for i, msg in find_unreadable(as_images(batch))]
    if bad:
        raise ImageDecodeError.listing(bad)


def cmd_predict(args):
    """Write a CSV: path, then the predicted label and each class's probability (a
    classifier), the ';'-separated tags and each tag's probability (multi-label), or the
    predicted value of each target (a regressor).  Given a CSV file of images (a path
    column, the first or --path-column), its columns come first, as written, and a
    prediction column named like one of them is called ``predicted_<name>``.

    With --out, rows go to a temporary file as batches complete, and only a
    complete file takes the name (a previous file of that name is kept when
    anything fails).
    """
    from ..utils.files import atomic_write
    from ..loading import load

    model = load(args.model)
    table = _csv_input(args)
    paths = collect_images(args.images) if table is None else table[1]
    model.set_params(verbose=0)
    header, rows = _prediction_layout(model)
    cells = None
    if table is not None:  # the CSV's columns, then the predictions
        frame = table[0]
        own = [str(c) for c in frame.columns]
        header = [*own, *(f"predicted_{h}" if h in own else h for h in header[1:])]
        cells = frame.to_numpy().tolist()
    out = (atomic_write(args.out, "predictions", mode="w", encoding="utf-8", newline="")
           if args.out else contextlib.nullcontext(sys.stdout))
    with out as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        _predict_rows(rows, paths, writer, cells)
    if args.out:
        say(args, f"wrote {len(paths)} predictions to {args.out}")


def _csv_input(args):
    """``(frame, paths)`` when the one IMAGE_OR_DIR is a CSV file of images, else None."""
    if not (len(args.images) == 1 and Path(args.images[0]).suffix.lower() == ".csv"
            and Path(args.images[0]).is_file()):
        if args.path_column:
            raise CLIError("--path-column names a column of a CSV file: give one CSV file "
                           "of images instead of image files or folders.")
        return None
    from ..inputs.tables import read_paths

    frame, paths, _ = read_paths(args.images[0], args.path_column)
    return frame, paths


def cmd_classify(args):
    """Top-k ImageNet classes of each image, with the pretrained network as it is."""
    from ..features import PretrainedFeatures

    paths = collect_images(args.images)
    features = PretrainedFeatures(backbone=args.backbone, include_top=True).fit()
    proba = features.transform(paths)
    names = features.get_feature_names_out()
    for path, row in zip(paths, proba):
        best = np.argsort(-row)[:args.top]
        print(f"{path}: " + ", ".join(f"{names[i]} ({row[i]:.3f})" for i in best))
