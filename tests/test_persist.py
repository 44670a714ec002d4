"""save/load: identical predictions, no pickle, tampered and foreign files refused."""

import json
import zipfile

import numpy as np
import pytest
import torch

from sktransfer import ModelFileError, TransferClassifier, load
from sktransfer.persistence.model_file import WEIGHTS_MEMBER

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)


@pytest.mark.parametrize("params", [
    {}, {"unfreeze": 2, "finetune_epochs": 1, "hidden_units": (8,), "pooling": "max"},
    {"augment": True, "unfreeze": 1, "finetune_epochs": 1},
])
def test_round_trip_gives_identical_probabilities(tiny, tmp_path, params):
    X, y = tiny
    clf = TransferClassifier(**FAST, **params).fit(X, np.array(["cat", "dog"])[y])
    clf.save(tmp_path / "m.sktransfer")
    loaded = load(tmp_path / "m.sktransfer")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.get_params() == clf.get_params()
    assert loaded.history_[:, "train_loss"] == clf.history_[:, "train_loss"]


def test_label_types_survive(tiny, tmp_path):
    X, y = tiny
    for labels in ([3, 7], [True, False]):
        yy = np.array(labels)[y]
        TransferClassifier(**FAST).fit(X, yy).save(tmp_path / "m")
        loaded = load(tmp_path / "m")
        assert loaded.classes_.dtype == np.unique(yy).dtype
        assert set(loaded.predict(X)) <= set(labels)


def test_the_file_holds_no_pickle(tiny, tmp_path):
    X, y = tiny
    clf = TransferClassifier(**FAST).fit(X, y)
    clf.save(tmp_path / "m")
    with zipfile.ZipFile(tmp_path / "m") as zf:
        assert sorted(zf.namelist()) == ["config.json", "model.safetensors"]
        config = json.loads(zf.read("config.json"))
        weights = zf.read("model.safetensors")
    assert config["format_version"] == 2 and config["params"]["backbone"] == "resnet18"
    # safetensors (an 8-byte header length, a JSON header, raw bytes), not torch.save's zip
    # of pickles: every fitted tensor, by name, as the Hub and timm read them
    from safetensors.torch import load as load_safetensors

    assert weights[:2] != b"PK" and b"torch._utils" not in weights
    header = json.loads(weights[8:8 + int.from_bytes(weights[:8], "little")])
    state = clf.fitted_state()
    assert set(header) - {"__metadata__"} == set(state)
    stored = load_safetensors(weights)
    assert all(torch.equal(stored[k], v) for k, v in state.items())


def _rewrite(path, config=None, state=None):
    with zipfile.ZipFile(path) as zf:
        old_config, old_state = json.loads(zf.read("config.json")), zf.read(WEIGHTS_MEMBER)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config(old_config) if config else old_config))
        zf.writestr(WEIGHTS_MEMBER, state(old_state) if state else old_state)


def test_tampered_and_foreign_files_fail_cleanly(tiny, tmp_path):
    X, y = tiny
    path = tmp_path / "m"
    TransferClassifier(**FAST).fit(X, y).save(path)

    _rewrite(path, state=lambda b: b[:-10] + bytes(10))
    with pytest.raises(ModelFileError, match="hash"):
        load(path)

    TransferClassifier(**FAST).fit(X, y).save(path)
    _rewrite(path, config=lambda c: {**c, "format_version": 99})
    with pytest.raises(ModelFileError, match="version 99"):
        load(path)

    (tmp_path / "junk").write_bytes(b"not a zip at all")
    with pytest.raises(ModelFileError, match="not an sktransfer model"):
        load(tmp_path / "junk")
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load(tmp_path / "nothing-here")


def test_custom_modules_cannot_be_saved(tiny, tmp_path):
    from torch import nn

    X, y = tiny
    clf = TransferClassifier(backbone=nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), image_size=32,
                             epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="custom backbone"):
        clf.save(tmp_path / "m")
    assert not (tmp_path / "m").exists() and not list(tmp_path.iterdir())


def test_onnx_export_runs_and_matches(tiny, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import onnx
    import torch

    from sktransfer.inputs.images import ImageDataset

    X, y = tiny
    clf = TransferClassifier(**FAST, unfreeze=1, finetune_epochs=1).fit(X, np.array(["a", "b"])[y])
    clf.export_onnx(tmp_path / "m.onnx")
    meta = {p.key: json.loads(p.value) for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert meta["classes"] == ["a", "b"] and meta["crop_size"] == [32]
    ds = ImageDataset(X, clf.transform_)
    images = torch.stack([ds[i] for i in range(len(ds))]).numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (proba,) = session.run(["probabilities"], {"images": images})
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-5)


PIXELS_ONLY = """
import json, sys
sys.modules["sktransfer"] = None  # a serving process: onnxruntime and numpy, nothing of ours
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1])
meta = session.get_modelmeta().custom_metadata_map
images = np.load(sys.argv[2])  # uint8 (n, s, s, 3), as an image file decodes, resized
assert images.shape[1:3] == tuple(json.loads(meta["crop_size"]) * 2), meta
(out,) = session.run(None, {"images": images})
np.save(sys.argv[3], out)
print(json.dumps({"classes": json.loads(meta.get("classes", "null")),
                  "input": json.loads(meta["input"])}))
"""


@pytest.mark.parametrize("cls", [TransferClassifier, "TransferRegressor"])
def test_onnx_with_the_preprocessing_inside_needs_no_sktransfer(cls, tmp_path):
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    from sktransfer import TransferRegressor

    from conftest import blobs

    X, y = blobs(16, size=32)  # uint8 at the input size: decoded and resized, as served
    if cls == "TransferRegressor":
        est = TransferRegressor(**FAST, unfreeze=1, finetune_epochs=1).fit(X, 10.0 + 5 * y)
    else:
        est = cls(**FAST, unfreeze=1, finetune_epochs=1).fit(X, np.array(["cat", "dog"])[y])
    assert X.dtype == np.uint8 and X.shape[1:] == (32, 32, 3)
    est.export_onnx(tmp_path / "m.onnx", preprocessing=True)
    np.save(tmp_path / "x.npy", X)
    run = subprocess.run([sys.executable, "-c", PIXELS_ONLY, tmp_path / "m.onnx",
                          tmp_path / "x.npy", tmp_path / "out.npy"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    out = np.load(tmp_path / "out.npy")
    assert shown["input"] == "uint8 (n, 32, 32, 3) RGB, resized"
    if cls == "TransferRegressor":
        np.testing.assert_allclose(out.ravel(), est.predict(X), rtol=1e-4, atol=1e-4)
    else:
        assert shown["classes"] == ["cat", "dog"]
        np.testing.assert_allclose(out, est.predict_proba(X), atol=1e-5)


def test_inception_input_normalisation_survives_save_and_load(tmp_path):
    from sktransfer.backbones.torchvision_family import InceptionInput
    from sktransfer.extraction.extractor import Extractor

    X = np.random.RandomState(0).randint(0, 256, (4, 90, 90, 3), dtype=np.uint8)
    clf = TransferClassifier(backbone="inception", weights=None, image_size=80, epochs=1,
                             random_state=0).fit(X, [0, 1, 0, 1])
    # as ImageNet weights would have it: torchvision's transform_input
    clf.extractor_ = Extractor(clf.extractor_.modules, clf.transform_)
    clf.extractor_.modules[0][0].load_state_dict(InceptionInput(True).state_dict())
    clf.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.extractor_.modules[0][0].scale.numpy(),
                                  InceptionInput(True).scale.numpy())
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)
