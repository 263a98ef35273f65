"""A cached upstream file served warm: from the cache, with the same bytes and headers as
the first download, and fetched again (not a 404) once it is gone from the cache."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest
import requests
from wharftest.fakeindex import FakeIndex
from wharftest.server import WharfServer

READ = "team-read-secret-00"
KEPT_HEADERS = ("content-type", "content-length", "etag", "cache-control")


def proxy(start_server, tmp_path: Path, upstream_url: str) -> WharfServer:
    config = tmp_path / "config.toml"
    config.write_text(
        "[team]\n"
        'type = "file_system"\n'
        f'read_secret = "{READ}"\n'
        'write_secret = "team-write-secret-0"\n'
        f'upstream_url = "{upstream_url}"\n'
    )
    return start_server("--config", str(config))


def cached(server: WharfServer, filename: str) -> Path:
    return server.root / "cache" / "team" / "storage" / ".pywharf-upstream" / "fake" / filename


def test_a_cached_file_is_served_from_the_cache_and_again_after_it_went(
    start_server, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 64
    fake = FakeIndex(served=data, declared=data)
    try:
        server = proxy(start_server, tmp_path, fake.url)
        url = f"{server.url}r/team/simple/fake/{fake.filename}"

        def download() -> requests.Response:
            response = requests.get(url, auth=("__token__", READ), timeout=30)
            response.raise_for_status()
            assert response.content == data
            return response

        first = download()
        assert fake.file_gets == 1 and cached(server, fake.filename).is_file()
        warm = [download() for _ in range(3)]
        assert fake.file_gets == 1  # upstream is not asked again
        for response in warm:
            assert {h: response.headers[h] for h in KEPT_HEADERS} == {
                h: first.headers[h] for h in KEPT_HEADERS
            }
        cached(server, fake.filename).unlink()  # the cache is emptied behind the server
        download()
        assert fake.file_gets == 2
        assert cached(server, fake.filename).is_file()  # kept again
        download()
        assert fake.file_gets == 2
    finally:
        fake.server.stop()


@pytest.mark.parametrize("declare_size", [True, False], ids=["json-size", "no-size"])
def test_a_head_for_an_upstream_file_downloads_nothing(
    start_server, tmp_path: Path, declare_size: bool
) -> None:
    """A HEAD (uv sends one to learn whether ranges are served) downloads nothing and
    caches nothing: the size comes from the page (PEP 700), else from upstream's own
    answer to a HEAD; once the file is cached, its HEAD is the cached file's."""
    data = bytes(range(256)) * 64
    fake = FakeIndex(served=data, declared=data, declare_size=declare_size)
    try:
        server = proxy(start_server, tmp_path, fake.url)
        url = f"{server.url}r/team/simple/fake/{fake.filename}"
        auth = ("__token__", READ)
        head = requests.head(url, auth=auth, timeout=30)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == str(len(data))
        assert fake.file_gets == 0 and not cached(server, fake.filename).exists()
        assert fake.file_heads == (0 if declare_size else 1)
        got = requests.get(url, auth=auth, timeout=30)
        assert got.content == data and fake.file_gets == 1
        if not declare_size:  # the HEAD's connection went back to the pool for the GET
            assert fake.file_ports[0] == fake.file_ports[1]
        again = requests.head(url, auth=auth, timeout=30)
        assert again.status_code == 200 and again.headers["Content-Length"] == str(len(data))
        assert again.headers["ETag"] == got.headers["ETag"]
        assert fake.file_gets == 1 and fake.file_heads == (0 if declare_size else 1)
    finally:
        fake.server.stop()


def test_a_head_upstream_refuses_is_answered_without_a_length(start_server, tmp_path: Path) -> None:
    data = b"wheel bytes" * 100
    fake = FakeIndex(served=data, declared=data, declare_size=False, answer_head=False)
    try:
        server = proxy(start_server, tmp_path, fake.url)
        url = f"{server.url}r/team/simple/fake/{fake.filename}"
        head = requests.head(url, auth=("__token__", READ), timeout=30)
        assert head.status_code == 200 and "Content-Length" not in head.headers
        assert fake.file_heads == 1 and fake.file_gets == 0
        # On the wire: the HEAD's answer ends with its headers (no chunked framing, whose
        # terminator would be a body) and the connection serves the next request.
        token = base64.b64encode(f"__token__:{READ}".encode()).decode()
        path = f"/r/team/simple/fake/{fake.filename}"
        asked = f"{{}} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
            raw.sendall(asked.format("HEAD").encode() + asked.format("GET").encode())
            received = b""
            while data not in received:
                piece = raw.recv(65536)
                assert piece, f"the connection closed after {received[:400]!r}"
                received += piece
        first, _, rest = received.partition(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in first.lower()
        assert rest.startswith(b"HTTP/1.1 200"), rest[:80]
        assert requests.get(url, auth=("__token__", READ), timeout=30).content == data
    finally:
        fake.server.stop()


def test_a_head_for_a_stream_of_unknown_size_says_no_length() -> None:
    """A HEAD whose file size nobody knows omits Content-Length, rather than the "0" of
    its own empty body (a client would take the file for empty)."""
    from pywharf_core.backend import FileStream
    from pywharf_core.views import _answer

    closed: list[bool] = []
    unknown = _answer(
        lambda: FileStream(iter(()), None, lambda: closed.append(True)),
        "application/zip",
        {},
        False,
        head=True,
    )
    assert closed == [True]
    assert not [v for k, v in unknown.raw_headers if k == b"content-length"]
    known = _answer(lambda: FileStream(iter(()), 977), "application/zip", {}, False, head=True)
    assert (b"content-length", b"977") in known.raw_headers


def test_a_head_mirrors_a_missing_or_unreachable_upstream_file(
    start_server, tmp_path: Path
) -> None:
    """A HEAD for a file upstream no longer has is a 404; with upstream failing or
    unreachable (and no size on the page) a 503, as the GET would be."""
    fake = FakeIndex(served=b"x", declared=b"x", declare_size=False)
    server = proxy(start_server, tmp_path, fake.url)
    url = f"{server.url}r/team/simple/fake/{fake.filename}"
    auth = ("__token__", READ)
    try:
        fake.file_status = "404 Not Found"
        assert requests.head(url, auth=auth, timeout=30).status_code == 404
        assert requests.get(url, auth=auth, timeout=30).status_code == 404
        fake.file_status = "502 Bad Gateway"
        assert requests.head(url, auth=auth, timeout=30).status_code == 503
        assert requests.get(url, auth=auth, timeout=30).status_code == 503
        fake.file_status = "401 Unauthorized"  # upstream's own host refuses: say what to mend
        for answer in (
            requests.head(url, auth=auth, timeout=30),
            requests.get(url, auth=auth, timeout=30),
        ):
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "300"
        assert "give them in upstream_url" in requests.get(url, auth=auth, timeout=30).text
    finally:
        fake.server.stop()  # the page stays in memory, fresh
    head = requests.head(url, auth=auth, timeout=30)
    assert head.status_code == 503 and int(head.headers["Retry-After"]) > 0
    assert requests.get(url, auth=auth, timeout=30).status_code == 503


@pytest.mark.parametrize("honest", [True, False], ids=["honest", "tampered"])
def test_a_file_that_cannot_be_staged_is_served_uncached(
    start_server, tmp_path: Path, honest: bool
) -> None:
    """No staging file can be made (here a file where the staging folder should be; a
    full disk does the same): the download is served all the same, without caching,
    its sha256 checked as ever (other bytes than declared break it off), the next one
    fetches again rather than waiting for a fetch that never ends, and file requests
    ask upstream for the bytes as stored (no compressed form)."""
    data = bytes(range(256)) * 64
    fake = FakeIndex(served=data if honest else data[::-1], declared=data)
    try:
        server = proxy(start_server, tmp_path, fake.url)
        url = f"{server.url}r/team/simple/fake/{fake.filename}"
        auth = ("__token__", READ)
        assert requests.get(f"{server.url}r/team/simple/fake/", auth=auth, timeout=30).ok
        staging = server.root / "cache" / "team" / "storage" / ".pywharf-staging"
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
        staging.write_bytes(b"not a folder")
        for count in (1, 2):
            if honest:
                got = requests.get(url, auth=auth, timeout=30)
                assert got.status_code == 200 and got.content == data
            else:
                with pytest.raises(requests.exceptions.RequestException):
                    requests.get(url, auth=auth, timeout=30).raise_for_status()
            assert fake.file_gets == count and not cached(server, fake.filename).exists()
        assert fake.file_encodings == ["identity", "identity"]
        log = server.log_text()
        assert "cannot stage fake/" in log
        assert ("declares" in log) is not honest
    finally:
        fake.server.stop()
