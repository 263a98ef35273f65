"""The backend conformance suite: the same behaviour tests for every backend.

A backend's test module provides two fixtures and inherits the tests::

    from pywharf_core.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path): return MyBackend(...)

        @pytest.fixture
        def secrets(self): return ("the-read-secret", "the-write-secret")

Requires pytest (a test dependency, not a runtime one).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest

from .backend import Access, Backend, FileStream, LocalFile, RedirectTo, StagedFile
from .errors import FileExists, FileMissing, IndexConflict, NotSupported
from .records import FileRecord


def make_wheel(name: str, version: str, payload: bytes = b"") -> tuple[str, bytes, bytes]:
    """A minimal valid wheel: (filename, wheel bytes, METADATA bytes)."""
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()
    base = f"{name.replace('-', '_')}-{version}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{base}.dist-info/METADATA", metadata)
        archive.writestr(f"{name.replace('-', '_')}/__init__.py", payload)
        archive.writestr(f"{base}.dist-info/RECORD", "")
    return f"{base}-py3-none-any.whl", buffer.getvalue(), metadata


def stage(backend: Backend, data: bytes) -> StagedFile:
    """Spool ``data`` into the backend's staging folder, as the upload reader does."""
    with tempfile.NamedTemporaryFile(
        dir=backend.staging_dir(), prefix=".upload-", delete=False
    ) as f:
        f.write(data)
    return StagedFile(Path(f.name), len(data), hashlib.sha256(data).hexdigest())


def record_for(filename: str, data: bytes, metadata: bytes | None) -> FileRecord:
    project, version = filename.split("-")[0].replace("_", "-"), filename.split("-")[1]
    return FileRecord(
        project=project,
        filename=filename,
        version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        upload_time=1_700_000_000.0,
        core_metadata_sha256=hashlib.sha256(metadata).hexdigest() if metadata else None,
    )


def read_opened(backend: Backend, record: FileRecord) -> bytes:
    opened = backend.open_file(record)
    if isinstance(opened, LocalFile):
        return opened.path.read_bytes()
    if isinstance(opened, FileStream):
        try:
            return b"".join(opened.chunks)
        finally:
            opened.close()
    assert isinstance(opened, RedirectTo)
    with urllib.request.urlopen(opened.url, timeout=30) as response:  # noqa: S310 (test servers)
        return bytes(response.read())


def put(
    backend: Backend, name: str, version: str, payload: bytes = b""
) -> tuple[FileRecord, bytes]:
    filename, data, metadata = make_wheel(name, version, payload)
    staged = stage(backend, data)
    try:
        return backend.put_file(record_for(filename, data, metadata), staged, metadata), data
    finally:
        staged.path.unlink(missing_ok=True)


def _listed(backend: Backend, record: FileRecord) -> FileRecord:
    return next(r for r in backend.list_files() if r.filename == record.filename)


class BackendConformance:
    """Behaviour every backend must show. Subclasses provide ``backend`` and ``secrets``."""

    def test_check_access(self, backend: Backend, secrets: tuple[str, str]) -> None:
        read, write = secrets
        assert backend.check_access(read) is Access.READ
        assert backend.check_access(write) is Access.WRITE
        assert backend.check_access("wrong" + read) is Access.NONE
        assert backend.check_access("") is Access.NONE

    def test_put_then_open_gives_the_same_bytes(self, backend: Backend) -> None:
        stored, data = put(backend, "conf-put", "1.0", b"payload")
        assert stored.backend_ref
        assert read_opened(backend, stored) == data

    def test_put_is_create_only(self, backend: Backend) -> None:
        first, data = put(backend, "conf-dup", "1.0", b"first")
        with pytest.raises(FileExists) as info:
            put(backend, "conf-dup", "1.0", b"second")
        assert info.value.sha256 in (None, first.sha256)
        assert read_opened(backend, first) == data

    def test_concurrent_puts_of_one_name_exactly_one_wins(self, backend: Backend) -> None:
        barrier = threading.Barrier(8)
        outcomes: dict[int, object] = {}

        def attempt(i: int) -> None:
            filename, data, metadata = make_wheel("conf-race", "1.0", f"variant {i}".encode())
            staged = stage(backend, data)
            barrier.wait()
            try:
                outcomes[i] = backend.put_file(
                    record_for(filename, data, metadata), staged, metadata
                )
            except FileExists as exc:
                outcomes[i] = exc
            finally:
                staged.path.unlink(missing_ok=True)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [o for o in outcomes.values() if isinstance(o, FileRecord)]
        assert len(winners) == 1 and len(outcomes) == 8
        stored = read_opened(backend, winners[0])
        assert hashlib.sha256(stored).hexdigest() == winners[0].sha256

    def test_open_missing_raises_file_missing(self, backend: Backend) -> None:
        filename, data, metadata = make_wheel("conf-missing", "1.0")
        with pytest.raises(FileMissing):
            backend.open_file(record_for(filename, data, metadata))

    def test_list_files_lists_what_was_put(self, backend: Backend) -> None:
        a, _ = put(backend, "conf-list", "1.0")
        b, _ = put(backend, "conf-list", "2.0")
        listed = {r.filename: r for r in backend.list_files()}
        for record in (a, b):
            assert listed[record.filename].sha256 == record.sha256
            assert listed[record.filename].size == record.size
            assert listed[record.filename].project == "conf-list"

    def test_metadata_is_stored_beside_the_file(self, backend: Backend) -> None:
        stored, _ = put(backend, "conf-meta", "1.0")
        opened = backend.open_metadata(stored)
        if isinstance(opened, LocalFile):
            data = opened.path.read_bytes()
        elif isinstance(opened, FileStream):
            data = b"".join(opened.chunks)
            opened.close()
        else:
            with urllib.request.urlopen(opened.url, timeout=30) as response:  # noqa: S310
                data = response.read()
        assert hashlib.sha256(data).hexdigest() == stored.core_metadata_sha256

    def test_yanked_state_is_listed(self, backend: Backend) -> None:
        stored, _ = put(backend, "conf-yank", "1.0")
        try:
            backend.set_yanked(stored, "broken build")
        except NotSupported:
            pytest.skip("this backend does not support yanking")
        assert _listed(backend, stored).yanked == "broken build"
        backend.set_yanked(stored, "")
        assert _listed(backend, stored).yanked == ""
        backend.set_yanked(stored, None)
        assert _listed(backend, stored).yanked is None

    def test_index_compare_and_swap(self, backend: Backend) -> None:
        assert backend.read_index() is None
        assert backend.index_version() is None
        v1 = backend.write_index(b"first", None)
        assert backend.read_index() == (b"first", v1)
        assert backend.index_version() == v1
        with pytest.raises(IndexConflict):
            backend.write_index(b"lost", None)
        v2 = backend.write_index(b"second", v1)
        assert v2 != v1
        with pytest.raises(IndexConflict):
            backend.write_index(b"stale", v1)
        assert backend.read_index() == (b"second", v2)
