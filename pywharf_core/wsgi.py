"""The ASGI app served by waitress (WSGI), run in the waitress worker thread itself.

a2wsgi's ``ASGIMiddleware`` runs every request on one event loop in a thread of its own
and hands each ASGI message across threads; under load that hand-over was most of a
request's cost (py-spy: the loop thread's wake-ups and the workers' condition waits).
Here each waitress worker thread keeps an event loop of its own and drives the request's
ASGI task on it directly, so a request never leaves its thread. a2wsgi still builds the
ASGI scope from the WSGI environ.

Since a request's loop serves nothing else, blocking work (opening a file, hashing an
upload's chunk) may run right on it (``pywharf_core.blocking``); elsewhere (under uvicorn,
in tests) it goes to a worker thread.

A response is streamed: ``send`` of a body chunk with more to come waits until waitress
has taken the chunk, so a large download is never gathered in memory. The adapter offers
the ASGI ``http.response.pathsend`` extension: Starlette's FileResponse then names the
file instead of reading it, and the adapter hands it to waitress's ``wsgi.file_wrapper``,
which streams it in its own I/O loop. An internal response header, ``x-pywharf-reason``
(the ``reason_header``), is moved into the status line: ASGI has no reason phrase.

Two things the adapter answers itself, as a server must: a request whose path does not
decode (its percent-escapes are not UTF-8, or its query has raw bytes outside ASCII) gets
a 400 before any app runs, and a response to ``HEAD`` never carries a body (waitress
writes whatever the application gives it).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from a2wsgi.asgi import build_scope

from .blocking import mark_dedicated
from .early import REFUSAL_KEY

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
FILE_BLOCK = 256 * 1024

StartResponse = Callable[..., Any]


class ClientDisconnected(OSError):
    """Raised in the app's ``send`` once waitress has stopped taking the response."""


def _status_line(status: int, reason: str | None) -> str:
    if reason:
        return f"{status} {reason}"
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class ThreadLoopAdapter:
    """A WSGI application that runs ``app`` (ASGI 3, HTTP only) in the calling thread."""

    def __init__(self, app: Any, *, reason_header: str) -> None:
        self.app = app
        self._reason = reason_header.encode("latin-1")
        self._local = threading.local()

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
            mark_dedicated()
        return loop

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return _Exchange(self, self._loop(), environ, start_response).respond()


class _Exchange:
    """One request: the ASGI task and the WSGI side that drives it."""

    def __init__(
        self,
        adapter: ThreadLoopAdapter,
        loop: asyncio.AbstractEventLoop,
        environ: dict[str, Any],
        start_response: StartResponse,
    ) -> None:
        self.adapter = adapter
        self.loop = loop
        self.environ = environ
        self.start_response = start_response
        self.body = environ["wsgi.input"]
        self.remaining = int(environ.get("CONTENT_LENGTH") or 0)
        self.head = environ.get("REQUEST_METHOD") == "HEAD"
        # Refused on its headers (pywharf_core.waitress_channel): the body was never read,
        # and the app, if it asks for it, gets the refusal to answer with.
        self.refusal: BaseException | None = environ.get(REFUSAL_KEY)
        self.request_complete = False
        self.outbox: collections.deque[dict[str, Any]] = collections.deque()
        self.wake: asyncio.Future[None] | None = None
        self.taken: asyncio.Future[None] | None = None  # resolved when a chunk is taken
        self.over = loop.create_future()  # the response is done or the client gone
        self.gone = False
        self.task: asyncio.Task[None] | None = None

    # -- the ASGI side -------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self.refusal is not None:
            raise self.refusal
        if not self.request_complete:
            size = min(READ_CHUNK, self.remaining)
            data = self.body.read(size) if size else b""
            if size and not data:  # the client stopped sending
                self.request_complete = True
                return {"type": "http.disconnect"}
            self.remaining -= len(data)
            self.request_complete = self.remaining <= 0
            return {"type": "http.request", "body": data, "more_body": not self.request_complete}
        await asyncio.shield(self.over)
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            raise ClientDisconnected("the client is gone")
        self.outbox.append(message)
        self._wake()
        if message["type"] == "http.response.body" and message.get("more_body", False):
            self.taken = self.loop.create_future()
            await self.taken
            if self.gone:
                raise ClientDisconnected("the client is gone")

    def _wake(self, *_: object) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    # -- the WSGI side -------------------------------------------------------------

    def _next_message(self) -> dict[str, Any] | None:
        """Runs the loop until the app sends something; None once the task is over."""
        assert self.task is not None
        while not self.outbox:
            if self.task.done():
                return None
            self.wake = self.loop.create_future()
            self.loop.run_until_complete(self.wake)
        return self.outbox.popleft()

    def _chunk_taken(self) -> None:
        if self.taken is not None and not self.taken.done():
            self.taken.set_result(None)

    def respond(self) -> Iterable[bytes]:
        try:
            scope = build_scope(self.environ)  # type: ignore[arg-type]
        except UnicodeError:  # decoding the path (UTF-8) or the query (ASCII)
            return self._plain(
                "400 Bad Request",
                b"Bad request: the path must be UTF-8 once its %-escapes are decoded, and "
                b"the query must be ASCII (percent-encode UTF-8)\n",
            )
        scope["extensions"] = {"http.response.pathsend": {}}
        self.task = self.loop.create_task(self.adapter.app(scope, self.receive, self.send))
        self.task.add_done_callback(self._wake)
        try:
            start = self._next_message()
            if start is None or start["type"] != "http.response.start":
                return self._failed(start)
            self._start(start)
            first = self._next_message()
            if first is not None and first["type"] == "http.response.pathsend":
                path = first["path"]
                self._finish()
                if self.head:
                    return []
                try:
                    handle = open(path, "rb")
                except FileNotFoundError:
                    # Deleted between the app's answer and here: a body cut short,
                    # which clients see and retry, rather than a traceback.
                    log.warning("%s was deleted while being served", path)
                    return []
                wrapper = self.environ.get("wsgi.file_wrapper")
                if wrapper is not None:
                    return wrapper(handle, FILE_BLOCK)  # type: ignore[no-any-return]
                return _file_chunks(handle)
            if first is not None:
                self.outbox.appendleft(first)
        except BaseException:
            self._abandon()
            raise
        return self._body()

    def _start(self, message: dict[str, Any]) -> None:
        reason = None
        headers = []
        for name, value in message.get("headers", []):
            if name.lower() == self.adapter._reason:
                reason = value.decode("latin-1")
            else:
                headers.append((name.decode("latin-1"), value.decode("latin-1")))
        self.start_response(_status_line(int(message["status"]), reason), headers)

    def _failed(self, message: dict[str, Any] | None) -> Iterable[bytes]:
        """The app ended (or sent nonsense) before starting a response."""
        assert self.task is not None
        finished = self.task.done() and not self.task.cancelled()
        error = self.task.exception() if finished else None
        if error is None:
            error = RuntimeError(f"the ASGI app sent {message!r} before a response start")
        log.error("the app failed before responding", exc_info=error)
        self._abandon()
        return self._plain("500 Internal Server Error", b"Internal Server Error")

    def _plain(self, status: str, body: bytes) -> Iterable[bytes]:
        """A text/plain answer of the adapter's own."""
        self.start_response(
            status,
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [] if self.head else [body]

    def _body(self) -> Iterator[bytes]:
        complete = False
        try:
            while (message := self._next_message()) is not None:
                if message["type"] != "http.response.body":
                    continue
                chunk = message.get("body", b"")
                if chunk and not self.head:
                    yield chunk
                self._chunk_taken()
                if not message.get("more_body", False):
                    complete = True
                    break
            if not complete and self.task is not None and self.task.done():
                error = self.task.exception()
                if error is not None:  # headers are out: all waitress can do is close
                    raise error
        finally:
            if complete:
                self._finish()
            else:
                self._abandon()

    def _finish(self) -> None:
        """The response is out: let the app end (and run its background tasks)."""
        if not self.over.done():
            self.over.set_result(None)
        assert self.task is not None
        if not self.task.done():
            self.loop.run_until_complete(asyncio.wait([self.task]))
        if not self.task.cancelled() and self.task.exception() is not None:
            log.error("the app failed after its response", exc_info=self.task.exception())

    def _abandon(self) -> None:
        """The client is gone (or the response failed): tell the app, and end its task."""
        self.gone = True
        if not self.over.done():
            self.over.set_result(None)
        self._chunk_taken()
        task = self.task
        if task is not None and not task.done():
            self.loop.run_until_complete(asyncio.wait([task], timeout=5))
            if not task.done():
                task.cancel()
                self.loop.run_until_complete(asyncio.wait([task]))
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # retrieved: ClientDisconnected is the expected end


def _file_chunks(handle: Any) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(FILE_BLOCK):
            yield chunk
