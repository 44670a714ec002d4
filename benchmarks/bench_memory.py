"""Long-run check: 20 consecutive fits in one process, RSS and disk cache per round.

The memory should level off after the first rounds: what stays is the
bounded activation cache (``SKTRANSFER_CACHE_BYTES``), not a leak.  The fits
share a ``cache_dir`` bounded by ``--cache-dir-bytes`` (as
``SKTRANSFER_CACHE_DIR_BYTES`` does), whose size must stay under the bound.
Then a hostile model file declaring 1 GiB (a few MB on disk) is loaded in
a fresh process: it must be refused with the process's memory almost
unchanged.

    python benchmarks/bench_memory.py [--rounds 20] [--cache-dir-bytes 4M]
"""

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from sktransfer import TransferClassifier
from sktransfer.extraction.cache import MEMORY, DiskStore, parse_bytes
from sktransfer.persistence.model_file import WEIGHTS_MEMBERS


def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cache-dir-bytes", default="4M")
    args = parser.parse_args()
    bound = parse_bytes(args.cache_dir_bytes)
    os.environ["SKTRANSFER_CACHE_DIR_BYTES"] = str(bound)
    cache_dir = tempfile.mkdtemp(prefix="sktransfer-bench-cache-")
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (64, 64, 64, 3), dtype=np.uint8)
    y = np.arange(64) % 4
    rss, disk = [], []
    for r in range(args.rounds):
        t = time.perf_counter()
        # new pixels every round: the cache keeps growing until its bound
        X[:, 0, 0, 0] = r
        clf = TransferClassifier(backbone="mobilenet", image_size=96, unfreeze=2, epochs=3,
                                 finetune_epochs=2, random_state=r,
                                 cache_dir=cache_dir).fit(X, y)
        clf.predict_proba(X)
        del clf
        gc.collect()
        rss.append(rss_mb())
        disk.append(DiskStore(cache_dir).info()["bytes"])
        print(f"round {r + 1:2d}: RSS {rss[-1]:7.1f} MB, cache {MEMORY.nbytes / 2**20:6.1f} MB "
              f"({len(MEMORY)} entries), disk {disk[-1] / 2**20:5.1f} MB, "
              f"{time.perf_counter() - t:.1f} s", flush=True)
    half = len(rss) // 2
    growth = rss[-1] - rss[half]
    print(f"RSS growth over the second half: {growth:+.1f} MB "
          f"(cache grew {MEMORY.nbytes / 2**20:.1f} MB in all)")
    print(f"disk cache: at most {max(disk) / 2**20:.1f} MB over the rounds, bound "
          f"{bound / 2**20:.1f} MB: {'under' if max(disk) <= bound else 'OVER'} the bound")
    hostile_load(cache_dir)
    shutil.rmtree(cache_dir, ignore_errors=True)


HOSTILE = """
import json, resource, sys
import sktransfer.classifier
from sktransfer import ModelFileError, load
from sktransfer.persistence.model_file import WEIGHTS_MEMBER
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load(sys.argv[1])
    outcome = "LOADED"
except ModelFileError as exc:
    outcome = str(exc)
print(json.dumps({"outcome": outcome,
                  "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""


def hostile_load(folder):
    """A model file whose weights member declares 1 GiB of zeros, loaded in a fresh process."""
    path = Path(folder) / "hostile.sktransfer"
    config = {"format": "sktransfer-model", "format_version": 1}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        info = zipfile.ZipInfo(WEIGHTS_MEMBERS[config["format_version"]])
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as fh:
            for _ in range(64):
                fh.write(bytes(1 << 24))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", HOSTILE, str(path)], capture_output=True,
                         text=True, check=True)
    report = json.loads(out.stdout)
    print(f"hostile file ({path.stat().st_size / 2**20:.1f} MB on disk, 1024 MB declared): "
          f"peak RSS +{report['grew_mb']:.1f} MB, {time.perf_counter() - t:.1f} s "
          f"(process start included): {report['outcome'][:90]}")


if __name__ == "__main__":
    main()
