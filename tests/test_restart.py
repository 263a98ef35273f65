"""What a restart keeps: accepted uploads stay listed; a crash between storing and
indexing is mended by re-uploading the same bytes; the remote index's database under ROOT
spares a restart the parse, and a broken one is built again."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_pipeline import open_repo  # one file_system repository 'team'
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.server import get, upload_file

from pywharf_core.job import update_index
from pywharf_core.repository import Repository
from pywharf_core.testing import make_wheel


def test_uploads_survive_a_restart_and_identical_reupload_mends_the_index(
    start_server, tmp_path: Path, dists, client_env: dict[str, str]
) -> None:
    root = tmp_path / "root"
    server = start_server(root=root)
    auth = ("local", server.read_secret)
    url = server.url + "simple/"
    clients.twine_upload(url, "local", server.write_secret, dists.base_wheel.path, env=client_env)
    server.stop()

    server = start_server(root=root)
    page = get(server, "simple/foo-bar-baz/", auth=auth)
    assert dists.base_wheel.filename in page.text

    # Lose every record of it (as a crash after storing, before recording, would): the
    # server's overlay and the storage's journal. Restart.
    server.stop()
    (root / "cache" / "local" / "overlay.jsonl").unlink()
    (root / "cache" / "local" / "storage" / ".pywharf-journal.jsonl").unlink()
    server = start_server(root=root)
    assert get(server, "simple/foo-bar-baz/", auth=auth).status_code == 404
    clients.twine_upload(
        server.url + "simple/", "local", server.write_secret, dists.base_wheel.path, env=client_env
    )
    page = get(server, "simple/foo-bar-baz/", auth=auth)
    assert f"{dists.base_wheel.filename}#sha256={dists.base_wheel.sha256}" in page.text
    file = get(server, f"simple/foo-bar-baz/{dists.base_wheel.filename}", auth=auth)
    assert file.content == dists.base_wheel.path.read_bytes()


def test_a_torn_overlay_line_is_skipped(start_server, tmp_path: Path, dists) -> None:
    root = tmp_path / "root"
    server = start_server(root=root)
    write = ("local", server.write_secret)
    assert upload_file(server, dists.app_wheel.path, "demo-app", "0.1", write).ok
    server.stop()
    overlay = root / "cache" / "local" / "overlay.jsonl"
    with overlay.open("a") as handle:
        handle.write('{"project": "torn", "filena')  # a crash mid-append
    server = start_server(root=root)
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", write).ok
    server.stop()
    server = start_server(root=root)
    listing = get(server, "simple/", auth=write).text
    assert "demo-app" in listing and "foo-bar-baz" in listing and "torn" not in listing


# -- the remote index's database under ROOT -------------------------------------------------


def indexed_repo(root: Path, count: int = 3) -> Repository:
    """A repository whose remote index holds ``count`` wheels, synced."""
    repo = open_repo(root)
    storage = root / "cache" / "team" / "storage"
    for i in range(count):
        filename, data, _ = make_wheel(f"held-{i}", "1.0")
        (storage / f"held-{i}").mkdir()
        (storage / f"held-{i}" / filename).write_bytes(data)
    update_index(repo.backend)
    repo.sync()
    return repo


def test_a_restart_whose_database_holds_the_index_parses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pywharf_core.repository

    first = indexed_repo(tmp_path)
    assert list(first.index.snapshot.projects) == ["held-0", "held-1", "held-2"]

    def parse(data: bytes) -> None:
        raise AssertionError("the remote index was parsed")

    with monkeypatch.context() as patched:
        patched.setattr(pywharf_core.repository, "load_index", parse)
        again = open_repo(tmp_path)
        assert again.sync_failures == 0 and again.index.snapshot.file_count == 3
        assert again.index.snapshot.files_of("held-1") is not None
    # An unreadable database is built again from the backend's index, at start …
    database = tmp_path / "cache" / "team" / "index.sqlite3"
    database.write_bytes(b"\0garbage" * 4096)
    rebuilt = open_repo(tmp_path)
    assert rebuilt.sync_failures == 0 and rebuilt.index.snapshot.file_count == 3
    # … and when a read finds it broken while serving: the reader has it loaded again.
    rebuilt.index._store.close()
    with database.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * (database.stat().st_size - 4096))
    assert rebuilt.index.snapshot.files_of("held-2") is not None
    assert rebuilt.index.snapshot.file_count == 3


def test_a_server_with_a_broken_index_database_serves_its_pages(
    start_server, tmp_path: Path, dists
) -> None:
    root = tmp_path / "root"
    server = start_server(root=root)
    write, read = ("local", server.write_secret), ("local", server.read_secret)
    assert upload_file(server, dists.app_wheel.path, "demo-app", "0.1", write).ok
    server.stop()
    assert pywharf("update_index", "file_system", "local", "--root", str(root)).returncode == 0
    (root / "cache" / "local" / "overlay.jsonl").unlink()  # only the remote index has it
    database = root / "cache" / "local" / "index.sqlite3"
    database.write_bytes(b"not a database" * 100)
    server = start_server(root=root)
    assert "demo-app" in get(server, "simple/", auth=read).text
    assert get(server, "simple/demo-app/", auth=read).status_code == 200
