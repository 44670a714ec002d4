"""Ctrl-C during fit: the estimator keeps its old state, the disk cache stays whole."""

import os
import signal

import numpy as np
import pytest

from sktransfer import TransferClassifier
from sktransfer import cache as cache_mod
from sktransfer.network import TransferNet

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=4, random_state=0)


@pytest.fixture(autouse=True)
def _ctrl_c_as_in_a_terminal():
    """Python's own Ctrl-C handling, whatever the test runner inherited.

    A job started in the background by a non-interactive shell inherits
    SIGINT ignored, and Python then installs no handler for it: there would
    be no Ctrl-C to test.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _ctrl_c_after(monkeypatch, n_calls):
    """Send SIGINT to this process from the n-th training forward pass, as Ctrl-C would."""
    original = TransferNet.forward
    calls = {"n": 0}

    def forward(self, x):
        calls["n"] += 1
        if calls["n"] == n_calls:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x)

    monkeypatch.setattr(TransferNet, "forward", forward)
    return calls


def test_ctrl_c_in_training_raises_and_keeps_the_previous_model(tiny, monkeypatch):
    X, y = tiny
    clf = TransferClassifier(**FAST).fit(X, y)
    before = clf.predict_proba(X)
    _ctrl_c_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):  # skorch alone would swallow it and "finish"
        clf.fit(X, 1 - y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_leaves_a_fresh_estimator_unfitted(tiny, monkeypatch):
    X, y = tiny
    _ctrl_c_after(monkeypatch, 2)
    fresh = TransferClassifier(**FAST)
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X, y)
    assert not hasattr(fresh, "net_") and not hasattr(fresh, "classes_")


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
    cache_mod.MEMORY.clear()
    with pytest.raises(KeyboardInterrupt):
        TransferClassifier(**FAST, cache_dir=tmp_path).fit(X, y)
    entries = list(tmp_path.rglob("*.npy"))
    assert len(entries) == 4 and not list(tmp_path.rglob(".tmp-*"))
    for entry in entries:  # every entry that exists is complete and verified
        assert cache_mod.DiskStore(tmp_path).get(entry.parent.name, entry.stem) is not None
    monkeypatch.setattr(cache_mod.DiskStore, "put", original)
    TransferClassifier(**FAST, cache_dir=tmp_path).fit(X, y)  # resumes, fills the rest
    assert len(list(tmp_path.rglob("*.npy"))) == 16
