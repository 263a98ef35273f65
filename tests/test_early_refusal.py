"""Request bodies refused on the headers (issue 14, item 10): a POST without valid
credentials is answered 401, and one past the repository's limit 413, before any body
byte is read, with ``Expect: 100-continue`` honoured, on waitress and on uvicorn."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import requests
from wharftest.configs import MAIN_AND_SMALL
from wharftest.distbuilder import build_wheel
from wharftest.server import WharfServer, basic_auth, upload_file

CONFIG = MAIN_AND_SMALL
THREE_GB = 3_000_000_000


@pytest.fixture(scope="module", params=["waitress", "uvicorn"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("early")
    config = base / "config.toml"
    config.write_text(CONFIG)
    server = WharfServer(base / "root", "--config", str(config), "--server", request.param)
    server.start()
    yield server
    server.stop()


def post_headers(
    server: WharfServer, length: int, auth: tuple[str, str] | None, *extra: str
) -> socket.socket:
    """A connection that has sent an upload's headers and no body byte."""
    lines = [
        "POST /simple/ HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: multipart/form-data; boundary=xyz",
        f"Content-Length: {length}",
        *extra,
    ]
    if auth is not None:
        lines += [f"{k}: {v}" for k, v in basic_auth(*auth).items()]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_head(sock: socket.socket) -> bytes:
    """The response's status line and headers (fails after the socket's timeout)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def spooled_files(server: WharfServer) -> list[str]:
    """Temp files the server holds open (waitress spools bodies into unlinked ones)."""
    assert server.proc is not None
    fd_dir = Path(f"/proc/{server.proc.pid}/fd")
    targets = []
    for fd in os.listdir(fd_dir):
        try:
            targets.append(os.readlink(fd_dir / fd))
        except OSError:  # closed meanwhile
            pass
    return [t for t in targets if t.endswith("(deleted)")]


def test_no_credentials_and_3_gb_is_401_before_the_body(server: WharfServer) -> None:
    with post_headers(server, THREE_GB, None) as sock:
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 401"), head
        assert b"www-authenticate: basic" in head.lower()
        # What the client sends after the answer is read and dropped, never spooled.
        sock.settimeout(1)
        try:
            for _ in range(8):
                sock.sendall(b"\0" * (1 << 20))
        except OSError:  # the server may end the connection instead
            pass
        time.sleep(0.3)
        assert spooled_files(server) == []


def test_wrong_secret_with_expect_100_continue_gets_no_continue(server: WharfServer) -> None:
    with post_headers(server, THREE_GB, ("main", "wrong"), "Expect: 100-continue") as sock:
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 401"), head  # not "100 Continue" first


def test_read_secret_may_not_upload(server: WharfServer) -> None:
    with post_headers(server, THREE_GB, ("main", "main-read")) as sock:
        assert read_head(sock).startswith(b"HTTP/1.1 403")


def test_past_the_repository_limit_is_413_before_the_body(server: WharfServer) -> None:
    # past the largest limit (5 GiB by default)
    with post_headers(server, 6 << 30, ("main", "main-write"), "Expect: 100-continue") as sock:
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 413"), head
    # the small repository's limit (4096 bytes, plus the form's overhead), not the largest
    with post_headers(server, 200_000_000, ("small", "small-write")) as sock:
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 413"), head
        assert spooled_files(server) == []


def test_other_routes_take_small_bodies_only(server: WharfServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with sock:
        sock.sendall(
            b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            b"application/x-www-form-urlencoded\r\nContent-Length: 3000000000\r\n\r\n"
        )
        assert read_head(sock).startswith(b"HTTP/1.1 413")


def test_valid_upload_with_expect_100_continue(server: WharfServer, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, f"early-{server.port}", "1.0")
    boundary = "xyz"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in {
            ":action": "file_upload",
            "name": wheel.name,
            "version": "1.0",
            "sha256_digest": wheel.sha256,
        }.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{wheel.filename}"\r\n\r\n'.encode()
        + wheel.path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    body = b"".join(parts)
    with post_headers(server, len(body), ("main", "main-write"), "Expect: 100-continue") as sock:
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 100"), head
        sock.sendall(body)
        head = head.split(b"\r\n\r\n", 1)[1] or read_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head


def test_client_that_sends_its_body_first_still_reads_the_401(
    server: WharfServer, tmp_path: Path
) -> None:
    """requests (twine) sends the whole body before it reads: it must get the answer,
    not a reset."""
    big = tmp_path / "big_wheel-1.0-py3-none-any.whl"
    big.write_bytes(os.urandom(3 << 20))
    response = upload_file(server, big, "big-wheel", "1.0", ("main", "wrong"), timeout=30)
    assert response.status_code == 401


def test_a_refused_upload_leaves_the_server_serving(server: WharfServer) -> None:
    for _ in range(3):
        with post_headers(server, THREE_GB, None) as sock:
            assert read_head(sock).startswith(b"HTTP/1.1 401")
    response = requests.get(server.url + "healthz", timeout=5)
    assert response.status_code == 200


def test_a_refused_upload_counts_once_against_the_throttle(start_server) -> None:
    # The header gate and the view both check the credentials of one request.
    server = start_server()
    statuses = []
    for _ in range(11):
        response = requests.post(
            server.url + "simple/",
            files={"content": ("x-1.0.tar.gz", b"x")},
            data={":action": "file_upload"},
            auth=("local", "not-the-write-secret"),
            timeout=10,
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 10 + [429], statuses
