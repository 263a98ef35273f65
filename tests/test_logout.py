"""Item 21 of issue 14: logging out ends the session on the server, so a copied cookie
stops working too, on every server sharing the store; ``GET /logout/`` only shows a
one-button form, so that a cross-site GET cannot log anyone out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from wharftest.server import WharfServer, get, wait_for

from pywharf_core.revocations import (
    REFRESH_SECONDS,
    REVOKED_DOCUMENT,
    MemorySessionRevocations,
    RootSessionRevocations,
    session_id,
)

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def log_in(server: WharfServer) -> dict[str, str]:
    """The session cookie of a browser login with the read secret."""
    session = requests.Session()
    form = session.get(server.url + "login/", timeout=10)
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    done = session.post(
        server.url + "login/",
        data={"repo": "local", "secret": server.read_secret, "csrf": token},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 303, done.text
    return {"pywharf_session": session.cookies["pywharf_session"]}


def browses(server: WharfServer, cookies: dict[str, str]) -> bool:
    page = get(server, "simple/", headers=BROWSER, cookies=cookies)
    assert page.status_code in (200, 303), page.status_code
    return page.status_code == 200


def test_logout_ends_the_session_for_every_copy_of_the_cookie(start_server) -> None:
    server = start_server()
    cookies = log_in(server)
    assert browses(server, cookies)
    # A GET (a link, an image, a cross-site navigation) changes nothing.
    page = get(server, "logout/", headers=BROWSER, cookies=cookies)
    assert page.status_code == 200 and 'id="logout-confirm"' in page.text
    assert '<form method="post">' in page.text and "logged in to local" in page.text
    assert browses(server, cookies)
    # The form's POST ends it; the browser's cookie is cleared...
    out = requests.post(server.url + "logout/", cookies=cookies, allow_redirects=False, timeout=10)
    assert out.status_code == 303 and out.headers["Location"] == "/login/"
    assert 'pywharf_session=""' in out.headers["Set-Cookie"]
    # ...and a copy kept elsewhere is refused, by browsers and tools alike.
    assert not browses(server, cookies)
    assert get(server, "simple/", cookies=cookies).status_code == 401
    # A fresh login works.
    assert browses(server, log_in(server))


def test_servers_sharing_a_storage_share_the_logout(start_server, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    first = start_server(root=root)
    second = start_server(root=root)  # the same session key and storage
    cookies = log_in(first)
    assert browses(second, cookies)
    requests.post(first.url + "logout/", cookies=cookies, allow_redirects=False, timeout=10)
    assert not browses(first, cookies)  # at once here
    # The other replica reads the repository's shared state again within a few seconds.
    wait_for(lambda: not browses(second, cookies), timeout=REFRESH_SECONDS + 5)
    document = root / "cache" / "local" / "storage" / ".pywharf-state" / REVOKED_DOCUMENT
    assert len(json.loads(document.read_text())) == 1


def test_the_pages_log_out_with_a_post(start_server) -> None:
    server = start_server()
    home = get(server, "simple/", headers=BROWSER, cookies=log_in(server))
    assert '<form class="who" method="post"' in home.text and 'id="logout"' in home.text


@pytest.mark.parametrize("kind", ["root", "memory"])
def test_revocations_store(tmp_path: Path, kind: str) -> None:
    store = RootSessionRevocations(tmp_path) if kind == "root" else MemorySessionRevocations()
    ended, other = session_id("cookie-a"), session_id("cookie-b")
    assert not store.is_revoked(ended)
    store.revoke(ended, time.time() + 60)
    store.revoke(ended, time.time() + 60)  # twice is fine
    assert store.is_revoked(ended) and not store.is_revoked(other)
    # Entries past their session's expiry are dropped when another is revoked.
    store.revoke(other, time.time() - 1)
    store.revoke(session_id("cookie-c"), time.time() + 60)
    assert store.is_revoked(ended) and not store.is_revoked(other)


def test_root_store_takes_only_session_ids(tmp_path: Path) -> None:
    store = RootSessionRevocations(tmp_path)
    with pytest.raises(ValueError):
        store.revoke("../../etc/passwd", time.time() + 60)
    assert not store.is_revoked("../config.toml")
