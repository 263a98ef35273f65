"""Compressed simple pages on a real server: each coding a client accepts, its own ETag
and 304, HEAD, and never a compressed file; pip and uv install through them."""

from __future__ import annotations

import gzip
import http.client
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from backports import zstd
from wharftest import clients
from wharftest.distbuilder import Dist, build_sdist, build_wheel
from wharftest.recorder import Recorder
from wharftest.server import WharfServer, basic_auth, upload_file

from pywharf_core.codings import MIN_SIZE

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT_ENCODING = "gzip, deflate"
UV_ACCEPT_ENCODING = "gzip, deflate, zstd"
DECOMPRESS = {"gzip": gzip.decompress, "zstd": zstd.decompress}
PAGES = ["simple/", "simple/squeeze/", "r/local/simple/squeeze/"]
ACCEPTS = ["text/html", JSON]


@dataclass(frozen=True)
class Site:
    server: WharfServer
    wheels: list[Dist]
    sdist: Dist
    read: dict[str, str]  # an Authorization header

    @property
    def wheel(self) -> Dist:
        return self.wheels[-1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A project of 12 versions (its pages some KB) and 40 more projects (the list over
    ``MIN_SIZE`` in both forms), all uploaded."""
    out = tmp_path_factory.mktemp("compressed-dists")
    server = WharfServer(tmp_path_factory.mktemp("compressed") / "root").start()
    write = ("local", server.write_secret)
    wheels = [build_wheel(out, "squeeze", f"1.{minor}") for minor in range(12)]
    sdist = build_sdist(out / "sdist", "squeeze", "1.11")
    fillers = [build_wheel(out, f"filler-project-{i:02d}", "1.0") for i in range(40)]
    for dist in [*wheels, sdist, *fillers]:
        response = upload_file(server, dist.path, dist.name, dist.version, write)
        assert response.status_code == 200, response.text
    yield Site(server, wheels, sdist, basic_auth("local", server.read_secret))
    server.stop()


def fetch(
    site: Site, path: str, method: str = "GET", **headers: str
) -> tuple[http.client.HTTPResponse, bytes]:
    """The answer as sent: http.client decodes no Content-Encoding."""
    connection = http.client.HTTPConnection("127.0.0.1", site.server.port, timeout=30)
    try:
        connection.request(method, "/" + path, headers={**site.read, **headers})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("path", PAGES)
def test_each_coding_decompresses_to_the_page_and_has_its_own_etag(
    site: Site, path: str, accept: str
) -> None:
    plain, body = fetch(site, path, Accept=accept, **{"Accept-Encoding": "identity"})
    assert plain.status == 200 and plain.getheader("Content-Encoding") is None
    assert len(body) >= MIN_SIZE
    etags = {plain.getheader("ETag")}
    for coding, decompress in DECOMPRESS.items():
        response, sent = fetch(site, path, Accept=accept, **{"Accept-Encoding": coding})
        assert response.status == 200
        assert response.getheader("Content-Encoding") == coding
        assert response.getheader("Content-Type") == plain.getheader("Content-Type")
        assert response.getheader("Vary") == "Accept, Accept-Encoding"
        assert response.getheader("Content-Length") == str(len(sent))
        assert len(sent) < len(body) / 2
        assert decompress(sent) == body
        etags.add(response.getheader("ETag"))
    assert len(etags) == 3 and all(re.fullmatch(r'"[0-9a-f]{40}(-\w+)?"', e) for e in etags)


@pytest.mark.parametrize("path", PAGES)
def test_clients_get_what_they_ask_for(site: Site, path: str) -> None:
    expected = {
        None: None,
        PIP_ACCEPT_ENCODING: "gzip",
        UV_ACCEPT_ENCODING: "zstd",
        "gzip, deflate, br, zstd": "zstd",
        "zstd;q=0.5, gzip": "gzip",
        "br": None,
        "gzip;q=0, zstd;q=0, identity;q=0": None,  # nothing acceptable: still an answer
        "\xe9;q=\xe9, ,;": None,
    }
    for accept_encoding, coding in expected.items():
        headers = {"Accept-Encoding": accept_encoding} if accept_encoding is not None else {}
        response, _ = fetch(site, path, **headers)
        assert response.status == 200, accept_encoding
        assert response.getheader("Content-Encoding") == coding, accept_encoding
        assert response.getheader("Vary") == "Accept, Accept-Encoding"


@pytest.mark.parametrize("coding", ["identity", *DECOMPRESS])
@pytest.mark.parametrize("path", PAGES[:2])
def test_304_for_each_coding_with_its_own_etag(site: Site, path: str, coding: str) -> None:
    ae = {"Accept-Encoding": coding}
    first, _ = fetch(site, path, **ae)
    etag = first.getheader("ETag")
    for sent in (etag, f"W/{etag}", f'"other", {etag}'):
        again, body = fetch(site, path, **ae, **{"If-None-Match": sent})
        assert again.status == 304 and body == b""
        assert again.getheader("ETag") == etag
        assert again.getheader("Vary") == "Accept, Accept-Encoding"
        assert again.getheader("Content-Encoding") is None
    # Another coding's tag is another representation's: the page is sent.
    for other in {"identity", *DECOMPRESS} - {coding}:
        other_etag = fetch(site, path, **{"Accept-Encoding": other})[0].getheader("ETag")
        assert other_etag != etag
        response, _ = fetch(site, path, **ae, **{"If-None-Match": other_etag})
        assert response.status == 200


@pytest.mark.parametrize("coding", ["identity", *DECOMPRESS])
def test_head_has_the_headers_of_get_and_no_body(site: Site, coding: str) -> None:
    ae = {"Accept-Encoding": coding}
    got, body = fetch(site, "simple/squeeze/", **ae)
    head, nothing = fetch(site, "simple/squeeze/", "HEAD", **ae)
    assert head.status == 200 and nothing == b""
    for name in ("Content-Length", "Content-Encoding", "ETag", "Vary", "Content-Type"):
        assert head.getheader(name) == got.getheader(name), name
    assert got.getheader("Content-Length") == str(len(body))


def test_uvicorn_sends_the_same(site: Site, start_server) -> None:
    server = start_server("--server", "uvicorn")
    for dist in site.wheels[:6]:
        upload = upload_file(
            server, dist.path, dist.name, dist.version, ("local", server.write_secret)
        )
        assert upload.status_code == 200
    other = Site(server, site.wheels[:6], site.sdist, basic_auth("local", server.read_secret))
    plain = fetch(other, "simple/squeeze/", Accept=JSON)[1]
    assert len(plain) >= MIN_SIZE
    for coding, decompress in DECOMPRESS.items():
        ae = {"Accept": JSON, "Accept-Encoding": coding}
        got, body = fetch(other, "simple/squeeze/", **ae)
        head, nothing = fetch(other, "simple/squeeze/", "HEAD", **ae)
        assert got.getheader("Content-Encoding") == coding and decompress(body) == plain
        assert nothing == b"" and got.getheader("Content-Length") == str(len(body))
        for name in ("Content-Length", "Content-Encoding", "ETag", "Vary"):
            assert head.getheader(name) == got.getheader(name), name
        again, _ = fetch(other, "simple/squeeze/", **ae, **{"If-None-Match": got.getheader("ETag")})
        assert again.status == 304
        wheel, data = fetch(other, f"simple/squeeze/{site.wheels[0].filename}", **ae)
        assert wheel.getheader("Content-Encoding") is None
        assert data == site.wheels[0].path.read_bytes()


def test_pages_from_an_upstream_index_are_compressed_too(
    site: Site, start_server, tmp_path: Path
) -> None:
    """A second pywharf with the first as its upstream: the upstream page, cached, is
    compressed like a local one (the upstream's own compressed answer decoded on the way)."""
    upstream = (
        f"http://__token__:{site.server.read_secret}@127.0.0.1:{site.server.port}/r/local/simple/"
    )
    config = tmp_path / "config.toml"
    config.write_text(
        '[team]\ntype = "file_system"\nread_secret = "team-read-secret-00"\n'
        f'write_secret = "team-write-secret-0"\nupstream_url = "{upstream}"\n'
    )
    server = start_server("--config", str(config))
    down = Site(server, site.wheels, site.sdist, basic_auth("__token__", "team-read-secret-00"))
    path = "r/team/simple/squeeze/"
    plain, body = fetch(down, path, Accept=JSON, **{"Accept-Encoding": "identity"})
    assert plain.status == 200 and len(body) >= MIN_SIZE
    for coding, decompress in DECOMPRESS.items():
        ae = {"Accept": JSON, "Accept-Encoding": coding}
        response, sent = fetch(down, path, **ae)
        assert response.getheader("Content-Encoding") == coding
        assert decompress(sent) == body
        assert response.getheader("ETag") != plain.getheader("ETag")
        again, _ = fetch(down, path, **ae, **{"If-None-Match": response.getheader("ETag")})
        assert again.status == 304
    wheel, data = fetch(down, f"{path}{site.wheel.filename}", **{"Accept-Encoding": "zstd"})
    assert wheel.getheader("Content-Encoding") is None
    assert data == site.wheel.path.read_bytes()


@pytest.mark.parametrize("which, suffix", [("wheel", ""), ("sdist", ""), ("wheel", ".metadata")])
def test_files_and_metadata_are_never_compressed(site: Site, which: str, suffix: str) -> None:
    dist: Dist = getattr(site, which)
    path = f"simple/squeeze/{dist.filename}{suffix}"
    plain, expected = fetch(site, path, **{"Accept-Encoding": "identity"})
    assert plain.status == 200
    if not suffix:
        assert expected == dist.path.read_bytes()
    for accept_encoding in (PIP_ACCEPT_ENCODING, UV_ACCEPT_ENCODING, "*", "gzip;q=1, br"):
        for method in ("GET", "HEAD"):
            response, body = fetch(site, path, method, **{"Accept-Encoding": accept_encoding})
            assert response.status == 200
            assert response.getheader("Content-Encoding") is None
            assert response.getheader("Content-Length") == str(len(expected))
            assert body == (expected if method == "GET" else b"")


def test_errors_are_not_compressed(site: Site) -> None:
    for path in ("simple/no-such-project/", "simple/squeeze/no-such-file.whl"):
        response, _ = fetch(site, path, **{"Accept-Encoding": "gzip, zstd"})
        assert response.status == 404 and response.getheader("Content-Encoding") is None


@pytest.mark.parametrize(
    "tool, accept_encoding, coding",
    [("pip", PIP_ACCEPT_ENCODING, "gzip"), ("uv", UV_ACCEPT_ENCODING, "zstd")],
)
def test_pip_and_uv_install_through_compressed_pages(
    site: Site, client_env: dict[str, str], tmp_path: Path, tool: str, accept_encoding, coding
) -> None:
    """Through a recording proxy: the client's own Accept-Encoding, the page sent
    compressed, the files not."""
    recorder = Recorder(site.server.port)
    try:
        index = recorder.index_url("local", site.server.read_secret)
        target = tmp_path / "target"
        install = clients.pip_install if tool == "pip" else clients.uv_pip_install
        install(index, target, "squeeze", env=client_env)
        out = clients.import_from(target, "import squeeze; print(squeeze.VERSION)", client_env)
        assert out == "1.11"
    finally:
        recorder.stop()
    pages = [e for e in recorder.exchanges if e.path == "/simple/squeeze/"]
    files = [e for e in recorder.exchanges if e.path.startswith("/simple/squeeze/squeeze")]
    assert pages and files, recorder.exchanges
    for page in pages:
        assert (page.accept_encoding, page.status, page.content_encoding) == (
            accept_encoding,
            200,
            coding,
        )
    for file in files:
        assert file.status == 200 and file.content_encoding is None, file
