"""scikit-learn's check intents, on images: what tests/test_sklearn_checks.py cannot run."""

import copy
import functools
import pickle
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.validation import check_is_fitted

from sktransfer import PretrainedFeatures, TransferClassifier

FAST = dict(backbone="resnet18", image_size=32)


@functools.cache
def fixed_weights():
    """A fixed ResNet-18 weights file: 'pretrained' weights, as users have them."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp(prefix="sktransfer-r18-")) / "r18.pt"
    torch.save(resnet18().state_dict(), path)
    return path


def classifier(**kwargs):
    return TransferClassifier(**FAST, weights=fixed_weights(), epochs=2, random_state=0,
                              **kwargs)


def transformer(**kwargs):
    return PretrainedFeatures(**FAST, weights=fixed_weights(), **kwargs)


def output(est, X):
    """What the fitted estimator gives for X."""
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.transform(X)


def state(est):
    """Everything a fit leaves behind that predictions depend on."""
    modules = list(est.extractor_.modules)
    if hasattr(est, "net_"):
        modules.append(est.net_.module_)
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


def same_state(a, b):
    return all(a_m.keys() == b_m.keys() and all(torch.equal(a_m[k], b_m[k]) for k in a_m)
               for a_m, b_m in zip(a, b))


BOTH = pytest.mark.parametrize("make", [classifier, transformer], ids=["classifier", "features"])


@BOTH
def test_fit_returns_self(make, tiny):
    est = make()
    assert est.fit(*tiny) is est


def test_fit_and_score_take_y(tiny):
    X, y = tiny
    clf = classifier().fit(X, y)
    assert clf.score(X, y) == pytest.approx(np.mean(clf.predict(X) == y))
    assert transformer().fit(X, y).transform(X).shape[0] == len(X)  # y accepted, ignored


@BOTH
def test_fit_leaves_params(make, tiny):
    est = make()
    before = copy.deepcopy(est.get_params())
    est.fit(*tiny)
    assert est.get_params() == before
    public = {k for k in vars(est) if not k.startswith("_")}
    assert {k for k in public if not k.endswith("_")} == set(before)  # fitted state ends in _


@BOTH
def test_clone_equality(make, tiny):
    est = make().fit(*tiny)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)


@BOTH
def test_fit_check_is_fitted(make, tiny):
    est = make()
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(NotFittedError):
        output(est, tiny[0])
    check_is_fitted(est.fit(*tiny))


@BOTH
def test_read_only_input(make, tiny, tmp_path):
    X, y = tiny
    path = tmp_path / "images.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")  # a read-only memmap, as joblib hands workers
    est = make().fit(mapped, y)
    np.testing.assert_array_equal(output(est, mapped), output(est, X))
    np.testing.assert_array_equal(mapped, X)


@BOTH
def test_input_is_not_changed(make, tiny):
    X, y = tiny
    X0, y0 = X.copy(), y.copy()
    output(make().fit(X, y), X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


@BOTH
def test_predict_leaves_the_model(make, tiny):
    X, y = tiny
    est = make().fit(X, y)
    params, keys, before = est.get_params(), set(vars(est)), state(est)
    output(est, X)
    assert est.get_params() == params and set(vars(est)) == keys
    assert same_state(state(est), before)


@BOTH
def test_pickle_round_trip(make, tiny):
    X, y = tiny
    est = make().fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(output(again, X), output(est, X))


@BOTH
def test_sample_order_and_subset_invariance(make, tiny):
    X, y = tiny
    est = make().fit(X, y)
    full = output(est, X)
    order = np.random.RandomState(0).permutation(len(X))
    np.testing.assert_allclose(output(est, X[order]), full[order], rtol=1e-5, atol=1e-6)
    for start in (0, 5, 11):  # any subset, alone, gives its rows of the whole
        np.testing.assert_allclose(output(est, X[start:start + 3]), full[start:start + 3],
                                   rtol=1e-5, atol=1e-6)


def test_fit_idempotent(tiny):
    X, y = tiny
    clf = classifier()
    first = clf.fit(X, y).predict_proba(X)
    clf.fit(X[::-1][:10], y[::-1][:10])  # fitted on other data in between
    np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X), first)


@BOTH
def test_n_jobs_does_not_change_results(make, tiny):
    X, y = tiny
    one = output(make(n_jobs=1).fit(X, y), X)
    two = output(make(n_jobs=2).fit(X, y), X)
    np.testing.assert_array_equal(one, two)


def test_pipeline_consistency(tiny):
    X, y = tiny
    probe = make_pipeline(transformer(), LogisticRegression(max_iter=200))
    a = probe.fit(X, y).predict_proba(X)
    b = clone(probe).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    chained = make_pipeline(classifier()).fit(X, y)
    np.testing.assert_array_equal(chained.predict_proba(X), classifier().fit(X, y).predict_proba(X))


def test_string_labels(tiny):
    X, y = tiny
    names = np.array(["dog", "cat"])[y]
    clf = classifier().fit(X, names)
    assert list(clf.classes_) == ["cat", "dog"] and set(clf.predict(X)) <= {"cat", "dog"}


def test_column_y_warns(tiny):
    X, y = tiny
    with pytest.warns(DataConversionWarning):
        column = classifier().fit(X, y[:, None]).predict_proba(X)
    np.testing.assert_array_equal(column, classifier().fit(X, y).predict_proba(X))


def test_one_class_and_continuous_targets_are_refused(tiny):
    X, y = tiny
    with pytest.raises(ValueError, match="single class \\(1\\)"):
        classifier().fit(X, np.ones(len(X), int))
    with pytest.raises(ValueError, match="single class \\('cat'\\)"):  # a plain value
        classifier().fit(X, np.array(["cat"] * len(X)))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        classifier().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="requires y to be passed"):
        classifier().fit(X, None)


@BOTH
def test_empty_input_is_refused(make, tiny):
    X, y = tiny
    with pytest.raises(ValueError, match="empty"):
        make().fit(X[:0], y[:0])


@BOTH
def test_nan_pixels_are_refused(make, tiny):
    X, y = tiny
    bad = X / 255.0
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make().fit(bad, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make().fit(X / 255.0, y)  # floats in [0, 1] are fine
