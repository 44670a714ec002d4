"""Long-run check: 20 consecutive fits and predictions in one process, RSS per round.

The memory should level off after the first rounds: what stays is the
bounded activation cache (``SKTRANSFER_CACHE_BYTES``), not a leak.

    python benchmarks/bench_memory.py [--rounds 20]
"""

import argparse
import gc
import time

import numpy as np

from sktransfer import TransferClassifier
from sktransfer.cache import MEMORY


def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (64, 64, 64, 3), dtype=np.uint8)
    y = np.arange(64) % 4
    rss = []
    for r in range(args.rounds):
        t = time.perf_counter()
        # new pixels every round: the cache keeps growing until its bound
        X[:, 0, 0, 0] = r
        clf = TransferClassifier("mobilenet", image_size=96, unfreeze=2, epochs=3,
                                 finetune_epochs=2, random_state=r).fit(X, y)
        clf.predict_proba(X)
        del clf
        gc.collect()
        rss.append(rss_mb())
        print(f"round {r + 1:2d}: RSS {rss[-1]:7.1f} MB, cache {MEMORY.nbytes / 2**20:6.1f} MB "
              f"({len(MEMORY)} entries), {time.perf_counter() - t:.1f} s", flush=True)
    half = len(rss) // 2
    growth = rss[-1] - rss[half]
    print(f"RSS growth over the second half: {growth:+.1f} MB "
          f"(cache grew {MEMORY.nbytes / 2**20:.1f} MB in all)")


if __name__ == "__main__":
    main()
