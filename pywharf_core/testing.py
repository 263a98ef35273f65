"""The backend conformance suite: the same behaviour tests for every backend.

A backend's test module provides one fixture and inherits the tests::

    from pywharf_core.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(...)

Each test gets a fresh, empty backend. Optional operations a backend lacks
(``set_yanked`` raising ``NotSupported``) are skipped with the reason printed.
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

from .backend import Backend, FileStream, LocalFile, OpenedFile, RedirectTo, StagedFile, StoredFile
from .errors import FileExists, FileMissing, IndexConflict, NotSupported
from .job import update_index
from .records import FileRecord

#: Every member of a test wheel carries this time: two builds of one wheel are identical.
ZIP_TIME = (2020, 2, 2, 0, 0, 0)


def make_wheel(name: str, version: str, payload: bytes = b"") -> tuple[str, bytes, bytes]:
    """A minimal valid wheel, byte for byte the same for the same arguments:
    (filename, wheel bytes, METADATA bytes)."""
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()
    base = f"{name.replace('-', '_')}-{version}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in (
            (f"{base}.dist-info/METADATA", metadata),
            (f"{name.replace('-', '_')}/__init__.py", payload),
            (f"{base}.dist-info/RECORD", b""),
        ):
            archive.writestr(zipfile.ZipInfo(member, date_time=ZIP_TIME), data)
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


def read_opened(opened: OpenedFile) -> bytes:
    """The bytes behind an ``open_file`` answer, whatever its kind."""
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


def listed(backend: Backend, filename: str) -> StoredFile:
    return next(e for e in backend.list_files() if e.filename == filename)


def indexed(backend: Backend) -> dict[str, FileRecord]:
    """``update_index`` run over the backend, and the records it wrote, by filename."""
    from .remoteindex import read_records

    update_index(backend)
    current = backend.read_index()
    assert current is not None
    return {r.filename: r for r in read_records(backend, current[0])[0]}


class BackendConformance:
    """Behaviour every backend must show. Subclasses provide the ``backend`` fixture."""

    # -- storing and opening ----------------------------------------------------------
    def test_put_then_open_gives_the_same_bytes(self, backend: Backend) -> None:
        stored, data = put(backend, "conf-put", "1.0", b"payload")
        assert stored.backend_ref
        assert read_opened(backend.open_file(stored)) == data

    def test_put_is_create_only(self, backend: Backend) -> None:
        first, data = put(backend, "conf-dup", "1.0", b"first")
        with pytest.raises(FileExists) as info:
            put(backend, "conf-dup", "1.0", b"second")
        assert info.value.sha256 in (None, first.sha256)
        assert info.value.backend_ref in (None, first.backend_ref)
        assert read_opened(backend.open_file(first)) == data

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
        stored = read_opened(backend.open_file(winners[0]))
        assert hashlib.sha256(stored).hexdigest() == winners[0].sha256
        assert [e.filename for e in backend.list_files()] == [winners[0].filename]

    def test_open_missing_raises_file_missing(self, backend: Backend) -> None:
        filename, data, metadata = make_wheel("conf-missing", "1.0")
        with pytest.raises(FileMissing):
            backend.open_file(record_for(filename, data, metadata))

    def test_metadata_sidecar_is_stored_beside_the_file(self, backend: Backend) -> None:
        stored, _ = put(backend, "conf-meta", "1.0")
        data = read_opened(backend.open_file(stored, metadata=True))
        assert hashlib.sha256(data).hexdigest() == stored.core_metadata_sha256
        assert listed(backend, stored.filename).has_metadata

    # -- listing and fetching ------------------------------------------------------------
    def test_list_files_reports_what_was_put(self, backend: Backend) -> None:
        a, _ = put(backend, "conf-list", "1.0")
        b, _ = put(backend, "conf-list", "2.0", b"more")
        entries = {e.filename: e for e in backend.list_files()}
        assert set(entries) == {a.filename, b.filename}  # no sidecar, no index, no draft
        for record in (a, b):
            assert entries[record.filename].ref == record.backend_ref
            assert entries[record.filename].size == record.size
            assert entries[record.filename].yanked is None

    def test_fetch_file_gives_the_bytes(self, backend: Backend, tmp_path: Path) -> None:
        stored, data = put(backend, "conf-fetch", "1.0", b"fetched")
        local = backend.fetch_file(listed(backend, stored.filename), tmp_path / stored.filename)
        assert local.read_bytes() == data

    def test_update_index_indexes_every_file_and_reuses_records(self, backend: Backend) -> None:
        a, _ = put(backend, "conf-index", "1.0")
        records = indexed(backend)
        assert records[a.filename].sha256 == a.sha256
        assert records[a.filename].core_metadata_sha256 == a.core_metadata_sha256
        b, _ = put(backend, "conf-index", "2.0", b"second")
        again = indexed(backend)
        assert set(again) == {a.filename, b.filename}
        assert again[a.filename] == records[a.filename]  # reused, not described again
        assert not update_index(backend).changed

    def test_a_missing_sidecar_is_written_back_by_update_index(self, backend: Backend) -> None:
        # As a crash after storing the file, before its sidecar, leaves it: the record
        # (in a change log too) names core metadata the storage does not hold.
        filename, data, metadata = make_wheel("conf-adopt", "1.0")
        staged = stage(backend, data)
        try:
            stored = backend.put_file(record_for(filename, data, metadata), staged, None)
        finally:
            staged.path.unlink(missing_ok=True)
        record = indexed(backend)[stored.filename]
        if record.core_metadata_sha256 is None:
            pytest.skip("this backend keeps no sidecar for an adopted file (adopt_file)")
        assert record.core_metadata_sha256 == hashlib.sha256(metadata).hexdigest()
        assert read_opened(backend.open_file(record, metadata=True)) == metadata
        assert read_opened(backend.open_file(record)) == data

    # -- optional operations -------------------------------------------------------------
    def test_yanked_state_is_listed_and_survives_a_relist(self, backend: Backend) -> None:
        stored, _ = put(backend, "conf-yank", "1.0")
        try:
            backend.set_yanked(stored, "broken build")
        except NotSupported:
            pytest.skip("this backend does not support yanking (set_yanked)")
        assert listed(backend, stored.filename).yanked == "broken build"
        assert indexed(backend)[stored.filename].yanked == "broken build"
        backend.set_yanked(stored, "")
        assert listed(backend, stored.filename).yanked == ""
        backend.set_yanked(stored, None)
        assert listed(backend, stored.filename).yanked is None
        assert indexed(backend)[stored.filename].yanked is None

    def test_delete_removes_the_file_its_sidecars_and_its_yank(self, backend: Backend) -> None:
        stored, data = put(backend, "conf-delete", "1.0")
        kept, kept_data = put(backend, "conf-delete", "2.0")
        try:
            backend.set_yanked(stored, "bad")
        except NotSupported:
            pass
        try:
            backend.delete_file(stored)
        except NotSupported:
            pytest.skip("this backend does not support deleting (delete_file)")
        assert stored.filename not in {e.filename for e in backend.list_files()}
        assert stored.filename not in indexed(backend)
        for metadata in (False, True):
            with pytest.raises(FileMissing):
                read_opened(backend.open_file(stored, metadata=metadata))
        with pytest.raises(FileMissing):
            backend.delete_file(stored)
        assert read_opened(backend.open_file(kept)) == kept_data
        # The name is free again: stored afresh, with no yank record inherited.
        again, _ = put(backend, "conf-delete", "1.0")
        assert read_opened(backend.open_file(again)) == data
        assert listed(backend, again.filename).yanked is None

    def test_changes_since_reports_each_change_once(self, backend: Backend) -> None:
        changes, cursor = backend.changes_since(None)
        assert changes == []
        stored, _ = put(backend, "conf-changes", "1.0")
        changes, cursor = backend.changes_since(cursor)
        if not changes:
            pytest.skip("this backend reports no changes (changes_since)")
        assert [c.filename for c in changes] == [stored.filename]
        assert changes[0].sha256 == stored.sha256
        assert backend.changes_since(cursor)[0] == []

    def test_state_documents_compare_and_swap(self, backend: Backend) -> None:
        try:
            assert backend.read_state("tokens.json") is None
        except NotSupported:
            pytest.skip("this backend keeps no shared state (read_state): the core keeps it")
        v1 = backend.write_state("tokens.json", b"{}", None)
        assert backend.read_state("tokens.json") == (b"{}", v1)
        with pytest.raises(IndexConflict):
            backend.write_state("tokens.json", b"lost", None)
        v2 = backend.write_state("tokens.json", b'{"a": 1}', v1)
        with pytest.raises(IndexConflict):
            backend.write_state("tokens.json", b"stale", v1)
        assert backend.read_state("tokens.json") == (b'{"a": 1}', v2)
        backend.write_state("audit/2026-12-01.jsonl", b"line\n", None)
        assert backend.read_state("audit/2026-12-01.jsonl") is not None
        assert backend.read_state("tokens.json") == (b'{"a": 1}', v2)
        assert list(backend.list_files()) == []  # state is never a distribution

    def test_a_state_document_can_be_deleted(self, backend: Backend) -> None:
        try:
            backend.write_state("index/conf-gone.bin", b"x", None)
        except NotSupported:
            pytest.skip("this backend keeps no shared state (write_state)")
        try:
            backend.delete_state("index/conf-gone.bin")
        except NotSupported:
            pytest.skip("this backend cannot delete state (delete_state): segments stay")
        assert backend.read_state("index/conf-gone.bin") is None
        backend.delete_state("index/conf-gone.bin")  # absent: no error
        backend.write_state("index/conf-gone.bin", b"again", None)  # the name is free

    def test_update_index_compacts_the_change_log(self, backend: Backend) -> None:
        stored, _ = put(backend, "conf-compact", "1.0")
        if not backend.changes_since(None)[0]:
            pytest.skip("this backend reports no changes (changes_since)")
        indexed(backend)
        assert stored.filename not in {r.filename for r in backend.changes_since(None)[0]}

    def test_a_segmented_index_holds_every_file(self, backend: Backend) -> None:
        from .remoteindex import is_manifest, keeps_segments

        if not keeps_segments(backend):
            pytest.skip("this backend keeps no shared state: its index is one index.toml")
        a, _ = put(backend, "conf-segments", "1.0")
        update_index(backend, index_format="segments")
        b, _ = put(backend, "conf-segments", "2.0", b"second")
        update_index(backend, index_format="segments")  # a delta
        current = backend.read_index()
        assert current is not None and is_manifest(current[0])
        records = indexed(backend)
        assert set(records) == {a.filename, b.filename}
        assert records[b.filename].sha256 == b.sha256
        assert not update_index(backend).changed

    def test_upstream_cache_is_create_only_and_never_listed(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        filename, data, _ = make_wheel("conf-cached", "1.0")
        staged = stage(backend, data)
        try:
            backend.put_cached(f"conf-cached/{filename}", staged.path)
        except NotSupported:
            staged.path.unlink(missing_ok=True)
            pytest.skip("this backend keeps no upstream cache (put_cached): the core keeps it")
        with pytest.raises(FileExists):
            backend.put_cached(f"conf-cached/{filename}", staged.path)
        staged.path.unlink(missing_ok=True)
        assert read_opened(backend.open_cached(f"conf-cached/{filename}")) == data
        with pytest.raises(FileMissing):
            backend.open_cached(f"conf-cached/other-{filename}")
        assert list(backend.list_files()) == []

    # -- the remote index ------------------------------------------------------------------
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
