"""One fitted model serves many threads; a seeded fit gives the same result in any thread.

Real threads (a ThreadPoolExecutor, joblib's threading backend), real
engines, a real Dask LocalCluster whose workers run several threads.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV

from sktransfer import TransferClassifier
from sktransfer.extraction import engines
from sktransfer.extraction import extractor as extractor_mod

from conftest import blobs
from sktransfer import clear_caches  # noqa: E402

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=3, random_state=0)
ENGINES = [e for e in engines.ENGINES if e == "torch" or engines.available(e)]


@pytest.fixture(autouse=True)
def _empty_memory():
    clear_caches()
    yield
    clear_caches()


@pytest.mark.parametrize("engine", ENGINES)
def test_eight_threads_predict_what_one_thread_predicts(engine):
    X, y = blobs(24)
    clf = TransferClassifier(**FAST, engine=engine, cache=False).fit(X, y)
    chunks = [X[i::8] for i in range(8)]
    expected = [clf.predict_proba(chunk) for chunk in chunks]
    start = threading.Barrier(8)

    def calls(k):
        start.wait()  # all eight at once
        return [clf.predict_proba(chunks[k]) for _ in range(3)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(calls, range(8)))
    for k, repeated in enumerate(results):
        for proba in repeated:
            np.testing.assert_array_equal(proba, expected[k])


def test_two_threads_asking_for_one_engine_convert_it_once(monkeypatch):
    X, y = blobs(8)
    clf = TransferClassifier(**FAST, engine="torch", cache=False).fit(X, y)
    clear_caches()
    converted = []
    original = extractor_mod.compile_prefix

    def slow(*args, **kwargs):
        converted.append(threading.get_ident())
        time.sleep(0.3)  # a conversion takes a while: the other thread asks meanwhile
        return original(*args, **kwargs)

    monkeypatch.setattr(extractor_mod, "compile_prefix", slow)
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: clf.predict_proba(X), range(2)))
    assert len(converted) == 1
    np.testing.assert_array_equal(outs[0], outs[1])


def _noise(stop):
    """Draw from torch's global generator as fast as possible, as user code in another
    thread might."""
    while not stop.is_set():
        torch.rand(64)


@pytest.mark.parametrize("settings", [
    {},
    {"unfreeze": 2, "finetune_epochs": 2, "finetune_lr": 1e-3, "dropout": 0.5,
     "batch_size": 4},
], ids=["head", "finetune"])
def test_a_seeded_fit_draws_nothing_from_torchs_global_generator(settings, r18_weights):
    X, y = blobs(16)
    kwargs = {**FAST, "weights": r18_weights, **settings}
    quiet = TransferClassifier(**kwargs).fit(X, y).predict_proba(X)
    clear_caches()
    stop = threading.Event()
    noisy = threading.Thread(target=_noise, args=(stop,))
    noisy.start()
    try:  # another thread drawing from the global generator all along changes nothing
        busy = TransferClassifier(**kwargs).fit(X, y).predict_proba(X)
    finally:
        stop.set()
        noisy.join()
    np.testing.assert_array_equal(busy, quiet)


GLOBAL_DRAWS = {  # fits with draws torch gives no generator for
    "random-backbone": {},
    "augment": {"augment": True, "epochs": 2},
    "stochastic-depth": {"backbone": "efficientnet_b0", "unfreeze": 1, "finetune_epochs": 1},
}


def test_fits_drawing_from_the_global_generator_do_not_disturb_each_other():
    X, y = blobs(16)
    alone = {name: TransferClassifier(**{**FAST, **s}).fit(X, y).predict_proba(X)
             for name, s in GLOBAL_DRAWS.items()}
    clear_caches()
    start = threading.Barrier(len(GLOBAL_DRAWS))

    def fit(name):
        start.wait()
        return TransferClassifier(**{**FAST, **GLOBAL_DRAWS[name]}).fit(X, y).predict_proba(X)

    with ThreadPoolExecutor(len(GLOBAL_DRAWS)) as pool:
        together = dict(zip(GLOBAL_DRAWS, pool.map(fit, GLOBAL_DRAWS)))
    for name in GLOBAL_DRAWS:
        np.testing.assert_array_equal(together[name], alone[name], err_msg=name)


@pytest.mark.parametrize("settings", [{}, *GLOBAL_DRAWS.values()],
                         ids=["head", *GLOBAL_DRAWS])
def test_a_fit_leaves_torchs_global_generator_as_it_was(settings):
    X, y = blobs(16)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    TransferClassifier(**{**FAST, **settings}).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)


GRID = {"lr": [1e-3, 3e-3], "epochs": [2, 4]}


def _search(X, y):
    est = TransferClassifier(**FAST, engine="torch")
    # log loss: any change in any draw of any fit moves it
    return GridSearchCV(est, GRID, cv=3, scoring="neg_log_loss").fit(X, y)


def test_a_seeded_search_gives_the_same_scores_under_the_threading_backend():
    X, y = blobs(24)
    serial = _search(X, y)
    with parallel_backend("threading", n_jobs=4):
        threaded = _search(X, y)
    np.testing.assert_array_equal(threaded.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(threaded.best_estimator_.predict_proba(X),
                                  serial.best_estimator_.predict_proba(X))
