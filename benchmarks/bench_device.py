"""Images per second on CPU vs GPU: extraction (frozen prefix) and fine-tuning.

    python benchmarks/bench_device.py [--n 512]

Prints one line per device (and mixed precision on CUDA): extraction
images/s through MobileNetV2 at 224 px from decoded arrays, and training
images/s of phase 2 (last 2 blocks + head, from cached activations).
"""

import argparse
import json
import os
import time

import numpy as np
import torch

from sktransfer import TransferClassifier
from sktransfer.cache import MEMORY, compute_activations
from sktransfer.weights import imagenet_available


def measure(device, X, y, mixed_precision=False):
    weights = "imagenet" if imagenet_available("mobilenet_v2") else None
    clf = TransferClassifier("mobilenet", weights=weights, epochs=1, unfreeze=2,
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
    compute_activations(clf.prefix_, X, clf.transform_, cache=False, batch_size=64,
                        device=clf.device_, mixed_precision=mixed_precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    extract = time.perf_counter() - t
    train = max(total - extract, 1e-9)
    return {"device": device, "mixed_precision": mixed_precision,
            "extract_img_s": len(X) / extract, "finetune_img_s": 4 * len(X) / train}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (args.n, 224, 224, 3), dtype=np.uint8)
    y = np.arange(args.n) % 4
    runs = [("cpu", False)]
    if torch.cuda.is_available():
        runs += [("cuda", False), ("cuda", True)]
        print(f"GPU: {torch.cuda.get_device_name()}")
    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    for device, amp in runs:
        print(json.dumps(measure(device, X, y, amp)), flush=True)


if __name__ == "__main__":
    main()
