"""Targets as people write them, and as a fitted model knows them: class labels, tags.

Labels become the positions of a model's classes (:func:`label_indices`:
its one mapping, for fit, explain and the report).  A CSV column of
``;``-separated tags (an empty cell: no tags) becomes a 0/1 indicator
DataFrame whose columns name the tags; rare tags can be dropped; and an
indicator given to a fitted model (a DataFrame named by tags, or an array in
the model's order) is aligned to the model's ``classes_``.
"""

from __future__ import annotations

import numpy as np

from ..utils.text import listed
from ..utils.user_warnings import warn_user

#: What separates the tags of one image in a multi-label column.
TAG_SEPARATOR = ";"

#: The command line's default for the fewest images a tag needs to be kept: the
#: folds of ``--cv 5`` (as scikit-learn's StratifiedKFold asks of a class).
MIN_TAG_COUNT = 5


def label_indices(labels, classes, where="y"):
    """The position of each label among ``classes``.

    Parameters
    ----------
    labels : array-like of shape (n,)
    classes : array-like
        A fitted model's ``classes_``.
    where : str, default="y"
        What ``labels`` are called in messages.

    Returns
    -------
    ndarray of shape (n,), dtype int64

    Raises
    ------
    ValueError
        Naming every label that is not a class, and the classes.
    """
    classes = np.asarray(classes).tolist()
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray(labels).tolist()
    unknown = sorted({v for v in labels if v not in index}, key=str)
    if unknown:
        raise ValueError(f"{where} has labels the model does not know: "
                         f"{listed(unknown, show=repr)}; its classes are "
                         f"{listed(classes, show=repr)}.")
    return np.array([index[v] for v in labels], dtype=np.int64)


def split_tags(cells):
    """A column of ``;``-separated tags → a 0/1 indicator DataFrame, one column per tag.

    Parameters
    ----------
    cells : list of str
        One cell per image; an empty cell means the image has no tag.

    Returns
    -------
    pandas.DataFrame
        Columns sorted by tag name, values 0 or 1.
    """
    import pandas as pd
    from sklearn.preprocessing import MultiLabelBinarizer

    tags = [[t.strip() for t in v.split(TAG_SEPARATOR) if t.strip()] for v in cells]
    binarizer = MultiLabelBinarizer()
    indicator = binarizer.fit_transform(tags)
    return pd.DataFrame(indicator, columns=[str(c) for c in binarizer.classes_])


def drop_rare_tags(indicator, min_count):
    """The tag columns seen on at least ``min_count`` images, and what was dropped.

    Parameters
    ----------
    indicator : pandas.DataFrame
        0/1 columns named by tag.
    min_count : int

    Returns
    -------
    kept : pandas.DataFrame
    dropped : dict
        ``{tag: images}`` of the dropped tags, rarest first.
    """
    counts = indicator.sum(axis=0)
    rare = counts[counts < min_count].sort_values(kind="stable")
    return indicator.drop(columns=list(rare.index)), {str(t): int(n) for t, n in rare.items()}


def align_tags(y, classes, where="y"):
    """A multi-label ``y`` as the 0/1 matrix of a model whose tags are ``classes``.

    Parameters
    ----------
    y : pandas.DataFrame or array-like of shape (n_samples, n_tags)
        A DataFrame is matched by column name: its tags the model does not
        know are left out (with one warning), the model's tags it lacks are
        0.  An array must have the model's columns, in its order.
    classes : array-like
        The model's tags (``classes_``).
    where : str, default="y"
        What ``y`` is called in messages.

    Returns
    -------
    ndarray of shape (n_samples, len(classes)), dtype int64

    Raises
    ------
    ValueError
        When an array has the wrong shape or values other than 0 and 1.
    """
    names = [str(c) for c in classes]
    if hasattr(y, "columns"):
        columns = [str(c) for c in y.columns]
        unknown = [c for c in columns if c not in names]
        if unknown:
            warn_user(f"{where} has {len(unknown)} tag(s) the model does not know, left out: "
                      f"{listed(unknown, show=repr)}; the model's tags are "
                      f"{listed(names, show=repr)}.")
        frame = y.set_axis(columns, axis=1)
        y = np.stack([frame[n].to_numpy() if n in columns else np.zeros(len(frame))
                      for n in names], axis=1) if names else np.zeros((len(frame), 0))
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[1] != len(names) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{where} must be a 0/1 indicator matrix of shape (n_samples, "
                         f"{len(names)}), as the model was fitted on (or a DataFrame whose "
                         f"columns name its tags); got shape {y.shape}.")
    return y.astype(np.int64)
