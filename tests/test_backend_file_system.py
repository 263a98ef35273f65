from __future__ import annotations

import os
from pathlib import Path

import pytest
from pywharf_backends.file_system import FileSystemBackend, FileSystemConfig

from pywharf_core.backend import BackendContext, load_backend_spec
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
