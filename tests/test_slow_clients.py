"""Slow clients cannot lock others out (issue 14, item 11): with 200 connections dripping
header lines, a normal request is answered within 2 s; a request whose headers or body
stall past ``--header_timeout`` / ``--body_timeout`` is dropped."""

from __future__ import annotations

import socket
import time

import pytest
from wharftest.server import WharfServer

SLOW = 200


def connect(server: WharfServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> float | None:
    """Seconds until the server closed ``sock`` (sending ``drip`` every 0.3 s meanwhile),
    or None if it was still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(0.3)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:  # reset
            return time.monotonic() - started
        if drip:
            try:
                sock.sendall(drip)
            except OSError:
                return time.monotonic() - started
    return None


def test_healthz_answers_while_200_slow_clients_drip_headers(start_server) -> None:
    server: WharfServer = start_server()
    slow = []
    try:
        for _ in range(SLOW):
            sock = connect(server)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        time.sleep(0.5)
        for sock in slow:  # one more header line each, as a slowloris client would
            sock.sendall(b"X-Slow: 1\r\n")
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = probe.recv(1024)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert time.monotonic() - started < 2
    finally:
        for sock in slow:
            sock.close()


def test_headers_that_drip_past_the_header_timeout_are_dropped(start_server) -> None:
    server: WharfServer = start_server("--header_timeout", "1")
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        elapsed = closed_within(sock, 6, drip=b"X-Slow: 1\r\n")
        assert elapsed is not None and elapsed >= 0.9
    with connect(server) as silent:  # a connection that never says anything
        assert closed_within(silent, 6) is not None


def test_a_stalled_body_is_dropped_after_the_body_timeout(start_server) -> None:
    server: WharfServer = start_server("--body_timeout", "1")
    with connect(server) as sock:
        sock.sendall(
            b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            b"application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nrepo="
        )
        elapsed = closed_within(sock, 6)
        assert elapsed is not None and elapsed >= 0.9


@pytest.mark.parametrize("flag", ["--header_timeout", "--body_timeout"])
def test_timeouts_are_documented_flags(flag: str) -> None:
    from pywharf_core.server import run_server

    assert flag.lstrip("-") + ":" in (run_server.__doc__ or "")
