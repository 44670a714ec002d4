"""How the cost of a fit grows with the images, and when fine-tuning pays.

Fashion-MNIST (Debian's ``dataset-fashion-mnist``): the first n training
images of a stratified shuffle (seed 0), scored on 2,000 stratified test
images, for n = 1,000, 4,000, 16,000 and 60,000 with ``TransferClassifier``'s
defaults (MobileNetV2, ImageNet weights, the default engine), and with the
fine-tuning recipe (``unfreeze=2, finetune_epochs=10, finetune_lr=1e-4``) up
to 16,000.  Each point runs in a fresh process, with a fresh ``cache_dir``,
and reports the fit's seconds and images per second, the process's peak
memory above what it held once the data and the network were loaded, the
disk cache's bytes, and the accuracy.  Each defaults point then fits the
previous defaults' head (30 epochs of Adam, ``head_solver="optimizer"``) on
the same cached features in the same process: phase 1's seconds side by
side, the one part of the fit where the two differ.

Writes ``benchmarks/results/scale.json``, docs/performance.md's "how cost
grows" and the user guide's "when does fine-tuning pay".

    python benchmarks/bench_scale.py            # about 30 minutes on 2 cores
    python benchmarks/bench_scale.py --quick    # 1,000 and 4,000 only
    python benchmarks/bench_scale.py --redo 16000:defaults   # one point, merged
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SIZES = [1000, 4000, 16000, 60000]
FINE_TUNE_SIZES = [1000, 4000, 16000]
RECIPES = {"defaults": {},
           "fine-tuned": {"unfreeze": 2, "finetune_epochs": 10, "finetune_lr": 1e-4},
           # not a curve of its own: the head trained by epochs, fitted beside each defaults
           # point on its cached features (or alone: --point 1000 epoch-head)
           "epoch-head": {"head_solver": "optimizer"}}
N_TEST = 2000


def _sets(n):
    from datasets import fashion_draws

    (X_all, y_all), (X_t, y_t), draws, test, _ = fashion_draws([n], N_TEST)
    return X_all[draws[n]], y_all[draws[n]], X_t[test], y_t[test]


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def point(n, recipe):
    """One point, in this process: what :func:`main` collects."""
    from sklearn.base import clone

    from sktransfer import TransferClassifier
    from sktransfer.backbones.building import build_backbone
    from sktransfer.extraction.cache import MEMORY
    from sktransfer.training.schedule import PHASE2_WARMUP_STEPS

    X, y, X_test, y_test = _sets(n)
    build_backbone("mobilenet")  # the network loaded once, as in any fit: the baseline
    with tempfile.TemporaryDirectory(prefix="sktransfer-scale-") as cache_dir:
        clf = TransferClassifier(backbone="mobilenet", random_state=0, cache_dir=cache_dir,
                                 **RECIPES[recipe])
        base = _rss_mb()
        start = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - start
        peak = _rss_mb()
        disk = sum(p.stat().st_size for p in Path(cache_dir).rglob("*") if p.is_file())
        row = clf.extractor_.run(X[:1], cache=True)  # one image's cached activations
        accuracy = float(np.mean(clf.predict(X_test) == y_test))
        side = {}
        if recipe == "defaults":  # the epoch-trained head on the same cached features
            other = clone(clf).set_params(**RECIPES["epoch-head"]).fit(X, y)
            side = {"epoch_head_phase1_seconds": _phase1_seconds(other),
                    "epoch_head_accuracy": float(np.mean(other.predict(X_test) == y_test))}
    return {"n": n, "recipe": recipe, "seconds": seconds, "images_per_s": n / seconds,
            "peak_above_loaded_mb": peak - base, "disk_cache_bytes": disk,
            "activations_mb": n * row[0].numel() * row.element_size() / 2**20,
            "memory_cache_bound_mb": MEMORY.limit() / 2**20, "accuracy": accuracy,
            "engine": clf.engine_, "phase1_seconds": _phase1_seconds(clf), **side,
            **({"phase2_warmup_steps": PHASE2_WARMUP_STEPS} if clf.unfreeze else {})}


def _phase1_seconds(clf):
    """The head's training in phase 1, after the features were extracted: where the exact
    solve and the epoch-trained head differ."""
    return sum(r["dur"] for r in clf.history_ if r.get("phase") == 1)


def _measure(n, recipe):
    """One point in a fresh process, printed as it comes."""
    done = subprocess.run([sys.executable, __file__, "--point", str(n), recipe],
                          capture_output=True, text=True, check=True)
    p = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {recipe:10s} n={n:6d}  {p['seconds']:7.1f} s  {p['images_per_s']:6.1f} img/s"
          f"  peak +{p['peak_above_loaded_mb']:6.0f} MB  disk "
          f"{p['disk_cache_bytes'] / 2**20:6.0f} MB  accuracy {100 * p['accuracy']:.1f}%",
          flush=True)
    return p


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--redo", nargs="+", metavar="N:RECIPE",
                        help="re-measure these points and merge them into the last results")
    parser.add_argument("--point", nargs=2, metavar=("N", "RECIPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.point:  # a child process: one point, as JSON on stdout
        print(json.dumps(point(int(args.point[0]), args.point[1])))
        return
    import render_docs

    if args.redo:
        report = json.loads((render_docs.RESULTS / "scale.json").read_text())
        redo = {(int(n), recipe): _measure(int(n), recipe)
                for n, recipe in (item.split(":") for item in args.redo)}
        report["points"] = [redo.pop((p["n"], p["recipe"]), p) for p in report["points"]]
        report["points"] += list(redo.values())  # points the last run did not have
    else:
        sizes = [s for s in SIZES if not args.quick or s <= 4000]
        runs = [(n, "defaults") for n in sizes] + [
            (n, "fine-tuned") for n in FINE_TUNE_SIZES if n in sizes]
        report = {"machine": {"cores": os.cpu_count(), "platform": platform.platform()},
                  "data": f"Fashion-MNIST (Debian's dataset-fashion-mnist): the first n of a "
                          f"stratified shuffle of the 60,000 training images, {N_TEST} "
                          "stratified test images",
                  "recipes": RECIPES, "quick": args.quick,
                  "points": [_measure(n, recipe) for n, recipe in runs]}
    print(f"wrote {render_docs.publish('scale', report, quick=args.quick)}")


if __name__ == "__main__":
    main()
