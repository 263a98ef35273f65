from __future__ import annotations

import os
from pathlib import Path

import pytest
from pywharf_backends.file_system import FileSystemBackend, FileSystemConfig

from pywharf_core.backend import BackendContext, LocalFile, load_backend_spec
from pywharf_core.errors import FileMissing
from pywharf_core.testing import BackendConformance, make_wheel, put, record_for


class TestFileSystemConformance(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> FileSystemBackend:
        return FileSystemBackend(tmp_path / "storage")


def test_registered_through_the_entry_point(tmp_path: Path) -> None:
    spec = load_backend_spec("file_system")
    backend = spec.create(BackendContext("repo1", tmp_path), FileSystemConfig())
    assert isinstance(backend, FileSystemBackend)
    assert backend.root == (tmp_path / "cache" / "repo1" / "storage").resolve()


def test_layout_metadata_beside_the_file(tmp_path: Path) -> None:
    backend = FileSystemBackend(tmp_path)
    record, data = put(backend, "lay-out", "1.0")
    path = tmp_path / "lay-out" / record.filename
    assert path.read_bytes() == data
    assert (
        path.with_name(record.filename + ".metadata").read_bytes().startswith(b"Metadata-Version")
    )
    assert record.backend_ref == f"lay-out/{record.filename}"


def test_references_cannot_leave_the_storage(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("do not serve")
    backend = FileSystemBackend(tmp_path / "storage")
    filename, data, metadata = make_wheel("esc", "1.0")
    for ref in ("../secret.txt", "/etc/passwd", "", "."):
        with pytest.raises(FileMissing):
            backend.open_file(
                record_for(filename, data, metadata).with_changes(backend_ref=ref or ".")
            )


def test_a_taken_name_reports_the_stored_reference(tmp_path: Path) -> None:
    # The file system knows no hash without reading the file: the core reads it.
    backend = FileSystemBackend(tmp_path)
    record, _ = put(backend, "crashy", "1.0")
    from pywharf_core.errors import FileExists

    with pytest.raises(FileExists) as info:
        put(backend, "crashy", "1.0")
    assert info.value.backend_ref == record.backend_ref
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_stored_files_are_private_to_the_server_user(tmp_path: Path) -> None:
    backend = FileSystemBackend(tmp_path)
    record, _ = put(backend, "perm", "1.0")
    mode = os.stat(tmp_path / "perm" / record.filename).st_mode & 0o777
    assert mode & 0o077 == 0


def _copied_in(storage: Path, project: str, version: str) -> tuple[Path, bytes]:
    """A wheel copied into the storage by hand (no sidecar), and its core metadata."""
    filename, data, metadata = make_wheel(project, version)
    path = storage / project / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, metadata


def test_update_index_syncs_adopted_sidecars_once_before_it_writes_the_index(
    tmp_path: Path,
) -> None:
    from pywharf_core.job import update_index

    events: list[str] = []

    class Watched(FileSystemBackend):
        def adopt_later(self, entry, record, metadata):  # type: ignore[no-untyped-def]
            events.append("adopt")
            return super().adopt_later(entry, record, metadata)

        def adopt_file(self, entry, record, metadata):  # type: ignore[no-untyped-def]
            events.append("adopt_file")
            return super().adopt_file(entry, record, metadata)

        def settle_adopted(self) -> None:
            events.append("settle")
            super().settle_adopted()

        def write_index(self, data: bytes, expected_version: str | None) -> str:
            events.append("index")
            return super().write_index(data, expected_version)

    storage = tmp_path / "storage"
    copied = [_copied_in(storage, "hand-made", version) for version in ("1.0", "2.0")]
    backend = Watched(storage)
    assert update_index(backend).files == 2
    assert events == ["adopt", "adopt", "settle", "index"]
    for path, metadata in copied:
        assert path.with_name(path.name + ".metadata").read_bytes() == metadata
    assert not backend._unsettled  # settled: nothing left to sync
    # A file the index holds whose sidecar was lost is described again to the same
    # record: no index follows, so its sidecar is written durably at once (adopt_file).
    events.clear()
    lost = copied[0][0].with_name(copied[0][0].name + ".metadata")
    lost.unlink()
    assert not update_index(backend).changed
    assert events == ["adopt_file", "settle"] and lost.read_bytes() == copied[0][1]


def test_a_sidecar_cut_off_before_it_was_synced_is_written_again(tmp_path: Path) -> None:
    # adopt_later skips the fsync: a crash before settle_adopted can leave the sidecar
    # empty (or stale) while no index names it yet. The next run describes the file again
    # and replaces the sidecar, rather than keep bytes that do not match the record.
    from pywharf_core.job import update_index

    storage = tmp_path / "storage"
    path, metadata = _copied_in(storage, "cut-off", "1.0")
    sidecar = path.with_name(path.name + ".metadata")
    sidecar.write_bytes(b"")
    backend = FileSystemBackend(storage)
    update_index(backend)
    assert sidecar.read_bytes() == metadata
    (record,) = backend.list_files()
    assert record.has_metadata
    # adopt_file (the upload path's repair of a racing upload) mends a stale one too.
    sidecar.write_bytes(b"Metadata-Version: 2.1\nName: other\n")
    filename, data, _ = make_wheel("cut-off", "1.0")
    backend.adopt_file(record, record_for(filename, data, metadata), metadata)
    assert sidecar.read_bytes() == metadata
    assert not [p for p in storage.rglob(".tmp-*")]


def test_sync_file_system_reaches_the_disk_without_error(tmp_path: Path) -> None:
    from pywharf_backends.file_system.storage import _sync_file_system

    (tmp_path / "written").write_bytes(b"x")
    _sync_file_system(tmp_path)  # syncfs(2) on Linux; raises OSError if it fails
    with pytest.raises(OSError):
        _sync_file_system(tmp_path / "missing")


def test_links_in_the_storage_are_followed_only_while_they_stay_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret-1.0-py3-none-any.whl").write_bytes(b"do not serve")
    storage = tmp_path / "storage"
    backend = FileSystemBackend(storage)
    record, data = put(backend, "inside", "1.0")
    (storage / "out-folder").symlink_to(outside)
    (storage / "inside" / "out-file.whl").symlink_to(outside / "secret-1.0-py3-none-any.whl")
    (storage / "in-folder").symlink_to(storage / "inside")
    for ref in (
        "out-folder/secret-1.0-py3-none-any.whl",
        "inside/out-file.whl",
        "inside/../out-folder/secret-1.0-py3-none-any.whl",
    ):
        with pytest.raises(FileMissing):
            backend.open_file(record.with_changes(backend_ref=ref))
    # A link that stays inside the storage is followed, as a plain path is.
    via_link = backend.open_file(record.with_changes(backend_ref=f"in-folder/{record.filename}"))
    assert isinstance(via_link, LocalFile) and via_link.path.read_bytes() == data
    plain = backend.open_file(record)
    assert isinstance(plain, LocalFile) and plain.path == storage.resolve() / record.backend_ref
    with pytest.raises(FileMissing):  # nothing there: missing, wherever it would be
        backend.open_file(record.with_changes(backend_ref="inside/nothing-1.0.tar.gz"))
