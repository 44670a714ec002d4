"""Ctrl-C during fit: the estimator keeps its old state, the disk cache stays whole."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sktransfer import TransferClassifier
from sktransfer.extraction import cache as cache_mod
from sktransfer import clear_caches  # noqa: E402

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=4, random_state=0)


# Ctrl-C is sent to the process itself, so these run in a fresh interpreter: the
# native threads other tests leave in the pytest process (joblib, Dask, ONNX
# Runtime, OpenVINO) once turned a self-sent SIGINT into a segmentation fault.
SIGINT_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from conftest import blobs
    from sktransfer import TransferClassifier
    from sktransfer.training.network import TransferNet

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=4, random_state=0,
                head_solver="optimizer")  # interrupted between epochs
    X, y = blobs(16)
    original = TransferNet.forward

    def ctrl_c_after(n):
        calls = {"n": 0}

        def forward(self, x):
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, from inside training
            return original(self, x)
        TransferNet.forward = forward

    # a fitted model interrupted while refitting keeps its previous state
    clf = TransferClassifier(**FAST).fit(X, y)
    before = clf.predict_proba(X)
    ctrl_c_after(3)
    try:
        clf.fit(X, 1 - y)
        sys.exit("fit finished: the interrupt was swallowed")
    except KeyboardInterrupt:
        pass
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    # a fresh estimator interrupted stays unfitted
    ctrl_c_after(2)
    fresh = TransferClassifier(**FAST)
    try:
        fresh.fit(X, y)
        sys.exit("fit finished: the interrupt was swallowed")
    except KeyboardInterrupt:
        pass
    assert not hasattr(fresh, "net_") and not hasattr(fresh, "classes_")
    print("ok")
""")


def test_ctrl_c_in_training_raises_and_keeps_the_previous_model_or_none():
    result = subprocess.run([sys.executable, "-c", SIGINT_SCRIPT, str(Path(__file__).parent)],
                            capture_output=True, text=True, timeout=300,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_interrupted_extraction_leaves_no_partial_cache_entry(tiny, tmp_path, monkeypatch):
    X, y = tiny
    original = cache_mod.DiskStore.put
    calls = {"n": 0}

    def put(self, prefix, key, value, *args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, prefix, key, value, *args)

    monkeypatch.setattr(cache_mod.DiskStore, "put", put)
    clear_caches()
    with pytest.raises(KeyboardInterrupt):
        TransferClassifier(**FAST, cache_dir=tmp_path).fit(X, y)
    entries = list(tmp_path.rglob("*.npy"))
    assert len(entries) == 4 and not list(tmp_path.rglob(".tmp-*"))
    for entry in entries:  # every entry that exists is complete and verified
        assert cache_mod.DiskStore(tmp_path).get(entry.parent.name, entry.stem) is not None
    monkeypatch.setattr(cache_mod.DiskStore, "put", original)
    TransferClassifier(**FAST, cache_dir=tmp_path).fit(X, y)  # resumes, fills the rest
    assert len(list(tmp_path.rglob("*.npy"))) == 16
