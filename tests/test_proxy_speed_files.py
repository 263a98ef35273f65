"""A cached upstream file served warm: from the cache, with the same bytes and headers as
the first download, and fetched again (not a 404) once it is gone from the cache."""

from __future__ import annotations

from pathlib import Path

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


def test_a_head_for_an_upstream_file_fetches_nothing(start_server, tmp_path: Path) -> None:
    """A HEAD (uv sends one to learn whether ranges are served) is answered from the
    page: upstream is not asked for the file, nothing is cached; once the file is
    cached, its HEAD is the cached file's."""
    data = bytes(range(256)) * 64
    fake = FakeIndex(served=data, declared=data)
    try:
        server = proxy(start_server, tmp_path, fake.url)
        url = f"{server.url}r/team/simple/fake/{fake.filename}"
        auth = ("__token__", READ)
        head = requests.head(url, auth=auth, timeout=30)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == str(len(data))  # the page's "size"
        assert fake.file_gets == 0 and not cached(server, fake.filename).exists()
        got = requests.get(url, auth=auth, timeout=30)
        assert got.content == data and fake.file_gets == 1
        again = requests.head(url, auth=auth, timeout=30)
        assert again.status_code == 200 and again.headers["Content-Length"] == str(len(data))
        assert again.headers["ETag"] == got.headers["ETag"]
        assert fake.file_gets == 1
    finally:
        fake.server.stop()
