"""What a restart keeps: accepted uploads stay listed; a crash between storing and
indexing is mended by re-uploading the same bytes."""

from __future__ import annotations

from pathlib import Path

from wharftest import clients
from wharftest.server import get, upload_file


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
