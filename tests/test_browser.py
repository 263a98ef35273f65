"""People in a real browser (headless Chromium driven by Playwright), and the rules
that keep browsers and tools apart."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from itsdangerous import URLSafeSerializer
from wharftest import clients
from wharftest.distbuilder import build_wheel
from wharftest.server import WharfServer, get, upload_file, wait_for

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
HOSTILE = """# Demo app

A **demo** application.

<script>window.__pwned = 1; alert('pwned')</script>

[click me](javascript:window.__pwned=2)

<img src="x" onerror="window.__pwned=3">

```python
import demo_app
```
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, dists) -> Iterator[tuple[WharfServer, dict]]:
    folder = tmp_path_factory.mktemp("site")
    server = WharfServer(folder / "root").start()
    write = ("local", server.write_secret)
    old = build_wheel(folder / "old", "demo-app", "0.1", summary="The old one")
    new = build_wheel(
        folder / "new",
        "demo-app",
        "0.2",
        summary="A demo app",
        description=HOSTILE,
        requires_python=">=3.8",
    )
    for dist in (old, new):
        assert upload_file(server, dist.path, "demo-app", dist.version, write).ok
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", write).ok
    assert requests.post(
        f"{server.url}simple/demo-app/{old.filename}/yank",
        auth=write,
        data={"reason": "superseded"},
        timeout=10,
    ).ok
    yield server, {"old": old, "new": new}
    server.stop()


def test_log_in_browse_download_log_out(chromium, site, tmp_path: Path) -> None:
    server, files = site
    context = chromium.new_context(accept_downloads=True)  # type: ignore[attr-defined]
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(server.url + "simple/demo-app/")
    assert "/login/?next=" in page.url
    page.fill("#repo", "local")
    page.fill("#secret", "not-the-secret")
    response_holder = []
    page.on("response", lambda r: response_holder.append(r.status) if "/login/" in r.url else None)
    page.click("#login")
    page.wait_for_selector("#login-error")
    assert "Wrong repository name or secret" in page.inner_text("#login-error")
    assert 401 in response_holder

    page.fill("#secret", server.read_secret)
    page.click("#login")
    page.wait_for_url(server.url + "simple/demo-app/")  # back where it was going
    assert page.inner_text("h1").startswith("demo-app")
    assert page.inner_text("#summary") == "A demo app"
    files_table = page.inner_text("#files")
    assert files["new"].filename in files_table and files["new"].sha256 in files_table
    assert "yanked: superseded" in files_table
    assert ">=3.8" in files_table
    pip_snippet = page.inner_text("#install-pip")
    assert (
        pip_snippet
        == f"pip install --index-url http://local:READ_SECRET@{server.url[7:]}simple/ demo-app"
    )
    assert f"{server.url}simple/" in page.inner_text("#install-poetry")

    # The hostile description is rendered, and inert.
    assert page.inner_text("#description h1") == "Demo app"
    hrefs = page.eval_on_selector_all(
        "#description a", "els => els.map(e => e.getAttribute('href'))"
    )
    assert not [h for h in hrefs if h and h.strip().lower().startswith("javascript:")]
    page.click("#description a:has-text('click me')")
    time.sleep(0.3)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "project-page.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click(f"a.file:has-text('{files['new'].filename}')")
    downloaded = Path(download_info.value.path())
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == files["new"].sha256

    page.goto(server.url + "simple/")
    rows = page.inner_text("#projects")
    assert "demo-app" in rows and "foo-bar-baz" in rows
    page.fill("#filter", "demo")
    page.click("form[role=search] button")
    page.wait_for_url("**/simple/?q=demo")
    assert "foo-bar-baz" not in page.inner_text("#projects")
    page.screenshot(path=str(ARTIFACTS / "home-page.png"), full_page=True)

    page.click("#logout")
    page.wait_for_url("**/login/")
    page.goto(server.url + "simple/demo-app/")
    assert "/login/?next=" in page.url
    context.close()


def session_cookie(server: WharfServer, data: dict, key: str | None = None) -> dict[str, str]:
    key = key or (server.root / "session_key").read_text().strip()
    value = URLSafeSerializer(key, salt="pywharf-session").dumps(data)
    return {"pywharf_session": value}


def test_forged_and_expired_cookies_are_refused(site) -> None:
    server, _ = site
    headers = {"Accept": BROWSER_ACCEPT}
    good = session_cookie(server, {"repo": "local", "access": 1, "exp": time.time() + 600})
    assert get(server, "simple/", headers=headers, cookies=good).status_code == 200
    forged = session_cookie(
        server, {"repo": "local", "access": 2, "exp": time.time() + 600}, key="not-the-key"
    )
    expired = session_cookie(server, {"repo": "local", "access": 1, "exp": time.time() - 1})
    garbage = {"pywharf_session": "garbage"}
    for cookies in (forged, expired, garbage):
        browser = get(server, "simple/", headers=headers, cookies=cookies)
        assert browser.status_code == 303
        assert browser.headers["Location"] == "/login/?next=/simple/"
        tool = get(server, "simple/", cookies=cookies)  # no HTML preference: a tool
        assert tool.status_code == 401
    # A read session cannot change anything.
    yank = requests.post(f"{server.url}simple/demo-app/x.whl/yank", cookies=good, timeout=10)
    assert yank.status_code == 403


def test_tools_get_401_never_a_redirect(site, client_env: dict[str, str], tmp_path: Path) -> None:
    server, _ = site
    for accept in (PIP_ACCEPT, "application/vnd.pypi.simple.v1+json", "*/*", ""):
        response = get(server, "simple/demo-app/", headers={"Accept": accept})
        assert response.status_code == 401, accept
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pywharf"'
    bare = f"{server.url}simple/"
    result = clients.pip_install(
        bare, tmp_path / "t", "demo-app", "-vvv", env=client_env, check=False
    )
    assert result.returncode != 0
    assert '"GET /simple/demo-app/ HTTP/1.1" 401' in result.stdout + result.stderr


def test_login_form_rules(site) -> None:
    server, _ = site
    session = requests.Session()
    form = session.get(server.url + "login/", timeout=10)
    assert form.status_code == 200
    assert "script-src" not in form.headers["Content-Security-Policy"]  # none: default-src
    assert "default-src 'none'" in form.headers["Content-Security-Policy"]
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    # Without the CSRF token (or its cookie), a login is refused.
    bare = requests.post(
        server.url + "login/",
        data={"repo": "local", "secret": server.read_secret},
        allow_redirects=False,
        timeout=10,
    )
    assert bare.status_code == 400 and "form expired" in bare.text
    assert "pywharf_session" not in bare.headers.get("Set-Cookie", "")
    # `next` may only be a local path.
    ok = session.post(
        server.url + "login/",
        allow_redirects=False,
        timeout=10,
        data={
            "repo": "local",
            "secret": server.read_secret,
            "csrf": token,
            "next": "//evil.example/x",
        },
    )
    assert ok.status_code == 303 and ok.headers["Location"] == "/simple/"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert server.read_secret not in cookie and server.write_secret not in cookie
    # The session works for downloads too.
    page = session.get(
        server.url + "simple/demo-app/", headers={"Accept": BROWSER_ACCEPT}, timeout=10
    )
    assert page.status_code == 200 and "A demo app" in page.text
    logout = session.post(server.url + "logout/", allow_redirects=False, timeout=10)
    assert logout.status_code == 303 and logout.headers["Location"] == "/login/"
    assert (
        session.get(
            server.url + "simple/",
            headers={"Accept": BROWSER_ACCEPT},
            allow_redirects=False,
            timeout=10,
        ).status_code
        == 303
    )


def test_secure_cookie_behind_an_https_proxy(start_server) -> None:
    server = start_server("--trusted_proxy", "127.0.0.1")
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "pkgs.example.com",
        "X-Forwarded-Prefix": "/pypi",
    }
    session = requests.Session()
    form = session.get(server.url + "login/", headers=headers, timeout=10)
    # Relative references: the scheme and host are the ones the browser used.
    assert 'action="/pypi/login/"' in form.text
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    for cookie in session.cookies:
        cookie.secure = False  # the test talks plain HTTP to the server behind the "proxy"
    done = session.post(
        server.url + "login/",
        headers=headers,
        allow_redirects=False,
        timeout=10,
        data={"repo": "local", "secret": server.read_secret, "csrf": token},
    )
    assert done.status_code == 303
    assert done.headers["Location"] == "/pypi/simple/"
    assert "Secure" in done.headers["Set-Cookie"]
    unauthenticated = get(server, "simple/x/", headers={**headers, "Accept": BROWSER_ACCEPT})
    assert unauthenticated.headers["Location"] == "/pypi/login/?next=/pypi/simple/x/"


def logged_in_at_390_px(chromium, server: WharfServer, path: str, secret: str) -> tuple:
    """A phone-sized browser context and its page, logged in to ``local`` at ``path``."""
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(server.url + path)
    page.fill("#repo", "local")
    page.fill("#secret", secret)
    page.click("#login")
    page.wait_for_url(server.url + path)
    return context, page


def test_maintainer_forms_at_390_px(chromium, start_server, tmp_path: Path) -> None:
    server = start_server()
    write = ("local", server.write_secret)
    wheel = build_wheel(
        tmp_path / "w", "phone-app", "1.0", summary="On a phone",
        requires_dist=["foo-bar-baz>=1.0", "requests[socks]; python_version >= '3.8'"],
    )  # fmt: skip
    newer = build_wheel(
        tmp_path / "n", "phone-app", "2.0", summary="On a phone", requires_dist=["foo-bar-baz>=1.0"]
    )
    for dist in (wheel, newer):
        assert upload_file(server, dist.path, "phone-app", dist.version, write).ok
    context, page = logged_in_at_390_px(chromium, server, "simple/phone-app/", server.write_secret)
    assert "foo-bar-baz>=1.0" in page.inner_text("#requires-dist")
    assert "uv add --index local=" in page.inner_text("#install-uv-add")
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert page.evaluate(overflow) <= 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "project-page-maintainer-390.png"), full_page=True)

    mine = f"form.manage:has(input[value='{wheel.filename}'])"
    page.fill(f"{mine} input[name=reason]", "broken on arm64")
    page.click(f"{mine} button[value=yank]")
    page.wait_for_url(server.url + "simple/phone-app/")
    assert "yanked: broken on arm64" in page.inner_text("#files")
    page.click(f"{mine} button[value=delete]")
    page.wait_for_selector("#delete-confirmed")
    assert page.evaluate(overflow) <= 0
    page.screenshot(path=str(ARTIFACTS / "confirm-delete-390.png"), full_page=True)
    page.click("#delete-confirmed")
    page.wait_for_url(server.url + "simple/phone-app/")
    assert wheel.filename not in page.inner_text("#files")
    page.select_option("#status-form select", "archived")
    page.click("#set-status")
    page.wait_for_url(server.url + "simple/phone-app/")
    assert "This project is archived" in page.inner_text("#project-status")
    context.close()


def test_search_by_summary_at_390_px(chromium, start_server, tmp_path: Path) -> None:
    server = start_server()
    write = ("local", server.write_secret)
    long_word = "Supercalifragilistic" * 6  # no place to break: the cell must wrap it
    for name, summary in (
        ("acme-weather", "Barometric pressure and wind from ACME's stations"),
        ("acme-tools", f"Command-line helpers, {long_word}"),
        ("Foo_Bar.baz", "base"),
    ):
        wheel = build_wheel(tmp_path / name, name, "1.0", summary=summary)
        assert upload_file(server, wheel.path, name, "1.0", write).ok
    context, page = logged_in_at_390_px(chromium, server, "simple/", server.read_secret)
    assert "Barometric pressure" in page.inner_text("#projects")  # the summary column

    # "barometric" is in no name: only acme-weather's summary holds it.
    page.fill("#filter", "BAROMETRIC")
    page.click("form[role=search] button")
    page.wait_for_url("**/simple/?q=BAROMETRIC")
    found = page.inner_text("#projects tbody")
    assert "acme-weather" in found and "acme-tools" not in found and "foo-bar-baz" not in found
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert page.evaluate(overflow) <= 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "home-search-390.png"), full_page=True)

    page.fill("#filter", "acme")  # names and summaries alike; the long summary fits too
    page.click("form[role=search] button")
    page.wait_for_url("**/simple/?q=acme")
    found = page.inner_text("#projects tbody")
    assert "acme-weather" in found and "acme-tools" in found and "foo-bar-baz" not in found
    assert page.evaluate(overflow) <= 0
    page.screenshot(path=str(ARTIFACTS / "home-search-long-summary-390.png"), full_page=True)

    answer = page.goto(server.url + "simple/?q=" + "x" * 201)
    assert answer is not None and answer.status == 400
    assert "longer than 200 characters" in page.inner_text("#search-error")
    assert page.evaluate(overflow) <= 0
    context.close()


def test_summaries_of_files_this_server_did_not_describe(start_server, tmp_path: Path) -> None:
    """Files stored before the summary cache existed (or by another replica) are
    described in the background once the home page is shown."""
    root = tmp_path / "root"
    server = start_server(root=root)
    wheel = build_wheel(tmp_path / "w", "acme-weather", "1.0", summary="Barometric pressure")
    assert upload_file(server, wheel.path, "acme-weather", "1.0", ("local", server.write_secret)).ok
    server.stop()
    (root / "cache" / "local" / "summaries.jsonl").unlink()  # as before this feature
    server = start_server(root=root)
    cookies = session_cookie(server, {"repo": "local", "access": 1, "exp": time.time() + 600})

    def found() -> bool:
        page = get(
            server, "simple/?q=barometric", headers={"Accept": BROWSER_ACCEPT}, cookies=cookies
        )
        assert page.status_code == 200
        return 'href="acme-weather/"' in page.text

    wait_for(found, timeout=30, step=0.5)
    assert "Barometric pressure" in (root / "cache" / "local" / "summaries.jsonl").read_text()
