"""Handing freed memory back to the operating system after a big, short-lived peak.

Loading a large index builds every file's parsed table before the records are made from
them (118 MB peak at 20,000 files, against 69 MB kept). CPython frees those objects, but
glibc's allocator keeps the freed pages mapped, so the server would sit at its peak for
the rest of its life. ``malloc_trim(0)`` returns them; elsewhere (musl, macOS) it is a
no-op.

A server also churns through large short-lived buffers (upload body batches, waitress's
socket reads and file reads, rendered pages) in 16 threads. ``tune_allocator`` sets two
glibc knobs at start; ``benchmarks/soak.py`` and ``benchmarks/edges.py stalled`` measure
why (figures in benchmarks/README.md, "Memory under load"):

- ``M_MMAP_THRESHOLD``: glibc serves blocks above the threshold with their own mapping,
  unmapped when freed, but by default raises the threshold to the largest such block
  freed (up to 32 MiB), after which 1-4 MiB buffers come from the heaps and stay mapped
  there, fragmented. Fixed, it stays put.
- ``M_ARENA_MAX``: each thread that allocates at once gets an arena of its own (15 seen
  under the soak), each keeping its freed memory; a few arenas shared by the threads
  hold less for the same work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path


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


M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 512 * 1024
ARENA_MAX = 2
TRIM_INTERVAL = 10.0


@cache
def _mallopt() -> Callable[[int, int], int] | None:
    if _malloc_trim() is None:
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt: Callable[[int, int], int] = libc.mallopt
    return mallopt


def tune_allocator(mmap_threshold: int = MMAP_THRESHOLD_BYTES, arena_max: int = ARENA_MAX) -> bool:
    """Sets glibc's mmap threshold and arena count (see the module's docstring); whether
    it could. Call once at start, before the worker threads allocate."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_ARENA_MAX, arena_max))


def trim_periodically(interval: float = TRIM_INTERVAL) -> bool:
    """Returns free heap pages to the OS every ``interval`` seconds, from a daemon thread
    (``malloc_trim`` also frees whole free pages inside the heaps, which glibc's own
    trimming of the heap's top never does); whether it could."""
    trim = _malloc_trim()
    if trim is None:
        return False

    def run() -> None:
        while True:
            time.sleep(interval)
            trim(0)

    threading.Thread(target=run, name="pywharf-trim", daemon=True).start()
    return True


def release_free_memory() -> bool:
    """Collects garbage and returns free heap pages to the OS; whether it could."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


ARENA = 64 << 20  # glibc's per-thread heap arenas are 64 MiB mappings, aligned to 64 MiB


def glibc_arenas(pid: int) -> int:
    """Secondary glibc arenas: anonymous mappings that start on a 64 MiB boundary and,
    with the reserved (``---p``) mapping after them, span exactly 64 MiB (the main arena
    is the brk heap, not counted)."""
    maps = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        maps.append((start, end, len(fields) == 5))  # no pathname: anonymous
    count = 0
    for i, (start, end, anonymous) in enumerate(maps):
        if not anonymous or start % ARENA:
            continue
        reach = end
        for next_start, next_end, next_anonymous in maps[i + 1 : i + 3]:
            if reach - start >= ARENA or next_start != reach or not next_anonymous:
                break
            reach = next_end
        count += reach - start == ARENA
    return count
