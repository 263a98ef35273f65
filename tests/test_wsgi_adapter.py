"""pywharf's ASGI-on-waitress adapter, driven over real sockets by a tiny ASGI app."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from wharftest.inprocess import ThreadedWaitress

from pywharf_core.blocking import iterate_blocking, run_blocking
from pywharf_core.wsgi import ClientDisconnected, ThreadLoopAdapter

REASON = "x-test-reason"


class Probe:
    """An ASGI app whose behaviour the path picks, and a record of what it saw."""

    def __init__(self, tmp_file: str) -> None:
        self.tmp_file = tmp_file
        self.events: list[str] = []
        self.stream_end = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/echo":  # the request body, read in the chunks the adapter gives
            body, chunks = b"", 0
            while True:
                message = await receive()
                body += message.get("body", b"")
                chunks += 1
                if not message.get("more_body"):
                    break
            await send(_start(200, [(b"x-chunks", str(chunks).encode())]))
            await send({"type": "http.response.body", "body": body})
        elif path == "/where":  # where run_blocking runs a function
            ran_in = await run_blocking(threading.get_ident)
            same = ran_in == threading.get_ident()
            await send(_start(200, []))
            await send({"type": "http.response.body", "body": b"inline" if same else b"thread"})
        elif path == "/where-streamed":  # where iterate_blocking takes each item
            threads = [t async for t in iterate_blocking(_idents(3))]
            same = all(t == threading.get_ident() for t in threads)
            await send(_start(200, []))
            await send({"type": "http.response.body", "body": b"inline" if same else b"thread"})
        elif path == "/reason":
            await send(_start(409, [(REASON.encode(), b"File exists")]))
            await send({"type": "http.response.body", "body": b"taken"})
        elif path == "/pathsend":
            assert "http.response.pathsend" in scope["extensions"]
            await send(_start(200, [(b"content-length", b"1048576")]))
            await send({"type": "http.response.pathsend", "path": self.tmp_file})
        elif path == "/after":  # work after the response, as a background task does
            await send(_start(200, []))
            await send({"type": "http.response.body", "body": b"done"})
            self.events.append("background ran")
        elif path == "/fail-before":
            raise RuntimeError("broken before the response")
        elif path == "/fail-during":
            await send(_start(200, [(b"content-length", b"100")]))
            await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
            raise RuntimeError("broken mid-response")
        elif path == "/endless":
            await send(_start(200, []))
            try:
                while True:
                    await send(
                        {"type": "http.response.body", "body": b"y" * 65536, "more_body": True}
                    )
            except ClientDisconnected:
                self.events.append("told the client is gone")
            finally:
                self.stream_end.set()


def _idents(count: int) -> Iterator[int]:
    """The thread taking each item, ``count`` times."""
    for _ in range(count):
        yield threading.get_ident()


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Probe]]:
    tmp = tmp_path_factory.mktemp("adapter") / "file.bin"
    tmp.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    probe = Probe(str(tmp))
    adapter = ThreadLoopAdapter(probe, reason_header=REASON)
    server = ThreadedWaitress(adapter, threads=4)
    yield server.port, probe
    server.stop()


def request(port: int, method: str, path: str, body: bytes | None = None) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body)
    response = connection.getresponse()
    response.data = response.read()
    connection.close()
    return response


def test_request_body_arrives_whole_in_chunks(served: tuple[int, Probe]) -> None:
    port, _ = served
    body = bytes(range(256)) * 2000  # 512,000 bytes: several 64 KiB receives
    response = request(port, "POST", "/echo", body)
    assert response.status == 200
    assert response.data == body
    assert int(response.getheader("x-chunks")) >= 8
    assert request(port, "POST", "/echo", b"").data == b""


def test_reason_phrase_goes_to_the_status_line(served: tuple[int, Probe]) -> None:
    response = request(served[0], "GET", "/reason")
    assert (response.status, response.reason, response.data) == (409, "File exists", b"taken")
    assert response.getheader(REASON) is None


def test_pathsend_serves_the_file(served: tuple[int, Probe]) -> None:
    response = request(served[0], "GET", "/pathsend")
    assert response.status == 200
    assert response.data == bytes(range(256)) * 4096


def test_work_after_the_response_runs(served: tuple[int, Probe]) -> None:
    port, probe = served
    assert request(port, "GET", "/after").data == b"done"
    assert "background ran" in probe.events


def test_failure_before_the_response_is_a_500(served: tuple[int, Probe]) -> None:
    port, _ = served
    response = request(port, "GET", "/fail-before")
    assert response.status == 500
    assert request(port, "GET", "/reason").status == 409  # the thread's loop still works


def test_failure_mid_response_cuts_the_connection(served: tuple[int, Probe]) -> None:
    port, _ = served
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/fail-during")
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()  # 10 of the 100 promised bytes: never a silently short file
    connection.close()
    assert request(port, "GET", "/reason").status == 409


def test_a_client_that_leaves_mid_stream_ends_the_app(served: tuple[int, Probe]) -> None:
    port, probe = served
    probe.stream_end.clear()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while received < 1 << 20:
            received += len(raw.recv(65536))
    assert probe.stream_end.wait(30), "the endless stream was never stopped"
    assert "told the client is gone" in probe.events
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and request(port, "GET", "/reason").status != 409:
        time.sleep(0.1)
    assert request(port, "GET", "/reason").status == 409


def test_blocking_work_runs_in_place_on_the_requests_own_loop(served: tuple[int, Probe]) -> None:
    assert request(served[0], "GET", "/where").data == b"inline"

    async def elsewhere() -> bool:  # a shared loop (uvicorn's) must hand it to a thread
        return await run_blocking(threading.get_ident) != threading.get_ident()

    assert asyncio.run(elsewhere())


def test_a_blocking_stream_is_read_in_place_on_the_requests_own_loop(
    served: tuple[int, Probe],
) -> None:
    assert request(served[0], "GET", "/where-streamed").data == b"inline"

    async def elsewhere() -> list[bool]:  # a shared loop (uvicorn's): worker threads
        return [t != threading.get_ident() async for t in iterate_blocking(_idents(3))]

    assert asyncio.run(elsewhere()) == [True, True, True]
