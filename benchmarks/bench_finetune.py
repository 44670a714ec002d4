"""When fine-tuning pays: phase 2's learning rate across sizes, and a search over ``unfreeze``.

On identical splits: the defaults (``unfreeze=0``: phase 1 alone, solved
exactly), then ``unfreeze=2`` with ``finetune_epochs=10`` at three phase-2
rates (phase 2 starts from phase 1's exact head), and a
``GridSearchCV(TransferClassifier(), {"unfreeze": [0, 2]}, cv=3)`` with the
defaults of phase 2, whose choice on each training set is recorded.  Sets:
IFCT-9 (deduplicated food photos, 5-fold CV, fold seed 0) and Fashion-MNIST
at 1,000 and 4,000 training images (scored on the 2,000 test images the
other benchmarks use; Debian's dataset-fashion-mnist).  MobileNetV2,
ImageNet weights, engine auto.

    python benchmarks/bench_finetune.py                   # about 40 minutes on 2 cores
    python benchmarks/bench_finetune.py --rows search     # re-measure some cells, merged

Writes ``benchmarks/results/finetune.json`` and renders docs/user-guide.md's
"when does fine-tuning pay".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_accuracy import ifct_folds  # noqa: E402  the folds every IFCT-9 table uses
from bench_probe import fashion, measure  # noqa: E402
from render_docs import RESULTS, publish  # noqa: E402

from sktransfer import TransferClassifier  # noqa: E402
from sktransfer.inputs.demo_data import DatasetUnavailable  # noqa: E402
from sktransfer.training.schedule import PHASE2_WARMUP_STEPS  # noqa: E402

RATES = (3e-5, 1e-4, 3e-4)
EPOCHS = 10


def models(raw=False):
    """name -> estimator: the rows of every set."""
    rows = {"unfreeze=0 (defaults)": TransferClassifier(random_state=0)}
    for rate in RATES:
        rows[f"unfreeze=2, finetune_lr={rate:g}"] = TransferClassifier(
            random_state=0, unfreeze=2, finetune_epochs=EPOCHS, finetune_lr=rate)
    rows["search: unfreeze in {0, 2}, 3-fold"] = GridSearchCV(
        TransferClassifier(random_state=0), {"unfreeze": [0, 2]}, cv=3)
    return rows


def sets():
    """name -> (X, y, splits, raw baseline?, test blocks)."""
    paths, labels, splits = ifct_folds()
    out = {"IFCT-9, all 392 (5-fold CV, fold seed 0)": (paths, np.asarray(labels), splits,
                                                        False, None)}
    try:
        for n, (X, y, split, _) in fashion((1000, 4000), n_blocks=1).items():
            out[f"Fashion-MNIST, {n} (2,000 test images)"] = (X, y, split, False, None)
    except DatasetUnavailable as exc:
        print(f"Fashion-MNIST left out: {exc}", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="", help="only the sets whose name holds this")
    parser.add_argument("--rows", default="", help="only the rows whose name holds this")
    args = parser.parse_args(argv)
    report = {"model": "MobileNetV2, ImageNet weights, engine auto", "epochs": EPOCHS,
              "sets": {}}
    if args.sets or args.rows:  # some cells: merged into the last run
        report = json.loads((RESULTS / "finetune.json").read_text())
    report["finetune_defaults"] = {k: TransferClassifier().get_params()[k]
                                   for k in ("finetune_lr", "finetune_epochs")}
    measure(report, sets(), models, args.sets, args.rows,
            save=lambda r: print(publish("finetune", r)),
            stamp={"phase2_warmup_steps": PHASE2_WARMUP_STEPS})  # what phase 2 was


if __name__ == "__main__":
    main()
