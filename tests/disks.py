"""Real unlucky disks for the tests: a small tmpfs (full, or remounted read-only)."""

import os
import subprocess
from contextlib import contextmanager


def mount_tmpfs(path, size):
    """Mount a tmpfs of ``size`` at ``path``; whether it could."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


@contextmanager
def tmpfs(path, size):
    """Mount a tmpfs of ``size`` at ``path``; yields whether it could (set
    SKTRANSFER_TEST_NO_MOUNT=1 to exercise the fallbacks)."""
    if (os.geteuid() != 0 or os.environ.get("SKTRANSFER_TEST_NO_MOUNT")
            or not mount_tmpfs(path, size)):
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder):
    """Fill the file system of ``folder`` to the last byte (a file named ``filler``)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 16, 1):  # then the last partial page, byte by byte
            try:
                while True:
                    os.write(fd, bytes(chunk))
            except OSError:
                pass
    finally:
        os.close(fd)


def remount_read_only(folder):
    """Make a mounted tmpfs read-only."""
    assert subprocess.run(["mount", "-o", "remount,ro", str(folder)]).returncode == 0
