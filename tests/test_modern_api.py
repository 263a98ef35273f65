"""The modern Simple API: PEP 691 JSON and negotiation, PEP 658/714 metadata files,
PEP 592 yanking, PEP 700 sizes and upload times, HTTP caching, proxies, operations."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import pypi_simple
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.distbuilder import build_wheel
from wharftest.server import METRICS_AUTH, METRICS_TOKEN, WharfServer, get, upload_file

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"


@pytest.fixture
def auth(populated: WharfServer) -> tuple[str, str]:
    return ("local", populated.read_secret)


# -- PEP 691: one structure, two forms --------------------------------------------------------


@pytest.mark.parametrize("accept", [pypi_simple.ACCEPT_JSON_ONLY, pypi_simple.ACCEPT_HTML_ONLY])
def test_pypi_simple_reads_both_forms_alike(populated: WharfServer, auth, dists, accept) -> None:
    client = pypi_simple.PyPISimple(populated.url + "simple/", auth=auth)
    with client:
        index = client.get_index_page(accept=accept)
        assert sorted(index.projects) == ["demo-app", "foo-bar-baz"]
        page = client.get_project_page("foo-bar-baz", accept=accept)
    assert page.repository_version == "1.4"
    packages = {p.filename: p for p in page.packages}
    assert set(packages) == {
        d.filename for d in (dists.base_wheel, dists.base_sdist, dists.base_future)
    }
    wheel = packages[dists.base_wheel.filename]
    assert wheel.digests == {"sha256": dists.base_wheel.sha256}
    assert wheel.has_metadata is True
    assert packages[dists.base_sdist.filename].has_metadata in (None, False)
    assert packages[dists.base_future.filename].requires_python == ">=3.99"
    assert not wheel.is_yanked
    if accept == pypi_simple.ACCEPT_JSON_ONLY:  # PEP 700 lives in JSON only
        assert page.versions == ["1.0", "2.0"]
        assert wheel.size == dists.base_wheel.path.stat().st_size
        assert wheel.upload_time is not None
        assert abs(wheel.upload_time - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(hours=1)


FILE_KEYS = {
    "filename",
    "url",
    "hashes",
    "requires-python",
    "core-metadata",
    "gpg-sig",
    "yanked",
    "size",
    "upload-time",
    "provenance",
    "data-dist-info-metadata",
}


def test_json_has_exactly_the_pep_691_700_and_792_keys(populated: WharfServer, auth, dists) -> None:
    listing = get(populated, "simple/", auth=auth, headers={"Accept": JSON})
    assert listing.headers["Content-Type"] == JSON
    data = listing.json()
    assert set(data) == {"meta", "projects"} and data["meta"] == {"api-version": "1.4"}
    assert all(set(p) == {"name"} for p in data["projects"])

    page = get(populated, "simple/foo-bar-baz/", auth=auth, headers={"Accept": JSON}).json()
    assert set(page) == {"meta", "name", "project-status", "versions", "files"}
    assert page["name"] == "foo-bar-baz"
    assert page["project-status"] == {"status": "active"}
    for item in page["files"]:
        assert {"filename", "url", "hashes", "size"} <= set(item) <= FILE_KEYS
        assert "dist-info-metadata" not in item  # PEP 714: pip 22.3-23.1 crash on it
        assert isinstance(item["size"], int)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", item["upload-time"])
        if item["filename"].endswith(".whl"):  # stored for wheels, and only for them
            assert set(item["core-metadata"]) == {"sha256"}
        else:
            assert item["core-metadata"] is False
        assert item["yanked"] is False
    # PEP 700: every file belongs to a listed version.
    from pywharf_core.dists import parse_filename

    file_versions = {str(parse_filename(item["filename"]).version) for item in page["files"]}
    assert file_versions == set(page["versions"]) == {"1.0", "2.0"}


@pytest.mark.parametrize(
    "accept, served",
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        ("text/html", "text/html"),
        (JSON, JSON),
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.latest+html", HTML),
        (HTML, HTML),
        # pip's header: json first
        (f"{JSON}, {HTML}; q=0.1, text/html; q=0.01", JSON),
        (f"{JSON}; q=0.2, {HTML}; q=0.5", HTML),
        (f"text/html, {JSON}; q=0", "text/html"),
        ("text/*; q=0.5, application/json", "text/html"),
    ],
)
def test_negotiation(populated: WharfServer, auth, accept: str | None, served: str) -> None:
    headers = {"Accept": accept} if accept else {"Accept": ""}
    response = get(populated, "simple/foo-bar-baz/", auth=auth, headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == served
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    if served == JSON:
        assert response.json()["name"] == "foo-bar-baz"
    else:
        assert '<meta name="pypi:repository-version" content="1.4">' in response.text


def test_format_query_overrides_and_406(populated: WharfServer, auth) -> None:
    for query in (JSON, JSON.replace("+", "%2B")):  # "+" typed as is, or encoded
        response = get(
            populated, f"simple/?format={query}", auth=auth, headers={"Accept": "text/html"}
        )
        assert response.headers["Content-Type"] == JSON
    for bad in ({"Accept": "application/json"}, {"Accept": f"{JSON}; q=0, image/png"}):
        refused = get(populated, "simple/foo-bar-baz/", auth=auth, headers=bad)
        assert refused.status_code == 406
        assert JSON in refused.text
    assert get(populated, "simple/?format=text/plain", auth=auth).status_code == 406


# -- PEP 658 / 714 ------------------------------------------------------------------------------


def test_metadata_files_are_served_and_advertised_in_both_forms(
    populated: WharfServer, auth, dists
) -> None:
    wheel = dists.base_wheel
    import zipfile

    with zipfile.ZipFile(wheel.path) as archive:
        expected = archive.read("foo_bar_baz-1.0.dist-info/METADATA")
    sha = hashlib.sha256(expected).hexdigest()
    served = get(populated, f"simple/foo-bar-baz/{wheel.filename}.metadata", auth=auth)
    assert served.status_code == 200 and served.content == expected
    html = get(populated, "simple/foo-bar-baz/", auth=auth).text
    anchor = next(line for line in html.splitlines() if f">{wheel.filename}<" in line)
    assert f'data-core-metadata="sha256={sha}"' in anchor
    assert f'data-dist-info-metadata="sha256={sha}"' in anchor
    sdist_anchor = next(
        line for line in html.splitlines() if f">{dists.base_sdist.filename}<" in line
    )
    assert "metadata" not in sdist_anchor  # never advertise what is not stored
    missing = get(populated, f"simple/foo-bar-baz/{dists.base_sdist.filename}.metadata", auth=auth)
    assert missing.status_code == 404


def test_pip_resolves_from_metadata_without_downloading_wheels(
    populated: WharfServer, client_env: dict[str, str], tmp_path: Path
) -> None:
    log_before = len(populated.log_text())
    index = populated.index_url("local", populated.read_secret)
    report = tmp_path / "report.json"
    clients.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary",
            ":all:",
            "--no-cache-dir",
            "--index-url",
            index,
            "--report",
            str(report),
            "demo-app",
        ],
        client_env,
    )
    resolved = {
        item["metadata"]["name"]: item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert resolved == {"demo-app": "0.1", "Foo_Bar.baz": "1.0"}
    log = populated.log_text()[log_before:]
    fetched = re.findall(r"GET (/simple/\S+) 200", log)
    assert any(path.endswith(".whl.metadata") for path in fetched), log
    assert not any(path.endswith(".whl") for path in fetched), log


# -- PEP 592 yanking ------------------------------------------------------------------------------


@pytest.fixture
def two_versions(start_server, tmp_path: Path, client_env: dict[str, str]):
    server = start_server()
    old = build_wheel(tmp_path / "v1", "yank-me", "1.0")
    new = build_wheel(tmp_path / "v2", "yank-me", "2.0")
    clients.twine_upload(
        server.url + "simple/", "local", server.write_secret, old.path, new.path, env=client_env
    )
    return server, old, new


def installed_version(target: Path, client_env: dict[str, str]) -> str:
    return clients.import_from(target, "import yank_me; print(yank_me.VERSION)", client_env)


def test_yank_over_http_then_installers_skip_unless_pinned(
    two_versions, client_env: dict[str, str], tmp_path: Path
) -> None:
    server, old, new = two_versions
    write = ("local", server.write_secret)
    url = f"{server.url}simple/yank-me/{new.filename}/yank"
    assert (
        requests.post(
            url, data={"reason": "broken <build>"}, auth=("local", server.read_secret), timeout=10
        ).status_code
        == 403
    )
    response = requests.post(url, data={"reason": "broken <build>"}, auth=write, timeout=10)
    assert response.status_code == 200, response.text
    html = get(server, "simple/yank-me/", auth=write).text
    assert 'data-yanked="broken &lt;build&gt;"' in html
    files = get(server, "simple/yank-me/", auth=write, headers={"Accept": JSON}).json()["files"]
    assert {f["filename"]: f["yanked"] for f in files} == {
        old.filename: False,
        new.filename: "broken <build>",
    }

    index = server.index_url("local", server.read_secret)
    clients.pip_install(index, tmp_path / "pip", "yank-me", env=client_env)
    assert installed_version(tmp_path / "pip", client_env) == "1.0"
    clients.uv_pip_install(index, tmp_path / "uv", "yank-me", env=client_env)
    assert installed_version(tmp_path / "uv", client_env) == "1.0"
    clients.pip_install(index, tmp_path / "pinned", "yank-me==2.0", env=client_env)
    assert installed_version(tmp_path / "pinned", client_env) == "2.0"

    assert requests.post(
        f"{server.url}simple/yank-me/{new.filename}/unyank", auth=write, timeout=10
    ).ok
    clients.pip_install(index, tmp_path / "after", "yank-me", env=client_env)
    assert installed_version(tmp_path / "after", client_env) == "2.0"
    missing = requests.post(
        f"{server.url}simple/yank-me/yank_me-9.0-py3-none-any.whl/yank", auth=write, timeout=10
    )
    assert missing.status_code == 404


def test_yank_from_the_cli_survives_a_restart(two_versions, tmp_path: Path) -> None:
    server, _old, new = two_versions
    env = {"WHARF_WRITE": server.write_secret}
    result = pywharf(
        "yank",
        server.url + "r/local/simple/",
        new.filename,
        "--reason",
        "use 1.0",
        "--secret_env",
        "WHARF_WRITE",
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "yanked (use 1.0)" in result.stdout
    server.stop()
    restarted = WharfServer(server.root).start()
    try:
        page = get(restarted, "simple/yank-me/", auth=("local", restarted.read_secret)).text
        assert 'data-yanked="use 1.0"' in page
        wrong = pywharf(
            "unyank",
            restarted.url + "simple/",
            new.filename,
            "--repo",
            "local",
            "--secret",
            "nope",
            timeout=60,
        )
        assert wrong.returncode == 2
        assert wrong.stderr.startswith("pywharf: error: the server answered 401")
    finally:
        restarted.stop()


# -- PEP 700: upload times -----------------------------------------------------------------------


def test_exclude_newer_and_uploaded_prior_to(
    start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    server = start_server()
    url = server.url + "simple/"
    old = build_wheel(tmp_path / "v1", "timed-pkg", "1.0")
    new = build_wheel(tmp_path / "v2", "timed-pkg", "2.0")
    clients.twine_upload(url, "local", server.write_secret, old.path, env=client_env)
    time.sleep(1.1)
    cutoff = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(1.1)
    clients.twine_upload(url, "local", server.write_secret, new.path, env=client_env)
    index = server.index_url("local", server.read_secret)

    def version(target: Path) -> str:
        return clients.import_from(target, "import timed_pkg; print(timed_pkg.VERSION)", client_env)

    clients.uv_pip_install(
        index, tmp_path / "uv-old", "timed-pkg", "--exclude-newer", cutoff, env=client_env
    )
    assert version(tmp_path / "uv-old") == "1.0"
    clients.uv_pip_install(index, tmp_path / "uv-new", "timed-pkg", env=client_env)
    assert version(tmp_path / "uv-new") == "2.0"
    clients.pip_install(
        index, tmp_path / "pip-old", "timed-pkg", "--uploaded-prior-to", cutoff, env=client_env
    )
    assert version(tmp_path / "pip-old") == "1.0"


# -- HTTP caching --------------------------------------------------------------------------------


def test_etag_and_304(start_server, tmp_path: Path) -> None:
    server = start_server()
    write = ("local", server.write_secret)
    first = build_wheel(tmp_path / "a", "etag-pkg", "1.0")
    assert upload_file(server, first.path, "etag-pkg", "1.0", write).ok
    page = get(server, "simple/etag-pkg/", auth=write)
    etag = page.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{40}"', etag)
    assert "max-age=0" in page.headers["Cache-Control"]
    again = get(server, "simple/etag-pkg/", auth=write, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    as_json = get(server, "simple/etag-pkg/", auth=write, headers={"Accept": JSON})
    assert as_json.headers["ETag"] != etag  # each form has its own
    listing_etag = get(server, "simple/", auth=write).headers["ETag"]

    second = build_wheel(tmp_path / "b", "etag-pkg", "2.0")
    assert upload_file(server, second.path, "etag-pkg", "2.0", write).ok
    changed = get(server, "simple/etag-pkg/", auth=write, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and second.filename in changed.text
    assert changed.headers["ETag"] != etag
    # The project list did not change: same ETag, still 304.
    same = get(server, "simple/", auth=write, headers={"If-None-Match": listing_etag})
    assert same.status_code == 304
    # HEAD on a page: headers, no body.
    head = requests.head(server.url + "simple/etag-pkg/", auth=write, timeout=10)
    assert head.status_code == 200 and head.content == b"" and head.headers["ETag"]


# -- reverse proxies ------------------------------------------------------------------------------

FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "pkgs.example.com",
    "X-Forwarded-Prefix": "/pypi",
}


def test_forwarded_headers_from_trusted_proxies_only(start_server) -> None:
    trusting = start_server("--trusted_proxy", "127.0.0.1")
    write = ("local", trusting.write_secret)
    redirect = get(trusting, "simple/Some_Project/", auth=write, headers=FORWARDED)
    # Relative (the Host is never reflected): the prefix is what the proxy adds.
    assert redirect.headers["Location"] == "/pypi/simple/some-project/"
    # A proxy that passes the prefix through unstripped works too.
    unstripped = get(trusting, "pypi/simple/Some_Project", auth=write, headers=FORWARDED)
    assert unstripped.headers["Location"] == "/pypi/simple/some-project/"

    untrusting = start_server()
    write = ("local", untrusting.write_secret)
    ignored = get(untrusting, "simple/Some_Project/", auth=write, headers=FORWARDED)
    assert ignored.headers["Location"] == "/simple/some-project/"


# -- operations -----------------------------------------------------------------------------------


def test_health_readiness_and_metrics(populated: WharfServer, auth) -> None:
    health = get(populated, "healthz")
    assert health.status_code == 200 and health.text == "ok\n"
    assert get(populated, "readyz").json() == {"ready": True}  # for anyone: no names
    ready = get(populated, "readyz", headers=METRICS_AUTH)
    assert ready.status_code == 200
    report = ready.json()
    assert report["ready"] is True
    local = report["repositories"]["local"]
    assert local["synced"] is True and local["index_age_seconds"] >= 0 and local["files"] == 5

    get(populated, "simple/foo-bar-baz/", auth=auth)
    get(populated, "simple/no-such/", auth=auth)
    text = get(populated, "metrics", headers=METRICS_AUTH).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests_total = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["pywharf_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests_total[("project_page", "200")] >= 1
    assert requests_total[("project_page", "404")] >= 1
    assert requests_total[("list_or_upload", "200")] >= 1  # the uploads
    assert "pywharf_http_request_duration_seconds" in families
    uploads = {
        s.labels["repo"]: s.value
        for s in families["pywharf_upload_files"].samples
        if s.name.endswith("_total")
    }
    assert uploads["local"] == 5
    upload_bytes = next(
        s.value for s in families["pywharf_upload_bytes"].samples if s.name.endswith("_total")
    )
    assert upload_bytes > 0
    ages = {s.labels["repo"]: s.value for s in families["pywharf_index_age_seconds"].samples}
    assert ages["local"] >= 0
    failures = {s.labels["repo"]: s.value for s in families["pywharf_index_sync_failures"].samples}
    assert failures["local"] == 0


def test_readiness_fails_while_an_index_cannot_be_read(start_server, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "index.toml").write_text("this is [not valid toml")
    config = tmp_path / "config.toml"
    config.write_text(
        '[broken]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n'
        f'storage_root = "{storage}"\n'
    )
    server = start_server("--config", str(config), "--metrics_token", METRICS_TOKEN)
    ready = get(server, "readyz", headers=METRICS_AUTH)
    assert ready.status_code == 503
    assert ready.json()["repositories"]["broken"] == {
        "synced": False,
        "index_age_seconds": None,
        "sync_failures": 1,
        "files": 0,
    }
    assert get(server, "healthz").status_code == 200
    # The repository still serves (what this server accepted), and says so in the log.
    assert get(server, "simple/", auth=("broken", "r")).status_code == 200
    assert "cannot read the remote index" in server.log_text()
