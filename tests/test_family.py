"""The estimator family on one base: TransferRegressor, multi-label TransferClassifier, RGBA.

Each path the classifier has is walked by the regressor and by multi-label
targets: fitting in the targets' own units, scikit-learn's tools, the
activation cache, save/load/pickle/ONNX, explain, and the bad inputs.
"""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.compose import TransformedTargetRegressor
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict

from sktransfer import PretrainedFeatures, TransferClassifier, TransferRegressor, load

from conftest import blobs

FAST = dict(backbone="resnet18", weights=None, image_size=32, random_state=0)


def _energy(y, seed=0):
    """kJ per 100 g: a value set by the image's class, plus noise."""
    return 400.0 + 900.0 * y + np.random.RandomState(seed).normal(0, 30, len(y))


@pytest.fixture(scope="module")
def data():
    return blobs(24)


# -- the regressor ---------------------------------------------------------------------


def test_targets_are_standardised_and_predictions_in_their_units(data):
    X, y = data
    kj = _energy(y)
    reg = TransferRegressor(**FAST, epochs=20, lr=1e-2).fit(X, kj)
    pred = reg.predict(X)
    assert pred.shape == (len(X),) and pred.dtype == np.float64
    assert r2_score(kj, pred) > 0.5 and reg.score(X, kj) == pytest.approx(r2_score(kj, pred))
    np.testing.assert_allclose(reg.target_mean_, [kj.mean()])
    np.testing.assert_allclose(reg.target_scale_, [kj.std()])
    # The same targets in other units (kcal, shifted): the same network, predictions in them.
    kcal = TransferRegressor(**FAST, epochs=20, lr=1e-2).fit(X, kj / 4.184 - 50)
    np.testing.assert_allclose(kcal.predict(X), pred / 4.184 - 50, rtol=1e-4)


def test_several_outputs(data):
    X, y = data
    Y = np.c_[_energy(y), 80.0 - 60.0 * y]  # energy (kJ) and water (g), both from the class
    reg = TransferRegressor(**FAST, epochs=20, lr=1e-2).fit(X, Y)
    pred = reg.predict(X)
    assert pred.shape == (len(X), 2) and reg.n_outputs_ == 2
    assert r2_score(Y[:, 0], pred[:, 0]) > 0.5 and r2_score(Y[:, 1], pred[:, 1]) > 0.5
    assert reg.score(X, Y) == pytest.approx(r2_score(Y, pred))
    column = TransferRegressor(**FAST, epochs=2).fit(X, Y[:, :1])
    assert column.predict(X).shape == (len(X), 1)  # a column in, a column out


def test_losses_are_the_ones_named(data):
    X, _ = data
    same = np.repeat(X[:1], 24, axis=0)  # one image: the head can only learn one value
    y = np.r_[np.zeros(23), 240.0]  # mean 10, median 0, one wild value
    fitted = {}
    for loss, criterion in [("squared_error", "MSELoss"), ("huber", "HuberLoss"),
                            ("absolute_error", "L1Loss")]:
        reg = TransferRegressor(**FAST, epochs=150, lr=0.05, lr_schedule="cosine", dropout=0,
                                hidden_units=(),
                                loss=loss).fit(same, y)
        assert type(reg.net_.criterion_).__name__ == criterion
        fitted[loss] = reg.predict(same[:1])[0]
    # the mean, the median, and between: Huber's loss is linear beyond one standard
    # deviation (y.std()), so the wild value pulls the 23 others by y.std() / 23 only
    assert fitted["squared_error"] == pytest.approx(10, abs=1)
    assert fitted["absolute_error"] == pytest.approx(0, abs=1)
    assert fitted["huber"] == pytest.approx(y.std() / 23, abs=1)


def test_integer_targets(data):
    X, y = data
    ages = (20 + 30 * y).astype(np.int64)
    reg = TransferRegressor(**FAST, epochs=2).fit(X, ages)
    assert reg.predict(X).dtype == np.float64  # numbers, not classes


def test_in_scikit_learn_tools_with_one_pass_per_image(data, decoded):
    X, y = data
    kj = _energy(y)
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(TransferRegressor(**FAST, epochs=5),
                          {"lr": [1e-3, 1e-2], "loss": ["squared_error", "huber"]}, cv=cv)
    search.fit(X, kj)
    assert decoded["n"] == len(X)  # 12 fits and the refit: each image through the prefix once
    assert set(search.cv_results_["mean_test_score"]) and search.best_estimator_.n_outputs_ == 1
    assert cross_val_predict(TransferRegressor(**FAST, epochs=2), X, kj, cv=cv).shape == (24,)
    logged = TransformedTargetRegressor(TransferRegressor(**FAST, epochs=2), func=np.log,
                                        inverse_func=np.exp).fit(X, kj)
    assert (logged.predict(X) > 0).all()
    assert decoded["n"] == len(X)


def _onnx_run(est, X, path, output):
    """``est`` exported to ``path``, run by ONNX Runtime on ``X``: (its output, its metadata)."""
    ort = pytest.importorskip("onnxruntime")
    import onnx
    import torch

    from sktransfer.inputs.images import ImageDataset

    est.export_onnx(path)
    meta = {p.key: json.loads(p.value) for p in onnx.load(path).metadata_props}
    ds = ImageDataset(X, est.transform_)
    images = torch.stack([ds[i] for i in range(len(ds))]).numpy()
    (out,) = ort.InferenceSession(str(path)).run([output], {"images": images})
    return out, meta


def test_save_load_pickle_and_onnx_give_the_same_predictions(data, tmp_path):
    X, y = data
    Y = np.c_[_energy(y), 80.0 - 60.0 * y]
    reg = TransferRegressor(**FAST, epochs=3, unfreeze=1, finetune_epochs=1,
                            loss="huber").fit(X, Y)
    reg.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert type(loaded) is TransferRegressor and loaded.get_params()["loss"] == "huber"
    np.testing.assert_allclose(loaded.predict(X), reg.predict(X), rtol=1e-6)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reg)).predict(X), reg.predict(X))
    pred, meta = _onnx_run(reg, X, tmp_path / "m.onnx", "predictions")
    np.testing.assert_allclose(meta["target_mean"], reg.target_mean_)
    np.testing.assert_allclose(pred, reg.predict(X), rtol=1e-4)


def test_explain_a_chosen_output(data):
    pytest.importorskip("pytorch_grad_cam")
    X, y = data
    reg = TransferRegressor(**FAST, epochs=2).fit(X[:8], np.c_[_energy(y[:8]), y[:8]])
    maps = reg.explain(X[:2], target=1)
    assert len(maps) == 2 and maps[0].shape == X.shape[1:3]
    with pytest.raises(ValueError, match="2 outputs; choose the one to explain with target="):
        reg.explain(X[:2])
    with pytest.raises(ValueError, match="target 2 is not an output.*0 .. 1"):
        reg.explain(X[:2], target=2)


@pytest.mark.parametrize("cls, targets, message", [
    (TransferRegressor, np.r_[np.nan, np.ones(23)],
     r"1 NaN or infinite target\(s\), first at row\(s\) \[0\]"),
    (TransferRegressor, np.r_[np.ones(20), np.inf, 1, 1, 1],
     r"NaN or infinite target\(s\), first at row\(s\) \[20\]"),
    (TransferRegressor, np.array(["cheap", "dear"] * 12),
     "predicts numbers. For categories use TransferClassifier"),
    (TransferRegressor, np.ones((24, 2, 2)), r"shape \(24, 2, 2\)"),
    (TransferRegressor, None, "requires y to be passed"),
    (TransferClassifier, [["salty"], ["sweet", "salty"]] * 12, "MultiLabelBinarizer"),
    (TransferClassifier, np.array([["salty"], ["sweet", "salty"]] * 12, dtype=object),
     "MultiLabelBinarizer"),  # as a column of lists arrives
    (TransferClassifier, np.zeros((24, 2), int), "no label on any image"),
    (TransferClassifier, np.c_[np.arange(24) % 2, np.arange(24) % 3],
     "not a 0/1 indicator matrix"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_bad_targets_are_named(data, cls, targets, message):
    X, _ = data
    with pytest.raises(ValueError, match=message):
        cls(**FAST, epochs=1).fit(X, targets)


def test_validation_targets_must_match(data):
    X, y = data
    with pytest.raises(ValueError, match="validation_data has 1 target"):
        TransferRegressor(**FAST, epochs=1).fit(X, np.c_[y, y], validation_data=(X[:4], y[:4]))


# -- multi-label -----------------------------------------------------------------------


def _tags(y):
    """Three tags: the class, its opposite, and one that holds for a third of the images."""
    return np.c_[y, 1 - y, np.arange(len(y)) % 3 == 0].astype(np.int64)


def test_multilabel_fit_predict_score(data):
    X, y = data
    Y = _tags(y)
    clf = TransferClassifier(**FAST, epochs=20, lr=1e-2).fit(X, Y)
    assert clf.multilabel_ and list(clf.classes_) == [0, 1, 2]
    assert type(clf.net_.criterion_).__name__ == "BCEWithLogitsLoss"
    proba, pred = clf.predict_proba(X), clf.predict(X)
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    assert not np.allclose(proba.sum(axis=1), 1)  # each label on its own, not a softmax
    assert (pred[:, :2] == Y[:, :2]).mean() > 0.8  # the tags the images show are learnt
    assert clf.score(X, Y) == accuracy_score(Y, pred)  # subset accuracy


def test_a_label_on_no_training_image_is_predicted_absent_on_every_path(data, tmp_path):
    # a rare tag that fell into the held-out part: the fit goes on, says so once, and
    # every path that runs the network predicts the tag absent
    X, y = data
    Y = pd.DataFrame(_tags(y), columns=["cat", "not cat", "third"])
    Y["rare"] = 0
    with pytest.warns(UserWarning, match=r"1 label\(s\) of 4 are on no training image: "
                      r"'rare'; the model predicts them absent") as caught:
        clf = TransferClassifier(**FAST, epochs=2).fit(X, Y)
    assert len([w for w in caught if "no training image" in str(w.message)]) == 1
    assert caught[0].filename == __file__  # the user's line, not the package's
    proba = clf.predict_proba(X)
    assert proba[:, 3].max() < 1e-9 and (proba[:, :3] > 1e-3).all()
    assert not clf.predict(X)[:, 3].any()
    clf.save(tmp_path / "m.sktransfer")
    loaded = load(tmp_path / "m.sktransfer")
    np.testing.assert_allclose(loaded.predict_proba(X), proba, atol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X), proba,
                               atol=1e-6)


def test_multilabel_output_format(data):
    X, y = data
    Y = _tags(y)
    clf = TransferClassifier(**FAST, epochs=1).fit(X, Y)
    pred, proba = clf.predict(X[:5]), clf.predict_proba(X[:5])
    assert pred.shape == (5, 3) and set(np.unique(pred)) <= {0, 1}
    assert pred.dtype.kind == "i"
    assert proba.shape == (5, 3) and proba.dtype.kind == "f"
    assert ((proba >= 0) & (proba <= 1)).all()


def test_multilabel_representations(data):
    X, y = data
    Y = _tags(y)
    as_array = TransferClassifier(**FAST, epochs=2).fit(X, Y).predict_proba(X)
    as_lists = TransferClassifier(**FAST, epochs=2).fit(X, Y.tolist()).predict_proba(X)
    as_tuples = TransferClassifier(**FAST, epochs=2).fit(
        X, tuple(map(tuple, Y.tolist()))).predict_proba(X)
    np.testing.assert_array_equal(as_array, as_lists)
    np.testing.assert_array_equal(as_array, as_tuples)


def test_multilabel_through_the_same_paths(data, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    X, y = data
    Y = _tags(y)
    clf = TransferClassifier(**FAST, epochs=3, unfreeze=1, finetune_epochs=1).fit(X, Y)
    clf.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.multilabel_
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-6)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict(X), clf.predict(X))
    proba, meta = _onnx_run(clf, X, tmp_path / "m.onnx", "probabilities")
    assert meta["multilabel"] is True and meta["classes"] == [0, 1, 2]
    # another runtime's float32 rounding, through the exact head's larger weights
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=5e-4)
    assert len(clf.explain(X[:2], target=2)) == 2
    search = GridSearchCV(TransferClassifier(**FAST, epochs=2), {"alpha": [0.01, 1.0]}, cv=2)
    assert search.fit(X, Y).best_estimator_.multilabel_


def test_early_stopping_with_multilabel_and_regression(data):
    X, y = data
    clf = TransferClassifier(**FAST, epochs=3, early_stopping=True).fit(X, _tags(y))
    reg = TransferRegressor(**FAST, epochs=3, early_stopping=True).fit(X, _energy(y))
    for est in (clf, reg):
        assert "valid_loss" in est.history_[-1]


def test_class_weight_is_for_one_label_per_image(data):
    X, y = data
    with pytest.raises(ValueError, match="with a multi-label y leave it None"):
        TransferClassifier(**FAST, epochs=1, class_weight="balanced").fit(X, _tags(y))


# -- RGBA arrays -----------------------------------------------------------------------


def test_rgba_arrays_are_composited_on_white_as_files_are(tmp_path):
    rng = np.random.RandomState(0)
    rgba = rng.randint(0, 256, (4, 36, 36, 4), dtype=np.uint8)
    rgba[0, ..., 3] = 0  # fully transparent: white
    paths = []
    for i, img in enumerate(rgba):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img, "RGBA").save(paths[-1])
    features = PretrainedFeatures(**{k: v for k, v in FAST.items() if k != "random_state"},
                                  cache=False).fit()
    np.testing.assert_array_equal(features.transform(rgba), features.transform(paths))
    from sktransfer.inputs.images import as_images

    images = as_images(rgba)
    assert (images.image(0).numpy() == 255).all()
    floats = as_images(rgba.astype(np.float32) / 255)
    for i in range(4):  # floats composite without rounding: within one level of uint8
        np.testing.assert_allclose(floats.image(i).numpy() * 255, images.image(i).numpy(),
                                   atol=1.0)
