"""Stores for activations: keys in, tensors out -- nothing here knows of models.

An entry is addressed by two keys: the *prefix key* (a fingerprint of the
frozen network and its preprocessing, made by :mod:`sktransfer.extraction.extractor`)
and the *content key* of one image (a digest of its file bytes or pixels).
Clones made by ``GridSearchCV``, every fold and every epoch therefore hit the
same entries.

Entries live in a bounded in-memory store (least recently used evicted first)
shared by every estimator of the process, and optionally in ``cache_dir`` on
disk: one checksummed file per entry, written atomically, so that several
processes (and later runs) share them and a damaged file is detected and
recomputed, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout

from ..utils.sizes import parse_bytes
from ..utils.files import TMP_PREFIX, write_bytes


class MemoryStore:
    """A bounded, thread-safe LRU store of tensors.

    Parameters
    ----------
    max_bytes : int or None
        Entries are evicted, least recently used first, to stay under this;
        None: ``SKTRANSFER_CACHE_BYTES`` (e.g. ``"2G"``; default 2 GiB), read
        at each store, so setting it takes effect at once.
    """

    def __init__(self, max_bytes=None):
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._entries = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._entries)

    @property
    def nbytes(self):
        """Bytes held now."""
        return self._bytes

    def get(self, key):
        """The tensor stored under ``key``, or ``None``."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def limit(self):
        """The bound in force: ``max_bytes``, or ``SKTRANSFER_CACHE_BYTES``'s value."""
        if self.max_bytes is not None:
            return self.max_bytes
        text = os.environ.get("SKTRANSFER_CACHE_BYTES", "2G")
        try:
            return parse_bytes(text)
        except ValueError as exc:
            raise ValueError(f"SKTRANSFER_CACHE_BYTES: {exc}") from None

    def put(self, key, value):
        """Store ``value``; evict old entries beyond the bound (:meth:`limit`)."""
        size = value.element_size() * value.nelement()
        limit = self.limit()
        if size > limit:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.element_size() * old.nelement()
            self._entries[key] = value
            self._bytes += size
            while self._bytes > limit:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.element_size() * evicted.nelement()

    def clear(self):
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


#: The process-wide store, bounded by the ``SKTRANSFER_CACHE_BYTES`` environment
#: variable (read when used; default 2 GiB), or by ``MEMORY.max_bytes = ...``.
MEMORY = MemoryStore()

_MAGIC = b"SKTA1\n"
# The magic, the checksum, and room for the .npy header of an entry.
_ENTRY_OVERHEAD = len(_MAGIC) + 32 + 4096
# Temporary files older than this were left by a process that died mid-write.
_STALE_SECONDS = 3600
#: How long a process waits for another one computing the same entries, in
#: seconds, before it computes them itself (``SKTRANSFER_CACHE_LOCK_TIMEOUT``,
#: read when used).
LOCK_TIMEOUT = 600.0


def lock_timeout():
    """Seconds to wait for another process's claim (``SKTRANSFER_CACHE_LOCK_TIMEOUT``)."""
    return float(os.environ.get("SKTRANSFER_CACHE_LOCK_TIMEOUT", LOCK_TIMEOUT))


def _env_max_bytes():
    text = os.environ.get("SKTRANSFER_CACHE_DIR_BYTES")
    return parse_bytes(text) if text else None


class DiskStore:
    """Entries as checksummed ``.npy`` files under ``root/<fingerprint>/``.

    Writes go to a temporary file in the same folder and are renamed into
    place (atomic on POSIX and Windows), so readers never see a partial entry
    and concurrent writers of the same entry are harmless.  Reading an entry
    marks it used (its modification time), so pruning drops the least
    recently used entries first.

    Parameters
    ----------
    root : path
    max_bytes : int or None, default=None
        Keep the folder under this size, pruning the least recently used
        entries after writes; ``None``: ``SKTRANSFER_CACHE_DIR_BYTES`` (e.g.
        ``"5G"``), else unbounded.
    """

    def __init__(self, root, max_bytes=None):
        self.root = Path(os.fspath(root))
        self.max_bytes = _env_max_bytes() if max_bytes is None else int(max_bytes)
        self._size = None  # bytes under root, scanned on the first write when bounded

    def _path(self, prefix, key):
        return self.root / prefix / f"{key}.npy"

    def claim(self, prefix, keys):
        """Claim the entries of ``keys`` that no other process is computing, without waiting.

        One OS-level lock file per entry (``<key>.lock`` beside it): the
        kernel releases it when its holder dies, so a killed process never
        leaves a stale claim behind, and processes computing different
        images never wait for each other.

        Returns
        -------
        mine : set of str
            The keys claimed; release them with :meth:`release`.
        locks : list
            What :meth:`release` takes.
        """
        folder = self.root / prefix
        folder.mkdir(parents=True, exist_ok=True)
        mine, locks = set(), []
        try:
            for key in dict.fromkeys(keys):
                lock = FileLock(folder / f"{key}.lock", thread_local=False)
                try:
                    lock.acquire(blocking=False)
                except Timeout:
                    continue
                mine.add(key)
                locks.append(lock)
        except BaseException:
            self.release(locks)
            raise
        return mine, locks

    @staticmethod
    def release(locks):
        """Release what :meth:`claim` returned, and remove the lock files.

        Removing one while another process opens it is safe: whoever holds a
        claim checks for the entry before computing it, and the entry is
        written before its claim is released.
        """
        for lock in locks:
            lock.release()
            with contextlib.suppress(OSError):
                Path(lock.lock_file).unlink()

    def wait(self, prefix, keys, timeout):
        """Wait until no process holds a claim on ``keys`` (each at most ``timeout`` seconds).

        Returns
        -------
        bool
            ``False`` when a claim was held longer than ``timeout``.
        """
        for key in dict.fromkeys(keys):
            path = self.root / prefix / f"{key}.lock"
            if not path.exists():  # released (and removed) already
                continue
            lock = FileLock(path, thread_local=False)
            try:
                lock.acquire(timeout=timeout)
            except Timeout:
                return False
            self.release([lock])  # only waited for: whoever claims it next computes it
        return True

    def has(self, prefix, key):
        """Whether an entry file exists (not checked for damage)."""
        return self._path(prefix, key).is_file()

    def get(self, prefix, key, max_nbytes=None):
        """The stored tensor, or ``None`` if absent or damaged (with a warning).

        Parameters
        ----------
        prefix, key : str
        max_nbytes : int, optional
            The size of the tensor an entry of this prefix holds: a larger
            file is not read (it is not an entry of ours).
        """
        path = self._path(prefix, key)
        try:
            size = path.stat().st_size
            if max_nbytes is not None and size > max_nbytes + _ENTRY_OVERHEAD:
                warnings.warn(
                    f"Cache file {path} is {size} bytes, more than an entry of this network "
                    f"holds ({max_nbytes} bytes); ignored and recomputed.", RuntimeWarning,
                    stacklevel=3)
                return None
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        digest, payload = blob[len(_MAGIC):len(_MAGIC) + 32], blob[len(_MAGIC) + 32:]
        if (not blob.startswith(_MAGIC)
                or hashlib.blake2b(payload, digest_size=32).digest() != digest):
            warnings.warn(f"Damaged cache file {path} ignored; recomputing it.", RuntimeWarning,
                          stacklevel=3)
            return None
        with contextlib.suppress(OSError):  # a read-only cache is still read
            os.utime(path)
        return torch.from_numpy(np.load(io.BytesIO(payload), allow_pickle=False))

    def put(self, prefix, key, value, description=None):
        """Write one entry atomically (and ``meta.json`` describing a new prefix)."""
        folder = self.root / prefix
        folder.mkdir(parents=True, exist_ok=True)
        if description is not None and not (folder / "meta.json").exists():
            write_bytes(folder / "meta.json", json.dumps(description).encode(), fsync=False)
        buffer = io.BytesIO()
        np.save(buffer, value.numpy(), allow_pickle=False)
        payload = buffer.getvalue()
        blob = _MAGIC + hashlib.blake2b(payload, digest_size=32).digest() + payload
        # not synced: an entry is checksummed, and recomputed when a crash damaged it
        write_bytes(self._path(prefix, key), blob, "a cache entry", fsync=False)
        if self.max_bytes is not None:
            if self._size is None:
                self._size = sum(size for _, size, _ in self._entries())
            else:
                self._size += len(blob)
            if self._size > self.max_bytes:
                # Prune below the bound, so that pruning does not run at every write.
                self._size = self.prune(int(self.max_bytes * 0.9))["bytes"]


    def _entries(self):
        """``(path, size, last used)`` of every entry file."""
        out = []
        if not self.root.is_dir():
            return out
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.glob("*.npy"):
                if path.name.startswith(TMP_PREFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):  # pruned by another process
                    st = path.stat()
                    out.append((path, st.st_size, st.st_mtime))
        return out

    def info(self):
        """What the folder holds.

        Returns
        -------
        dict
            ``entries``, ``bytes``, and ``networks``: one row per prefix with
            its ``key``, ``description`` (the backbone, cut and preprocessing,
            when known), ``entries`` and ``bytes``, largest first.
        """
        rows = {}
        for path, size, _ in self._entries():
            row = rows.setdefault(path.parent.name, {"key": path.parent.name, "entries": 0,
                                                      "bytes": 0, "description": None})
            row["entries"] += 1
            row["bytes"] += size
        for key, row in rows.items():
            with contextlib.suppress(OSError, ValueError):
                row["description"] = json.loads((self.root / key / "meta.json").read_text())
        networks = sorted(rows.values(), key=lambda r: -r["bytes"])
        return {"entries": sum(r["entries"] for r in networks),
                "bytes": sum(r["bytes"] for r in networks), "networks": networks}

    def prune(self, max_bytes):
        """Delete the least recently used entries until the folder holds at most ``max_bytes``.

        Temporary files left by processes that died mid-write are deleted too.

        Returns
        -------
        dict
            ``removed`` entries and the ``bytes`` that remain.
        """
        now = time.time()
        for tmp in self.root.glob(f"*/{TMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _STALE_SECONDS:
                    tmp.unlink()
        entries = sorted(self._entries(), key=lambda e: e[2])  # oldest use first
        total = sum(size for _, size, _ in entries)
        removed = 0
        for path, size, _ in entries:
            if total <= max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
            total -= size
        return {"removed": removed, "bytes": total}

    def clear(self):
        """Delete every entry and every file this store made; other files stay.

        Returns
        -------
        int
            The number of entries deleted.
        """
        removed = self.prune(0)["removed"]
        for folder in (p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []:
            for name in ("meta.json", *(p.name for p in folder.glob("*.lock"))):
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
            for tmp in folder.glob(f"{TMP_PREFIX}*"):
                tmp.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: files that are not ours
                folder.rmdir()
        return removed


_WARNED = set()  # cache folders whose failure was reported in this process


def forget():
    """Empty the in-memory store and forget which folders' failures were reported
    (:func:`sktransfer.clear_caches`); files on disk stay."""
    MEMORY.clear()
    _WARNED.clear()


class ActivationStore:
    """The memory store and, optionally, a disk store, used together.

    Reads look in memory first, then on disk (copying a disk hit into
    memory, and an entry computed before ``cache_dir`` was given onto disk);
    writes go to disk first, so an interrupted write leaves neither.

    The disk is an optimisation: when it fails (full, read-only, vanished,
    no permission) this warns once and carries on in memory; a fit never
    fails because of its cache.

    Parameters
    ----------
    memory : bool
        Use the process-wide :data:`MEMORY`.
    cache_dir : path or None
        Also use a :class:`DiskStore` there.
    entry_nbytes : int or None
        The size of one entry's tensor, when known: larger files on disk are
        not read.
    description : dict or None
        What the entries are (backbone, cut, preprocessing), for ``sktransfer
        cache info``.
    """

    def __init__(self, memory=True, cache_dir=None, entry_nbytes=None, description=None):
        self.memory = MEMORY if memory else None
        self.disk = DiskStore(cache_dir) if cache_dir is not None else None
        self.entry_nbytes = entry_nbytes
        self.description = description

    @property
    def enabled(self):
        """Whether anything is stored at all."""
        return self.memory is not None or self.disk is not None

    def _disk_failed(self, exc, doing):
        # Once per folder and process: each later run retries the disk quietly.
        if self.disk.root not in _WARNED:
            _WARNED.add(self.disk.root)
            warnings.warn(
                f"The disk cache in {self.disk.root} failed while {doing} ({exc}); continuing "
                "without it (activations stay in memory). Check the folder, or pass another "
                "cache_dir.", RuntimeWarning, stacklevel=4)
        self.disk = None

    def get(self, prefix, key):
        """The entry, or ``None``."""
        hit = self.memory.get(f"{prefix}/{key}") if self.memory is not None else None
        if self.disk is None:
            return hit
        if hit is not None:
            if not self.disk.has(prefix, key):  # computed before cache_dir was given
                self._put_on_disk(prefix, key, hit)
            return hit
        try:
            hit = self.disk.get(prefix, key, self.entry_nbytes)
        except OSError as exc:
            self._disk_failed(exc, "reading an entry")
        if hit is not None and self.memory is not None:
            self.memory.put(f"{prefix}/{key}", hit)
        return hit

    def _put_on_disk(self, prefix, key, value):
        try:
            self.disk.put(prefix, key, value, self.description)
        except OSError as exc:
            self._disk_failed(exc, "writing an entry")

    def put(self, prefix, key, value):
        """Store one entry (disk first)."""
        if self.disk is not None:
            self._put_on_disk(prefix, key, value)
        if self.memory is not None:
            self.memory.put(f"{prefix}/{key}", value)

    def claim(self, prefix, keys):
        """Claim, without waiting, the entries of ``keys`` no other process is computing.

        Returns
        -------
        mine : set of str
            The keys this process should compute now (all of them without a
            disk store); the others are being computed elsewhere: :meth:`wait`
            for them, then read them.
        release : callable
            Releases the claims; call it once the claimed entries are stored.
        """
        disk = self.disk
        if disk is None:
            return set(keys), lambda: None
        try:
            mine, locks = disk.claim(prefix, keys)
        except OSError as exc:
            self._disk_failed(exc, "claiming entries")
            return set(keys), lambda: None
        return mine, lambda: disk.release(locks)

    def wait(self, prefix, keys):
        """Wait for other processes computing ``keys``; ``False`` when this gave up waiting.

        When one holds its claim longer than ``SKTRANSFER_CACHE_LOCK_TIMEOUT``
        (default :data:`LOCK_TIMEOUT`), this warns and returns: the caller
        computes those entries itself, at worst a second time (entries are
        written atomically).
        """
        if self.disk is None or not keys:
            return True
        timeout = lock_timeout()
        try:
            done = self.disk.wait(prefix, keys, timeout)
        except OSError as exc:
            self._disk_failed(exc, "waiting for another process")
            return False
        if not done:
            warnings.warn(
                f"Another process has held a cache claim in {self.disk.root / prefix} for over "
                f"{timeout:.0f} s; computing those entries without waiting for it.",
                RuntimeWarning, stacklevel=4)
        return done
