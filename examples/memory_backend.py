"""An example pywharf backend: everything in this process's memory.

Copy its shape for a backend of your own (a WebDAV server, a database, another object
store). It is all a backend needs: the six required methods of
``pywharf_core.backend.Backend`` plus the optional ones it can offer (here: yanking and
keeping a sidecar for a file the core described). Rules about distribution files
(names, metadata, hashes, sizes) are the core's; a backend only stores.

Register it in your package's ``pyproject.toml``::

    [project.entry-points."pywharf.backends"]
    memory = "memory_backend:SPEC"

and test it with the conformance suite (``tests/test_backend_example.py``)::

    class TestMemoryBackend(BackendConformance):
        @pytest.fixture
        def backend(self):
            return MemoryBackend()
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pywharf_core.backend import (
    Backend,
    BackendContext,
    BackendSpec,
    FileStream,
    OpenedFile,
    StagedFile,
    StoredFile,
)
from pywharf_core.errors import FileExists, FileMissing, IndexConflict
from pywharf_core.records import FileRecord


@dataclass(frozen=True)
class MemoryConfig:
    """The backend's own config keys (none needed here): a frozen dataclass whose fields,
    with their types and defaults, are the keys of the repository's TOML table."""


@dataclass
class _Blob:
    data: bytes
    stamp: float
    metadata: bytes | None = None
    yanked: str | None = None
    stored: dict[str, object] = field(default_factory=dict)


class MemoryBackend(Backend):
    def __init__(self) -> None:
        self._files: dict[str, _Blob] = {}  # by reference: "<project>/<filename>"
        self._index: tuple[bytes, str] | None = None
        self._versions = itertools.count(1)
        self._stamps = itertools.count(1)
        self._lock = threading.Lock()  # the core calls from several threads at once

    # -- required --------------------------------------------------------------------------
    def put_file(
        self, record: FileRecord, staged: StagedFile, metadata: bytes | None = None
    ) -> FileRecord:
        ref = f"{record.project}/{record.filename}"
        with staged.open() as handle:
            data = handle.read()
        with self._lock:  # the one atomic step: check and create together
            if ref in self._files:
                raise FileExists(record.filename, str(self._files[ref].stored["sha256"]), ref)
            stored = record.with_changes(backend_ref=ref)
            self._files[ref] = _Blob(data, float(next(self._stamps)), metadata, None)
            self._files[ref].stored = stored.to_dict()
        return stored

    def open_file(self, record: FileRecord, *, metadata: bool = False) -> OpenedFile:
        blob = self._files.get(record.backend_ref)
        data = None if blob is None else (blob.metadata if metadata else blob.data)
        if data is None:
            raise FileMissing(record.filename + (".metadata" if metadata else ""))
        return FileStream(iter([data]), len(data))

    def list_files(self) -> list[StoredFile]:
        with self._lock:
            files = list(self._files.items())
        return [
            StoredFile(
                ref=ref,
                filename=ref.rsplit("/", 1)[-1],
                size=len(blob.data),
                mtime=blob.stamp,
                yanked=blob.yanked,
                has_metadata=blob.metadata is not None,
                stored=dict(blob.stored),
            )
            for ref, blob in sorted(files)
        ]

    def fetch_file(self, entry: StoredFile, into: Path) -> Path:
        blob = self._files.get(entry.ref)
        if blob is None:
            raise FileMissing(entry.filename)
        into.write_bytes(blob.data)
        return into

    def read_index(self) -> tuple[bytes, str] | None:
        return self._index

    def write_index(self, data: bytes, expected_version: str | None) -> str:
        with self._lock:  # compare-and-swap
            current = None if self._index is None else self._index[1]
            if current != expected_version:
                raise IndexConflict("the index changed since it was read")
            self._index = (data, str(next(self._versions)))
            return self._index[1]

    # -- optional --------------------------------------------------------------------------
    def adopt_file(
        self, entry: StoredFile, record: FileRecord, metadata: bytes | None
    ) -> FileRecord:
        blob = self._files[entry.ref]
        with self._lock:
            if blob.metadata is None:
                blob.metadata = metadata
            blob.stored = record.to_dict()
        return (
            record if blob.metadata is not None else record.with_changes(core_metadata_sha256=None)
        )

    def set_yanked(self, record: FileRecord, reason: str | None) -> None:
        blob = self._files.get(record.backend_ref)
        if blob is None:
            raise FileMissing(record.filename)
        blob.yanked = reason


def create(context: BackendContext, config: MemoryConfig) -> MemoryBackend:
    return MemoryBackend()


SPEC = BackendSpec(type="memory", config_class=MemoryConfig, create=create)
