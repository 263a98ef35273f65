"""waitress, hardened: request bodies are refused on the headers, slow clients are dropped.

waitress parses requests on its one I/O thread and hands a request to a worker thread
only once its whole body has arrived (in memory, then a temp file). That keeps slow
clients away from the workers, and pywharf keeps it; three things are added here:

- **Refusal on the headers.** Once a request's headers are parsed and a body is to
  come, ``HeaderGate`` (``pywharf_core.early``) is asked, in a worker thread when
  credentials must be checked and were not verified lately (in place when they were:
  an upload then waits for no thread). Until it answers nothing more is read from the client
  (and ``Expect: 100-continue`` is not answered). A refused request goes to the app at
  once, without its body; its connection is closed after the answer, having first read
  and discarded what the client was still sending (at most ``drain_bytes`` for
  ``drain_seconds``), so that a client that sends its whole body before it reads gets the
  answer instead of a reset.
- **A header timeout**: a request's line and headers must arrive within
  ``header_timeout`` seconds of its first byte (of the connection, for the first one),
  however slowly they drip; waitress's ``channel_timeout`` only closes connections that
  say nothing at all.
- **A body timeout**: a request body that receives nothing for ``body_timeout`` seconds
  is dropped.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask
from waitress.utilities import RequestEntityTooLarge

from .early import REFUSAL_KEY, HeaderGate, Verdict, scope_from_headers

SEND_PIECE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 20.0
    body_timeout: float = 30.0
    drain_bytes: int = 64 * 1024 * 1024
    drain_seconds: float = 5.0


class GatedParser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's request parser, stopping after the headers until the gate has spoken."""

    # waitress's own attributes, which these methods set
    completed: bool
    error: Any
    expect_continue: bool
    body_rcv: Any

    def __init__(self, adj: Any, channel: GatedChannel) -> None:
        super().__init__(adj)
        self.channel = channel
        self.started = time.monotonic()
        self.waiting = False  # headers in, the gate asked: the body is held back
        self.held = b""  # what arrived with the headers, past them
        self.wants_continue = False
        self.body_limit: int | None = None
        self.refusal: Exception | None = None

    def received(self, data: bytes) -> int:
        if self.refusal is not None:
            return len(data)  # the body of a refused request: never parsed
        if self.waiting:
            self.held += data  # at most one recv(): the channel reads nothing meanwhile
            return len(data)
        in_headers = not self.headers_finished
        consumed: int = super().received(data)
        if in_headers and self.headers_finished and not self.completed and self.error is None:
            consumed = self.channel.headers_in(self, data, consumed)
        elif (
            self.body_limit is not None
            and not self.completed
            and self.body_bytes_received > self.body_limit
        ):  # chunked: no Content-Length to judge on
            self.error = RequestEntityTooLarge(f"exceeds {self.body_limit} bytes")
            self.completed = True
        if self.completed:
            # waitress would still send "100 Continue" for a request refused on its
            # headers (its own 413), and then wait for the body.
            self.expect_continue = False
        return consumed

    def hold(self, rest: bytes) -> None:
        self.waiting = True
        self.held = rest
        self.wants_continue, self.expect_continue = self.expect_continue, False

    def refuse(self, refusal: Exception) -> None:
        self.refusal = refusal
        self.waiting = False
        self.held = b""
        self.expect_continue = self.wants_continue = False
        if self.body_rcv is not None:
            self.body_rcv.getbuf().close()
            self.body_rcv = None
        self.completed = True


class GatedTask(WSGITask):  # type: ignore[misc]
    # waitress's own attributes, which these methods read and set
    close_on_finish: bool
    content_length: int | None
    version: str
    #: A HEAD answered without Content-Length (the size is not known): see has_body.
    bodiless_head = False

    @property
    def has_body(self) -> bool:
        # waitress frames a response without Content-Length as chunked, and writes the
        # chunked terminator as a body, even for a HEAD, whose answer must end with its
        # headers; it then closes the connection. Such a HEAD has no body, like a 304.
        return not self.bodiless_head and bool(super().has_body)

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        refusal = getattr(self.request, "refusal", None)
        if refusal is not None:
            environ[REFUSAL_KEY] = refusal
        return environ

    def build_response_header(self) -> bytes:
        if getattr(self.request, "refusal", None) is not None:
            self.set_close_on_finish()  # its body is still on the wire
        if (
            self.request.command == "HEAD"
            and self.content_length is None
            and not any(name.lower() == "content-length" for name, _ in self.response_headers)
        ):
            self.bodiless_head = True
        # waitress closes the connection after every response without a Content-Length,
        # a 304 or a 204 too, whose end is the end of their headers (RFC 9112, 6.3): a
        # client revalidating its cached pages (If-None-Match) reconnected for each one.
        keep_alive = (
            not self.has_body
            and not self.close_on_finish
            and self.version == "1.1"
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        )
        if keep_alive:
            self.close_on_finish = True  # waitress then skips its close for "no length"
        header: bytes = super().build_response_header()
        if keep_alive:
            self.close_on_finish = False
        return header


class GatedChannel(HTTPChannel):  # type: ignore[misc]
    task_class = GatedTask
    request: Any  # waitress's: the request being received (a GatedParser), or None
    sendbuf_len: int
    gate: HeaderGate  # set on the server's channel class by ``harden``
    limits: Limits

    refused = False  # a refused request's answer is on its way; then the drain
    draining = False
    drain_until = 0.0
    drain_left = 0
    dropped = False  # closed for a timeout: no drain
    verdict: tuple[GatedParser, Verdict] | None = None  # from the gate's thread

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # waitress reads a file response SO_SNDBUF bytes at a time (3.9 MB on loopback
        # here), whatever the socket then takes: a read of that size per write, per
        # connection. 256 KiB pieces send as fast and bound what each write holds.
        self.sendbuf_len = min(self.sendbuf_len, SEND_PIECE_BYTES)

    def parser_class(self, adj: Any) -> GatedParser:
        return GatedParser(adj, self)

    # -- the gate ---------------------------------------------------------------------

    def headers_in(self, parser: GatedParser, data: bytes, consumed: int) -> int:
        """Called (under ``requests_lock``) once a request's headers are parsed and a
        body is to come; returns how much of ``data`` the parser has consumed."""
        length = None if parser.chunked else parser.content_length
        if self.gate.needs_credentials(parser.command, parser.path):
            scope = scope_from_headers(
                parser.command, parser.path, parser.query, parser.headers, self.addr
            )
            remembered = self.gate.remembered(scope)
            if remembered is not None:
                return self._decided(parser, remembered, data, consumed)
            parser.hold(data[consumed:])

            def done(verdict: Verdict) -> None:  # in the gate's thread
                self.verdict = (parser, verdict)
                self.server.pull_trigger()

            self.gate.submit(scope, done)
            return len(data)
        return self._decided(parser, self.gate.quick(parser.path, length), data, consumed)

    def _decided(self, parser: GatedParser, verdict: Verdict, data: bytes, consumed: int) -> int:
        """Applies a verdict reached in place (on the I/O thread)."""
        if verdict.refusal is not None:
            parser.refuse(verdict.refusal)
            self.refused = True
            return len(data)
        parser.body_limit = verdict.body_limit
        return consumed

    def _apply_verdict(self) -> None:
        """On the I/O thread: the gate has answered for the request being received."""
        assert self.verdict is not None
        parser, verdict = self.verdict
        self.verdict = None
        if parser is not self.request or not parser.waiting:
            return  # the connection moved on (closed)
        if verdict.refusal is not None:
            with self.requests_lock:
                parser.refuse(verdict.refusal)
                self.refused = True
                self.requests.append(parser)
                if len(self.requests) == 1:
                    self.server.add_task(self)
                self.request = None
            return
        parser.waiting = False
        parser.body_limit = verdict.body_limit
        held, parser.held = parser.held, b""
        if parser.wants_continue:
            parser.expect_continue = True
            if not self.requests and not self.sent_continue:
                self.send_continue()
        if held:
            self.received(held)

    # -- asyncore hooks (I/O thread) --------------------------------------------------

    def readable(self) -> bool:
        if self.draining:
            if time.monotonic() > self.drain_until:
                self.will_close = True  # closed by handle_write: never inside readable()
                return False
            return True
        if self.refused or self.will_close:
            return False
        # The timeouts, inline: the I/O loop asks every channel this on every turn.
        request = self.request
        if request is not None and request.waiting:  # the gate decides: nothing is read
            return False
        if self.requests:  # a worker is answering: the client waits for it
            pass
        elif request is None:
            if self.last_activity == self.creation_time:  # not a byte yet
                if time.time() - self.creation_time > self.limits.header_timeout:
                    self._drop()
                    return False
        elif not request.headers_finished:
            if time.monotonic() - request.started > self.limits.header_timeout:
                self._drop()
                return False
        elif not request.completed:
            if time.time() - self.last_activity > self.limits.body_timeout:
                self._drop()
                return False
        return bool(super().readable())

    def _drop(self) -> None:
        self.dropped = True
        self.will_close = True

    def writable(self) -> bool:
        return self.verdict is not None or bool(super().writable())

    def handle_write(self) -> None:
        if self.verdict is not None:
            self._apply_verdict()
        super().handle_write()

    def handle_read(self) -> None:
        if not self.draining:
            super().handle_read()
            return
        try:
            data = self.socket.recv(self.adj.recv_bytes)
        except OSError:
            data = b""
        self.drain_left -= len(data)
        if not data or self.drain_left <= 0:
            self._close_now()

    def handle_close(self) -> None:
        if self.refused and not self.draining and not self.dropped and self.connected:
            # The answer is out: end our side, and read what the client still sends
            # (discarded) so that it reads the answer rather than a reset.
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                self._close_now()
                return
            self.draining = True
            self.will_close = self.close_when_flushed = False
            self.drain_until = time.monotonic() + self.limits.drain_seconds
            self.drain_left = self.limits.drain_bytes
            return
        self._close_now()

    def _close_now(self) -> None:
        self.draining = False
        self.refused = False
        super().handle_close()


def harden(server: Any, gate: HeaderGate, limits: Limits) -> None:
    """Make ``server`` (what ``waitress.create_server`` returned) use ``GatedChannel``."""
    channel_class = type("PywharfChannel", (GatedChannel,), {"gate": gate, "limits": limits})
    # A server listening on several sockets keeps one sub-server per socket in its map.
    servers = [server, *getattr(server, "map", {}).values()]
    for each in servers:
        if hasattr(each, "channel_class"):
            each.channel_class = channel_class
