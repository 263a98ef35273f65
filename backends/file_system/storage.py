"""Storage layout::

    <storage_root>/                      default ROOT/cache/<repo>/storage
        index.toml                       the remote index (written by update_index)
        <project>/<filename>             a distribution file
        <project>/<filename>.metadata    its core metadata (PEP 658), when it has one
        <project>/<filename>.yanked      present when yanked (PEP 592); holds the reason
        .pywharf-staging/                uploads while they arrive (same file system)

Writes are create-only and atomic: the staged file is fsynced and hard-linked to its
final name. ``link`` fails when the name exists, so of several racing uploads exactly one
wins, and a reader never sees a partial file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from pywharf_core.backend import Access, Backend, BackendContext, LocalFile, StagedFile
from pywharf_core.errors import (
    BackendError,
    FileExists,
    FileMissing,
    IndexConflict,
    InvalidFilename,
)
from pywharf_core.metadata import read_dist_metadata
from pywharf_core.names import DistFilename, parse_dist_filename
from pywharf_core.records import FileRecord

INDEX_FILENAME = "index.toml"
STAGING = ".pywharf-staging"


@dataclass(frozen=True)
class FileSystemConfig:
    read_secret: str
    write_secret: str
    max_file_bytes: int = 5368709119
    sync_index_interval: int = 60
    #: Default: ROOT/cache/<repo name>/storage
    storage_root: str | None = None

    def __post_init__(self) -> None:
        if not self.read_secret or not self.write_secret:
            raise ValueError("read_secret and write_secret must not be empty")
        if self.max_file_bytes <= 0 or self.sync_index_interval <= 0:
            raise ValueError("max_file_bytes and sync_index_interval must be positive")


def create(context: BackendContext, config: FileSystemConfig) -> FileSystemBackend:
    root = (
        Path(config.storage_root)
        if config.storage_root
        else context.root / "cache" / context.repo_name / "storage"
    )
    return FileSystemBackend(root, config)


class FileSystemBackend(Backend):
    def __init__(self, storage_root: Path, config: FileSystemConfig) -> None:
        self.root = storage_root.resolve()
        self.config = config
        self.max_file_bytes = config.max_file_bytes
        self.sync_index_interval = config.sync_index_interval
        self._staging = self.root / STAGING
        self._staging.mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / INDEX_FILENAME

    # -- access ---------------------------------------------------------------------
    def check_access(self, secret: str) -> Access:
        given = secret.encode("utf-8")
        # Both comparisons always run, so timing says nothing about which one matched.
        is_write = hmac.compare_digest(given, self.config.write_secret.encode("utf-8"))
        is_read = hmac.compare_digest(given, self.config.read_secret.encode("utf-8"))
        if is_write:
            return Access.WRITE
        return Access.READ if is_read else Access.NONE

    # -- files ------------------------------------------------------------------------
    def staging_dir(self) -> Path:
        return self._staging

    def put_file(
        self, record: FileRecord, staged: StagedFile, metadata: bytes | None = None
    ) -> FileRecord:
        ref = self._ref(record.project, record.filename)
        final = self._path(ref)
        final.parent.mkdir(parents=True, exist_ok=True)
        _fsync_path(staged.path)
        meta_tmp = self._write_temp(final.parent, metadata) if metadata is not None else None
        try:
            try:
                os.link(staged.path, final)
            except FileExistsError:
                stored_sha256 = _sha256_of(final)
                if meta_tmp is not None and stored_sha256 == record.sha256:
                    # Same bytes stored before a crash cut the metadata write: repair it.
                    _link_if_absent(meta_tmp, _metadata_path(final))
                raise FileExists(record.filename, stored_sha256, ref) from None
            except OSError as exc:
                raise BackendError(f"cannot store {record.filename}: {exc}") from exc
            if meta_tmp is not None:
                os.replace(meta_tmp, _metadata_path(final))
                meta_tmp = None
            _fsync_path(final.parent)
        finally:
            if meta_tmp is not None:
                meta_tmp.unlink(missing_ok=True)
        return record.with_changes(backend_ref=ref)

    def open_file(self, record: FileRecord) -> LocalFile:
        path = self._path(record.backend_ref or self._ref(record.project, record.filename))
        if not path.is_file():
            raise FileMissing(record.filename)
        return LocalFile(path)

    def open_metadata(self, record: FileRecord) -> LocalFile:
        dist = self.open_file(record).path
        path = _metadata_path(dist)
        if not path.is_file():
            raise FileMissing(record.filename + ".metadata")
        return LocalFile(path)

    def set_yanked(self, record: FileRecord, reason: str | None) -> None:
        marker = _yanked_path(self.open_file(record).path)
        if reason is None:
            marker.unlink(missing_ok=True)
        else:
            os.replace(self._write_temp(marker.parent, reason.encode("utf-8")), marker)
        _fsync_path(marker.parent)

    def list_files(self) -> Iterator[FileRecord]:
        for directory, subdirs, files in os.walk(self.root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name.endswith((".metadata", ".yanked")):
                    continue
                try:
                    dist = parse_dist_filename(name)
                except InvalidFilename:
                    continue
                path = Path(directory) / name
                yield self._record_for(path, dist)

    def _record_for(self, path: Path, dist: DistFilename) -> FileRecord:
        meta = read_dist_metadata(path, dist)
        stat = path.stat()
        try:
            yanked: str | None = _yanked_path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            yanked = None
        core_sha = hashlib.sha256(meta.core_metadata).hexdigest() if meta.core_metadata else None
        return FileRecord(
            project=dist.project,
            filename=dist.filename,
            version=str(dist.version),
            sha256=_sha256_of(path),
            size=stat.st_size,
            upload_time=stat.st_mtime,
            requires_python=meta.requires_python,
            core_metadata_sha256=core_sha,
            yanked=yanked,
            backend_ref=path.relative_to(self.root).as_posix(),
        )

    # -- remote index -------------------------------------------------------------------
    def read_index(self) -> tuple[bytes, str] | None:
        try:
            with self._index_path.open("rb") as handle:
                version = _stat_version(os.fstat(handle.fileno()))
                return handle.read(), version
        except FileNotFoundError:
            return None

    def index_version(self) -> str | None:
        try:
            return _stat_version(self._index_path.stat())
        except FileNotFoundError:
            return None

    def write_index(self, data: bytes, expected_version: str | None) -> str:
        with FileLock(str(self._staging / "index.lock")):
            if self.index_version() != expected_version:
                raise IndexConflict("the index changed since it was read")
            tmp = self._write_temp(self.root, data)
            os.replace(tmp, self._index_path)
            _fsync_path(self.root)
            version = self.index_version()
            assert version is not None
            return version

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _ref(project: str, filename: str) -> str:
        return f"{project}/{filename}"

    def _path(self, ref: str) -> Path:
        path = (self.root / ref).resolve()
        # References come from the index; one that leaves the storage is refused.
        if not path.is_relative_to(self.root) or path == self.root:
            raise FileMissing(ref)
        return path

    @staticmethod
    def _write_temp(directory: Path, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return Path(name)


def _metadata_path(final: Path) -> Path:
    return final.with_name(final.name + ".metadata")


def _yanked_path(final: Path) -> Path:
    return final.with_name(final.name + ".yanked")


def _link_if_absent(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError:
        pass


def _stat_version(stat: os.stat_result) -> str:
    # Every write replaces the file, so the inode alone changes with each write.
    return f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
