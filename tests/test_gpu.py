"""CUDA path: runs where a GPU is present (benchmarks/device_check.sh), skipped elsewhere."""

import pickle

import numpy as np
import pytest
import torch

from sktransfer import PretrainedFeatures, TransferClassifier, load

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

FAST = dict(backbone="resnet18", weights=None, image_size=64, epochs=2, unfreeze=1,
            finetune_epochs=1, random_state=0)


def test_auto_uses_cuda_and_matches_cpu(tiny):
    X, y = tiny
    gpu = TransferClassifier(**FAST).fit(X, y)
    cpu = TransferClassifier(**FAST, device="cpu").fit(X, y)
    assert gpu.device_.startswith("cuda") and cpu.device_ == "cpu"
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-3)


def test_mixed_precision_extraction_is_close(tiny):
    X, _ = tiny
    full = PretrainedFeatures(backbone="resnet18", weights=None, image_size=64).fit().transform(X)
    half = PretrainedFeatures(backbone="resnet18", weights=None, image_size=64,
                              mixed_precision=True).fit().transform(X)
    np.testing.assert_allclose(half, full, rtol=5e-2, atol=5e-2)


def test_export_onnx_leaves_a_cuda_model_on_its_device(tiny, tmp_path):
    X, y = tiny
    clf = TransferClassifier(**FAST).fit(X, y)
    expected = clf.predict_proba(X)
    clf.export_onnx(tmp_path / "m.onnx")
    assert all(p.device.type == "cuda" for p in clf.net_.module_.parameters())
    np.testing.assert_allclose(clf.predict_proba(X), expected, atol=1e-6)


def test_gpu_model_predicts_on_a_cpu_only_machine(tiny, tmp_path, monkeypatch):
    X, y = tiny
    clf = TransferClassifier(**FAST).fit(X, y)
    expected = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    clf.save(tmp_path / "m")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(Warning):  # skorch says it moves the net to the CPU
        restored = pickle.loads(blob)
    assert restored.device_ == "cpu"
    np.testing.assert_allclose(restored.predict_proba(X), expected, atol=1e-4)
    loaded = load(tmp_path / "m")
    assert loaded.device_ == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-4)


def test_fine_tuning_on_cuda_round_trips_through_a_model_file(tiny, tmp_path):
    """unfreeze=2: phase 1 runs the still-frozen blocks where the net trains them (before
    skorch moves its module), phase 2 trains them there; load gives the same answers."""
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "unfreeze": 2, "finetune_epochs": 2}).fit(X, y)
    assert clf.device_.startswith("cuda")
    assert all(p.device.type == "cuda" for p in clf.net_.module_.parameters())
    assert len(clf.history_) == FAST["epochs"] + 2
    clf.save(tmp_path / "m.sktransfer")
    loaded = load(tmp_path / "m.sktransfer")
    assert loaded.device_.startswith("cuda")
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)
