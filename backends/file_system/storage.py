"""Storage layout::

    <storage_root>/                      default ROOT/cache/<repo>/storage
        index.toml                       the remote index (written by update_index)
        <project>/<filename>             a distribution file (any layout is indexed)
        <project>/<filename>.metadata    its core metadata (PEP 658), when it has one
        <project>/<filename>.yanked      present when yanked (PEP 592); holds the reason
        .pywharf-journal.jsonl           records published since the index was written
        .pywharf-staging/                uploads while they arrive (same file system)

Writes are create-only and atomic: the staged file is fsynced and hard-linked to its
final name. ``link`` fails when the name exists, so of several racing uploads exactly one
wins, and a reader never sees a partial file.

The journal lets several servers on one storage see each other's uploads before
``update_index`` runs: each accepted upload or yank appends its record (under a lock,
fsynced); servers read it from where they left off; ``write_index`` drops what the new
index holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from pywharf_core.backend import (
    Access,
    Backend,
    BackendContext,
    LocalFile,
    StagedFile,
    compare_secrets,
    require_client_secrets,
)
from pywharf_core.errors import (
    BackendError,
    BackendUnavailable,
    FileExists,
    FileMissing,
    IndexConflict,
    IndexFileError,
    InvalidFilename,
    InvalidMetadata,
)
from pywharf_core.files import create_once, replace_file, write_temp
from pywharf_core.indexfile import load_index
from pywharf_core.metadata import read_dist_metadata
from pywharf_core.names import DistFilename, parse_dist_filename
from pywharf_core.records import FileRecord

log = logging.getLogger(__name__)

INDEX_FILENAME = "index.toml"
JOURNAL_FILENAME = ".pywharf-journal.jsonl"
STAGING = ".pywharf-staging"
#: Staged uploads older than this are leftovers of a crash, removed at start.
STALE_STAGING_SECONDS = 24 * 3600


@dataclass(frozen=True)
class FileSystemConfig:
    #: The repository's client secrets; a server needs both, update_index neither.
    read_secret: str | None = None
    write_secret: str | None = None
    max_file_bytes: int = 5368709119
    sync_index_interval: int = 60
    #: Default: ROOT/cache/<repo name>/storage
    storage_root: str | None = None

    def __post_init__(self) -> None:
        if self.max_file_bytes <= 0 or self.sync_index_interval <= 0:
            raise ValueError("max_file_bytes and sync_index_interval must be positive")


def create(context: BackendContext, config: FileSystemConfig) -> FileSystemBackend:
    require_client_secrets(context, config)
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
        self._journal_path = self.root / JOURNAL_FILENAME
        self._journal_lock = FileLock(str(self._staging / "journal.lock"))
        self._remove_stale_staging()

    # -- access ---------------------------------------------------------------------
    def check_access(self, secret: str) -> Access:
        return compare_secrets(secret, self.config.read_secret, self.config.write_secret)

    # -- files ------------------------------------------------------------------------
    def staging_dir(self) -> Path:
        return self._staging

    def put_file(
        self, record: FileRecord, staged: StagedFile, metadata: bytes | None = None
    ) -> FileRecord:
        ref = f"{record.project}/{record.filename}"
        final = self._path(ref)
        final.parent.mkdir(parents=True, exist_ok=True)
        _fsync_path(staged.path)
        meta_tmp = write_temp(final.parent, metadata) if metadata is not None else None
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
        stored = record.with_changes(backend_ref=ref)
        self._append_journal(stored)
        return stored

    def open_file(self, record: FileRecord) -> LocalFile:
        path = self._path(record.backend_ref or f"{record.project}/{record.filename}")
        if not path.is_file():
            raise FileMissing(record.filename)
        return LocalFile(path)

    def open_metadata(self, record: FileRecord) -> LocalFile:
        path = _metadata_path(self.open_file(record).path)
        if not path.is_file():
            raise FileMissing(record.filename + ".metadata")
        return LocalFile(path)

    def set_yanked(self, record: FileRecord, reason: str | None) -> None:
        marker = _yanked_path(self.open_file(record).path)
        if reason is None:
            marker.unlink(missing_ok=True)
        else:
            replace_file(marker, reason.encode("utf-8"))
        _fsync_path(marker.parent)
        self._append_journal(record.with_changes(yanked=reason))

    def list_files(self, known: Mapping[str, FileRecord] | None = None) -> Iterator[FileRecord]:
        """Every distribution file below the root, in any layout (files copied in by
        hand too: their core metadata is extracted and stored beside them)."""
        known = known or {}
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
                try:
                    yield self._record_for(path, dist, known)
                except InvalidMetadata as exc:
                    log.warning("skipping %s: %s", path, exc.message)

    def _record_for(
        self, path: Path, dist: DistFilename, known: Mapping[str, FileRecord]
    ) -> FileRecord:
        ref = path.relative_to(self.root).as_posix()
        stat = path.stat()
        yanked = _read_text_or_none(_yanked_path(path))
        previous = known.get(ref)
        if (
            previous is not None
            and previous.size == stat.st_size
            and previous.upload_time == stat.st_mtime
            and (previous.core_metadata_sha256 is None or _metadata_path(path).exists())
        ):
            return previous.with_changes(yanked=yanked)
        meta = read_dist_metadata(path, dist)
        core_sha = None
        if meta.core_metadata is not None:
            core_sha = hashlib.sha256(meta.core_metadata).hexdigest()
            meta_path = _metadata_path(path)
            if not meta_path.exists():  # copied in by hand: store it, for PEP 658
                create_once(meta_path, meta.core_metadata)
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
            backend_ref=ref,
        )

    # -- remote index -------------------------------------------------------------------
    def read_index(self) -> tuple[bytes, str] | None:
        try:
            with self._index_path.open("rb") as handle:
                version = _stat_version(os.fstat(handle.fileno()))
                return handle.read(), version
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendUnavailable(f"cannot read {self._index_path}: {exc}") from exc

    def index_version(self) -> str | None:
        try:
            return _stat_version(self._index_path.stat())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendUnavailable(f"cannot read {self._index_path}: {exc}") from exc

    def write_index(self, data: bytes, expected_version: str | None) -> str:
        with FileLock(str(self._staging / "index.lock")):
            if self.index_version() != expected_version:
                raise IndexConflict("the index changed since it was read")
            replace_file(self._index_path, data)
            _fsync_path(self.root)
            version = self.index_version()
            assert version is not None
        self._compact_journal(data)
        return version

    # -- the journal ----------------------------------------------------------------------
    def changes_since(self, cursor: str | None) -> tuple[list[FileRecord], str | None]:
        inode, _, offset_text = (cursor or "").partition(":")
        try:
            with self._journal_path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                # A compaction replaces the file: start over from its beginning.
                offset = int(offset_text) if inode == str(stat.st_ino) else 0
                if offset > stat.st_size:
                    offset = 0
                handle.seek(offset)
                chunk = handle.read(stat.st_size - offset)
        except FileNotFoundError:
            return [], None
        except OSError as exc:
            raise BackendUnavailable(f"cannot read {self._journal_path}: {exc}") from exc
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits
        records = [_journal_record(line) for line in complete.splitlines() if line.strip()]
        return [r for r in records if r is not None], f"{stat.st_ino}:{offset + len(complete)}"

    def _append_journal(self, record: FileRecord) -> None:
        line = (json.dumps(record.to_dict(), sort_keys=True) + "\n").encode("utf-8")
        with self._journal_lock:
            fd = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _compact_journal(self, index_data: bytes) -> None:
        """Keep only journal entries the index just written does not reflect."""
        try:
            indexed = {r.filename: r for r in load_index(index_data).records}
        except IndexFileError:
            return
        with self._journal_lock:
            changes, _ = self.changes_since(None)
            latest = {r.filename: r for r in changes}  # the last line per file wins
            kept = [
                r
                for r in latest.values()
                if (old := indexed.get(r.filename)) is None
                or (old.sha256, old.yanked) != (r.sha256, r.yanked)
            ]
            if len(kept) == len(changes):
                return
            text = "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in kept)
            replace_file(self._journal_path, text.encode("utf-8"))

    # -- helpers --------------------------------------------------------------------------
    def _path(self, ref: str) -> Path:
        path = (self.root / ref).resolve()
        # References come from the index; one that leaves the storage is refused.
        if not path.is_relative_to(self.root) or path == self.root:
            raise FileMissing(ref)
        return path

    def _remove_stale_staging(self) -> None:
        # Only old ones: another server on this storage may be receiving one right now.
        cutoff = time.time() - STALE_STAGING_SECONDS
        for leftover in self._staging.glob(".upload-*"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except FileNotFoundError:
                pass


def _journal_record(line: bytes) -> FileRecord | None:
    try:
        return FileRecord.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError):
        log.warning("skipping an unreadable journal line")
        return None


def _metadata_path(final: Path) -> Path:
    return final.with_name(final.name + ".metadata")


def _yanked_path(final: Path) -> Path:
    return final.with_name(final.name + ".yanked")


def _read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


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
