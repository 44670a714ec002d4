"""Extraction and prediction spread over a Dask cluster, partition by partition.

The frozen prefix is the whole cost of a fit on cached activations, and of
``predict``: both spread over a cluster's workers here.

- :func:`fill_cache` runs the frozen prefix of an estimator on every image
  of ``X`` on the workers, each partition where it lands, writing the
  activations to the estimator's ``cache_dir``, a folder every worker and
  the client reach (one host's disk, or a shared filesystem).  A ``fit`` on
  the client then reads them instead of computing them.
- :func:`predict_partitions` maps a fitted estimator's ``predict``,
  ``predict_proba`` or ``transform`` over a ``dask.bag``, a 1-d
  ``dask.array`` or a ``dask.dataframe`` column of image paths, one
  partition (block) per task.

The disk cache's entries are written all or nothing and checksummed, and
a claim per entry (a lock file beside it) lets one process compute an entry
while another one wanting it waits, and workers computing other images
run side by side: the folder must support ``flock``-style locks and atomic
renames (a local disk, NFSv4 with locking); where locks do not work, two
workers may compute the same entry twice, which costs time, not
correctness.  Needs the ``dask`` extra.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

#: The methods :func:`predict_partitions` maps.
METHODS = ("predict", "predict_proba", "transform")


def _features_of(est):
    """A ``PretrainedFeatures`` computing what ``est``'s fit reads from the cache."""
    from .features import PretrainedFeatures

    if isinstance(est, PretrainedFeatures):
        return clone(est)
    params = est.get_params()
    if params.get("unfreeze", 0) != 0 or params.get("augment"):
        raise ValueError(
            f"fill_cache pre-extracts the pooled features a fit with unfreeze=0 reads; "
            f"this {type(est).__name__} has unfreeze={params.get('unfreeze')!r}, "
            f"augment={params.get('augment')!r}, whose fit computes other activations.")
    shared = {k: v for k, v in params.items() if k in PretrainedFeatures._get_param_names()}
    return PretrainedFeatures(**{**shared, "include_top": False, "verbose": 0})


def fill_cache(est, X, client=None, partition_size=64):
    """Compute the activations ``est``'s ``fit`` will read, on a Dask cluster's workers.

    Parameters
    ----------
    est : PretrainedFeatures, TransferClassifier or TransferRegressor
        With ``cache_dir`` set to a folder the workers and this process
        share; a transfer estimator with ``unfreeze=0`` (its fit then reads
        the pooled features computed here).
    X : list of str or os.PathLike
        Image paths the workers can read.
    client : dask.distributed.Client, optional
        Default: the current client.
    partition_size : int, default=64
        Images per task.

    Returns
    -------
    int
        The number of images whose activations are now in ``cache_dir``.

    Raises
    ------
    ValueError
        Without ``cache_dir``, with paths that are not paths, or with an
        estimator whose fit would read other activations.
    """
    from dask.distributed import default_client, progress

    if est.get_params().get("cache_dir") is None:
        raise ValueError("fill_cache writes to the estimator's cache_dir, a folder the workers "
                         "share with this process; set cache_dir=... first.")
    paths = [str(p) for p in X]
    features = _features_of(est)
    client = client or default_client()
    parts = [paths[i:i + partition_size] for i in range(0, len(paths), partition_size)]
    futures = client.map(_extract_part, parts, features=features, pure=False)
    if est.get_params().get("verbose"):
        progress(futures)
    return sum(client.gather(futures))


def _extract_part(paths, features):
    # the frozen prefix on this worker, written through to the shared cache_dir
    features.fit().transform(paths)
    return len(paths)


def predict_partitions(est, collection, method="predict"):
    """``est.<method>`` over a Dask collection of image paths, one partition per task.

    Parameters
    ----------
    est : fitted estimator
        ``TransferClassifier``, ``TransferRegressor`` or ``PretrainedFeatures``.
    collection : dask.bag.Bag, dask.array.Array or dask.dataframe.Series
        Image paths: a bag, a 1-d array (its blocks), or a column of a Dask
        DataFrame (its partitions; needs pandas and pyarrow, the ``dask``
        extra installs them).
    method : {"predict", "predict_proba", "transform"}, default="predict"

    Returns
    -------
    dask.bag.Bag, dask.array.Array, dask.dataframe.Series or dask.dataframe.DataFrame
        Lazy: a bag of one result per image; an array whose rows follow the
        input's blocks; for a column, a Series (one value per image) or a
        DataFrame (one column per class, output or feature), on the
        column's own index, so it joins the frame the paths came from.
    """
    import dask
    import dask.array as da
    import dask.bag as db

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    getattr(est, method)  # a missing method is said now, not on a worker
    if isinstance(collection, db.Bag):
        return collection.map_partitions(_apply_to_partition, _shipped(est), method)
    if isinstance(collection, da.Array) and collection.ndim == 1:
        width = _width(est, method)
        est = _shipped(est)
        if width is None:  # one value per image: a label or a number
            return collection.map_blocks(_apply_to_block, est, method, dtype=object)
        return collection.map_blocks(_apply_to_block, est, method, dtype=float,
                                     chunks=(collection.chunks[0], (width,)), new_axis=1)
    series = _dataframe_series()
    if series is not None and isinstance(collection, series):
        shipped = _shipped(est)
        if shipped is est:  # local schedulers: Dask DataFrames hash every argument, and a
            shipped = dask.delayed(est, pure=False)  # fitted network has no stable hash
        return collection.map_partitions(_apply_to_series, shipped, method,
                                         meta=_meta(est, method))
    raise TypeError(f"predict_partitions takes a dask.bag, a 1-d dask.array or a "
                    f"dask.dataframe column of image paths; got {type(collection).__name__}.")


def _dataframe_series():
    """``dask.dataframe.Series``, or None where dask.dataframe cannot be imported."""
    try:
        import dask.dataframe as dd
    except ImportError:  # pandas or pyarrow missing: no Dask DataFrame can exist either
        return None
    return dd.Series


def _columns(est, method):
    """Names of the columns of ``est.<method>``'s output, or None for one value per image."""
    width = _width(est, method)
    if width is None:
        return None
    if method == "transform":
        names = est.get_feature_names_out()
    else:
        names = getattr(est, "classes_", None)
        if names is None:
            names = getattr(est, "target_names_", None)
        if names is None:
            names = range(width)
    return [str(n) for n in names]


def _dtype(est, method):
    """The dtype of ``est.<method>``'s values."""
    if method == "predict" and getattr(est, "multilabel_", False):
        return np.int64  # the indicator matrix
    classes = getattr(est, "classes_", None)
    if method == "predict" and classes is not None:
        return np.asarray(classes).dtype
    return np.float64


def _meta(est, method):
    """An empty pandas object of the type and columns ``_apply_to_series`` returns."""
    import pandas as pd

    columns, dtype = _columns(est, method), _dtype(est, method)
    if columns is not None:
        return pd.DataFrame({c: pd.Series(dtype=dtype) for c in columns})
    return pd.Series(dtype=dtype)


def _shipped(est):
    """``est`` sent once to every worker of the current client (a future standing for it),
    rather than copied into each task of the graph; ``est`` itself without a client."""
    try:
        from dask.distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no distributed client: the local schedulers
        return est
    return client.scatter(est, broadcast=True)


def _width(est, method):
    """Columns of ``est.<method>``'s output, or None for one value per image."""
    if method == "transform":
        return est.n_features_out_
    if method == "predict_proba":
        return est.n_classes_
    target = est.target_config()
    if target.get("multilabel"):  # the indicator matrix
        return est.n_classes_
    return est.n_outputs_ if target.get("target_ndim") == 2 else None


def _apply_to_partition(paths, est, method):
    paths = list(paths)
    return list(getattr(est, method)(paths)) if paths else []


def _apply_to_series(paths, est, method):
    import pandas as pd

    columns, dtype = _columns(est, method), _dtype(est, method)
    if not len(paths):
        return _meta(est, method).set_axis(paths.index[:0])
    out = np.asarray(getattr(est, method)([str(p) for p in paths])).astype(dtype)
    if columns is None:
        return pd.Series(out, index=paths.index)
    return pd.DataFrame(out, index=paths.index, columns=columns)


def _apply_to_block(block, est, method):
    return getattr(est, method)([str(p) for p in block]) if len(block) else block
