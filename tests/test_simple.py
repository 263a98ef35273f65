"""The PEP 503 pages and file downloads, as any client sees them."""

from __future__ import annotations

import hashlib
import http.client
import re

import pytest
from wharftest.server import WharfServer, basic_auth, get


@pytest.fixture
def auth(populated: WharfServer) -> tuple[str, str]:
    return ("local", populated.read_secret)


def test_project_list(populated: WharfServer, auth) -> None:
    response = get(populated, "simple/", auth=auth)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert '<meta name="pypi:repository-version" content="1.4">' in response.text
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a>', response.text) == [
        ("demo-app/", "demo-app"),
        ("foo-bar-baz/", "foo-bar-baz"),
    ]


def test_project_page_has_hashes_and_escaped_requires_python(
    populated: WharfServer, auth, dists
) -> None:
    response = get(populated, "simple/foo-bar-baz/", auth=auth)
    assert response.status_code == 200
    text = response.text
    assert '<meta name="pypi:repository-version" content="1.4">' in text
    for dist in (dists.base_wheel, dists.base_sdist, dists.base_future):
        assert f'href="{dist.filename}#sha256={dist.sha256}"' in text
    assert 'data-requires-python="&gt;=3.99"' in text
    # Versions in order, oldest first.
    assert text.index("1.0") < text.index("2.0")
    app = get(populated, "simple/demo-app/", auth=auth).text
    assert 'data-requires-python="&gt;=3.8"' in app


@pytest.mark.parametrize(
    "path, location",
    [
        ("simple/Foo_Bar.baz/", "simple/foo-bar-baz/"),
        ("simple/FOO-bar-BAZ/", "simple/foo-bar-baz/"),
        ("simple/foo-bar-baz", "simple/foo-bar-baz/"),
        ("simple/Foo_Bar.baz", "simple/foo-bar-baz/"),
        ("simple/Foo_Bar.baz/foo_bar_baz-1.0.tar.gz", "simple/foo-bar-baz/foo_bar_baz-1.0.tar.gz"),
        ("r/local/simple/Foo_Bar.baz/", "r/local/simple/foo-bar-baz/"),
        ("r/local/simple/Foo_Bar.baz", "r/local/simple/foo-bar-baz/"),
    ],
)
def test_non_canonical_urls_redirect(
    populated: WharfServer, auth, path: str, location: str
) -> None:
    response = get(populated, path, auth=auth)
    assert response.status_code == 301
    assert response.headers["Location"] == "/" + location
    if location.endswith("/"):
        followed = get(populated, path, auth=auth, allow_redirects=True)
        assert followed.status_code == 200 and followed.url == populated.url + location


def test_unknown_project_is_404(populated: WharfServer, auth) -> None:
    response = get(populated, "simple/no-such-project/", auth=auth)
    assert response.status_code == 404
    assert "not in this repository" in response.text


def test_pages_need_credentials(populated: WharfServer) -> None:
    for path in ("simple/", "simple/foo-bar-baz/", "simple/foo-bar-baz/x.whl"):
        response = get(populated, path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pywharf"'
        assert get(populated, path, auth=("local", "wrong")).status_code == 401


@pytest.mark.parametrize("which", ["base_wheel", "base_sdist"])
def test_download_streams_the_exact_bytes(populated: WharfServer, auth, dists, which: str) -> None:
    dist = getattr(dists, which)
    response = get(populated, f"simple/foo-bar-baz/{dist.filename}", auth=auth)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == dist.sha256
    assert response.headers["Content-Length"] == str(dist.path.stat().st_size)
    assert "Content-Encoding" not in response.headers
    expected = "application/zip" if dist.filename.endswith(".whl") else "application/x-tar+gzip"
    assert response.headers["Content-Type"] == expected
    assert "immutable" in response.headers["Cache-Control"]
    # The server's internal headers (sendfile, reason phrase) never reach a client.
    assert not [h for h in response.headers if h.lower().startswith("x-pywharf")]


def test_download_range_and_head(populated: WharfServer, auth, dists) -> None:
    path = f"simple/foo-bar-baz/{dists.base_wheel.filename}"
    data = dists.base_wheel.path.read_bytes()
    partial = get(populated, path, auth=auth, headers={"Range": "bytes=10-19"})
    assert partial.status_code == 206
    assert partial.content == data[10:20]
    import requests

    head = requests.head(populated.url + path, auth=auth, timeout=10)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.content == b""


def test_download_revalidates_with_its_etag(populated: WharfServer, auth, dists) -> None:
    path = f"simple/foo-bar-baz/{dists.base_wheel.filename}"
    first = get(populated, path, auth=auth)
    assert first.headers["ETag"] == f'"{dists.base_wheel.sha256}"'
    again = get(populated, path, auth=auth, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.content == b""
    other = get(populated, path, auth=auth, headers={"If-None-Match": '"0000"'})
    assert other.status_code == 200
    assert other.content == dists.base_wheel.path.read_bytes()


def test_a_page_revalidated_keeps_the_connection(populated: WharfServer, auth) -> None:
    # A 304 ends with its headers: waitress would close the connection after it (no
    # Content-Length), and a client revalidating its cached pages reconnect for each.
    connection = http.client.HTTPConnection("127.0.0.1", populated.port, timeout=10)
    headers = basic_auth(*auth)
    connection.request("GET", "/simple/foo-bar-baz/", headers=headers)
    first = connection.getresponse()
    first.read()
    etag = first.getheader("ETag")
    for _ in range(3):
        connection.request(
            "GET", "/simple/foo-bar-baz/", headers={**headers, "If-None-Match": etag}
        )
        again = connection.getresponse()
        assert again.status == 304 and again.read() == b""
        assert again.getheader("Connection") is None and again.getheader("ETag") == etag
        assert again.getheader("Content-Security-Policy") is not None
    connection.request("GET", "/simple/foo-bar-baz/", headers={**headers, "Connection": "close"})
    last = connection.getresponse()
    assert last.status == 200 and last.read()  # the same connection, still open
    assert last.getheader("Connection") == "close"
    connection.close()


def test_unknown_file_is_404(populated: WharfServer, auth) -> None:
    response = get(populated, "simple/foo-bar-baz/foo_bar_baz-9.9-py3-none-any.whl", auth=auth)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "raw_path",
    [
        "/simple/foo-bar-baz/..%2f..%2f..%2fembedded_default.toml",
        "/simple/foo-bar-baz/%2e%2e/%2e%2e/embedded_default.toml",
        "/simple/../embedded_default.toml",
        "/simple/foo-bar-baz/../../../../etc/passwd",
        "/simple/%2e%2e/cache/local/storage/index.toml",
        "/simple/foo-bar-baz/foo_bar_baz-1.0-py3-none-any.whl.metadata/../../x",
    ],
)
def test_path_traversal_in_urls_reaches_nothing(populated: WharfServer, raw_path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", populated.port, timeout=10)
    try:
        connection.request("GET", raw_path, headers=basic_auth("local", populated.read_secret))
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status in (301, 307, 404), (response.status, body)
    assert b"write_secret" not in body and b"root:" not in body
