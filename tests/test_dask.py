"""GridSearchCV on a real dask.distributed LocalCluster, sharing one cache_dir."""

import os
import pickle
import warnings

import numpy as np
import torch
import pytest
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV

from sktransfer import TransferClassifier

from dask_helpers import computed, counting_backbone

distributed = pytest.importorskip("dask.distributed")

GRID = {"lr": [1e-3, 1e-2], "epochs": [1, 3]}


# first: no client of the module's cluster exists yet to be the default one
def test_a_dataframe_column_on_the_local_scheduler_gives_named_columns(tmp_path):
    import dask.dataframe as dd
    import pandas as pd
    from PIL import Image

    from conftest import blobs
    from sktransfer import TransferRegressor, predict_partitions

    X, _ = blobs(8, size=32)
    paths = []
    for i, img in enumerate(X):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(paths[-1])
    targets = pd.DataFrame({"energy": np.arange(8.0), "water": np.arange(8.0) ** 2})
    est = TransferRegressor(backbone="resnet18", weights=None, image_size=32, epochs=1,
                            random_state=0).fit(paths, targets)
    frame = dd.from_pandas(pd.DataFrame({"path": paths}), npartitions=3)
    out = predict_partitions(est, frame["path"]).compute(scheduler="sync")
    assert list(out.columns) == ["energy", "water"]
    np.testing.assert_allclose(out.to_numpy(), est.predict(paths), rtol=1e-6)


@pytest.fixture(scope="module")
def client():
    """Two worker processes of two threads each, shared by the tests that do not kill one
    (each worker starts an interpreter and imports torch: seconds of CPU each)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def _search(X, y, cache_dir, log, n_jobs):
    # engine="torch": the stem counts the images that torch runs through it.
    est = TransferClassifier(backbone=counting_backbone(log), image_size=32, random_state=0,
                             cache_dir=cache_dir, engine="torch")
    return GridSearchCV(est, GRID, cv=3, n_jobs=n_jobs).fit(X, y)


def test_grid_search_on_local_cluster_matches_sequential_and_computes_once(tiny, tmp_path,
                                                                         capsys, client):
    from sktransfer import search_progress

    X, y = tiny
    serial = _search(X, y, tmp_path / "serial", tmp_path / "serial.log", n_jobs=1)
    threads = client.run(lambda: __import__("torch").get_num_threads())
    assert sum(threads.values()) <= max(os.cpu_count(), 2)  # no oversubscription
    capsys.readouterr()
    with parallel_backend("dask"), search_progress(total=12):
        parallel = _search(X, y, tmp_path / "shared", tmp_path / "dask.log", n_jobs=-1)
    assert "fits: 12/12 fits" in capsys.readouterr().err  # progress across the workers' fits
    assert len(client.run(os.getpid)) == 2
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])
    # 12 fits and the refit, two worker processes, one shared folder: each image once.
    assert computed(tmp_path / "dask.log") == len(X)
    assert len(list((tmp_path / "shared").rglob("*.npy"))) == len(X)


def test_workers_with_two_threads_give_the_scores_of_one_thread(client):
    from conftest import blobs

    X, y = blobs(24)

    def search():  # log loss: any change in any draw (dropout, batches) of any fit moves it
        est = TransferClassifier(backbone="resnet18", weights=None, image_size=32,
                                 head_solver="optimizer", engine="torch", random_state=0)
        return GridSearchCV(est, {"lr": [1e-3, 3e-3], "epochs": [2, 4]}, cv=3,
                            scoring="neg_log_loss")

    serial = search().fit(X, y).cv_results_["mean_test_score"]  # one thread, this process
    assert set(client.nthreads().values()) == {2}
    with parallel_backend("dask"):
        spread = search().set_params(n_jobs=-1).fit(X, y).cv_results_["mean_test_score"]
    np.testing.assert_array_equal(spread, serial)


def test_estimators_pickle_small(tiny):
    X, y = tiny
    est = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=1)
    assert len(pickle.dumps(est)) < 2_000  # parameters only: what travels to the workers
    fitted = est.fit(X, y)
    size = len(pickle.dumps(fitted))
    weights = sum(p.numel() * 4 for p in fitted.net_.module_.parameters()) + sum(
        p.numel() * 4 for m in fitted.extractor_.modules for p in m.parameters())
    assert size < 1.3 * weights  # the network, not its cached activations or optimizer extras


def test_a_regressor_search_on_local_cluster_matches_sequential(tiny, client):
    from sktransfer import TransferRegressor

    X, y = tiny
    values = 300.0 + 500.0 * y
    search = lambda: GridSearchCV(  # noqa: E731
        TransferRegressor(backbone="resnet18", weights=None, image_size=32, epochs=2,
                          random_state=0), {"loss": ["squared_error", "huber"]}, cv=2)
    serial = search().fit(X, values)
    with parallel_backend("dask"):
        spread = search().set_params(n_jobs=-1).fit(X, values)
    np.testing.assert_allclose(spread.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])
    assert spread.best_estimator_.predict(X[:2]).shape == (2,)


def test_extraction_on_the_cluster_then_a_fit_computes_nothing_here(tmp_path, decoded, client):
    """fill_cache on 2 workers; the client's fit then reads every activation from the folder;
    predictions over a dask.bag and a dask.array equal the single-process ones."""
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd
    import pandas as pd
    from PIL import Image

    from conftest import blobs
    from sktransfer import PretrainedFeatures, TransferClassifier, fill_cache, predict_partitions

    X, y = blobs(20, size=40)
    paths = []
    for i, img in enumerate(X):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(paths[-1])
    shared = tmp_path / "cache"
    est = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=2,
                             random_state=0, cache_dir=shared)
    # random weights must be the same on every worker: a fixed file of them
    weights = tmp_path / "r18.pt"
    torch.manual_seed(0)
    torch.save(__import__("torchvision").models.resnet18().state_dict(), weights)
    est.set_params(weights=weights)
    assert fill_cache(est, paths, client=client, partition_size=6) == len(paths)
    decoded["n"] = 0
    est.fit(paths, y)
    assert decoded["n"] == 0  # every activation came from the cluster's work
    on_bag = predict_partitions(est, db.from_sequence(paths, npartitions=3)).compute()
    on_array = predict_partitions(est, da.from_array(np.array(paths, dtype=object),
                                                      chunks=7), "predict_proba").compute()
    features = PretrainedFeatures(backbone="resnet18", weights=weights, image_size=32).fit()
    spread = predict_partitions(features, da.from_array(np.array(paths, dtype=object),
                                                         chunks=8), "transform").compute()
    frame = dd.from_pandas(pd.DataFrame({"path": paths}, index=np.arange(len(paths)) + 100),
                           npartitions=3)
    on_column = predict_partitions(est, frame["path"]).compute()
    proba_columns = predict_partitions(est, frame["path"], "predict_proba").compute()
    assert list(on_column.index) == list(frame.index.compute())  # joins the frame it came from
    np.testing.assert_array_equal(on_column.to_numpy(), est.predict(paths))
    assert list(proba_columns.columns) == [str(c) for c in est.classes_]
    np.testing.assert_allclose(proba_columns.to_numpy(), est.predict_proba(paths), rtol=1e-6)
    np.testing.assert_array_equal(on_bag, est.predict(paths))
    np.testing.assert_allclose(on_array, est.predict_proba(paths), rtol=1e-6)
    np.testing.assert_allclose(spread, features.transform(paths), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unfreeze=1"):
        fill_cache(est.set_params(unfreeze=1), paths, client=object())


# last: it kills one of the shared cluster's workers (its nanny starts another)
def test_a_worker_killed_mid_extraction_leaves_the_cache_whole_and_the_job_finishes(
        tmp_path, decoded, client):
    import signal
    import threading
    import time

    from PIL import Image

    from conftest import blobs
    from sktransfer import PretrainedFeatures, fill_cache
    from sktransfer.extraction.cache import DiskStore
    from sktransfer.inputs.images import as_images

    X, _ = blobs(40, size=32, seed=1)
    paths = []
    for i, img in enumerate(X):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(paths[-1])
    log, shared = tmp_path / "log", tmp_path / "cache"
    # a slow network (0.2 s a batch), run by torch so that its stem logs each batch
    features = PretrainedFeatures(backbone=counting_backbone(log, delay=0.2), image_size=32,
                                  cache_dir=shared, engine="torch")
    victim = next(iter(client.run(os.getpid).values()))
    done = {}
    job = threading.Thread(target=lambda: done.setdefault(
        "n", fill_cache(features, paths, client=client, partition_size=4)))
    job.start()
    deadline = time.time() + 120
    while computed(log) == 0 and time.time() < deadline:
        time.sleep(0.01)
    os.kill(victim, signal.SIGKILL)
    at_kill = computed(log)
    assert job.is_alive() and 0 < at_kill < len(paths)  # killed mid-extraction
    job.join(180)
    assert done.get("n") == len(paths)  # the other worker (and the nanny's new one) finished
    assert victim not in client.run(os.getpid).values()
    store = DiskStore(shared)
    key = features.fit().extractor_.key
    source = as_images(paths)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged entry would warn
        entries = [store.get(key, source.content_key(i)) for i in range(len(paths))]
    assert all(e is not None for e in entries)  # every entry whole, none missing
    assert len(list(shared.rglob("*.npy"))) == len(paths)
    decoded["n"] = 0
    np.testing.assert_allclose(features.transform(paths), torch.stack(entries).numpy())
    assert decoded["n"] == 0  # all read from what the cluster wrote
