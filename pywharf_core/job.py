"""``pywharf update_index``: rebuild a repository's remote index from its storage.

The listing rules are the core's, the same for every backend:

- the backend reports what it holds (``list_files``: reference, filename, size, stamp,
  yanked state, the stored record where it keeps one), reading no contents;
- names that are not distribution files are skipped;
- a file the last index knows, with the same reference, size and stamp, keeps its record
  (its yanked state as the storage says now);
- a file whose record the backend kept beside it (``stored_fields``) is indexed from that
  record without fetching it;
- any other file (copied into the storage by hand, or whose sidecar is missing) is
  fetched once and described by ``dists``; its core-metadata sidecar and record are
  handed back to the backend (``adopt_file``) so that the next run need not fetch it.

The new index is written only when it differs, by compare-and-swap on the backend's index
version: a concurrent writer makes this one start over, cleanly.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from . import dists, remoteindex, synced
from .backend import Backend, StoredFile
from .errors import (
    FileMissing,
    IndexConflict,
    IndexFileError,
    IndexTooNew,
    InvalidFilename,
    InvalidMetadata,
    PywharfError,
)
from .indexfile import IndexFile, dump_index
from .records import FileRecord

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
#: Files fetched and described at once by update_index, and how far the listing may run
#: ahead of the oldest of them (records are yielded in the backend's order).
DESCRIBE_WORKERS = 4
DESCRIBE_WINDOW = 256


@dataclass(frozen=True)
class UpdateSummary:
    files: int
    projects: int
    changed: bool
    seconds: float
    attempts: int

    def line(self, name: str) -> str:
        state = "index written" if self.changed else "index unchanged"
        return (
            f"update_index {name}: {self.files} files, {self.projects} projects, {state}, "
            f"{self.seconds:.1f} s"
        )


#: ``index_format`` values: ``auto`` writes a segmented index once it holds this many
#: files (or keeps one that is segmented already) on a backend that keeps shared state.
INDEX_FORMATS = ("auto", "toml", "segments")
SEGMENTED_FROM = 20_000


def update_index(
    backend: Backend,
    progress: Callable[[int], None] | None = None,
    index_format: str = "auto",
) -> UpdateSummary:
    if index_format not in INDEX_FORMATS:
        raise PywharfError(
            f"--index_format must be one of {', '.join(INDEX_FORMATS)}, not {index_format!r}"
        )
    if index_format == "segments" and not remoteindex.keeps_segments(backend):
        raise PywharfError(
            "--index_format segments needs a backend that keeps shared state "
            "(file_system, s3); this one keeps the single index.toml"
        )
    started = time.monotonic()
    written: list[str] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        current = backend.read_index()
        previous: tuple[FileRecord, ...] = ()
        manifest: remoteindex.Manifest | None = None
        try:
            if current is not None and remoteindex.is_manifest(current[0]):
                manifest = remoteindex.parse_manifest(current[0])
                if index_format != "toml":
                    # Stays segmented: read as a database, a record built only for what
                    # changed (at a million files, building every record took 10 s).
                    try:
                        return _update_segmented(
                            backend, current[1], manifest, progress, written, started, attempt
                        )
                    except IndexConflict:
                        log.warning("the index changed while it was rebuilt; starting over")
                        continue
            if current is not None:
                previous, manifest = remoteindex.read_records(backend, current[0])
        except IndexTooNew:
            raise  # written by a newer pywharf: never replaced by an older one
        except IndexFileError as exc:
            log.warning("the current index cannot be read (%s); rebuilding it", exc)
            previous, manifest = (), None
        known = {r.backend_ref: r for r in previous if r.backend_ref}
        known.update(_changed_records(backend))
        records: list[FileRecord] = []
        for record in list_records(backend, known):
            assert isinstance(record, FileRecord)  # it was told of records only
            records.append(record)
            if progress is not None:
                progress(len(records))
        segmented = index_format == "segments" or (
            index_format == "auto"
            and remoteindex.keeps_segments(backend)
            and (manifest is not None or len(records) >= SEGMENTED_FROM)
        )
        records.sort(key=lambda r: r.filename)
        changed = (
            current is None
            or records != sorted(previous, key=lambda r: r.filename)
            or segmented != (manifest is not None)
        )
        if changed:
            new = None
            if segmented:  # a first segmented index: a base of every record
                new = remoteindex.write_base(backend, records, written)
                data = new.data
            else:
                data = dump_index(IndexFile(time.time(), tuple(records)))
            try:
                backend.write_index(data, None if current is None else current[1])
            except IndexConflict:
                log.warning("the index changed while it was rebuilt; starting over")
                continue
            if new is not None:
                remoteindex.delete_segments(backend, new)
            elif manifest is not None:  # converted back to one file
                remoteindex.forget_segments(backend, manifest, written)
        backend.compact_changes(_holds_record(records))
        return UpdateSummary(
            files=len(records),
            projects=len({r.project for r in records}),
            changed=changed,
            seconds=time.monotonic() - started,
            attempts=attempt,
        )
    raise IndexConflict(f"the index kept changing; gave up after {MAX_ATTEMPTS} attempts")


class Known(NamedTuple):
    """What ``list_records`` needs of a stored file's record to tell that it is unchanged
    (``core_metadata_sha256``: only whether there is one), read from a segmented index's
    database without building its ``FileRecord``. A named tuple: a million of them are
    built in 1.3 s, as a frozen dataclass in 2.4 s."""

    project: str
    filename: str
    size: int
    upload_time: float
    core_metadata_sha256: str | None
    yanked: str | None
    backend_ref: str

    def with_changes(self, *, yanked: str | None) -> Known:
        return self._replace(yanked=yanked)


def _update_segmented(
    backend: Backend,
    version: str,
    manifest: remoteindex.Manifest,
    progress: Callable[[int], None] | None,
    written: list[str],
    started: float,
    attempt: int,
) -> UpdateSummary:
    """``update_index`` of a segmented index that stays segmented: the listing is
    compared with the index's database, records are built only for files new or changed,
    and what changed is written as a delta (or, when the deltas have grown, the database
    as a new base). Raises ``IndexConflict`` when the index moved meanwhile."""
    with tempfile.TemporaryDirectory(prefix="pywharf-index-") as folder:
        path = Path(folder) / "index.sqlite3"
        connection = remoteindex.open_chain(backend, manifest, path)
        try:
            known = {row[6]: Known._make(row) for row in connection.execute(synced.SELECT_KNOWN)}
            lookup: dict[str, Known | FileRecord] = {**known, **_changed_records(backend)}
            upserts: list[FileRecord] = []
            described: list[tuple[FileRecord, FileRecord]] = []
            seen: set[str] = set()
            for count, item in enumerate(list_records(backend, lookup), 1):
                if progress is not None:
                    progress(count)
                seen.add(item.backend_ref)
                if isinstance(item, Known):
                    if item.yanked != known[item.backend_ref].yanked:
                        stored = _stored_record(connection, item.project, item.filename)
                        upserts.append(stored.with_changes(yanked=item.yanked))
                    continue
                stored = _stored_record(connection, item.project, item.filename)
                if item != stored:  # a new file, or one whose bytes changed
                    described.append((item, stored))
                # else described again, the same (a lost sidecar)
            for item, stored in described:
                # The same bytes stored twice (two folders): the index keeps one
                # reference; the other copy is no change (else a delta on every run).
                if stored.backend_ref in seen and stored.sha256 == item.sha256:
                    continue
                upserts.append(item)
            replaced = {(r.project, r.filename) for r in upserts}
            removals = sorted(
                (k.project, k.filename)
                for ref, k in known.items()
                if ref not in seen and (k.project, k.filename) not in replaced
            )
            upserts.sort(key=lambda r: (r.project, r.filename))
            delta = synced.Delta(upserts, removals)
            changed = bool(upserts or removals)
            new: remoteindex.Written | None = None
            if changed:
                new, files, projects = remoteindex.write_next(
                    backend, manifest, connection, path, delta, written
                )
            else:
                # Unchanged; but segments an earlier attempt stored are retired.
                new = remoteindex.retire_written(manifest, written)
                files = len(known)
                projects = len({k.project for k in known.values()})
            if new is not None:
                backend.write_index(new.data, version)
                remoteindex.delete_segments(backend, new)
            backend.compact_changes(_holds_stored(connection))
        finally:
            connection.close()
    return UpdateSummary(
        files=files,
        projects=projects,
        changed=changed,
        seconds=time.monotonic() - started,
        attempts=attempt,
    )


def _changed_records(backend: Backend) -> dict[str, FileRecord]:
    """The change log's records (uploads and yanks through a server since the index was
    written) by reference: a file the listing reports with the same size and stamp is
    known by its record, not fetched and described again (what makes files uploaded
    through a server cheap for update_index)."""
    try:
        changes, _ = backend.changes_since(None)
    except PywharfError as exc:
        log.warning("the change log cannot be read (%s); new files are described", exc)
        return {}
    return {r.backend_ref: r for r in changes if r.backend_ref}


def _stored_record(connection: sqlite3.Connection, project: str, filename: str) -> FileRecord:
    row = connection.execute(synced.SELECT_FILE, (project, filename)).fetchone()
    return synced.decode(project, row) if row is not None else _NO_RECORD


#: Stands for "no stored record": equal to no record of a file.
_NO_RECORD = FileRecord("", "", "", "", 0, 0.0)


def _holds_stored(connection: sqlite3.Connection) -> Callable[[FileRecord], bool]:
    """Whether the index's database holds a record of the same file, digest and yanked
    state."""

    def holds(record: FileRecord) -> bool:
        stored = _stored_record(connection, record.project, record.filename)
        return (stored.sha256, stored.yanked) == (record.sha256, record.yanked)

    return holds


def _holds_record(records: list[FileRecord]) -> Callable[[FileRecord], bool]:
    """Whether ``records`` hold a record of the same file, digest and yanked state (the
    lookup is built at the first question: a backend with no change log asks none)."""

    @functools.cache
    def indexed() -> dict[str, tuple[str, str | None]]:
        return {r.filename: (r.sha256, r.yanked) for r in records}

    return lambda record: indexed().get(record.filename) == (record.sha256, record.yanked)


def list_records(
    backend: Backend, known: Mapping[str, FileRecord | Known]
) -> Iterator[FileRecord | Known]:
    """The index record of every distribution file the backend holds (see the module's
    docstring for the rules), in the backend's order. A file that cannot be described is
    skipped with a warning. Files to fetch and describe are handled ``DESCRIBE_WORKERS``
    at a time (fetching, hashing and fsyncing the sidecars wait on I/O, not on Python)."""
    with (
        tempfile.TemporaryDirectory(prefix="pywharf-describe-") as folder,
        ThreadPoolExecutor(DESCRIBE_WORKERS, thread_name_prefix="describe") as pool,
    ):
        pending: deque[FileRecord | Known | Future[FileRecord | None]] = deque()
        for number, entry in enumerate(backend.list_files()):
            previous = known.get(entry.ref)
            if (
                previous is not None
                and previous.filename == entry.filename
                and previous.size == entry.size
                and previous.upload_time == entry.mtime
                and (previous.core_metadata_sha256 is None or entry.has_metadata)
            ):
                # Known and unchanged (its name was parsed when it was described): at a
                # million files, parsing each name again and copying each record cost
                # minutes.
                same = previous.yanked == entry.yanked
                pending.append(previous if same else previous.with_changes(yanked=entry.yanked))
            else:
                try:
                    dist = dists.parse_filename(entry.filename)
                except InvalidFilename:
                    continue  # not a distribution file
                into = Path(folder) / f"{number}-{dist.filename}"
                # A file the index holds may be described again to an unchanged record
                # (its sidecar was lost): no index written afterwards, so no settling;
                # its sidecar is made durable at once.
                adopt = backend.adopt_later if previous is None else backend.adopt_file
                pending.append(pool.submit(_record_of, backend, entry, dist, into, adopt))
            while pending and (len(pending) > DESCRIBE_WINDOW or _ready(pending[0])):
                if (record := _result(pending.popleft())) is not None:
                    yield record
        while pending:
            if (record := _result(pending.popleft())) is not None:
                yield record
    # The sidecars stored while describing, durable before an index names them.
    backend.settle_adopted()


def _ready(item: object) -> bool:
    return not isinstance(item, Future) or item.done()


def _result(
    item: FileRecord | Known | Future[FileRecord | None],
) -> FileRecord | Known | None:
    return item.result() if isinstance(item, Future) else item


def _record_of(
    backend: Backend, entry: StoredFile, dist: dists.DistFilename, into: Path, adopt: Adopt
) -> FileRecord | None:
    try:
        record = _from_stored_fields(backend, entry, dist)
        return record if record is not None else _describe(backend, entry, dist, into, adopt)
    except (InvalidMetadata, FileMissing) as exc:
        log.warning("skipping %s: %s", entry.ref, exc)
        return None


def _from_stored_fields(
    backend: Backend, entry: StoredFile, dist: dists.DistFilename
) -> FileRecord | None:
    fields: Mapping[str, Any] | None = backend.stored_fields(entry)
    if not fields or not fields.get("sha256"):
        return None
    core_metadata_sha256 = fields.get("core_metadata_sha256") if entry.has_metadata else None
    if dist.is_wheel and not core_metadata_sha256:
        return None  # its sidecar is missing: describe it, which stores one
    upload_time = fields.get("upload_time")
    return FileRecord(
        project=dist.project,
        filename=dist.filename,
        version=str(dist.version),
        sha256=str(fields["sha256"]),
        size=entry.size,
        upload_time=float(upload_time) if upload_time else entry.mtime,
        requires_python=str(fields.get("requires_python") or "") or None,
        yanked=entry.yanked,
        core_metadata_sha256=core_metadata_sha256,
        backend_ref=entry.ref,
    )


#: ``Backend.adopt_file`` or ``Backend.adopt_later``.
Adopt = Callable[[StoredFile, FileRecord, "bytes | None"], FileRecord]


def _describe(
    backend: Backend, entry: StoredFile, dist: dists.DistFilename, into: Path, adopt: Adopt
) -> FileRecord:
    local = backend.fetch_file(entry, into)  # ``into``, or a path of the backend's own
    try:
        described = dists.describe(
            local, dist, upload_time=entry.mtime, yanked=entry.yanked, backend_ref=entry.ref
        )
    finally:
        into.unlink(missing_ok=True)  # only ever the copy fetched here
    return adopt(entry, described.record, described.metadata)


def terminal_progress(name: str) -> Callable[[int], None] | None:
    """A one-line counter on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(count: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1:
            last[0] = now
            sys.stderr.write(f"\rupdate_index {name}: {count} files listed")
            sys.stderr.flush()

    return show
