"""``pywharf_core.sessions``: the signed session cookie, the login form's CSRF token, the
signing key and the browser test, by function call on hand-built Starlette requests."""

from __future__ import annotations

import stat
import time
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response

from pywharf_core.backend import Access
from pywharf_core.sessions import (
    CSRF_COOKIE,
    KEY_FILE,
    SESSION_COOKIE,
    SessionSigner,
    is_browser,
    load_or_create_key,
)

KEY = "k" * 64


def request(cookies: dict[str, str] | None = None, scheme: str = "http", **headers: str) -> Request:
    raw = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    if cookies:
        raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": scheme,
        "server": ("wharf.test", 443 if scheme == "https" else 80),
        "path": "/",
        "root_path": "",
        "query_string": b"",
        "headers": raw,
    }
    return Request(scope)


def set_cookies(response: Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getlist("set-cookie"):
        jar.load(header)
    return jar


def issued(signer: SessionSigner, repo: str, access: Access, scheme: str = "http") -> str:
    response = Response()
    signer.issue(response, request(scheme=scheme), repo, access)
    return set_cookies(response)[SESSION_COOKIE].value


def test_an_issued_session_reads_back() -> None:
    signer = SessionSigner(KEY, lifetime=3600)
    before = time.time()
    cookie = issued(signer, "team", Access.WRITE)
    session = signer.read(request({SESSION_COOKIE: cookie}))
    assert session is not None
    assert (session.repo, session.access) == ("team", Access.WRITE)
    assert before + 3600 <= session.expires <= time.time() + 3600
    # the lifetime is in the cookie: another signer with the key reads it the same
    assert SessionSigner(KEY, lifetime=60).read(request({SESSION_COOKIE: cookie})) == session


def test_the_cookie_never_carries_a_secret_and_is_locked_down() -> None:
    signer = SessionSigner(KEY, lifetime=120)
    response = Response()
    signer.issue(response, request(scheme="https"), "team", Access.READ)
    morsel = set_cookies(response)[SESSION_COOKIE]
    assert KEY not in morsel.value
    assert morsel["httponly"] and morsel["secure"]
    assert morsel["samesite"].lower() == "lax"
    assert (morsel["max-age"], morsel["path"]) == ("120", "/")
    plain = Response()
    signer.issue(plain, request(scheme="http"), "team", Access.READ)
    assert not set_cookies(plain)[SESSION_COOKIE]["secure"]


def flip(value: str, index: int) -> str:
    return value[:index] + ("A" if value[index] != "A" else "B") + value[index + 1 :]


# Not the last character: it may carry only base64 padding bits, which decode the same.
@pytest.mark.parametrize("where", [0, 5, -5, -12])
def test_a_tampered_cookie_is_refused(where: int) -> None:
    signer = SessionSigner(KEY, lifetime=3600)
    cookie = issued(signer, "team", Access.READ)
    index = where % len(cookie)
    assert signer.read(request({SESSION_COOKIE: flip(cookie, index)})) is None


@pytest.mark.parametrize("value", ["", "garbage", "a.b", "e30.AAAA"])
def test_garbage_cookies_are_refused(value: str) -> None:
    assert SessionSigner(KEY, 3600).read(request({SESSION_COOKIE: value})) is None


def test_no_cookie_is_no_session() -> None:
    assert SessionSigner(KEY, 3600).read(request()) is None


def test_another_key_or_the_csrf_token_is_no_session() -> None:
    cookie = issued(SessionSigner(KEY, 3600), "team", Access.WRITE)
    assert SessionSigner("other" * 10, 3600).read(request({SESSION_COOKIE: cookie})) is None
    signer = SessionSigner(KEY, 3600)
    _nonce, token = signer.csrf_token(request())
    assert signer.read(request({SESSION_COOKIE: token})) is None  # another salt


def test_an_expired_session_is_refused() -> None:
    cookie = issued(SessionSigner(KEY, lifetime=0), "team", Access.WRITE)
    assert SessionSigner(KEY, lifetime=3600).read(request({SESSION_COOKIE: cookie})) is None


def test_a_session_granting_nothing_is_refused() -> None:
    signer = SessionSigner(KEY, 3600)
    assert signer.read(request({SESSION_COOKIE: issued(signer, "team", Access.NONE)})) is None


def test_clear_deletes_the_cookie() -> None:
    response = Response()
    SessionSigner.clear(response)
    morsel = set_cookies(response)[SESSION_COOKIE]
    assert morsel.value == "" and morsel["max-age"] == "0"


def test_csrf_double_submit() -> None:
    signer = SessionSigner(KEY, 3600)
    nonce, token = signer.csrf_token(request())
    assert nonce and token and nonce != token
    with_cookie = request({CSRF_COOKIE: nonce})
    assert signer.csrf_valid(with_cookie, token)
    # an existing cookie's nonce is reused, so the form and the cookie stay paired
    assert signer.csrf_token(with_cookie)[0] == nonce
    other_nonce, other_token = signer.csrf_token(request())
    assert other_nonce != nonce
    assert not signer.csrf_valid(with_cookie, other_token)
    assert not signer.csrf_valid(with_cookie, "")
    assert not signer.csrf_valid(request(), token)
    assert not signer.csrf_valid(with_cookie, flip(token, len(token) - 3))
    assert not SessionSigner("other" * 10, 3600).csrf_valid(with_cookie, token)
    session_cookie = issued(signer, "team", Access.READ)
    assert not signer.csrf_valid(with_cookie, session_cookie)  # another salt


def test_csrf_cookie_is_strict() -> None:
    response = Response()
    SessionSigner.set_csrf_cookie(response, request(scheme="https"), "nonce-1")
    morsel = set_cookies(response)[CSRF_COOKIE]
    assert morsel.value == "nonce-1"
    assert morsel["samesite"].lower() == "strict" and morsel["httponly"] and morsel["secure"]


def test_the_signing_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path, "given-key") == "given-key"
    assert not (tmp_path / KEY_FILE).exists()
    first = load_or_create_key(tmp_path, None)
    assert len(first) == 64 and int(first, 16) >= 0
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path, None) == first
    assert load_or_create_key(tmp_path, "") == first
    assert load_or_create_key(tmp_path / "other", None) != first


@pytest.mark.parametrize(
    "headers, browser",
    [
        ({"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, True),
        ({"accept": "text/html"}, False),  # pip < 22.2: it must get its 401 (issue 14)
        ({"accept": "text/html", "sec-fetch-mode": "navigate"}, True),
        ({"accept": "text/html", "authorization": "Basic eDp5"}, False),
        ({}, False),
        ({"accept": "*/*"}, False),  # curl, pip's old default
        ({"accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}, False),
        ({"accept": "application/vnd.pypi.simple.v1+html, text/html"}, False),
        ({"accept": "image/png, text/html;q=0"}, False),  # nothing acceptable at all
    ],
)
def test_is_browser(headers: dict[str, str], browser: bool) -> None:
    assert is_browser(request(**headers)) is browser
