"""Progress you can follow: a bar on a terminal, plain lines in a log.

On a terminal, :func:`progress` is a tqdm bar.  When stderr is not a
terminal (a log file, a pipe, CI), it is a :class:`PlainProgress`, which
writes a plain line now and then, without escape codes.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def _interactive(stream):
    return hasattr(stream, "isatty") and stream.isatty()


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


class PlainProgress:
    """tqdm's interface, as plain lines: after the first step, every ``every`` seconds, at the end.

    Parameters
    ----------
    total : int
    desc : str
    unit : str, default="it"
    every : float, default=10
        Seconds between lines.
    file : file object, default=sys.stderr
    """

    def __init__(self, total, desc="", unit="it", every=10.0, file=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.file = file or sys.stderr
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.perf_counter()
        self._closed = False

    def _line(self):
        elapsed = time.perf_counter() - self.start
        rest = ""
        if 0 < self.n < self.total:
            rest = f", about {_duration(elapsed / self.n * (self.total - self.n))} left"
        extra = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}, {_duration(elapsed)}{rest}{extra}",
              file=self.file, flush=True)

    def update(self, n=1):
        """Advance by ``n``; print a line when ``every`` seconds have passed."""
        first = self.n == 0
        self.n += n
        now = time.perf_counter()
        if (first or now - self.last >= self.every) and self.n < self.total:
            self.last = now
            self._line()

    def set_description(self, desc):
        """Change the description (e.g. the phase)."""
        self.desc = desc

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

    def set_description(self, desc):
        pass

    def set_postfix_str(self, text):
        pass

    def close(self):
        pass


def progress(total, desc, unit="it", enabled=True, leave=False, file=None):
    """A progress display for ``total`` steps: a bar on a terminal, else plain lines.

    Parameters
    ----------
    total : int
    desc : str
    unit : str, default="it"
    enabled : bool, default=True
        False: a display that shows nothing.
    leave : bool, default=False
        Keep the finished bar on the terminal.
    file : file object, default=sys.stderr

    Returns
    -------
    object
        With tqdm's ``update``, ``set_description``, ``set_postfix_str`` and
        ``close``.
    """
    if not enabled or not total:
        return _Silent()
    file = file or sys.stderr
    if _interactive(file):
        return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=file,
                    dynamic_ncols=True)
    return PlainProgress(total, desc, unit=unit, file=file)
