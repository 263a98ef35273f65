"""One index URL: a repository with an upstream index behind it. The upstreams are real
index servers on loopback: another pywharf (JSON, upload times, metadata, yanks) and
pypiserver (HTML only); a small hand-made index plays a dishonest or slow upstream."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from wharftest import clients
from wharftest.distbuilder import build_wheel
from wharftest.fakeindex import FakeIndex
from wharftest.server import METRICS_AUTH, METRICS_TOKEN, WharfServer, get, upload_file, wait_for

from pywharf_core.client import set_yanked

WRITE = "team-write-secret-0"
READ = "team-read-secret-00"


@pytest.fixture(scope="module")
def dists_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upstream-dists")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, dists_dir: Path) -> Iterator[WharfServer]:
    """A pywharf playing the public index: pub-dep 1.0 and 2.0, conf-lib 9.0."""
    server = WharfServer(tmp_path_factory.mktemp("upstream") / "root").start()
    auth = ("local", server.write_secret)
    for name, version in (("pub-dep", "1.0"), ("pub-dep", "2.0"), ("conf-lib", "9.0")):
        wheel = build_wheel(dists_dir / "up", name, version)
        assert upload_file(server, wheel.path, name, version, auth).ok
    yield server
    server.stop()


def upstream_url(server: WharfServer) -> str:
    """The upstream's per-repository index URL, with its read secret in it."""
    return f"http://__token__:{server.read_secret}@127.0.0.1:{server.port}/r/local/simple/"


def downstream(start_server, tmp_path: Path, url: str, **keys: object) -> WharfServer:
    lines = [
        "[team]",
        'type = "file_system"',
        f'read_secret = "{READ}"',
        f'write_secret = "{WRITE}"',
        f'upstream_url = "{url}"',
        *(f"{k} = {json.dumps(v)}" for k, v in keys.items()),
    ]
    folder = tmp_path / f"down{time.monotonic_ns()}"
    folder.mkdir()
    (folder / "config.toml").write_text("\n".join(lines) + "\n")
    return start_server("--config", str(folder / "config.toml"), "--metrics_token", METRICS_TOKEN)


def index(server: WharfServer) -> str:
    return server.index_url("__token__", READ, prefix="r/team/simple/")


def page(server: WharfServer, project: str) -> requests.Response:
    return get(
        server,
        f"r/team/simple/{project}/",
        auth=("__token__", READ),
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )


def cached_files(server: WharfServer) -> list[str]:
    folder = server.root / "cache" / "team" / "storage" / ".pywharf-upstream"
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_one_index_url_installs_private_and_public_packages(
    start_server, upstream: WharfServer, tmp_path: Path, client_env: dict[str, str]
) -> None:
    server = downstream(start_server, tmp_path, upstream_url(upstream))
    app = build_wheel(tmp_path, "team-app", "1.0", requires_dist=["pub-dep>=1"])
    assert upload_file(server, app.path, "team-app", "1.0", ("team", WRITE)).ok
    for install in (clients.pip_install, clients.uv_pip_install):
        target = tmp_path / install.__name__
        install(index(server), target, "team-app", env=client_env)
        assert sorted(p.name for p in target.glob("*.dist-info")) == [
            "pub_dep-2.0.dist-info",
            "team_app-1.0.dist-info",
        ]
    assert "pub_dep-2.0-py3-none-any.whl" in cached_files(server)
    data = page(server, "pub-dep").json()
    assert [f["url"] for f in data["files"]] == [f["filename"] for f in data["files"]]
    assert all("127.0.0.1" not in json.dumps(f) for f in data["files"])  # no upstream URL
    assert data["versions"] == ["1.0", "2.0"]
    assert all(f["upload-time"] and f["size"] and f["core-metadata"] for f in data["files"])
    # Nothing of the upstream's credentials is shown anywhere.
    assert upstream.read_secret not in server.log_text()
    assert upstream.read_secret not in get(server, "metrics", headers=METRICS_AUTH).text


def test_poetry_locks_private_and_public_through_one_url(
    start_server, upstream: WharfServer, tmp_path: Path, client_env: dict[str, str]
) -> None:
    server = downstream(start_server, tmp_path, upstream_url(upstream))
    app = build_wheel(tmp_path, "poet-app", "1.0", requires_dist=["pub-dep<2"])
    assert upload_file(server, app.path, "poet-app", "1.0", ("team", WRITE)).ok
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        "[project]\n"
        'name = "consumer"\nversion = "0.1.0"\n'
        f'requires-python = ">={sys.version_info.major}.{sys.version_info.minor}"\n'
        'dependencies = ["poet-app"]\n\n'
        "[tool.poetry]\npackage-mode = false\n\n"
        "[[tool.poetry.source]]\n"
        f'name = "wharf"\nurl = "{server.url}r/team/simple/"\npriority = "primary"\n'
    )
    env = {
        **client_env,
        "POETRY_HTTP_BASIC_WHARF_USERNAME": "__token__",
        "POETRY_HTTP_BASIC_WHARF_PASSWORD": READ,
    }
    clients.run([str(clients.BIN / "poetry"), "lock", "--no-interaction"], env, cwd=project)
    lock = (project / "poetry.lock").read_text()
    assert 'name = "poet-app"' in lock and 'name = "pub-dep"' in lock
    assert 'version = "1.0"' in lock and 'version = "2.0"' not in lock


def test_a_private_name_is_never_taken_from_upstream(
    start_server, upstream: WharfServer, tmp_path: Path, client_env: dict[str, str]
) -> None:
    server = downstream(start_server, tmp_path, upstream_url(upstream))
    mine = build_wheel(tmp_path, "conf-lib", "1.0")
    assert upload_file(server, mine.path, "conf-lib", "1.0", ("team", WRITE)).ok
    for install in (clients.pip_install, clients.uv_pip_install):
        target = tmp_path / install.__name__
        install(index(server), target, "conf-lib", env=client_env)
        assert [p.name for p in target.glob("*.dist-info")] == ["conf_lib-1.0.dist-info"]
    assert [f["filename"] for f in page(server, "conf-lib").json()["files"]] == [mine.filename]
    assert cached_files(server) == []


def test_denied_names_are_never_asked_and_allowed_ones_mix(
    start_server, upstream: WharfServer, tmp_path: Path
) -> None:
    server = downstream(
        start_server,
        tmp_path,
        upstream_url(upstream),
        upstream_deny=["pub-*"],
        upstream_allow=["conf-lib"],
    )
    assert page(server, "pub-dep").status_code == 404
    mine = build_wheel(tmp_path, "conf-lib", "1.0")
    assert upload_file(server, mine.path, "conf-lib", "1.0", ("team", WRITE)).ok
    names = [f["filename"] for f in page(server, "conf-lib").json()["files"]]
    assert names == [mine.filename, "conf_lib-9.0-py3-none-any.whl"]


def test_yanks_upstream_show_after_revalidation(
    start_server, tmp_path: Path, dists_dir: Path
) -> None:
    origin = start_server()
    wheel = build_wheel(dists_dir / "yank", "yank-me", "1.0")
    assert upload_file(origin, wheel.path, "yank-me", "1.0", ("local", origin.write_secret)).ok
    server = downstream(start_server, tmp_path, upstream_url(origin), upstream_ttl=1)
    first = page(server, "yank-me")
    assert first.json()["files"][0]["yanked"] is False
    assert first.headers["X-Pywharf-Upstream"] == "fresh"
    set_yanked(origin.url + "simple/", wheel.filename, "local", origin.write_secret, "broken")
    wait_for(lambda: page(server, "yank-me").json()["files"][0]["yanked"] == "broken", 10)


def test_upstream_down_serves_the_cache_and_503_for_the_rest(
    start_server, tmp_path: Path, dists_dir: Path, client_env: dict[str, str]
) -> None:
    origin = start_server()
    for name in ("kept", "never-asked"):
        wheel = build_wheel(dists_dir / "down", name, "1.0")
        assert upload_file(origin, wheel.path, name, "1.0", ("local", origin.write_secret)).ok
    server = downstream(start_server, tmp_path, upstream_url(origin), upstream_ttl=0)
    clients.pip_install(index(server), tmp_path / "first", "kept", env=client_env)
    origin.stop()
    target = tmp_path / "second"
    clients.pip_install(index(server), target, "kept", env=client_env)
    assert [p.name for p in target.glob("*.dist-info")] == ["kept-1.0.dist-info"]
    assert page(server, "kept").headers["X-Pywharf-Upstream"] == "stale"
    refused = page(server, "never-asked")
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    assert "upstream index is unavailable for 'never-asked'" in refused.text
    metrics = get(server, "metrics", headers=METRICS_AUTH).text
    assert 'pywharf_upstream_stale_serves_total{repo="team"}' in metrics


def test_cooldown_hides_fresh_upstream_files(
    start_server, upstream: WharfServer, tmp_path: Path, client_env: dict[str, str]
) -> None:
    server = downstream(start_server, tmp_path, upstream_url(upstream), upstream_cooldown=3600)
    assert page(server, "pub-dep").json()["files"] == []
    for install in (clients.pip_install, clients.uv_pip_install):
        result = install(
            index(server), tmp_path / install.__name__, "pub-dep", env=client_env, check=False
        )
        assert result.returncode != 0


def test_refresh_drops_the_cached_page(start_server, upstream: WharfServer, tmp_path: Path) -> None:
    server = downstream(start_server, tmp_path, upstream_url(upstream))
    assert page(server, "pub-dep").ok
    url = server.url + "r/team/simple/pub-dep/refresh"
    assert requests.post(url, auth=("__token__", READ), timeout=10).status_code == 403
    answer = requests.post(url, auth=("__token__", WRITE), timeout=10)
    assert answer.status_code == 200 and "dropped" in answer.text
    for name in ("x" * 300, "%00fake"):  # no project name: nothing asked, nothing kept
        odd = requests.post(
            f"{server.url}r/team/simple/{name}/refresh", auth=("__token__", WRITE), timeout=10
        )
        assert odd.status_code == 200 and "not cached" in odd.text, odd.text
        assert page(server, name).status_code == 404
    from wharftest.cli import pywharf

    index_url = server.url + "r/team/simple/"
    result = pywharf("refresh", index_url, "Pub_Dep", "--secret", WRITE)
    assert result.returncode == 0 and "pub-dep was not cached" in result.stdout, result.stderr
    assert page(server, "pub-dep").ok
    result = pywharf("refresh", index_url, "pub-dep", "--secret", READ)
    assert result.returncode == 2 and "403" in result.stderr


def test_a_tampered_upstream_file_is_refused_and_not_cached(start_server, tmp_path: Path) -> None:
    fake = FakeIndex(served=b"evil" * 100_000, declared=b"good" * 100_000)
    try:
        server = downstream(start_server, tmp_path, fake.url)
        listed = page(server, "fake").json()
        assert listed["files"][0]["x-unknown"] == {"kept": True}  # unknown keys pass through
        url = f"{server.url}r/team/simple/fake/{fake.filename}"
        for _ in range(2):
            with pytest.raises(requests.exceptions.RequestException):
                response = requests.get(url, auth=("__token__", READ), timeout=30)
                response.raise_for_status()
                assert len(response.content) == len(fake.served)
        assert fake.file_gets == 2  # nothing cached: asked again
        assert cached_files(server) == []
        assert "declares" in server.log_text()
    finally:
        fake.server.stop()


def test_concurrent_first_downloads_fetch_once(start_server, tmp_path: Path) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    fake = FakeIndex(served=data, declared=data)
    try:
        server = downstream(start_server, tmp_path, fake.url)
        url = f"{server.url}r/team/simple/fake/{fake.filename}"
        results: list[bytes] = []
        barrier = threading.Barrier(8)

        def download() -> None:
            barrier.wait()
            response = requests.get(url, auth=("__token__", READ), timeout=60)
            response.raise_for_status()
            results.append(response.content)

        threads = [threading.Thread(target=download) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 8 and all(r == data for r in results)
        assert fake.file_gets == 1
        assert cached_files(server) == [fake.filename]
    finally:
        fake.server.stop()


def test_pypiserver_as_an_html_only_upstream(
    start_server, tmp_path: Path, dists_dir: Path, client_env: dict[str, str]
) -> None:
    packages = tmp_path / "pypiserver-packages"
    packages.mkdir()
    wheel = build_wheel(packages, "html-only", "3.0", requires_python=">=3.8")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pypiserver",
            "run",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-a",
            ".",
            "-P",
            ".",
            str(packages),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/simple/"), 30)
        server = downstream(start_server, tmp_path, f"http://127.0.0.1:{port}/simple/")
        item = page(server, "html-only").json()["files"][0]
        assert item["filename"] == wheel.filename
        assert "requires-python" not in item  # pypiserver does not say: nothing is made up
        assert item["core-metadata"] is False
        assert item["hashes"]["sha256"] == wheel.sha256
        target = tmp_path / "target"
        clients.pip_install(index(server), target, "html-only", env=client_env)
        assert [p.name for p in target.glob("*.dist-info")] == ["html_only-3.0.dist-info"]
        assert cached_files(server) == [wheel.filename, wheel.filename + ".wharf-metadata"]
        # The verified cached wheel's METADATA is now offered (PEP 658), as a private
        # file's is: uv and pip resolve from it without range requests.
        item = page(server, "html-only").json()["files"][0]
        metadata = get(
            server, f"r/team/simple/html-only/{wheel.filename}.metadata", auth=("__token__", READ)
        )
        assert metadata.ok and metadata.content.startswith(b"Metadata-Version")
        assert b"Requires-Python: >=3.8" in metadata.content
        assert item["core-metadata"] == {"sha256": hashlib.sha256(metadata.content).hexdigest()}
        assert metadata.headers["ETag"] == f'"{item["core-metadata"]["sha256"]}"'
        html = get(server, "r/team/simple/html-only/", auth=("__token__", READ)).text
        assert f'data-core-metadata="sha256={item["core-metadata"]["sha256"]}"' in html
        target = tmp_path / "target-uv"
        clients.uv_pip_install(index(server), target, "html-only", env=client_env)
        assert [p.name for p in target.glob("*.dist-info")] == ["html_only-3.0.dist-info"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_upstream_refusing_the_credentials_is_said_plainly(
    start_server, upstream: WharfServer, tmp_path: Path
) -> None:
    """Wrong credentials in upstream_url: the 503 says what to mend (waiting will not),
    the log says it too, and neither shows the secret."""
    wrong = f"http://__token__:not-the-secret-4242@127.0.0.1:{upstream.port}/r/local/simple/"
    server = downstream(start_server, tmp_path, wrong)
    answer = page(server, "pub-dep")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "300"
    assert "HTTP 401" in answer.text and "credentials in upstream_url are wrong" in answer.text
    log = server.log_text()
    assert "upstream unavailable" in log and "HTTP 401" in log
    assert "not-the-secret-4242" not in log + answer.text
