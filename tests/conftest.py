from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.register_assert_rewrite("pywharf_core.testing")

from wharftest import clients  # noqa: E402
from wharftest.distbuilder import Dist, build_sdist, build_wheel  # noqa: E402
from wharftest.server import METRICS_TOKEN, WharfServer, get  # noqa: E402


@dataclass(frozen=True)
class Dists:
    """The session's distributions: two projects, one depending on the other."""

    base_wheel: Dist  # Foo_Bar.baz 1.0, a name that needs normalizing
    base_sdist: Dist  # Foo_Bar.baz 1.0, legacy sdist filename Foo_Bar.baz-1.0.tar.gz
    base_future: Dist  # Foo_Bar.baz 2.0, Requires-Python >=3.99: no installer may pick it
    app_wheel: Dist  # demo-app 0.1, requires foo-bar-baz>=1.0
    app_sdist: Dist  # demo-app 0.1 sdist (built by its in-tree backend when installed)

    @property
    def all(self) -> list[Dist]:
        return [self.base_wheel, self.base_sdist, self.base_future, self.app_wheel, self.app_sdist]


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    out = tmp_path_factory.mktemp("dists")
    app = dict(requires_python=">=3.8", requires_dist=["foo-bar-baz>=1.0"], imports=["foo_bar_baz"])
    return Dists(
        base_wheel=build_wheel(out, "Foo_Bar.baz", "1.0", summary="base"),
        base_sdist=build_sdist(out / "sdist", "Foo_Bar.baz", "1.0", legacy_filename=True),
        base_future=build_wheel(out, "Foo_Bar.baz", "2.0", requires_python=">=3.99"),
        app_wheel=build_wheel(out, "demo-app", "0.1", **app),  # type: ignore[arg-type]
        app_sdist=build_sdist(out / "sdist", "demo-app", "0.1", **app),  # type: ignore[arg-type]
    )


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., WharfServer]]:
    """Start ``pywharf server`` processes; all are stopped after the test."""
    started: list[WharfServer] = []

    def start(
        *args: str,
        root: Path | None = None,
        env: dict[str, str] | None = None,
        env_mode: bool = False,
    ) -> WharfServer:
        root = root or tmp_path / f"root{len(started)}"
        server = WharfServer(root, *args, env=env, env_mode=env_mode)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def client_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return clients.clean_env(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def populated(
    tmp_path_factory: pytest.TempPathFactory, dists: Dists, client_env: dict[str, str]
) -> Iterator[WharfServer]:
    """A server on the embedded default, holding every session dist: uploaded with
    twine, except the normalized sdist, uploaded with uv publish (which skips legacy
    sdist filenames such as ``Foo_Bar.baz-1.0.tar.gz`` with only a warning)."""
    root = tmp_path_factory.mktemp("populated") / "root"
    server = WharfServer(root, "--metrics_token", METRICS_TOKEN).start()
    upload_url = server.url + "simple/"
    with_twine = [d.path for d in dists.all if d is not dists.app_sdist]
    clients.twine_upload(upload_url, "local", server.write_secret, *with_twine, env=client_env)
    clients.uv_publish(
        upload_url, "local", server.write_secret, dists.app_sdist.path, env=client_env
    )
    listed = "".join(
        get(server, f"simple/{p}/", auth=("local", server.read_secret)).text
        for p in ("foo-bar-baz", "demo-app")
    )
    assert all(d.filename in listed for d in dists.all), listed
    yield server
    server.stop()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")  # not longer: playwright's sync API holds an event loop
def chromium() -> Iterator[object]:
    """Debian's headless Chromium, driven by playwright (skipped, with the reason, where
    it is missing; under CI a failure, since .ci/run installs it)."""
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
