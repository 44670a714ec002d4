"""Images per second on CPU vs GPU: extraction (frozen prefix) and fine-tuning.

    python benchmarks/bench_device.py [--n 512] [--scale 16000]

Prints one line per device (and mixed precision on CUDA): extraction
images/s through MobileNetV2 at 224 px from decoded arrays, and training
images/s of phase 2 (last 2 blocks + head, from cached activations).
``--scale N`` also times a defaults fit of N Fashion-MNIST images on this
machine's default device, as ``bench_scale.py`` does for one point (in a
fresh process; skipped when the data is not here).  Writes
``benchmarks/results/device.json`` and the table in docs/scaling.md
(``--no-write``: print only).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sktransfer import TransferClassifier
from sktransfer.extraction.cache import MEMORY
from sktransfer.extraction.extractor import Extractor
from sktransfer.backbones import imagenet_on_this_machine


def measure(device, X, y, mixed_precision=False):
    weights = "imagenet" if imagenet_on_this_machine("mobilenet_v2") else None
    clf = TransferClassifier(backbone="mobilenet", weights=weights, epochs=1, unfreeze=2,
                             finetune_epochs=3, device=device, batch_size=64,
                             mixed_precision=mixed_precision, random_state=0)
    MEMORY.clear()
    t = time.perf_counter()
    clf.fit(X, y)  # extraction (cold cache) + 1 head epoch + 3 fine-tuning epochs
    total = time.perf_counter() - t
    MEMORY.clear()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    Extractor(clf.extractor_.modules, clf.transform_, clf.device_, mixed_precision).run(
        X, cache=False, batch_size=64)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    extract = time.perf_counter() - t
    train = max(total - extract, 1e-9)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else (
        f"{os.cpu_count()} CPU cores")
    return {"device": device, "device_name": name, "mixed_precision": mixed_precision,
            "image_size": 224, "n_images": len(X),
            "extract_img_s": len(X) / extract, "finetune_img_s": 4 * len(X) / train}


def scale_point(n):
    """``bench_scale.py``'s defaults point for ``n`` images, run in a fresh process here."""
    script = Path(__file__).resolve().parent / "bench_scale.py"
    done = subprocess.run([sys.executable, str(script), "--point", str(n), "defaults"],
                          capture_output=True, text=True)
    if done.returncode:
        return {"n": n, "skipped": done.stderr.strip().splitlines()[-1]}
    point = json.loads(done.stdout.strip().splitlines()[-1])
    point["device_name"] = (torch.cuda.get_device_name() if torch.cuda.is_available()
                            else f"CPU ({os.cpu_count()} cores)")
    return point


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--scale", type=int, default=0, metavar="N",
                        help="also time a defaults fit of N Fashion-MNIST images")
    args = parser.parse_args()
    # First, while this process is small: a child's peak memory starts at its parent's.
    scale = scale_point(args.scale) if args.scale else None
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (args.n, 224, 224, 3), dtype=np.uint8)
    y = np.arange(args.n) % 4
    runs = [("cpu", False)]
    if torch.cuda.is_available():
        runs += [("cuda", False), ("cuda", True)]
        print(f"GPU: {torch.cuda.get_device_name()}")
    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    results = []
    for device, amp in runs:
        results.append(measure(device, X, y, amp))
        print(json.dumps(results[-1]), flush=True)
    report = {"runs": results}
    if scale:
        report["scale"] = scale
        print(json.dumps(scale), flush=True)
    if not args.no_write:
        out = Path(__file__).resolve().parent / "results" / "device.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        import render_docs

        render_docs.update(names=["device"])
        print(f"wrote {out} and docs/scaling.md")


if __name__ == "__main__":
    main()
