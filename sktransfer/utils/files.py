"""Writing a file all or nothing: the one way every file of sktransfer is written.

:func:`atomic_write` opens a temporary file in the target's folder; when the
block ends without an error, the file is flushed, synced to disk and renamed
over the target (atomic on POSIX and Windows).  On any failure, Ctrl-C
included, the temporary file is removed and a previous file of the target's
name is left exactly as it was, so a reader sees the old file or the
complete new one, never a truncated one that parses.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

#: Temporary files start with this (a folder's listing can tell them apart,
#: and the activation cache prunes those a killed process left behind).
TMP_PREFIX = ".tmp-"


class WriteError(OSError):
    """A file could not be written; a previous file of that name is untouched.

    The message says what was being written, where, and why in words (the
    disk is full, the folder is read-only or missing); ``errno`` and
    ``filename`` are the cause's, and the cause itself is ``__cause__``.
    """

    def __init__(self, message, code=None, path=None):
        super().__init__(code, message, None if path is None else os.fspath(path))
        self.message = message

    def __str__(self):
        return self.message

    def __reduce__(self):  # OSError's own would pass its arguments in another order
        return type(self), (self.message, self.errno, self.filename)


def _free_bytes(folder):
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder).free
    return None


def _new_file_mode():
    """The mode :func:`open` gives a new file (0o666 less the umask), read without changing
    the umask: ``os.umask`` is process-wide, and another thread may be creating files."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as fh:
            return 0o666 & ~int(next(line for line in fh if line.startswith("Umask:")).split()[1], 8)
    return 0o644


def _reason(exc, folder):
    """Why a write failed, in words a user can act on."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        free = _free_bytes(folder)
        return ("the disk is full"
                + (f" ({free} bytes free in {folder})" if free is not None else ""))
    if code == errno.EFBIG:
        return "the file is larger than this process may write (its file size limit)"
    if code == errno.EROFS:
        return f"the folder {folder} is on a read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return f"no permission to write in the folder {folder}"
    if code == errno.ENOENT and not folder.is_dir():
        return f"the folder {folder} does not exist (create it first)"
    if code == errno.ENOTDIR:
        return f"{folder} is not a folder"
    if code == errno.EISDIR:
        return "a folder of that name is in the way"
    return getattr(exc, "strerror", None) or str(exc)


def _about_this_write(exc, folder, target):
    """Whether ``exc`` failed this write: writing to the open file (no file name), or
    creating or renaming the temporary file -- not an error of the caller's own code."""
    if isinstance(exc, WriteError):  # an inner write, which names its own file
        return False
    if exc.filename is None:
        return True
    name = os.path.abspath(os.fspath(exc.filename))
    return (name == os.path.abspath(target)
            or (os.path.dirname(name) == os.path.abspath(folder)
                and os.path.basename(name).startswith(TMP_PREFIX)))


@contextlib.contextmanager
def atomic_write(path, what="file", mode="wb", encoding=None, newline=None, fsync=True):
    """Open a temporary file for writing ``path``; it takes the target's name only when complete.

    Parameters
    ----------
    path : str or os.PathLike
        The target.  Its folder must exist.
    what : str, default="file"
        What is being written, for the error message ("the model",
        "predictions").
    mode : {"wb", "w"}, default="wb"
    encoding, newline : str, optional
        For text mode, as :func:`open` takes them.
    fsync : bool, default=True
        Sync the data to disk before the rename, so that a crash of the
        machine cannot leave an empty file under the target's name.  The
        activation cache turns it off: its entries are checksummed and
        recomputed when damaged.

    Yields
    ------
    file object
        Write to it; do not close it.

    Raises
    ------
    WriteError
        When the file cannot be created, written or renamed; the message
        names ``what``, ``path`` and the reason.
    """
    target = Path(os.fspath(path))
    folder = target.parent
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TMP_PREFIX}{target.name[:64]}-")
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as fh:
            yield fh
            fh.flush()
            # mkstemp's 0o600 would hide a model file from the user's group
            with contextlib.suppress(OSError):  # file systems without modes
                os.chmod(fh.fileno(), _new_file_mode())
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        if not _about_this_write(exc, folder, target):
            raise  # the caller's own error (an input file, say), not the write's
        raise WriteError(f"could not write {what} to {target}: {_reason(exc, folder)}",
                         exc.errno, target) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_bytes(path, data, what="file", fsync=True):
    """Write ``data`` to ``path`` all or nothing (see :func:`atomic_write`)."""
    with atomic_write(path, what, fsync=fsync) as fh:
        fh.write(data)


def write_text(path, text, what="file"):
    """Write ``text`` (UTF-8) to ``path`` all or nothing (see :func:`atomic_write`)."""
    with atomic_write(path, what, mode="w", encoding="utf-8") as fh:
        fh.write(text)


def copy_file(source, path, what="file"):
    """Copy ``source`` to ``path`` all or nothing (see :func:`atomic_write`)."""
    with open(source, "rb") as src, atomic_write(path, what) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def sha256_file(path):
    """The sha256 hex digest of a file's bytes, read a megabyte at a time.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
