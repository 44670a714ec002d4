"""skops.io: the estimators (and Pipelines around them) written and read back trusting only
sktransfer's own types, in a process that did not write them; pickle goes the same way."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

sio = pytest.importorskip("skops.io")

import sktransfer  # noqa: E402
from sktransfer import (PretrainedFeatures, TransferClassifier, TransferRegressor,  # noqa: E402
                        TRUSTED_TYPES)
from sktransfer.training.callbacks import PartialUnfreeze  # noqa: E402

from conftest import HAVE_IMAGENET, blobs  # noqa: E402

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)

READ_BACK = """
import sys
import numpy as np
import skops.io as sio
import sktransfer
X = np.load(sys.argv[1])
for kind in sys.argv[2:]:  # each file read with only the package's own types trusted
    model = sio.load(f"{kind}.skops", trusted=sktransfer.TRUSTED_TYPES)
    out = model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)
    np.save(f"{kind}.npy", out)
"""


def test_the_trusted_types_are_the_estimators_own():
    assert TRUSTED_TYPES == sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in
                                   (PretrainedFeatures, TransferClassifier, TransferRegressor))


@pytest.fixture(scope="module")
def fitted():
    X, y = blobs(12)
    return X, {
        "classifier": TransferClassifier(**FAST, unfreeze=1, finetune_epochs=1)
        .fit(X, np.array(["cat", "dog"])[y]),
        "regressor": TransferRegressor(**FAST).fit(X, np.c_[10.0 + y, 2.0 - y]),
    }


@pytest.fixture(scope="module")
def pipeline(fitted):
    # the ImageNet weights: what a PretrainedFeatures is rebuilt from where it is read
    X, models = fitted
    models["pipeline"] = make_pipeline(PretrainedFeatures(image_size=32),
                                       LogisticRegression()).fit(X, blobs(12)[1])
    return models["pipeline"]


def test_skops_round_trips_in_a_new_process_trusting_only_sktransfer(fitted, tmp_path,
                                                                    request):
    X, models = fitted
    kinds = ["classifier", "regressor"]
    if HAVE_IMAGENET:  # the pipeline rebuilds PretrainedFeatures from ImageNet weights
        request.getfixturevalue("pipeline")
        kinds.append("pipeline")
    for kind in kinds:
        sio.dump(models[kind], tmp_path / f"{kind}.skops")
        untrusted = sio.get_untrusted_types(file=tmp_path / f"{kind}.skops")
        assert untrusted and set(untrusted) <= set(TRUSTED_TYPES), (kind, untrusted)
        with pytest.raises(Exception, match="[Uu]ntrusted"):  # nothing is trusted by default
            sio.load(tmp_path / f"{kind}.skops")
    np.save(tmp_path / "x.npy", X)
    # one new process reads them all (each process starts an interpreter and torch)
    run = subprocess.run([sys.executable, "-c", READ_BACK, tmp_path / "x.npy", *kinds],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for kind in kinds:
        model = models[kind]
        expected = model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)
        np.testing.assert_array_equal(np.load(tmp_path / f"{kind}.npy"), expected, err_msg=kind)
        again = sio.load(tmp_path / f"{kind}.skops", trusted=TRUSTED_TYPES)
        assert again.get_params(deep=False).keys() == model.get_params(deep=False).keys()


def test_the_portable_state_keeps_every_parameter_and_pickle_keeps_the_objects(fitted):
    X, models = fitted
    clf = models["classifier"]
    clf.set_params(callbacks=[("later", PartialUnfreeze(n=1))])  # a parameter no file keeps
    try:
        state = clf.__getstate__()  # what skops writes: the model file's parts, no tensor
        assert "net_" not in state and set(state["_model_file"]) == {"config", "weights"}
        rebuilt = TransferClassifier.__new__(TransferClassifier)
        rebuilt.__setstate__(state)
        # pickle (joblib, Dask) takes the objects: a worker reads them for every task
        assert "net_" in clf.__reduce_ex__(4)[2]
        copy = pickle.loads(pickle.dumps(clf))
    finally:
        clf.set_params(callbacks=None)
    for other in (rebuilt, copy):
        assert isinstance(other.callbacks[0][1], PartialUnfreeze)
        np.testing.assert_array_equal(other.predict_proba(X), clf.predict_proba(X))
        assert other.history_[-1]["train_loss"] == clf.history_[-1]["train_loss"]


def test_a_custom_backbone_module_still_pickles_whole():
    import torch.nn as nn

    X, y = blobs(8)
    blocks = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    clf = TransferClassifier(backbone=blocks, weights=None, image_size=32, epochs=1,
                             random_state=0).fit(X, y)
    assert "net_" in clf.__getstate__()  # no model file names a module: the objects stay
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X),
                                  clf.predict_proba(X))


def test_random_features_pickle_whole(tmp_path):
    X, _ = blobs(4)
    features = PretrainedFeatures(backbone="resnet18", weights=None, image_size=32).fit()
    assert "extractor_" in features.__getstate__()  # random weights cannot be drawn again
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(features)).transform(X),
                                  features.transform(X))


def test_public_name():
    assert "TRUSTED_TYPES" in dir(sktransfer)
