"""Running blocking work (disk, hashing, backend calls) from a request without stalling
other requests, on any server.

Under pywharf's waitress adapter each worker thread runs one request at a time on an
event loop of its own (``mark_dedicated``): blocking work may run right there, in place,
which saves a thread hop. Anywhere else (uvicorn, tests) it goes to Starlette's worker
threads.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

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


async def iterate_blocking(iterator: Iterator[T]) -> AsyncIterator[T]:
    """The items of a blocking ``iterator`` (a stream from a backend or upstream), each
    taken as ``run_blocking`` would: in place on a dedicated loop (no thread hop a
    chunk), else in Starlette's worker threads."""
    if getattr(_this_thread, "dedicated", False):
        for item in iterator:
            yield item
        return
    async for item in iterate_in_threadpool(iterator):
        yield item
