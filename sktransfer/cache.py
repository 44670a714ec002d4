"""Activations of the frozen prefix, computed once per image and reused.

An entry is keyed by the image's content (file bytes or pixels) and by a
fingerprint of everything else that determines the activation: the prefix's
structure and weights and the preprocessing.  Clones made by ``GridSearchCV``,
every fold and every epoch therefore hit the same entries.

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
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from .backbones import fuse_conv_bn
from .data import ImageDecodeError, as_images


def fingerprint(modules, transform):
    """Digest of the modules' structure and tensors, and of the preprocessing.

    Parameters
    ----------
    modules : list of torch.nn.Module
        The frozen prefix, in order.
    transform : object
        The preprocessing; its ``repr`` must describe it fully (torchvision's does).

    Returns
    -------
    str
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(transform).encode())
    for module in modules:
        h.update(repr(module).encode())
        for name, tensor in module.state_dict().items():
            h.update(name.encode())
            h.update(str(tensor.dtype).encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


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


def _decode_batch(images, transform, indices, n_jobs):
    resize = getattr(transform, "resize_size", None)
    min_size = min(resize) if resize else None

    def one(i):
        try:
            return transform(images.image(i, min_size)), None
        except ImageDecodeError as exc:
            return None, str(exc)
    if n_jobs in (None, 1) or len(indices) == 1:
        return [one(i) for i in indices]
    # Pillow and torch release the GIL while decoding and resizing: threads suffice.
    return Parallel(n_jobs=n_jobs, prefer="threads")(delayed(one)(i) for i in indices)


def compute_activations(prefix, X, transform, *, cache=True, cache_dir=None, batch_size=32,
                        device="cpu", n_jobs=None, verbose=0, prefix_key=None,
                        mixed_precision=False):
    """Run images through the frozen ``prefix`` once, reusing cached results.

    Parameters
    ----------
    prefix : list of torch.nn.Module
        Frozen modules run in order (in inference mode).
    X : images accepted by :func:`sktransfer.data.as_images`
    transform : callable
        Preprocessing: ``(3, h, w)`` image tensor -> float tensor ``(3, s, s)``.
    cache : bool
        Use (and fill) the in-memory store :data:`MEMORY`.
    cache_dir : path or None
        Also use (and fill) a :class:`DiskStore` there.
    batch_size : int
    device : str or torch.device
    n_jobs : int or None
        Decoding threads.
    verbose : int
        ``>= 1`` shows a progress bar for the images computed.
    prefix_key : str or None
        Precomputed :func:`fingerprint` of ``prefix`` and ``transform``.
    mixed_precision : bool
        On CUDA, run the prefix under ``torch.autocast`` (float16); results
        are stored as float32.  Part of the cache key.

    Returns
    -------
    torch.Tensor
        ``(n_images, *activation_shape)``, float32, on the CPU.

    Raises
    ------
    ImageDecodeError
        Listing every image that could not be decoded (``indices`` holds
        their positions in X).
    """
    images = as_images(X)
    n = len(images)
    results = [None] * n
    amp = bool(mixed_precision) and torch.device(device).type == "cuda"
    if not (cache or cache_dir is not None):
        _compute(prefix, images, transform, range(n), results, batch_size, device, n_jobs,
                 verbose, store=None, amp=amp)
        return torch.stack(results) if n else torch.empty(0)
    prefix_key = prefix_key or fingerprint(prefix, transform)
    if amp:
        prefix_key += "-amp"
    disk = DiskStore(cache_dir) if cache_dir is not None else None
    keys = [images.content_key(i) for i in range(n)]
    first_of = {}  # identical images are computed once
    for i, key in enumerate(keys):
        first_of.setdefault(key, i)
    pending = [i for i in first_of.values() if not _lookup(prefix_key, keys[i], i, results,
                                                           cache, disk)]
    if pending:
        # One process computes an entry; the others wait, then read it from disk.
        with disk.lock(prefix_key) if disk is not None else contextlib.nullcontext():
            if disk is not None:
                pending = [i for i in pending if not _lookup(prefix_key, keys[i], i, results,
                                                             cache, disk)]
            _compute(prefix, images, transform, pending, results, batch_size, device, n_jobs,
                     verbose, store=(prefix_key, keys, cache, disk), amp=amp)
    for i, key in enumerate(keys):
        if results[i] is None:  # a duplicate of an image computed above
            results[i] = results[first_of[key]]
    return torch.stack(results) if n else torch.empty(0)


def _lookup(prefix_key, key, i, results, cache, disk):
    """Fill ``results[i]`` from memory or disk; whether it was found."""
    hit = MEMORY.get(f"{prefix_key}/{key}") if cache else None
    if hit is not None and disk is not None and not disk.has(prefix_key, key):
        disk.put(prefix_key, key, hit)  # computed before cache_dir was given
    if hit is None and disk is not None:
        hit = disk.get(prefix_key, key)
        if hit is not None and cache:
            MEMORY.put(f"{prefix_key}/{key}", hit)
    results[i] = hit
    return hit is not None


_FUSED = OrderedDict()  # (prefix key, device) -> fused modules, for repeated calls


def _inference_modules(prefix, device, prefix_key):
    """The prefix as extraction runs it: BatchNorm folded into convolutions, channels_last.

    Both measured on 2 CPU cores with MobileNetV2: folding about 1.3x,
    channels_last about 2x over torchvision's NCHW layout.
    """
    key = (prefix_key, str(device))
    if prefix_key is not None and key in _FUSED:
        _FUSED.move_to_end(key)
        return _FUSED[key]
    modules = [m.to(device, memory_format=torch.channels_last)
               for m in fuse_conv_bn([m.cpu() for m in prefix])]
    if prefix_key is not None:
        _FUSED[key] = modules
        while len(_FUSED) > 2:
            _FUSED.popitem(last=False)
    return modules


def _compute(prefix, images, transform, pending, results, batch_size, device, n_jobs, verbose,
             store, amp=False):
    """Run ``pending`` images through the prefix into ``results`` (and the stores)."""
    errors = []
    progress = tqdm(total=len(pending), desc="Extracting features", unit="img",
                    disable=verbose < 1 or not pending, leave=False)
    modules = _inference_modules(prefix, device, store[0] if store else None)
    cuda = torch.device(device).type == "cuda"
    with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=amp):
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            decoded = _decode_batch(images, transform, batch, n_jobs)
            errors += [(i, err) for i, (_, err) in zip(batch, decoded) if err is not None]
            if errors:  # keep decoding only, to report every bad file at once
                progress.update(len(batch))
                continue
            x = torch.stack([t for t, _ in decoded])
            if cuda:
                x = x.pin_memory()
            x = x.to(device, non_blocking=True)
            if x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            for module in modules:
                x = module(x)
            x = x.float().cpu().contiguous()
            for i, row in zip(batch, x):
                results[i] = row = row.clone()
                if store is not None:
                    prefix_key, keys, cache, disk = store
                    if disk is not None:  # disk first: an interrupted write leaves neither
                        disk.put(prefix_key, keys[i], row)
                    if cache:
                        MEMORY.put(f"{prefix_key}/{keys[i]}", row)
            progress.update(len(batch))
    progress.close()
    if errors:
        raise ImageDecodeError.listing(errors)
