"""Progress you can follow: a bar on a terminal, plain lines in a log.

On a terminal, :func:`progress` is a tqdm bar.  When stderr is not a
terminal (a log file, a pipe, CI), it is a :class:`PlainProgress`, which
writes a plain line now and then, without escape codes.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

from tqdm.auto import tqdm


def _interactive(stream):
    return hasattr(stream, "isatty") and stream.isatty()


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


class PlainProgress:
    """tqdm's interface, as plain lines: after the first step, every ``every`` seconds, at the end.

    The time left is estimated from the steps after the first one when the
    first carries a warm-up (loading, compiling, the first batch's allocations),
    else from the start.

    Parameters
    ----------
    total : int
    desc : str
    unit : str, default="it"
    every : float, default=10
        Seconds between lines.
    file : file object, default=sys.stderr
    start : float, optional
        When the work began (``time.perf_counter()``); default: now.
    warmup : bool, default=True
        Whether the first step is slower than the others: then the first
        line gives no time left, and later ones the pace since the first step.
    """

    def __init__(self, total, desc="", unit="it", every=10.0, file=None, start=None,
                 warmup=True):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.file = file or sys.stderr
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.perf_counter() if start is None else start
        self.warmup = warmup
        self.first = None  # (time, count) after the first step
        self._closed = False

    def _left(self, now):
        """Seconds left at the pace measured so far, or None while it is unknown."""
        if not (self.total and 0 < self.n < self.total):
            return None
        if not self.warmup:
            return (now - self.start) / self.n * (self.total - self.n)
        since, counted = self.first
        if self.n == counted:
            return None
        return (now - since) / (self.n - counted) * (self.total - self.n)

    def _line(self):
        now = time.perf_counter()
        left = self._left(now)
        rest = "" if left is None else f", about {_duration(left)} left"
        extra = f" ({self.postfix})" if self.postfix else ""
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        print(f"{self.desc}: {count} {self.unit}, {_duration(now - self.start)}{rest}{extra}",
              file=self.file, flush=True)

    def update(self, n=1):
        """Advance by ``n``; print a line after the first step, then when ``every`` seconds
        have passed (not at the last step: :meth:`close` prints that one)."""
        if not n:
            return
        self.n += n
        now = time.perf_counter()
        first = self.first is None
        if first:
            self.first = (now, self.n)
        if (first or now - self.last >= self.every) and self.n < (self.total or self.n + 1):
            self.last = now
            self._line()

    def set_postfix_str(self, text):
        """Text shown after the counts (e.g. the loss)."""
        self.postfix = text

    def close(self):
        """Print the final line."""
        if not self._closed:
            self._closed = True
            self._line()


class _Silent:
    n = 0

    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass

    def close(self):
        pass


def progress(total, desc, unit="it", enabled=True, leave=False, file=None, start=None,
             warmup=True):
    """A progress display for ``total`` steps: a bar on a terminal, else plain lines.

    Parameters
    ----------
    total : int or None
        None: unknown (counts and elapsed time only).
    desc : str
    unit : str, default="it"
    enabled : bool, default=True
        False: a display that shows nothing.
    leave : bool, default=False
        Keep the finished bar on the terminal.
    file : file object, default=sys.stderr
    start : float, optional
        When the work began (``time.perf_counter()``), if before this call.
    warmup : bool, default=True
        Whether the first step is slower than the others (see
        :class:`PlainProgress`).

    Returns
    -------
    object
        With tqdm's ``update``, ``set_postfix_str`` and
        ``close``.
    """
    if not enabled or total == 0:
        return _Silent()
    file = file or sys.stderr
    if _interactive(file):
        bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=file,
                   dynamic_ncols=True)
        if start is not None:  # tqdm keeps wall-clock time
            bar.start_t = bar.last_print_t = bar._time() - (time.perf_counter() - start)
        return bar
    return PlainProgress(total, desc, unit=unit, file=file, start=start, warmup=warmup)


def _n_fits(search):
    """Fits a scikit-learn search will run (candidates x splits), without its refit."""
    from sklearn.model_selection import ParameterGrid, check_cv

    splits = check_cv(search.cv, classifier=True).get_n_splits()
    if hasattr(search, "param_grid"):
        return len(ParameterGrid(search.param_grid)) * splits
    if hasattr(search, "n_iter"):
        return search.n_iter * splits
    raise TypeError(f"cannot count the fits of a {type(search).__name__}; pass total=N")


@contextlib.contextmanager
def search_progress(total=None, desc="fits"):
    """Progress across the fits of a search or cross-validation, with the time left.

    Counts the fits that joblib completes inside the ``with`` block:
    ``GridSearchCV``, ``RandomizedSearchCV``, ``cross_val_score``,
    ``cross_validate``, with any joblib backend (Dask too: completions are
    counted where the search runs).  A bar on a terminal, plain lines in a
    log.

    joblib offers no hook for completed tasks but ``Parallel.print_progress``,
    so that method is replaced while at least one ``search_progress`` block
    is open, and put back when the last one closes (reference-counted, under
    a lock, from any thread).  Blocks open at the same time in several
    threads each count the fits of every search running then.

    Parameters
    ----------
    total : int, GridSearchCV, RandomizedSearchCV or None, default=None
        How many fits to expect (a search object: its candidates times its
        splits), for the time left from the first fit on; None: joblib's
        count when it knows it, else fits done and time elapsed.
    desc : str, default="fits"

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sktransfer import TransferClassifier, search_progress
    >>> search = GridSearchCV(TransferClassifier(), {"lr": [1e-3, 3e-4]}, cv=3)
    >>> with search_progress(search):  # doctest: +SKIP
    ...     search.fit(paths, labels)
    """
    if total is not None and not isinstance(total, int):
        total = _n_fits(total)
    display = _FitCount(total, desc)
    _watch(display)
    try:
        yield
    finally:
        _unwatch(display)
        display.close()


class _FitCount:
    """One ``search_progress`` display: the fits joblib completed while it was open."""

    def __init__(self, total, desc):
        self.total, self.desc = total, desc
        self.lock, self.bar, self.done = threading.Lock(), None, {}
        self.start = time.perf_counter()  # the fits began when the block opened

    def saw(self, parallel):
        with self.lock:
            if self.bar is None:  # made at the first completion, when joblib knows the count
                self.bar = progress(self.total or getattr(parallel, "n_tasks", None), self.desc,
                                    unit="fits", leave=True, start=self.start, warmup=False)
            done = parallel.n_completed_tasks
            before = self.done.get(id(parallel), 0)
            if done > before:
                self.bar.update(done - before)
                self.done[id(parallel)] = done

    def close(self):
        with self.lock:
            if self.bar is not None:
                self.bar.close()


_WATCHING = []  # the open displays
_WATCH_LOCK = threading.Lock()
_ORIGINAL = []  # joblib's own print_progress while it is replaced


def _print_progress(parallel):
    for display in list(_WATCHING):
        display.saw(parallel)
    _ORIGINAL[0](parallel)


def _watch(display):
    from joblib import Parallel

    with _WATCH_LOCK:
        if not _WATCHING:
            _ORIGINAL[:] = [Parallel.print_progress]
            Parallel.print_progress = _print_progress
        _WATCHING.append(display)


def _unwatch(display):
    from joblib import Parallel

    with _WATCH_LOCK:
        _WATCHING.remove(display)
        if not _WATCHING:
            Parallel.print_progress = _ORIGINAL.pop()
