"""A model file's config is data: bounded by what the file holds, and never where we write.

``config.json`` of a real saved model is changed (every parameter given
extreme and wrong-typed values, a key dropped, a key added), then loaded and
used in a fresh process whose address space is capped: each case either
works or ends with one line, memory stays within the model + 1 GB, and
nothing is written outside the caller's own folders.
"""

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sktransfer import ModelFileError, TransferClassifier, load
from sktransfer.persistence.model_file import WEIGHTS_MEMBER
from sktransfer.loading import MACHINE_PARAMS

from conftest import blobs

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    X, y = blobs(16)
    path = tmp_path_factory.mktemp("model") / "model.sktransfer"
    TransferClassifier(**FAST, cache_dir=tmp_path_factory.mktemp("author") / "cache").fit(
        X, y).save(path)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A saved model of a small network: the fuzz loads it hundreds of times (SqueezeNet
    1.1 builds and predicts in about a third of MobileNetV3-Small's time, and both in a
    fraction of ResNet-18's)."""
    X, y = blobs(16)
    path = tmp_path_factory.mktemp("small") / "small.sktransfer"
    TransferClassifier(**{**FAST, "backbone": "squeezenet1_1"},
                       cache_dir=tmp_path_factory.mktemp("author") / "cache").fit(X, y).save(path)
    return path


def _with_params(saved, target, change):
    """A copy of ``saved`` whose config's parameters are ``change(params)``."""
    with zipfile.ZipFile(saved) as zf:
        config, state = json.loads(zf.read("config.json")), zf.read(WEIGHTS_MEMBER)
    config["params"] = change(dict(config["params"]))
    with zipfile.ZipFile(target, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr(WEIGHTS_MEMBER, state)
    return target


def test_the_reported_cases_end_in_one_line_before_any_allocation(saved, tmp_path):
    huge = _with_params(saved, tmp_path / "a.sktransfer", lambda p: {**p, "image_size": 40000})
    with pytest.raises(ModelFileError, match=r"'image_size' parameter .* range \[1, 1024\]"):
        load(huge)
    wide = _with_params(saved, tmp_path / "b.sktransfer",
                        lambda p: {**p, "hidden_units": [40000, 40000]})
    with pytest.raises(ModelFileError, match=r"net\.head\.0\.weight is missing from the file"):
        load(wide)
    flat = _with_params(saved, tmp_path / "c.sktransfer",
                        lambda p: {**p, "pooling": "flatten", "image_size": 64})
    with pytest.raises(ModelFileError, match=r"net\.head\.1\.weight is \(2, 512\) in the "
                                             r"file, \(2, 2048\) in the architecture\.$"):
        load(flat)


def test_machine_parameters_come_from_this_machine(saved, tmp_path):
    elsewhere = tmp_path / "someone" / "cache"
    path = _with_params(saved, tmp_path / "m.sktransfer",
                        lambda p: {**p, "cache_dir": str(elsewhere), "n_jobs": 64,
                                   "verbose": 2, "device": "cuda:7"})
    model = load(path)
    params = model.get_params()
    assert (params["cache_dir"], params["n_jobs"], params["verbose"], params["device"]) == \
        (None, None, 0, "auto")
    assert model.saved_params_["cache_dir"] == str(elsewhere)  # recorded, not used
    model.predict(blobs(4)[0])
    assert not elsewhere.exists() and not elsewhere.parent.exists()
    mine = tmp_path / "mine"
    model = load(path, cache_dir=mine)  # asked for by the caller
    model.predict(blobs(4)[0])
    assert model.cache_dir == mine and any(mine.rglob("*.npy"))
    with pytest.raises(TypeError, match="unknown parameter.*'cahce_dir'"):
        load(path, cahce_dir=mine)


def test_a_batch_is_shrunk_to_its_memory_budget(monkeypatch):
    X, y = blobs(8)
    clf = TransferClassifier(**{**FAST, "image_size": 64}, batch_size=8).fit(X, y)
    extractor = clf.extractor_
    largest = 64 * 32 * 32  # resnet18's stem: 64 channels at half the side
    assert extractor.batch_limit(8) == 8
    monkeypatch.setenv("SKTRANSFER_BATCH_BYTES", str(3 * 4 * largest * 3))
    assert extractor.batch_limit(8) == 3  # three images fit the budget
    monkeypatch.setenv("SKTRANSFER_BATCH_BYTES", "1")
    assert extractor.batch_limit(8) == 1  # never none
    proba = TransferClassifier(**{**FAST, "image_size": 64}, batch_size=8,
                               cache=False).fit(X, y).predict_proba(X)
    monkeypatch.delenv("SKTRANSFER_BATCH_BYTES")
    again = TransferClassifier(**{**FAST, "image_size": 64}, batch_size=8,
                               cache=False).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(proba, again, atol=1e-5)  # the same, a batch at a time


FUZZ = textwrap.dedent("""
    import json, os, resource, sys, zipfile
    from pathlib import Path
    import numpy as np
    import sktransfer, torch
    from sktransfer import load
    from sktransfer.persistence.model_file import WEIGHTS_MEMBER
    from conftest import blobs
    saved, out_dir, cases = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    X = blobs(4)[0]
    load(saved).predict(X)  # everything a load and a prediction import, before the baseline
    with open("/proc/self/status") as fh:
        vm = next(int(l.split()[1]) for l in fh if l.startswith("VmSize:")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30),) * 2)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with zipfile.ZipFile(saved) as zf:
        config, state = json.loads(zf.read("config.json")), zf.read(WEIGHTS_MEMBER)
    results = []
    for i, (name, value) in enumerate(cases):
        params = dict(config["params"])
        if value == "<missing>":
            params.pop(name)
        else:
            params[name] = value
        path = out_dir / f"case{i}.sktransfer"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("config.json", json.dumps({**config, "params": params}))
            zf.writestr(WEIGHTS_MEMBER, state)
        try:
            load(path).predict(X)
            outcome = None
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        results.append({"case": [name, value], "error": outcome, "grew_mb": grew})
    print(json.dumps(results))
""")

WRONG = ["a string", -1, 10 ** 12, None]
EXTREME = {
    "image_size": [40000, 0, 1025], "hidden_units": [[40000, 40000], [0], 10 ** 9],
    "batch_size": [10 ** 9], "tta": [10 ** 6], "augment_views": [10 ** 6],
    "n_jobs": [10 ** 6], "epochs": [10 ** 9], "cache_dir": ["<outside>"],
    "backbone": ["vgg16", "timm/nonexistent", "../../etc/passwd"],
    "weights": ["/etc/passwd", "IMAGENET1K_V1"], "pooling": ["flatten"],
    "optimizer": ["os.system", "torch.optim.SGD"], "class_weight": [[["x", 1e308]]],
}


def test_every_parameter_of_a_model_file_fuzzed(small, tmp_path):
    saved = small
    with zipfile.ZipFile(saved) as zf:
        names = sorted(json.loads(zf.read("config.json"))["params"])
    outside = tmp_path / "outside"
    cases = [(n, v) for n in names for v in WRONG + EXTREME.get(n, []) + ["<missing>"]]
    cases = [(n, str(outside / n) if v == "<outside>" else v) for n, v in cases]
    cases.append(("an_extra_key", 1))
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([sys.executable, "-c", FUZZ, str(saved), str(work), json.dumps(cases)],
                            capture_output=True, text=True, cwd=Path(__file__).parent,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.splitlines()[-1])
    assert len(results) == len(cases)
    bad = [r for r in results
           if r["grew_mb"] >= 1024  # the model + 1 GB at most
           or r["error"] is not None and (
               not r["error"].startswith(("ModelFileError", "FileNotFoundError"))
               or "\n" in r["error"]  # one line
               or "allocate" in r["error"])]  # refused, not run out of memory
    assert not bad, bad
    assert not outside.exists()  # nothing written where a file said
    errors = {(r["case"][0], json.dumps(r["case"][1])): r["error"] for r in results}
    assert errors[("image_size", "40000")] and errors[("an_extra_key", "1")]
    assert errors[("epochs", '"a string"')]  # checked at load, not only by fit
    # the machine's parameters are this machine's: whatever the file says, it loads
    assert all(error is None for (name, _), error in errors.items() if name in MACHINE_PARAMS)
    assert sum(error is None for error in errors.values()) > len(names)  # not all refused
