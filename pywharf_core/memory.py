"""Handing freed memory back to the operating system after a big, short-lived peak.

Loading a large index builds every file's parsed table before the records are made from
them (118 MB peak at 20,000 files, against 69 MB kept). CPython frees those objects, but
glibc's allocator keeps the freed pages mapped, so the server would sit at its peak for
the rest of its life. ``malloc_trim(0)`` returns them; elsewhere (musl, macOS) it is a
no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def release_free_memory() -> bool:
    """Collects garbage and returns free heap pages to the OS; whether it could."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
