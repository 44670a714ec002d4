"""Where a fitted model goes: each route's file size and load time, side by side.

One MobileNetV2 classifier (ImageNet weights, engine auto) fitted on the demo's
blobs, then written as a model file, a Hub folder, a pickle, a skops file and
an MLflow model of the sktransfer flavour, and an ONNX file with the
preprocessing inside; each is read back in a fresh
process (the time includes nothing but the read: the interpreter and the
imports are started first), and its predictions are compared with the
fitted model's.

    python benchmarks/bench_routes.py [--out benchmarks/results/routes.json]
"""

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import blobs  # noqa: E402

from sktransfer import TransferClassifier  # noqa: E402

READ = """
import json, sys, time
import numpy as np
route, path, x = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
if route == "onnx":
    import onnxruntime as ort
else:
    import sktransfer, pickle, skops.io as sio, torch  # imported before the clock starts
    import mlflow.pyfunc, sktransfer.mlflow
started = time.perf_counter()
if route in ("file", "folder"):
    model = sktransfer.load(path)
elif route == "pickle":
    model = pickle.loads(open(path, "rb").read())
elif route == "skops":
    model = sio.load(path, trusted=sktransfer.TRUSTED_TYPES)
elif route == "mlflow":
    model = sktransfer.mlflow.load_model(path)
else:
    model = ort.InferenceSession(path)
seconds = time.perf_counter() - started
proba = model.run(None, {"images": x})[0] if route == "onnx" else model.predict_proba(x)
print(json.dumps({"seconds": seconds, "proba": proba.tolist()}))
"""

KEEPS = {
    "file": "parameters, labels, preprocessing, weights, history, engine calibration",
    "folder": "the file's parts, and a model card",
    "pickle": "the objects themselves: every attribute and parameter (callbacks too)",
    "skops": "the file's parts and every other attribute, trusting sktransfer's types only",
    "mlflow": "the model file, the signature, the environment (requirements)",
    "onnx": "network, normalisation, labels and preprocessing in metadata",
}


def size(path):
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else \
        path.stat().st_size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/routes.json")
    args = parser.parse_args(argv)
    import skops.io as sio

    import sktransfer.mlflow

    X, y = blobs(24, size=224)
    clf = TransferClassifier(random_state=0).fit(X, np.array(["cat", "dog"])[y])
    expected = clf.predict_proba(X)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "x.npy", X)
        clf.save(tmp / "m.sktransfer")
        clf.save_pretrained(tmp / "folder")
        (tmp / "m.pkl").write_bytes(pickle.dumps(clf))
        sio.dump(clf, tmp / "m.skops")
        sktransfer.mlflow.save_model(clf, tmp / "mlflow")
        clf.export_onnx(tmp / "m.onnx", preprocessing=True)
        paths = {"file": tmp / "m.sktransfer", "folder": tmp / "folder",
                 "pickle": tmp / "m.pkl", "skops": tmp / "m.skops", "mlflow": tmp / "mlflow",
                 "onnx": tmp / "m.onnx"}
        for route, path in paths.items():
            out = json.loads(subprocess.run(
                [sys.executable, "-c", READ, route, str(path), str(tmp / "x.npy")],
                capture_output=True, text=True, check=True).stdout)
            rows.append({"route": route, "keeps": KEEPS[route], "bytes": size(path),
                         "load_seconds": round(out["seconds"], 3),
                         "max_difference": float(np.abs(np.array(out["proba"]) - expected).max())})
    Path(args.out).write_text(json.dumps({"model": "MobileNetV2, ImageNet weights, 224 px",
                                          "rows": rows}, indent=1))
    for row in rows:
        print(f"{row['route']:7} {row['bytes'] / 1e6:8.2f} MB  {row['load_seconds']:6.3f} s  "
              f"max |Δp| {row['max_difference']:.2e}  {row['keeps']}")


if __name__ == "__main__":
    main()
