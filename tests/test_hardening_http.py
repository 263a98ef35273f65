"""Issue 14 (HTTP edges): what a stranger can send, and what comes back.

Each test sends what a client could send (raw bytes where a client library would refuse
to) to a real server, and checks the answer is the right 4xx, on one line, with nothing
reflected that could forge a header, a log line or a redirect.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest
import requests
from itsdangerous import URLSafeSerializer
from wharftest.server import WharfServer, basic_auth, get, upload_file, wait_for

from pywharf_core.auth import parse_basic_auth

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dists) -> Iterator[WharfServer]:
    """One waitress server holding one wheel (and so one project page)."""
    server = WharfServer(tmp_path_factory.mktemp("hardening") / "root").start()
    write = ("local", server.write_secret)
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", write).ok
    yield server
    server.stop()


def exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Sends ``raw`` as it is and reads until the server closes (ask for
    ``Connection: close`` in the last request)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def head_of(response: bytes) -> str:
    return response.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def assert_no_traceback(server: WharfServer) -> None:
    log = server.log_text()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]


# -- 1. Authorization ------------------------------------------------------------------------


def test_non_ascii_or_non_utf8_basic_auth_is_no_credentials() -> None:
    assert parse_basic_auth("Basic \xe9\xe9") is None
    assert parse_basic_auth("Basic " + base64.b64encode(b"\xff:\xfe").decode()) is None
    assert parse_basic_auth("Basic ====") is None
    parsed = parse_basic_auth("Basic " + base64.b64encode("dépôt:sécret".encode()).decode())
    assert parsed is not None and (parsed.username, parsed.password) == ("dépôt", "sécret")


def test_a_non_ascii_authorization_header_gets_401(server: WharfServer) -> None:
    token = base64.b64encode(b"local:\xff\xfe").decode()
    for value in ("Basic \xe9\xe9", "Basic \xff", f"Basic {token}", "Basic", "\xe9"):
        for path in ("/simple/", "/r/local/simple/", "/index_mtime/"):
            raw = request("GET", path, f"Authorization: {value}", "Connection: close")
            response = exchange(server.port, raw)
            assert status_of(response) == 401, (value, path, response)
    assert_no_traceback(server)


# -- 2. Origin -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["simple/", "simple/foo-bar-baz/x.whl/yank", "simple/foo-bar-baz/x.whl/unyank"]
)
def test_a_malformed_origin_is_a_400_that_says_so(server: WharfServer, path: str) -> None:
    for origin in ("http://[", "http://[::1", "https://[not-ip]"):
        response = requests.post(
            server.url + path,
            headers={"Origin": origin},
            auth=("local", server.write_secret),
            timeout=10,
        )
        assert response.status_code == 400, response.text
        assert "Origin header is not a URL" in response.text
    # A well-formed one from elsewhere is still refused as cross-site.
    other = requests.post(server.url + path, headers={"Origin": "http://evil.example"}, timeout=10)
    assert other.status_code == 403


def test_a_malformed_origin_on_initialize_is_a_400(start_server) -> None:
    server = start_server()
    response = requests.post(
        server.url + "initialize/", headers={"Origin": "http://["}, data={"config": ""}, timeout=10
    )
    assert response.status_code == 400 and "Origin header is not a URL" in response.text


# -- 3. The realm ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "segment, realm",
    [
        ("%E2%82%AC", "%E2%82%AC"),  # outside latin-1
        ("a%0D%0Ab", "a%0D%0Ab"),  # CR/LF
        ("a%00b", "a%00b"),  # NUL
        ("a%22b%5C", "a%22b%5C"),  # quote and backslash
        ("d%C3%A9p%C3%B4t", "d%C3%A9p%C3%B4t"),  # latin-1, but not ASCII
        ("plain-name", "plain-name"),
    ],
)
def test_the_realm_from_the_path_is_sanitised(
    server: WharfServer, segment: str, realm: str
) -> None:
    raw = request("GET", f"/r/{segment}/simple/", "Connection: close")
    response = exchange(server.port, raw)
    assert status_of(response) == 401, response
    assert f'\r\nWww-Authenticate: Basic realm="{realm}"\r\n' in head_of(response) + "\r\n"


# -- 4. The CSRF cookie ----------------------------------------------------------------------


def test_a_non_ascii_csrf_cookie_is_replaced_not_compared(server: WharfServer) -> None:
    nonce = "\xe9\xe9-not-a-nonce"
    form = exchange(
        server.port,
        request("GET", "/login/", f"Cookie: pywharf_csrf={nonce}", "Connection: close"),
    )
    assert status_of(form) == 200
    cookie = next(line for line in head_of(form).split("\r\n") if line.startswith("Set-Cookie"))
    assert "\xe9" not in cookie and "pywharf_csrf=" in cookie
    # A form token signed over that nonce (as an older server would have issued) is
    # refused like any stale form: 400, not a 500 from comparing non-ASCII text.
    key = (server.root / "session_key").read_text().strip()
    token = URLSafeSerializer(key, salt="pywharf-login-csrf").dumps(nonce)
    body = f"repo=local&secret=x&csrf={token}".encode()
    posted = exchange(
        server.port,
        request(
            "POST",
            "/login/",
            f"Cookie: pywharf_csrf={nonce}",
            "Content-Type: application/x-www-form-urlencoded",
            "Connection: close",
            body=body,
        ),
    )
    assert status_of(posted) == 400 and b"form expired" in posted
    assert_no_traceback(server)


# -- 5. Paths that do not decode -------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/healthz%ff",
        "/simple/%ff/",
        "/simple/foo-bar-baz/%c3%28.whl",
        "/r/%ed%a0%80/simple/",  # an encoded surrogate
        "/login/%80",
        "/%fe%ff",
    ],
)
def test_a_path_that_is_not_utf8_is_a_400_on_every_route(server: WharfServer, target: str) -> None:
    response = exchange(server.port, request("GET", target, "Connection: close"))
    assert status_of(response) == 400, response
    assert b"must be UTF-8" in response


def test_no_traceback_for_paths_that_do_not_decode(server: WharfServer) -> None:
    for target in ("/healthz%ff", "/simple/%ff/"):
        exchange(server.port, request("GET", target, "Connection: close"))
    assert "Traceback" not in server.log_text()


# -- 22. Headers of the PEP 503 / 691 pages --------------------------------------------------


@pytest.mark.parametrize("path", ["simple/", "simple/foo-bar-baz/", "r/local/simple/foo-bar-baz/"])
@pytest.mark.parametrize("accept", ["text/html", "application/vnd.pypi.simple.v1+json"])
def test_simple_pages_carry_a_content_security_policy(
    server: WharfServer, path: str, accept: str
) -> None:
    response = get(server, path, auth=("local", server.read_secret), headers={"Accept": accept})
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


# -- 23. Only a browser's navigation is sent to the login page --------------------------------


def test_pip_before_22_2_gets_a_401_not_the_login_page(server: WharfServer) -> None:
    for headers in (
        {"Accept": "text/html"},  # pip < 22.2
        {"Accept": "text/html", "User-Agent": "pip/22.1 {}"},
        {"Accept": "text/html; q=1, */*; q=0.1"},
        {"Accept": "text/html", "Sec-Fetch-Mode": "cors"},
    ):
        response = get(server, "simple/foo-bar-baz/", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pywharf"'
    for headers in (
        {"Accept": BROWSER_ACCEPT},  # Firefox, Chrome, Safari: xhtml beside html
        {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"},
        {"Accept": "text/html", "Sec-Fetch-Dest": "document"},
    ):
        response = get(server, "simple/foo-bar-baz/", headers=headers)
        assert response.status_code == 303, headers
        assert response.headers["Location"].startswith("/login/?next=")


# -- 24. The access log ----------------------------------------------------------------------


def test_escape_controls() -> None:
    from pywharf_core.logs import escape_controls

    assert escape_controls("a\r\nb\x00c\x1b[31m\u2028\x85\td") == (
        "a\\r\\nb\\x00c\\x1b[31m\\u2028\\x85\td"
    )


def test_crlf_in_a_path_cannot_forge_a_log_line(server: WharfServer) -> None:
    forged = "2026-01-01 00:00:00,000 INFO pywharf.access: GET /forged 200 0.0001s"
    target = "/x%0D%0A" + forged.replace(" ", "%20") + "%00"
    response = exchange(server.port, request("GET", target, "Connection: close"))
    assert status_of(response) == 404
    lines = server.log_text().splitlines()
    assert not [line for line in lines if line.startswith(forged)]
    assert [line for line in lines if "GET /x\\r\\n2026-01-01" in line and "\\x00 404" in line]


# -- 25. HEAD --------------------------------------------------------------------------------


def head_responses(server: WharfServer, wheel: str) -> list[tuple[str, bytes]]:
    """Pipelined HEAD requests on one connection, then a GET whose body ends the
    exchange: any body after a HEAD's headers would be read as the next status line."""
    auth = "Authorization: " + basic_auth("local", server.read_secret)["Authorization"]
    targets = [
        ("/healthz", ()),
        ("/simple/", ()),  # 401
        ("/simple/", (auth,)),
        ("/simple/foo-bar-baz/", (auth, "Accept: application/vnd.pypi.simple.v1+json")),
        (f"/simple/foo-bar-baz/{wheel}", (auth,)),  # a file (sendfile on waitress)
        ("/simple/no-such/", (auth,)),  # 404
        ("/nowhere", ()),
        ("/readyz", ()),
        ("/metrics", ()),
        ("/login/", ()),
        ("/simple/Foo_Bar.baz", (auth,)),  # 301
    ]
    raw = b"".join(request("HEAD", target, *headers) for target, headers in targets)
    raw += request("GET", "/healthz", "Connection: close")
    received = exchange(server.port, raw)
    answers = []
    for target, _ in targets:
        head, _, received = received.partition(b"\r\n\r\n")
        answers.append((target, head))
    return [*answers, ("GET /healthz", received)]


@pytest.mark.parametrize("kind", ["waitress", "uvicorn"])
def test_head_responses_have_no_body(start_server, dists, kind: str) -> None:
    server = start_server("--server", kind)
    # The uvicorn mode announces its URL a moment before it listens (server.py).
    wait_for(lambda: _accepts(server.port), timeout=10)
    write = ("local", server.write_secret)
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", write).ok
    answers = head_responses(server, dists.base_wheel.filename)
    for target, head in answers[:-1]:
        assert head.startswith(b"HTTP/1.1 "), (target, head)
        assert b"Content-Length" in head or b"content-length" in head, (target, head)
    statuses = [int(head.split(b" ", 2)[1]) for _, head in answers[:-1]]
    # /nowhere: 307 to /nowhere/, which says where the index is; /metrics is 404 without
    # --metrics_token.
    assert statuses == [200, 401, 200, 200, 200, 404, 307, 200, 404, 200, 301]
    # The GET after them all: its status line, then exactly its body.
    assert answers[-1][1].startswith(b"HTTP/1.1 200") and answers[-1][1].endswith(b"\r\n\r\nok\n")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return False
    return True


def test_head_of_a_bad_path_has_no_body(server: WharfServer) -> None:
    raw = request("HEAD", "/healthz%ff") + request("GET", "/healthz", "Connection: close")
    received = exchange(server.port, raw)
    first, _, rest = received.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 400") and rest.startswith(b"HTTP/1.1 200")


# -- 26. No Host reflected -------------------------------------------------------------------


def test_redirects_and_the_login_form_never_reflect_the_host(server: WharfServer) -> None:
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    read = ("local", server.read_secret)
    cases = [
        (get(server, "", headers=evil), "/simple/"),
        (
            requests.post(server.url + "logout/", headers=evil, allow_redirects=False, timeout=10),
            "/login/",
        ),
        (get(server, "simple/Foo_Bar.baz", headers=evil, auth=read), "/simple/foo-bar-baz/"),
        (
            get(server, "simple/", headers={**evil, "Accept": BROWSER_ACCEPT}),
            "/login/?next=/simple/",
        ),
    ]
    for response, location in cases:
        assert response.headers["Location"] == location
    form = get(server, "login/", headers=evil)
    assert 'action="/login/"' in form.text and "evil.example" not in form.text
    # Clients resolve the relative reference against the URL they asked.
    followed = requests.get(server.url + "simple/Foo_Bar.baz", auth=read, timeout=10)
    assert followed.status_code == 200 and followed.url == server.url + "simple/foo-bar-baz/"


def test_trailing_slash_redirects_are_relative(server: WharfServer) -> None:
    evil = {"Host": "evil.example"}
    read = ("local", server.read_secret)
    wheel = "simple/foo-bar-baz/foo_bar_baz-1.0-py3-none-any.whl"
    for path, location in [
        ("healthz/", "/healthz"),
        ("simple", "/simple/"),
        ("simple?format=text/html", "/simple/?format=text/html"),
        ("r/local/simple", "/r/local/simple/"),
        (wheel + "/", "/" + wheel),
    ]:
        response = get(server, path, headers=evil, auth=read)
        assert response.status_code == 307, path
        assert response.headers["Location"] == location


def test_a_canonical_redirect_is_percent_encoded_once(server: WharfServer) -> None:
    read = ("local", server.read_secret)
    response = get(server, "simple/Foo_Bar.baz/a%3Fb%25c%20d.whl", auth=read)
    assert response.status_code == 301
    assert response.headers["Location"] == "/simple/foo-bar-baz/a%3Fb%25c%20d.whl"


def test_a_forwarded_prefix_with_a_path_outside_latin1(start_server) -> None:
    # The proxy layer rebuilt raw_path by encoding the decoded path as latin-1: a 500.
    server = start_server("--trusted_proxy", "127.0.0.1")
    response = get(server, "r/%E2%82%AC/simple/", headers={"X-Forwarded-Prefix": "/pypi"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="%E2%82%AC"'
