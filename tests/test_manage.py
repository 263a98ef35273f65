"""Managing what is published (issue 17): deleting files, with real servers and clients."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.configs import TEAM_READ, TEAM_WRITE, shared_config
from wharftest.distbuilder import build_sdist, build_wheel
from wharftest.server import WharfServer, get, upload_file, wait_for

JSON = "application/vnd.pypi.simple.v1+json"


READ = TEAM_READ
WRITE = TEAM_WRITE


def listed(server: WharfServer, project: str, auth: tuple[str, str]) -> list[str]:
    response = get(server, f"simple/{project}/", auth=auth, headers={"Accept": JSON})
    if response.status_code == 404:
        return []
    return [f["filename"] for f in response.json()["files"]]


def installed_version(target: Path, client_env: dict[str, str]) -> str:
    return clients.import_from(target, "import del_me; print(del_me.VERSION)", client_env)


@pytest.fixture
def two_versions(start_server, tmp_path: Path, client_env: dict[str, str]):
    server = start_server()
    old = build_wheel(tmp_path / "v1", "del-me", "1.0")
    new = build_wheel(tmp_path / "v2", "del-me", "2.0")
    new_sdist = build_sdist(tmp_path / "v2s", "del-me", "2.0")
    clients.twine_upload(
        server.url + "simple/",
        "local",
        server.write_secret,
        old.path,
        new.path,
        new_sdist.path,
        env=client_env,
    )
    return server, old, new, new_sdist


def test_delete_over_http_then_pip_cannot_install_that_version(
    two_versions, start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    server, old, new, new_sdist = two_versions
    write = ("local", server.write_secret)
    read = ("local", server.read_secret)
    url = f"{server.url}simple/del-me/{new.filename}"
    storage = server.root / "cache" / "local" / "storage" / "del-me"
    before = sorted(p.name for p in storage.iterdir())

    # Refusals change nothing: the read secret, an unknown file, another project's file,
    # path tricks, another site.
    assert requests.delete(url, auth=read, timeout=10).status_code == 403
    assert requests.delete(url, auth=("local", "nope"), timeout=10).status_code == 401
    for path in (
        "simple/del-me/del_me-9.0-py3-none-any.whl",
        f"simple/other-project/{new.filename}",
        f"simple/del-me/..%2F{new.filename}",
        f"simple/del-me/{new.filename}.metadata",
        "simple/del-me/index.toml",
        "simple/del-me/..%2F..%2Findex.toml",
        "r/nowhere/simple/del-me/" + new.filename,
    ):
        response = requests.delete(server.url + path, auth=write, timeout=10)
        assert response.status_code in (401, 404), (path, response.status_code)
    cross_site = requests.delete(url, auth=write, headers={"Origin": "http://evil"}, timeout=10)
    assert cross_site.status_code == 403
    assert sorted(p.name for p in storage.iterdir()) == before
    assert len(listed(server, "del-me", read)) == 3

    # Under both mounts: the wheel through /simple/, the sdist through /r/<repo>/simple/.
    response = requests.delete(url, auth=write, timeout=10)
    assert response.status_code == 204, response.text
    response = requests.delete(
        f"{server.url}r/local/simple/del-me/{new_sdist.filename}", auth=write, timeout=10
    )
    assert response.status_code == 204, response.text
    assert requests.delete(url, auth=write, timeout=10).status_code == 404  # gone already

    assert listed(server, "del-me", read) == [old.filename]
    assert new.filename not in get(server, "simple/del-me/", auth=read).text
    for gone in (new.filename, new.filename + ".metadata", new_sdist.filename):
        assert get(server, f"simple/del-me/{gone}", auth=read).status_code == 404
    assert sorted(p.name for p in storage.iterdir()) == [old.filename, old.filename + ".metadata"]

    index = server.index_url(*read)
    failed = clients.pip_install(
        index, tmp_path / "pinned", "del-me==2.0", env=client_env, check=False
    )
    assert failed.returncode != 0
    clients.pip_install(index, tmp_path / "pip", "del-me", env=client_env)
    assert installed_version(tmp_path / "pip", client_env) == "1.0"
    clients.uv_pip_install(index, tmp_path / "uv", "del-me", env=client_env)
    assert installed_version(tmp_path / "uv", client_env) == "1.0"

    # update_index and a restart bring nothing back.
    result = pywharf(
        "update_index",
        "file_system",
        "local",
        "--storage_root",
        str(storage.parent),
    )
    assert "1 files, 1 projects" in result.stdout, result.stdout + result.stderr
    server.stop()
    restarted = start_server(root=server.root)
    assert listed(restarted, "del-me", ("local", restarted.read_secret)) == [old.filename]


def test_two_servers_on_one_storage_both_stop_listing_a_deleted_file(
    start_server, tmp_path: Path, client_env: dict[str, str], dists
) -> None:
    storage = tmp_path / "storage"
    config = shared_config(tmp_path, storage, interval=1)
    a = start_server("--config", str(config))
    b = start_server("--config", str(config))
    clients.twine_upload(
        a.url + "simple/", *WRITE, dists.base_wheel.path, dists.base_sdist.path, env=client_env
    )
    wait_for(lambda: len(listed(b, "foo-bar-baz", READ)) == 2, timeout=3)

    # A deleted what A itself uploaded (in its overlay) through B, and the other way.
    response = requests.delete(
        f"{b.url}simple/foo-bar-baz/{dists.base_wheel.filename}", auth=WRITE, timeout=10
    )
    assert response.status_code == 204
    assert listed(b, "foo-bar-baz", READ) == [dists.base_sdist.filename]
    seconds = wait_for(
        lambda: listed(a, "foo-bar-baz", READ) == [dists.base_sdist.filename], timeout=3
    )
    print(f"server A stopped listing B's deletion after {seconds:.2f} s (interval 1 s)")
    assert get(a, f"simple/foo-bar-baz/{dists.base_wheel.filename}", auth=READ).status_code == 404

    # update_index never brings it back, and the journal keeps nothing of it.
    result = pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
    assert "1 files, 1 projects, index written" in result.stdout, result.stdout + result.stderr
    journal = storage / ".pywharf-journal.jsonl"
    assert not journal.exists() or dists.base_wheel.filename not in journal.read_text()
    for server in (a, b):
        wait_for(lambda s=server: int(get(s, "index_mtime/", auth=READ).text) > 0, 3)
        time.sleep(1.5)
        assert listed(server, "foo-bar-baz", READ) == [dists.base_sdist.filename]

    # The name can be used again (identical bytes), and both servers list it again.
    clients.twine_upload(a.url + "simple/", *WRITE, dists.base_wheel.path, env=client_env)
    for server in (a, b):
        wait_for(lambda s=server: len(listed(s, "foo-bar-baz", READ)) == 2, timeout=3)


def test_a_file_removed_by_hand_disappears_at_the_next_update_index(
    start_server, tmp_path: Path, dists
) -> None:
    storage = tmp_path / "storage"
    server = start_server("--config", str(shared_config(tmp_path, storage, interval=1)))
    for dist in (dists.base_wheel, dists.base_sdist):
        assert upload_file(server, dist.path, "Foo_Bar.baz", "1.0", WRITE).ok
    # As a new user would: rm of the stored sdist, then update_index (twice).
    (storage / "foo-bar-baz" / dists.base_sdist.filename).unlink()
    for _ in range(2):
        result = pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
        assert result.returncode == 0, result.stderr
    wait_for(lambda: listed(server, "foo-bar-baz", READ) == [dists.base_wheel.filename], 3)
    server.stop()
    restarted = start_server("--config", str(shared_config(tmp_path, storage)), root=server.root)
    assert listed(restarted, "foo-bar-baz", READ) == [dists.base_wheel.filename]


def test_delete_from_the_cli_names_each_file(two_versions) -> None:
    server, old, new, new_sdist = two_versions
    env = {"WHARF_WRITE": server.write_secret}
    common = ("--repo", "local", "--secret_env", "WHARF_WRITE")
    neither = pywharf("delete", server.url + "simple/", "del-me", *common, env=env)
    assert neither.returncode == 2 and "VERSION or --filename" in neither.stderr
    nothing = pywharf("delete", server.url + "simple/", "del-me", "7.0", *common, env=env)
    assert nothing.returncode == 2 and "no files of version 7.0" in nothing.stderr
    result = pywharf("delete", server.url + "simple/", "Del_Me", "2.0", *common, env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == sorted(
        [f"deleted {new.filename}", f"deleted {new_sdist.filename}"]
    )
    assert listed(server, "del-me", ("local", server.read_secret)) == [old.filename]
    again = pywharf(
        "delete", server.url + "r/local/simple/", "del-me", "--filename", new.filename,
        "--secret_env", "WHARF_WRITE", env=env,
    )  # fmt: skip
    assert again.returncode == 2
    assert again.stderr.startswith("pywharf: error: the server answered 404")
    read_only = pywharf(
        "delete", server.url + "simple/", "del-me", "1.0", "--repo", "local",
        "--secret", server.read_secret,
    )  # fmt: skip
    assert read_only.returncode == 2 and "403" in read_only.stderr


def test_a_deleted_file_leaves_the_overlay_of_a_server_that_restarts(two_versions) -> None:
    server, _old, new, _sdist = two_versions
    write = ("local", server.write_secret)
    assert (
        requests.delete(
            f"{server.url}simple/del-me/{new.filename}", auth=write, timeout=10
        ).status_code
        == 204
    )
    overlay = server.root / "cache" / "local" / "overlay.jsonl"
    assert new.filename not in overlay.read_text()


# -- filename reuse -----------------------------------------------------------------------------


def test_a_deleted_filename_is_not_reused_with_other_bytes(
    start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    storage = tmp_path / "storage"
    config = shared_config(tmp_path, storage, interval=1)
    a = start_server("--config", str(config))
    b = start_server("--config", str(config))
    first = build_wheel(tmp_path / "first", "re-use", "1.0", summary="first build")
    second = build_wheel(tmp_path / "second", "re-use", "1.0", summary="second build")
    assert first.filename == second.filename and first.sha256 != second.sha256
    clients.twine_upload(a.url + "simple/", *WRITE, first.path, env=client_env)
    url = f"simple/re-use/{first.filename}"
    assert requests.delete(a.url + url, auth=WRITE, timeout=10).status_code == 204

    # Other bytes under the deleted name: refused on either server, saying why.
    for server in (a, b):
        refused = clients.twine_upload(
            server.url + "simple/", *WRITE, second.path, env=client_env, check=False
        )
        assert refused.returncode != 0
        assert "409" in refused.stdout + refused.stderr
        assert "File name reuse" in refused.stdout + refused.stderr
    assert not (storage / "re-use" / first.filename).exists()
    assert listed(a, "re-use", READ) == []

    # The same bytes again: accepted, listed by both servers, installable.
    clients.twine_upload(b.url + "simple/", *WRITE, first.path, env=client_env)
    for server in (a, b):
        wait_for(lambda s=server: listed(s, "re-use", READ) == [first.filename], timeout=3)
    assert get(a, url, auth=READ).content == first.path.read_bytes()


def test_allow_filename_reuse_lets_other_bytes_in(
    start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    config = shared_config(tmp_path, tmp_path / "storage")
    config.write_text(config.read_text() + "allow_filename_reuse = true\n")
    server = start_server("--config", str(config))
    first = build_wheel(tmp_path / "first", "re-use", "1.0", summary="first build")
    second = build_wheel(tmp_path / "second", "re-use", "1.0", summary="second build")
    clients.twine_upload(server.url + "simple/", *WRITE, first.path, env=client_env)
    url = f"simple/re-use/{first.filename}"
    assert requests.delete(server.url + url, auth=WRITE, timeout=10).status_code == 204
    clients.twine_upload(server.url + "simple/", *WRITE, second.path, env=client_env)
    assert get(server, url, auth=READ).content == second.path.read_bytes()
    page = get(server, "simple/re-use/", auth=READ, headers={"Accept": JSON}).json()
    assert page["files"][0]["hashes"]["sha256"] == second.sha256


# -- project status (PEP 792) -------------------------------------------------------------------


def post_status(server: WharfServer, project: str, auth: tuple[str, str], **form: str):
    return requests.post(f"{server.url}simple/{project}/status", data=form, auth=auth, timeout=10)


def test_quarantined_projects_offer_nothing_and_archived_ones_refuse_uploads(
    start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    config = shared_config(tmp_path, tmp_path / "storage", interval=1)
    a = start_server("--config", str(config))
    b = start_server("--config", str(config))
    wheel = build_wheel(tmp_path / "v1", "st-at", "1.0")
    later = build_wheel(tmp_path / "v2", "st-at", "2.0")
    clients.twine_upload(a.url + "simple/", *WRITE, wheel.path, env=client_env)
    wait_for(lambda: listed(b, "st-at", READ) == [wheel.filename], timeout=3)

    # Refusals change nothing.
    assert post_status(a, "st-at", READ, status="archived").status_code == 403
    unknown = post_status(a, "st-at", WRITE, status="frozen")
    assert unknown.status_code == 400 and "one of active, archived" in unknown.text
    huge = post_status(a, "st-at", WRITE, status="archived", reason="x" * 100_000)
    assert huge.status_code in (400, 413)
    assert post_status(a, "no-such-project", WRITE, status="archived").status_code == 404
    assert post_status(a, "..%2Fst-at", WRITE, status="archived").status_code == 404
    page = get(a, "simple/st-at/", auth=READ, headers={"Accept": JSON}).json()
    assert page["project-status"] == {"status": "active"}
    assert page["meta"]["api-version"] == "1.4"

    # Quarantined: pages list nothing, downloads 404, installers find nothing; on both.
    response = post_status(a, "St_At", WRITE, status="quarantined", reason="malware <report>")
    assert response.status_code == 200, response.text
    for server in (a, b):
        wait_for(
            lambda s=server: listed(s, "st-at", READ) == [], timeout=3
        )  # B re-reads the shared status within its sync interval
        page = get(server, "simple/st-at/", auth=READ, headers={"Accept": JSON}).json()
        assert page["project-status"] == {"status": "quarantined", "reason": "malware <report>"}
        assert page["versions"] == []
        html = get(server, "simple/st-at/", auth=READ).text
        assert '<meta name="pypi:project-status" content="quarantined">' in html
        assert '<meta name="pypi:project-status-reason" content="malware &lt;report&gt;">' in html
        assert wheel.filename not in html
        assert get(server, f"simple/st-at/{wheel.filename}", auth=READ).status_code == 404
    index = a.index_url(*READ)
    pip = clients.pip_install(index, tmp_path / "pip", "st-at", env=client_env, check=False)
    assert pip.returncode != 0
    uv = clients.uv_pip_install(index, tmp_path / "uv", "st-at", env=client_env, check=False)
    assert uv.returncode != 0
    refused = clients.twine_upload(
        b.url + "simple/", *WRITE, later.path, env=client_env, check=False
    )
    assert refused.returncode != 0 and "is quarantined" in refused.stdout + refused.stderr

    # Archived: files offered again, uploads refused with the status in the message.
    assert post_status(b, "st-at", WRITE, status="archived").status_code == 200
    assert listed(b, "st-at", READ) == [wheel.filename]
    wait_for(lambda: listed(a, "st-at", READ) == [wheel.filename], timeout=3)  # A's next sync
    refused = clients.twine_upload(
        a.url + "simple/", *WRITE, later.path, env=client_env, check=False
    )
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "409" in output
    assert "Project st-at is archived: it takes no uploads" in output
    clients.pip_install(index, tmp_path / "pip2", "st-at", env=client_env)

    # Deprecated takes uploads; active again clears the status.
    assert post_status(a, "st-at", WRITE, status="deprecated", reason="use st-new").ok
    clients.twine_upload(a.url + "simple/", *WRITE, later.path, env=client_env)
    assert post_status(a, "st-at", WRITE, status="active").ok
    page = get(a, "simple/st-at/", auth=READ, headers={"Accept": JSON}).json()
    assert page["project-status"] == {"status": "active"} and len(page["files"]) == 2
    assert '"st-at"' not in (tmp_path / "storage" / ".pywharf-state" / "status.json").read_text()


def test_status_from_the_cli(two_versions) -> None:
    server = two_versions[0]
    env = {"WHARF_WRITE": server.write_secret}
    common = ("--repo", "local", "--secret_env", "WHARF_WRITE")
    result = pywharf(
        "status", server.url + "simple/", "del-me", "deprecated", "--reason", "use new",
        *common, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK: del-me is deprecated (use new)"
    wrong = pywharf("status", server.url + "simple/", "del-me", "gone", *common, env=env)
    assert wrong.returncode == 2 and "Unknown project status 'gone'" in wrong.stderr


# -- the audit log ------------------------------------------------------------------------------


def audit_records(
    server: WharfServer, auth: tuple[str, str], since: str = "", path: str = "audit/"
) -> list[dict]:
    response = get(server, path, auth=auth, params={"since": since} if since else None)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/jsonl")
    return [json.loads(line) for line in response.text.splitlines()]


def test_every_change_leaves_one_audit_record_with_its_actor(
    start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    config = shared_config(tmp_path, tmp_path / "storage")
    server = start_server("--config", str(config), "--trusted_proxy", "127.0.0.1")
    wheel = build_wheel(tmp_path / "v1", "aud-it", "1.0")
    started = time.time()
    clients.twine_upload(server.url + "simple/", *WRITE, wheel.path, env=client_env)
    clients.twine_upload(server.url + "simple/", *WRITE, wheel.path, env=client_env)  # no change
    base = f"{server.url}simple/aud-it/{wheel.filename}"
    proxied = {"X-Forwarded-For": "203.0.113.7"}
    assert requests.post(
        base + "/yank", data={"reason": "bad"}, auth=WRITE, headers=proxied, timeout=10
    ).ok
    assert requests.post(
        f"{server.url}r/team/simple/aud-it/{wheel.filename}/unyank",
        auth=("anything", "team-write"), timeout=10,
    ).ok  # fmt: skip
    assert post_status(server, "aud-it", WRITE, status="deprecated", reason="old").ok
    assert requests.delete(base, auth=WRITE, timeout=10).status_code == 204
    # Refused requests change nothing and leave no record.
    assert requests.delete(base, auth=READ, timeout=10).status_code == 403
    assert requests.post(base + "/yank", auth=READ, timeout=10).status_code == 403

    assert get(server, "audit/", auth=READ).status_code == 403
    assert get(server, "r/team/audit/", auth=("x", "nope")).status_code == 401
    assert get(server, "audit/", auth=WRITE, params={"since": "yesterday"}).status_code == 400
    assert get(server, "audit/", auth=WRITE, params={"since": "2000-01-01"}).status_code == 400
    records = audit_records(server, WRITE)
    assert [r["action"] for r in records] == ["upload", "yank", "unyank", "status", "delete"]
    for record in records:
        assert record["repo"] == "team" and record["project"] == "aud-it"
        assert record["who"] == {"kind": "write_secret"}
        assert "team-write" not in json.dumps(record)
        assert record["time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))
    with_file = [r for r in records if r["action"] != "status"]
    assert all(r["filename"] == wheel.filename and r["sha256"] == wheel.sha256 for r in with_file)
    assert records[1]["address"] == "203.0.113.7" and records[1]["detail"] == "bad"
    assert records[0]["address"] == "127.0.0.1"
    assert records[3]["detail"] == "deprecated: old"
    # since: only what came after; under /r/<repo>/ too.
    later = audit_records(server, WRITE, since=records[3]["time"])
    assert [r["action"] for r in later] == ["status", "delete"]
    future = str(time.time() + 60)
    assert audit_records(server, ("x", "team-write"), future, path="r/team/audit/") == []

    result = pywharf(
        "audit", server.url + "simple/", "--since", records[4]["time"], "--repo", "team",
        "--secret", "team-write",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["action"] for line in result.stdout.splitlines()] == ["delete"]


def test_two_servers_appending_at_once_lose_no_audit_record(
    start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    config = shared_config(tmp_path, tmp_path / "storage")
    servers = [start_server("--config", str(config)) for _ in range(2)]
    wheel = build_wheel(tmp_path / "v1", "aud-race", "1.0")
    clients.twine_upload(servers[0].url + "simple/", *WRITE, wheel.path, env=client_env)
    wait_for(lambda: listed(servers[1], "aud-race", READ) != [], timeout=3)
    per_server = 200

    def append_many(server: WharfServer) -> None:
        with requests.Session() as session:
            for i in range(per_server):
                action = "yank" if i % 2 == 0 else "unyank"
                url = f"{server.url}simple/aud-race/{wheel.filename}/{action}"
                assert session.post(url, auth=WRITE, timeout=30).ok

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(append_many, servers))
    records = audit_records(servers[1], WRITE)
    assert len(records) == 1 + 2 * per_server
    assert sorted(r["action"] for r in records).count("yank") == per_server


# -- promote ------------------------------------------------------------------------------------


def two_repos(tmp_path: Path) -> Path:
    config = tmp_path / "two.toml"
    config.write_text(
        '[staging]\ntype = "file_system"\nread_secret = "staging-read"\n'
        'write_secret = "staging-write"\n\n'
        '[prod]\ntype = "file_system"\nread_secret = "prod-read"\nwrite_secret = "prod-write"\n'
    )
    return config


def promote_request(server: WharfServer, project: str, version: str, **form: str):
    return requests.post(
        f"{server.url}r/staging/simple/{project}/{version}/promote",
        auth=("staging", "staging-read"),
        data=form,
        timeout=30,
    )


def test_promote_copies_a_release_once_and_reveals_nothing_of_other_repositories(
    start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    server = start_server("--config", str(two_repos(tmp_path)))
    wheel = build_wheel(tmp_path / "w", "pro-mote", "1.0")
    sdist = build_sdist(tmp_path / "s", "pro-mote", "1.0")
    other = build_wheel(tmp_path / "o", "pro-mote", "2.0")
    clients.twine_upload(
        server.url + "simple/", "staging", "staging-write", wheel.path, sdist.path, other.path,
        env=client_env,
    )  # fmt: skip
    prod = ("prod", "prod-read")

    # Unknown target, wrong secret, read secret: one answer, nothing copied.
    answers = {
        promote_request(server, "pro-mote", "1.0", to=to, to_secret=secret).text
        for to, secret in (
            ("nowhere", "prod-write"),
            ("prod", "wrong"),
            ("prod", "prod-read"),
            ("staging-x", ""),
        )
    }
    assert len(answers) == 1, answers
    assert promote_request(server, "pro-mote", "1.0", to="prod", to_secret="x").status_code == 403
    assert promote_request(server, "pro-mote", "1.0", to_secret="prod-write").status_code == 400
    assert (
        promote_request(server, "pro-mote", "9.0", to="prod", to_secret="prod-write").status_code
        == 404
    )
    assert (
        promote_request(server, "nope", "1.0", to="prod", to_secret="prod-write").status_code == 404
    )
    for version in ("..%2F1.0", "1.0%2F..", "%2e%2e"):
        response = promote_request(server, "pro-mote", version, to="prod", to_secret="prod-write")
        assert response.status_code == 404, (version, response.status_code)
    same = promote_request(server, "pro-mote", "1.0", to="staging", to_secret="staging-write")
    assert same.status_code == 400
    assert get(server, "simple/pro-mote/", auth=prod).status_code == 404

    # The release, copied with its metadata; again: nothing changes.
    response = promote_request(server, "Pro_Mote", "1.0", to="prod", to_secret="prod-write")
    assert response.status_code == 200, response.text
    assert sorted(response.json()["copied"]) == sorted([wheel.filename, sdist.filename])
    assert response.json()["unchanged"] == []
    page = get(server, "simple/pro-mote/", auth=prod, headers={"Accept": JSON}).json()
    assert {f["filename"]: f["hashes"]["sha256"] for f in page["files"]} == {
        wheel.filename: wheel.sha256,
        sdist.filename: sdist.sha256,
    }
    meta = get(server, f"simple/pro-mote/{wheel.filename}.metadata", auth=prod)
    assert meta.status_code == 200 and meta.content.startswith(b"Metadata-Version")
    again = promote_request(server, "pro-mote", "1.0", to="prod", to_secret="prod-write")
    assert again.json()["copied"] == [] and len(again.json()["unchanged"]) == 2
    clients.pip_install(server.index_url(*prod), tmp_path / "pip", "pro-mote", env=client_env)

    # A target holding other bytes under a name refuses the whole release.
    rebuilt = build_wheel(tmp_path / "r", "pro-mote", "2.0", summary="rebuilt")
    clients.twine_upload(server.url + "simple/", "prod", "prod-write", rebuilt.path, env=client_env)
    clash = promote_request(server, "pro-mote", "2.0", to="prod", to_secret="prod-write")
    assert clash.status_code == 409
    # An archived target takes nothing.
    assert post_status(server, "pro-mote", ("prod", "prod-write"), status="archived").ok
    archived = promote_request(server, "pro-mote", "1.0", to="prod", to_secret="prod-write")
    assert archived.status_code == 409 and "archived" in archived.text

    out = audit_records(server, ("staging", "staging-write"))
    assert [(r["action"], r["filename"]) for r in out if r["action"] == "promote_out"] == [
        ("promote_out", name) for name in response.json()["copied"]
    ]
    assert out[-1]["who"] == {"kind": "read_secret"} and out[-1]["detail"] == "to prod"
    into = [r for r in audit_records(server, ("prod", "prod-write")) if r["action"] == "promote_in"]
    assert len(into) == 2 and into[0]["detail"] == "from staging"


def test_promote_from_the_cli(start_server, tmp_path: Path, client_env: dict[str, str]) -> None:
    server = start_server("--config", str(two_repos(tmp_path)))
    wheel = build_wheel(tmp_path / "w", "pro-cli", "1.10")
    clients.twine_upload(
        server.url + "simple/", "staging", "staging-write", wheel.path, env=client_env
    )
    env = {"STAGING": "staging-read", "PROD": "prod-write"}
    result = pywharf(
        "promote", server.url + "simple/", "pro-cli", "1.10", "--from", "staging", "--to", "prod",
        "--secret_env", "STAGING", "--to_secret_env", "PROD", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"copied {wheel.filename}\n"
    wrong = pywharf(
        "promote", server.url + "r/staging/simple/", "pro-cli", "1.10", "--to", "nowhere",
        "--secret_env", "STAGING", "--to_secret_env", "PROD", env=env,
    )  # fmt: skip
    assert wrong.returncode == 2 and "403" in wrong.stderr


# -- the management CLI: -r NAME, list, exists ---------------------------------------------------


def test_client_commands_read_pypirc_and_list_and_exists_answer(
    two_versions, tmp_path: Path
) -> None:
    server, old, new, new_sdist = two_versions
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pypirc").write_text(
        "[distutils]\nindex-servers = wharf\n\n"
        f"[wharf]\nrepository = {server.url}simple/\nusername = local\n"
        f"password = {server.write_secret}\n\n"
        f"[reader]\nrepository = {server.url}r/local/simple/\nusername = __token__\n"
        f"password = {server.read_secret}\n"
    )
    env = {"HOME": str(home)}

    listing = pywharf("list", "-r", "wharf", "del-me", env=env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout == (
        f"2.0\n  {new.filename}\n  {new_sdist.filename}\n1.0\n  {old.filename}\n"
    ) or listing.stdout == (
        f"2.0\n  {new_sdist.filename}\n  {new.filename}\n1.0\n  {old.filename}\n"
    )
    assert server.write_secret not in listing.stdout + listing.stderr
    yank = pywharf("yank", "-r", "wharf", new.filename, "--reason", "bad", env=env)
    assert yank.returncode == 0, yank.stderr
    assert (
        f"{new.filename}  (yanked: bad)"
        in pywharf("list", "-r", "reader", "del-me", env=env).stdout
    )

    for requirement, code in (("del-me", 0), ("Del_Me==2.0", 0), ("del-me==2", 0),
                              ("del-me==3.0", 1), ("nothing-here", 1)):  # fmt: skip
        result = pywharf("exists", "-r", "reader", requirement, env=env)
        assert result.returncode == code, (requirement, result.stderr)
    deleted = pywharf("delete", "-r", "wharf", "del-me", "--filename", old.filename, env=env)
    assert deleted.returncode == 0 and deleted.stdout == f"deleted {old.filename}\n"
    assert pywharf("exists", "-r", "reader", "del-me==1.0", env=env).returncode == 1

    # Errors are one line, exit 2.
    for args in (
        ("list", "-r", "nope", "del-me"),
        ("exists", "-r"),
        ("delete", "-r", "reader", "del-me", "2.0"),  # a read secret: 403
        ("list", "-r", "wharf", "no-such-project"),
    ):
        result = pywharf(*args, env=env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("pywharf: error: ") and result.stderr.count("\n") == 1
    nofile = pywharf("list", "-r", "wharf", "del-me", env={"HOME": str(tmp_path)})
    assert nofile.returncode == 2 and ".pypirc" in nofile.stderr


# -- the web UI for maintainers -----------------------------------------------------------------


def browser_login(server: WharfServer, secret: str) -> requests.Session:
    session = requests.Session()
    session.headers["Accept"] = "text/html,application/xhtml+xml"
    session.headers["Sec-Fetch-Mode"] = "navigate"
    form = session.get(server.url + "login/", timeout=10).text
    csrf = form.split('name="csrf" value="')[1].split('"')[0]
    response = session.post(
        server.url + "login/",
        data={"repo": "local", "secret": secret, "csrf": csrf, "next": "/simple/"},
        timeout=10,
    )
    assert response.ok, response.text
    return session


def form_csrf(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


def test_maintainers_yank_delete_and_set_status_from_the_project_page(two_versions) -> None:
    server, old, new, _sdist = two_versions
    reader = browser_login(server, server.read_secret)
    page = reader.get(server.url + "simple/del-me/", timeout=10).text
    assert "install-uv-add" in page and f"uv add --index local={server.url}simple/ del-me" in page
    assert 'value="yank"' not in page and 'id="status-form"' not in page
    refused = reader.post(
        server.url + "manage/del-me/",
        data={"csrf": "any", "action": "delete", "filename": old.filename},
        timeout=10,
    )
    assert refused.status_code == 403

    writer = browser_login(server, server.write_secret)
    page = writer.get(server.url + "simple/del-me/", timeout=10).text
    csrf = form_csrf(page)
    assert 'value="yank"' in page and 'id="status-form"' in page
    manage = server.url + "manage/del-me/"
    no_token = writer.post(manage, data={"action": "yank", "filename": new.filename}, timeout=10)
    assert no_token.status_code == 400
    yanked = writer.post(
        manage,
        data={"csrf": csrf, "action": "yank", "filename": new.filename, "reason": "broken"},
        timeout=10,
    )
    assert yanked.ok and "yanked: broken" in yanked.text  # back on the project page
    ask = writer.post(
        manage, data={"csrf": csrf, "action": "delete", "filename": old.filename}, timeout=10
    )
    assert ask.status_code == 200 and "delete-confirmed" in ask.text
    assert old.filename in get(server, "simple/del-me/", auth=("local", server.read_secret)).text
    done = writer.post(
        manage,
        data={"csrf": csrf, "action": "delete", "filename": old.filename, "confirm": "yes"},
        timeout=10,
    )
    assert done.ok
    assert (
        old.filename not in get(server, "simple/del-me/", auth=("local", server.read_secret)).text
    )
    status = writer.post(
        manage, data={"csrf": csrf, "action": "status", "status": "deprecated"}, timeout=10
    )
    assert status.ok and "This project is deprecated" in status.text
    bad = writer.post(manage, data={"csrf": csrf, "action": "status", "status": "x"}, timeout=10)
    assert bad.status_code == 400
    records = audit_records(server, ("local", server.write_secret))
    session_actions = [r["action"] for r in records if r["who"] == {"kind": "session"}]
    assert session_actions == ["yank", "delete", "status"]


def test_people_get_a_styled_404_and_tools_get_text(two_versions) -> None:
    server = two_versions[0]
    browser = browser_login(server, server.read_secret)
    for path in ("simple/no-such-project/", "simple/del-me/no_such-1.0.tar.gz", "nowhere/at/all"):
        response = browser.get(server.url + path, timeout=10, allow_redirects=False)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"].startswith("text/html"), path
        assert 'id="not-found"' in response.text and "<style>" in response.text
    tool = get(server, "simple/no-such-project/", auth=("local", server.read_secret))
    assert tool.status_code == 404 and tool.headers["Content-Type"].startswith("text/plain")
