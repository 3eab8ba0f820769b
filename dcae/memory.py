"""Give freed heap memory back to the operating system between large windows.

glibc keeps freed blocks of a process's heap resident and moves its mmap threshold up after large
frees, so a long loop over windows of the same size can leave the resident set a few hundred MiB
above what one window needs, by an amount that varies from run to run. ``malloc_trim(0)`` returns
the free pages; it costs microseconds against a window's seconds of compute. Elsewhere (no glibc)
it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc ``malloc_trim(0)``; a no-op without glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
