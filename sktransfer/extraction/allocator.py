"""Freed memory given back to the system (glibc's ``malloc_trim``).

Extraction frees a batch of resized images at every batch, while the
activations it keeps are small and stay.  glibc's allocator, once large
buffers have been freed, serves the next ones from a heap that the kept
rows pin, so without this a process's memory grew by about one resized
image per image extracted (``benchmarks/bench_scale.py`` measured it).
``malloc_trim`` hands the freed pages back; it changes no allocator
setting, so nothing else in the process behaves differently.  Where the C
library has no ``malloc_trim`` (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def give_back_freed_memory():
    """Return the pages of freed heap memory to the system (a no-op without glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
