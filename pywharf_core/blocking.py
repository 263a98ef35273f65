"""Running blocking work (disk, hashing, backend calls) from a request without stalling
other requests, on any server.

Under pywharf's waitress adapter each worker thread runs one request at a time on an
event loop of its own (``mark_dedicated``): blocking work may run right there, in place,
which saves a thread hop. Anywhere else (uvicorn, tests) it goes to Starlette's worker
threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")

_this_thread = threading.local()  # .dedicated: this thread's loop runs one request at a time


def mark_dedicated() -> None:
    """Declare that the calling thread's event loop serves one request at a time."""
    _this_thread.dedicated = True


async def run_blocking(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` without blocking other requests: in place on a dedicated loop,
    else in Starlette's worker threads."""
    if getattr(_this_thread, "dedicated", False):
        return func(*args)
    return await run_in_threadpool(func, *args)
