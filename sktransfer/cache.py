"""Stores for activations: keys in, tensors out -- nothing here knows of models.

An entry is addressed by two keys: the *prefix key* (a fingerprint of the
frozen network and its preprocessing, made by :mod:`sktransfer.extractor`)
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
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock


class MemoryStore:
    """A bounded, thread-safe LRU store of tensors.

    Parameters
    ----------
    max_bytes : int
        Entries are evicted, least recently used first, to stay under this.
    """

    def __init__(self, max_bytes):
        self.max_bytes = int(max_bytes)
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

    def put(self, key, value):
        """Store ``value``; evict old entries beyond ``max_bytes``."""
        size = value.element_size() * value.nelement()
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.element_size() * old.nelement()
            self._entries[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.element_size() * evicted.nelement()

    def clear(self):
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


#: The process-wide store; resize with ``MEMORY.max_bytes = ...`` or the
#: ``SKTRANSFER_CACHE_BYTES`` environment variable (default 2 GiB).
MEMORY = MemoryStore(int(os.environ.get("SKTRANSFER_CACHE_BYTES", 2 << 30)))

_MAGIC = b"SKTA1\n"


class DiskStore:
    """Entries as checksummed ``.npy`` files under ``root/<fingerprint>/``.

    Writes go to a temporary file in the same folder and are renamed into
    place (atomic on POSIX and Windows), so readers never see a partial entry
    and concurrent writers of the same entry are harmless.
    """

    def __init__(self, root):
        self.root = Path(os.fspath(root))

    def _path(self, prefix, key):
        return self.root / prefix / f"{key}.npy"

    def lock(self, prefix):
        """An exclusive lock for computing entries under ``prefix``, across processes."""
        folder = self.root / prefix
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(folder / ".lock")

    def has(self, prefix, key):
        """Whether an entry file exists (not checked for damage)."""
        return self._path(prefix, key).is_file()

    def get(self, prefix, key):
        """The stored tensor, or ``None`` if absent or damaged (with a warning)."""
        path = self._path(prefix, key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        digest, payload = blob[len(_MAGIC):len(_MAGIC) + 32], blob[len(_MAGIC) + 32:]
        if (not blob.startswith(_MAGIC)
                or hashlib.blake2b(payload, digest_size=32).digest() != digest):
            warnings.warn(f"Damaged cache file {path} ignored; recomputing it.", RuntimeWarning,
                          stacklevel=3)
            return None
        return torch.from_numpy(np.load(io.BytesIO(payload), allow_pickle=False))

    def put(self, prefix, key, value):
        """Write one entry atomically."""
        folder = self.root / prefix
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, value.numpy(), allow_pickle=False)
        payload = buffer.getvalue()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_MAGIC + hashlib.blake2b(payload, digest_size=32).digest() + payload)
            os.replace(tmp, self._path(prefix, key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class ActivationStore:
    """The memory store and, optionally, a disk store, used together.

    Reads look in memory first, then on disk (copying a disk hit into
    memory, and an entry computed before ``cache_dir`` was given onto disk);
    writes go to disk first, so an interrupted write leaves neither.

    Parameters
    ----------
    memory : bool
        Use the process-wide :data:`MEMORY`.
    cache_dir : path or None
        Also use a :class:`DiskStore` there.
    """

    def __init__(self, memory=True, cache_dir=None):
        self.memory = MEMORY if memory else None
        self.disk = DiskStore(cache_dir) if cache_dir is not None else None

    @property
    def enabled(self):
        """Whether anything is stored at all."""
        return self.memory is not None or self.disk is not None

    def get(self, prefix, key):
        """The entry, or ``None``."""
        hit = self.memory.get(f"{prefix}/{key}") if self.memory is not None else None
        if hit is not None and self.disk is not None and not self.disk.has(prefix, key):
            self.disk.put(prefix, key, hit)
        if hit is None and self.disk is not None:
            hit = self.disk.get(prefix, key)
            if hit is not None and self.memory is not None:
                self.memory.put(f"{prefix}/{key}", hit)
        return hit

    def put(self, prefix, key, value):
        """Store one entry (disk first)."""
        if self.disk is not None:
            self.disk.put(prefix, key, value)
        if self.memory is not None:
            self.memory.put(f"{prefix}/{key}", value)

    def lock(self, prefix):
        """A cross-process lock for computing entries under ``prefix`` (a no-op without disk)."""
        return self.disk.lock(prefix) if self.disk is not None else contextlib.nullcontext()
