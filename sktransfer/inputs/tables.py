"""Images listed in a CSV file with their targets, and which estimator those targets need.

The command line's other layout beside ``DIR/<class>/<image>``: one column
of image paths (relative to the CSV file's folder, or absolute) and one or
more target columns.  :func:`read_table` reads it and guesses the task from
the targets -- numbers that are not all whole train a regressor, whole
numbers and text a classifier, ``;``-separated tags (or several 0/1
columns) a multi-label classifier -- and says why, so that the command line
can print it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils.text import listed
from .targets import TAG_SEPARATOR, split_tags


class TableError(ValueError):
    """A CSV file of images and targets that cannot be used as it is; the message says why."""


@dataclass
class Table:
    """Images and targets read from a CSV file.

    Attributes
    ----------
    paths : list of str
        The image files, resolved against the CSV file's folder.
    y : ndarray or pandas.DataFrame
        Labels ``(n,)``; a 0/1 indicator DataFrame whose columns name the tags;
        or numbers, a DataFrame whose columns name the targets.
    task : {"classification", "regression", "multilabel"}
    why : str
        Why this task: what the target columns hold, or that it was asked for.
    targets : list of str
        The target columns.
    """

    paths: list
    y: object
    task: str
    why: str
    targets: list


def _numbers(values):
    """``values`` (text) as floats, or None when one of them is not a number."""
    try:
        return np.array([float(v) for v in values])
    except ValueError:
        return None


def guess_task(columns):
    """The task the target columns (name -> list of text cells) call for, and why.

    Returns
    -------
    tuple of (str, str)
    """
    names = list(columns)
    if len(names) == 1 and any(TAG_SEPARATOR in v for v in columns[names[0]]):
        return "multilabel", f"column {names[0]!r} holds {TAG_SEPARATOR!r}-separated tags"
    numbers = {n: _numbers(columns[n]) for n in names}
    text = [n for n in names if numbers[n] is None]
    if text:
        if len(names) == 1:
            return "classification", f"column {names[0]!r} holds text labels"
        raise TableError(
            f"target columns {', '.join(map(repr, text))} hold text; several target columns "
            "train one regressor (numbers) or one multi-label classifier (0/1 columns). Pass "
            "one --target for a classifier, or --task.")
    if len(names) > 1 and all(set(numbers[n]) <= {0.0, 1.0} for n in names):
        return "multilabel", f"columns {', '.join(map(repr, names))} hold only 0 and 1"
    from sklearn.utils.multiclass import type_of_target  # not at import: the CLI starts fast

    fractional = [n for n in names if type_of_target(numbers[n]) == "continuous"]
    if fractional:
        return "regression", f"column {fractional[0]!r} holds numbers that are not whole"
    if len(names) == 1:
        return whole_numbers(names[0], numbers[names[0]])
    return "regression", f"columns {', '.join(map(repr, names))} hold numbers"


#: Whole numbers are class codes when they repeat like classes: at most this many
#: distinct values, ...
MAX_CODES = 30
#: ... each seen this many times on median (a class needs images to learn from) ...
MIN_MEDIAN_COUNT = 5
#: ... and small: codes are numbered from 0 or 1, quantities (years, kJ, IDs) are not.
MAX_CODE = 1000


def whole_numbers(name, values):
    """The task a column of whole numbers calls for, and why (see ``MAX_CODES``).

    Codes 0-9 repeat like classes; years, energies in kJ, counts of many values
    and IDs (almost every row its own value) are quantities: a regression.

    Returns
    -------
    tuple of (str, str)
    """
    distinct, counts = np.unique(values, return_counts=True)
    median, largest = float(np.median(counts)), np.abs(distinct).max()
    if len(distinct) <= 2:
        return "classification", f"column {name!r} holds {len(distinct)} whole numbers (codes)"
    if len(distinct) > MAX_CODES:
        why = f"{len(distinct)} distinct values in {len(values)} rows, more than {MAX_CODES}"
    elif largest >= MAX_CODE:
        why = f"values up to {largest:g}, not codes below {MAX_CODE}"
    elif median < MIN_MEDIAN_COUNT:
        why = (f"each of its {len(distinct)} values seen {median:g} times on median, fewer "
               f"than {MIN_MEDIAN_COUNT}")
    else:
        return "classification", (f"column {name!r} holds {len(distinct)} whole numbers, each "
                                  f"seen {median:g} times on median (class codes)")
    return "regression", (f"column {name!r} holds whole numbers that are quantities, not "
                          f"codes: {why} (--task classification to treat them as classes)")


def read_table(path, path_column=None, targets=None, task=None):
    """Read a CSV file of image paths and targets.

    Parameters
    ----------
    path : str or os.PathLike
    path_column : str, optional
        The column of image paths; default: the first.
    targets : list of str, optional
        The target columns; default: the only other column.
    task : {"classification", "regression", "multilabel"}, optional
        Instead of the guess.

    Returns
    -------
    Table

    Raises
    ------
    TableError
        Naming the file, the column or the row.
    ImportError
        When pandas is missing.
    """
    path = Path(os.fspath(path))
    frame, paths, path_column = read_paths(path, path_column)
    columns = list(frame.columns)
    others = [c for c in columns if c != path_column]
    if not targets and len(others) != 1:
        raise TableError(f"{path} has {len(others)} columns besides {path_column!r} "
                         f"({others}); name the target(s) with --target.")
    targets = list(targets or others)
    missing = [t for t in targets if t not in columns]
    if missing:
        raise TableError(f"{path} has no column {missing[0]!r}; its columns are {columns}.")
    cells = {t: frame[t].str.strip().tolist() for t in targets}
    if task is None:
        task, why = guess_task(cells)
    else:
        why = f"--task {task}"
    if not (task == "multilabel" and len(targets) == 1):  # in a tag column: no tags
        for column in targets:
            _refuse_empty(frame, column, path, hint=len(targets) == 1)
    return Table(paths, _targets(cells, task, path), task, why, targets)


def read_paths(path, path_column=None):
    """The rows of a CSV file of images, and the image paths they name.

    Parameters
    ----------
    path : str or os.PathLike
    path_column : str, optional
        The column of image paths (relative to the file's folder, or
        absolute); default: the first.

    Returns
    -------
    frame : pandas.DataFrame
        Every column, as the text written (no value read as missing).
    paths : list of str
        The image files, resolved against the CSV file's folder.
    path_column : str

    Raises
    ------
    TableError
        Naming the file, the column or the line.
    ImportError
        When pandas is missing.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("reading images from a CSV file needs pandas: pip install pandas") \
            from None
    path = Path(os.fspath(path))
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TableError(f"{path} is not a readable CSV file: {exc}") from None
    columns = list(frame.columns)
    path_column = path_column or columns[0]
    if path_column not in columns:
        raise TableError(f"{path} has no column {path_column!r}; its columns are {columns}.")
    if not len(frame):
        raise TableError(f"{path} lists no images.")
    _refuse_empty(frame, path_column, path)
    paths = [str(p if Path(p).is_absolute() else path.parent / p)
             for p in frame[path_column].str.strip()]
    return frame, paths, path_column


def _refuse_empty(frame, column, path, hint=False):
    """A TableError naming the lines where ``column`` is empty (``hint``: the tags' way)."""
    empty = np.flatnonzero(frame[column].str.strip() == "")
    if len(empty):
        rows = listed(empty + 2)  # line 1 is the header
        tags = (f" (if it lists {TAG_SEPARATOR!r}-separated tags, --task multilabel reads an "
                "empty cell as no tags)" if hint else "")
        raise TableError(f"{path}: column {column!r} is empty on line(s) {rows}; fill them "
                         f"or drop those rows{tags}.")


def _targets(cells, task, path):
    import pandas as pd

    names = list(cells)
    if task == "regression":
        numbers = {n: _numbers(cells[n]) for n in names}
        text = [n for n in names if numbers[n] is None]
        if text:
            raise TableError(f"{path}: column {text[0]!r} holds text; a regression needs "
                             "numbers.")
        return pd.DataFrame(numbers, columns=names)
    if task == "multilabel":
        if len(names) == 1:
            return split_tags(cells[names[0]])
        numbers = {n: _numbers(cells[n]) for n in names}
        if any(numbers[n] is None or not set(numbers[n]) <= {0.0, 1.0} for n in names):
            raise TableError(f"{path}: multi-label target columns must hold 0 and 1 only (or "
                             f"give one column of {TAG_SEPARATOR!r}-separated tags).")
        return pd.DataFrame({n: numbers[n].astype(int) for n in names}, columns=names)
    if len(names) != 1:
        raise TableError("a classifier takes one --target column (several columns: "
                         "--task regression or multilabel).")
    values = cells[names[0]]
    numbers = _numbers(values)
    if numbers is not None and all(v.is_integer() for v in numbers):
        return numbers.astype(np.int64)  # class codes, kept as numbers
    return np.asarray(values, dtype=object).astype(str)
