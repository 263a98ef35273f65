"""The index lifecycle with real processes: the update_index job, servers syncing a shared
storage, crashes, a failing backend, /initialize/, environment mode, --extra_index_url."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.configs import TEAM_READ, TEAM_WRITE, shared_config
from wharftest.distbuilder import build_sdist, build_wheel, filler
from wharftest.server import METRICS_AUTH, METRICS_TOKEN, get, upload_file, wait_for

READ = TEAM_READ
WRITE = TEAM_WRITE


# -- update_index ---------------------------------------------------------------------------


def test_update_index_imports_files_copied_in_by_hand(
    start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    storage = tmp_path / "storage"
    # Any layout below the root: a flat folder, nested folders, both kinds of file.
    base = build_wheel(storage / "imported" / "deep" / "er", "Foo_Bar.baz", "1.0")
    build_sdist(storage / "flat", "Foo_Bar.baz", "1.0")
    build_wheel(storage, "demo-app", "0.1", requires_dist=["foo-bar-baz"], requires_python=">=3.8")
    (storage / "notes.txt").write_text("not a distribution")
    (storage / "flat" / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")

    result = pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("update_index team: 3 files, 2 projects, index written, ")
    assert "skipping" in result.stderr and "broken-1.0" in result.stderr
    again = pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
    assert "3 files, 2 projects, index unchanged" in again.stdout
    # The wheel copied in by hand got its METADATA stored beside it.
    assert (base.path.parent / f"{base.filename}.metadata").is_file()

    server = start_server("--config", str(shared_config(tmp_path, storage)))
    page = get(server, "simple/foo-bar-baz/", auth=READ)
    assert f"{base.filename}#sha256={base.sha256}" in page.text
    assert "data-core-metadata" in page.text
    meta = get(server, f"simple/foo-bar-baz/{base.filename}.metadata", auth=READ)
    assert meta.status_code == 200 and meta.content.startswith(b"Metadata-Version")
    target = tmp_path / "target"
    clients.pip_install(server.index_url(*READ), target, "demo-app", env=client_env)
    assert (target / "foo_bar_baz" / "__init__.py").exists()


def test_update_index_keeps_yanks_and_reads_old_index_formats(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    wheel = build_wheel(storage / "yank-kept", "yank-kept", "1.0")
    (wheel.path.parent / f"{wheel.filename}.yanked").write_text("bad")
    # An index in pywharf 0.2's format, as its update_index wrote it.
    (storage / "index.toml").write_text(
        "mtime = 1600000000\n\n[[pkgs]]\n"
        f'type = "file_system"\ndistrib = "yank-kept"\npackage = "{wheel.filename[:-4]}"\n'
        f'ext = "whl"\nsha256 = "{wheel.sha256}"\n\n[pkgs.meta]\nname = "yank-kept"\n'
    )
    from pywharf_core.indexfile import load_index

    legacy = load_index((storage / "index.toml").read_bytes())
    assert [(r.filename, r.project, r.version, r.sha256) for r in legacy.records] == [
        (wheel.filename, "yank-kept", "1.0", wheel.sha256)
    ]
    result = pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
    assert "index written" in result.stdout, result.stderr
    rebuilt = load_index((storage / "index.toml").read_bytes())
    assert rebuilt.records[0].yanked == "bad"
    assert rebuilt.records[0].size == wheel.path.stat().st_size


def test_update_index_errors_are_one_line(tmp_path: Path) -> None:
    unknown = pywharf(
        "update_index", "file_system", "team", "--storage_root", str(tmp_path), "--colour", "red"
    )
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("pywharf: error: <command line> [team] key 'colour'")
    missing = pywharf("update_index", "file_system", "team", "--secret_env", "NO_SUCH_VARIABLE_X")
    assert missing.returncode == 2 and "NO_SUCH_VARIABLE_X" in missing.stderr
    nope = pywharf("update_index", "no_such_backend", "team")
    assert nope.returncode == 2 and "unknown backend type" in nope.stderr


# -- servers sharing a storage ------------------------------------------------------------


def test_two_servers_on_one_storage_see_each_others_uploads(
    start_server, tmp_path: Path, client_env: dict[str, str], dists
) -> None:
    storage = tmp_path / "storage"
    config = shared_config(tmp_path, storage, interval=1)
    a = start_server("--config", str(config))
    b = start_server("--config", str(config))
    clients.twine_upload(a.url + "simple/", *WRITE, dists.base_wheel.path, env=client_env)
    seconds = wait_for(
        lambda: get(b, "simple/foo-bar-baz/", auth=READ).status_code == 200, timeout=1 + 2
    )
    print(f"server B listed A's upload after {seconds:.2f} s (sync_index_interval 1 s)")
    target = tmp_path / "target"
    clients.pip_install(b.index_url(*READ), target, "foo-bar-baz", env=client_env)
    assert (target / "foo_bar_baz" / "__init__.py").exists()
    # And back: a yank on B reaches A.
    assert requests.post(
        f"{b.url}simple/foo-bar-baz/{dists.base_wheel.filename}/yank",
        auth=WRITE,
        data={"reason": "via B"},
        timeout=10,
    ).ok
    wait_for(lambda: 'data-yanked="via B"' in get(a, "simple/foo-bar-baz/", auth=READ).text, 3)
    # update_index absorbs the journal; both servers keep listing the file.
    result = pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
    assert "1 files, 1 projects, index written" in result.stdout
    journal = storage / ".pywharf-journal.jsonl"
    assert not journal.exists() or journal.read_text() == ""
    for server in (a, b):
        wait_for(lambda s=server: int(get(s, "index_mtime/", auth=READ).text) > 0, 3)
        assert 'data-yanked="via B"' in get(server, "simple/foo-bar-baz/", auth=READ).text


# -- crashes and failures ----------------------------------------------------------------------


def test_sigkill_mid_upload_leaves_nothing_visible(start_server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = start_server(root=root)
    write = ("local", server.write_secret)
    big = build_wheel(
        tmp_path / "big", "crash-test", "1.0", extra={"crash_test/b.bin": filler(200 << 20)}
    )
    staging = root / "cache" / "local" / "storage" / ".pywharf-staging"

    def send() -> None:
        with contextlib.suppress(requests.RequestException):  # the server dies mid-way
            upload_file(server, big.path, "crash-test", "1.0", write)

    sender = threading.Thread(target=send)
    sender.start()
    # Kill once the server is writing the file into its staging folder.
    wait_for(
        lambda: any(p.stat().st_size > 0 for p in staging.glob(".upload-*")), timeout=60, step=0.01
    )
    server.stop(signal.SIGKILL)
    sender.join()

    restarted = start_server(root=root)
    assert get(restarted, "simple/crash-test/", auth=write).status_code == 404
    assert get(restarted, f"simple/crash-test/{big.filename}", auth=write).status_code == 404
    assert not (root / "cache" / "local" / "storage" / "crash-test").exists()
    assert get(restarted, "readyz").json()["ready"] is True
    again = upload_file(restarted, big.path, "crash-test", "1.0", write)
    assert again.status_code == 200, again.text


def test_unreadable_backend_keeps_the_last_good_index(start_server, tmp_path: Path, dists) -> None:
    storage = tmp_path / "storage"
    shutil.copy(dists.base_wheel.path, storage.mkdir(parents=True) or storage)
    assert (
        "index written"
        in pywharf("update_index", "file_system", "team", "--storage_root", str(storage)).stdout
    )
    server = start_server(
        "--config",
        str(shared_config(tmp_path, storage, interval=1)),
        "--metrics_token",
        METRICS_TOKEN,
    )
    assert dists.base_wheel.filename in get(server, "simple/foo-bar-baz/", auth=READ).text
    mtime = int(get(server, "index_mtime/", auth=READ).text)
    assert mtime > 0

    index = storage / "index.toml"
    saved = index.read_bytes()
    index.unlink()
    if os.geteuid() == 0:  # permissions do not stop root: make it unreadable another way
        index.mkdir()
    else:
        index.write_bytes(saved)
        index.chmod(0)
    time.sleep(3)  # three sync rounds, all failing
    page = get(server, "simple/foo-bar-baz/", auth=READ)
    assert page.status_code == 200 and dists.base_wheel.filename in page.text
    assert int(get(server, "index_mtime/", auth=READ).text) == mtime  # stale, as it should
    report = get(server, "readyz", headers=METRICS_AUTH).json()["repositories"]["team"]
    assert report["sync_failures"] >= 2 and report["index_age_seconds"] >= 2
    log = server.log_text()
    assert log.count("cannot read the remote index") == 1  # once per failure streak

    if index.is_dir():
        index.rmdir()
    else:
        index.unlink()
    index.write_bytes(saved)
    # Recovers at the next sync round (1 s); the slack is for a loaded machine.
    wait_for(lambda: int(get(server, "index_mtime/", auth=READ).text) > mtime, timeout=15)
    assert "index sync recovered" in server.log_text()


# -- /initialize/ ------------------------------------------------------------------------------

NEW_CONFIG = '[fresh]\ntype = "file_system"\nread_secret = "fresh-r"\nwrite_secret = "fresh-w"\n'


def test_initialize_an_untouched_embedded_default_once(start_server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = start_server(root=root, env_mode=True)  # the service-container flow
    local = ("local", server.read_secret)
    response = requests.post(
        server.url + "initialize/", data={"config": NEW_CONFIG, "admin_secret": ""}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert get(server, "simple/", auth=("fresh", "fresh-r")).status_code == 200
    assert get(server, "simple/", auth=local).status_code == 401  # the old repo is gone
    again = requests.post(server.url + "initialize/", data={"config": NEW_CONFIG}, timeout=30)
    assert again.status_code == 403 and "untouched embedded default" in again.text
    # The posted configuration outlives a restart.
    server.stop()
    restarted = start_server(root=root)
    assert get(restarted, "simple/", auth=("fresh", "fresh-r")).status_code == 200
    assert oct((root / "config.toml").stat().st_mode & 0o777) == "0o600"


def test_initialize_refused_once_something_was_uploaded(
    start_server, tmp_path: Path, dists
) -> None:
    server = start_server(env_mode=True)
    write = ("local", server.write_secret)
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", write).ok
    refused = requests.post(server.url + "initialize/", data={"config": NEW_CONFIG}, timeout=30)
    assert refused.status_code == 403
    assert get(server, "simple/foo-bar-baz/", auth=("local", server.read_secret)).status_code == 200


def test_initialize_with_a_secret(start_server, tmp_path: Path) -> None:
    server = start_server("--initialize_secret", "init-s3cret")
    local = ("local", server.read_secret)
    url = server.url + "initialize/"
    for proof in ({}, {"initialize_secret": "wrong"}):
        refused = requests.post(url, data={"config": NEW_CONFIG, **proof}, timeout=30)
        assert refused.status_code == 403 and "initialize secret" in refused.text
    broken_toml = {"config": "[fresh\ntype=", "initialize_secret": "init-s3cret"}
    broken = requests.post(url, data=broken_toml, timeout=30)
    assert broken.status_code == 400
    assert "invalid TOML" in broken.text and "nothing changed" in broken.text
    unknown = requests.post(
        url, data={"config": '[x]\ntype = "nope"\n', "initialize_secret": "init-s3cret"}, timeout=30
    )
    assert unknown.status_code == 400 and "unknown backend type 'nope'" in unknown.text
    assert get(server, "simple/", auth=local).status_code == 200  # old config in force
    # As files, the way `curl -F config=@config.toml` sends them; the secret as password.
    files = {"config": ("config.toml", NEW_CONFIG.encode()), "admin_secret": ("a.toml", b"")}
    accepted = requests.post(url, files=files, auth=("any", "init-s3cret"), timeout=30)
    assert accepted.status_code == 200, accepted.text
    assert get(server, "simple/", auth=("fresh", "fresh-w")).status_code == 200
    assert get(server, "simple/", auth=local).status_code == 401


# -- environment mode ------------------------------------------------------------------------


def test_environment_mode_serves_pip(
    start_server, tmp_path: Path, client_env: dict[str, str], dists
) -> None:
    server = start_server(env_mode=True, env={"PYWHARF_COMMAND_DEBUG": "false"})
    clients.twine_upload(
        server.url + "simple/", "local", server.write_secret, dists.base_wheel.path, env=client_env
    )
    target = tmp_path / "target"
    clients.pip_install(
        server.index_url("local", server.read_secret), target, "foo-bar-baz", env=client_env
    )
    assert (target / "foo_bar_baz" / "__init__.py").exists()


def test_environment_mode_names_a_misspelt_variable(tmp_path: Path) -> None:
    env = {
        "PYWHARF_COMMAND": "server",
        "PYWHARF_COMMAND_ROOT": str(tmp_path),
        "PYWHARF_COMMAND_PROT": "8888",
    }
    result = pywharf(env=env)
    assert result.returncode == 2
    assert "PYWHARF_COMMAND_PROT" in result.stderr and "PORT" in result.stderr
    missing_root = pywharf(env={"PYWHARF_COMMAND": "server"})
    assert missing_root.returncode == 2 and "PYWHARF_COMMAND_ROOT" in missing_root.stderr
    bad_command = pywharf(env={"PYWHARF_COMMAND": "serve"})
    assert bad_command.returncode == 2 and "'serve' is not a command" in bad_command.stderr


# -- --extra_index_url ----------------------------------------------------------------------------


def test_extra_index_url_only_for_missing_projects(start_server, dists) -> None:
    upstream = "https://upstream.example/simple/"
    server = start_server("--extra_index_url", upstream)
    auth = ("local", server.write_secret)
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", auth).ok
    missing = get(server, "simple/not-here/", auth=auth)
    assert missing.status_code == 302
    assert missing.headers["Location"] == upstream + "not-here/"
    held = get(server, "simple/foo-bar-baz/", auth=auth)
    assert held.status_code == 200 and dists.base_wheel.filename in held.text
    # Credentials are still required before anything is redirected.
    assert get(server, "simple/not-here/").status_code == 401


def test_no_redirect_by_default(start_server) -> None:
    server = start_server()
    assert get(server, "simple/not-here/", auth=("local", server.read_secret)).status_code == 404


@pytest.mark.parametrize("flag", ["--debug", "--config_or_admin_secret_can_be_text"])
def test_boolean_flags_refuse_nonsense(tmp_path: Path, flag: str) -> None:
    result = pywharf("server", str(tmp_path), f"{flag}=perhaps", "--port", "0")
    assert result.returncode == 2 and "takes true or false" in result.stderr


def test_update_index_on_a_server_root(start_server, tmp_path: Path, dists) -> None:
    """--root: the same default storage as a server started on that ROOT."""
    root = tmp_path / "root"
    server = start_server(root=root)
    assert upload_file(
        server, dists.app_wheel.path, "demo-app", "0.1", ("local", server.write_secret)
    ).ok
    result = pywharf("update_index", "file_system", "local", "--root", str(root))
    assert result.stdout.startswith("update_index local: 1 files, 1 projects, index written")
    assert (root / "cache" / "local" / "storage" / "index.toml").is_file()


def test_restart_loads_the_parsed_index_from_its_cache(start_server, tmp_path: Path, dists) -> None:
    from pywharf_core.synced import SyncedIndex

    storage = tmp_path / "storage"
    storage.mkdir()
    shutil.copy(dists.base_wheel.path, storage)
    pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
    config = shared_config(tmp_path, storage, interval=1)
    root = tmp_path / "root"
    server = start_server("--config", str(config), root=root)
    server.stop()
    cache = SyncedIndex(root / "cache" / "team" / "index.sqlite3")
    [held] = cache.records_of("foo-bar-baz")
    assert held.filename == dists.base_wheel.filename
    # Only a cache hit could list this record: the index file does not have it.
    fake = held.with_changes(filename="foo_bar_baz-7.0-py3-none-any.whl", version="7.0")
    cache.prepare(cache.version, [held, fake]).commit()
    cache.close()
    server = start_server("--config", str(config), root=root)
    assert "foo_bar_baz-7.0" in get(server, "simple/foo-bar-baz/", auth=READ).text
    # A new index version makes the cache stale: it is read afresh.
    shutil.copy(dists.base_future.path, storage)
    pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
    wait_for(lambda: "foo_bar_baz-2.0" in get(server, "simple/foo-bar-baz/", auth=READ).text, 3)
    assert "foo_bar_baz-7.0" not in get(server, "simple/foo-bar-baz/", auth=READ).text
