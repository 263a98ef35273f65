"""A repository's index as the server holds it: the last synced remote index, the records
the backend's change log told of since, and an overlay of the files this server accepted
(read-your-writes), less the deleted files.

The remote index lives in SQLite under ROOT (``synced.SyncedIndex``) and is read per
project when asked; the change log and the overlay are small and kept in memory. The
overlay is an append-only JSON-lines file under ROOT, fsynced per record, so a restart
does not hide an accepted upload.

Hot projects are kept as tuples of records in a cache bounded by records
(``MAX_CACHED_RECORDS``). A project's tuple stays the same object while the project is
unchanged and cached: the page cache keeps a page valid while its source is that very
object, so a change elsewhere costs a project no re-render (an eviction costs one).

Readers take ``snapshot`` without locking: its project names are those of one moment, in
name order, and it is replaced only when the set of names changes (the project list's
page is cached by it); records are read when asked. Each change is applied under an odd
``_epoch``: a reader that meets one waits for it, and a reader whose read spanned one
reads again, so no reader sees half of a change.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from .files import replace_file
from .records import FileRecord
from .synced import Chain, Prepared, SyncedIndex, is_broken

if TYPE_CHECKING:
    from .manage import Deletion

log = logging.getLogger(__name__)

#: The remote index's database, beside the overlay (ROOT/cache/<repo>/).
DATABASE = "index.sqlite3"
#: Records kept materialised (the hot projects' tuples): ~100 MB at 1 KB a record.
MAX_CACHED_RECORDS = 100_000

Records = tuple[FileRecord, ...]


def _sort_key(record: FileRecord) -> tuple[int, Version | str, str]:
    return (*_version_key(record.version), record.filename)


@functools.lru_cache(maxsize=8192)
def _version_key(version: str) -> tuple[int, Version | str]:
    """Parsed once per version string: most projects share their version strings, and a
    project is sorted each time it is read from the database."""
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def _contains(names: list[str], name: str) -> bool:
    at = bisect.bisect_left(names, name)
    return at < len(names) and names[at] == name


class ProjectMap(Mapping[str, Records]):
    """Project names (sorted, as of one moment) → their records, oldest version first,
    read from the index when asked. ``items()`` reads every project in one pass."""

    __slots__ = ("_index", "_names")

    def __init__(self, names: list[str] | None = None, index: RepoIndex | None = None) -> None:
        self._names = names if names is not None else []
        self._index = index

    def __getitem__(self, name: str) -> Records:
        records = self._index._records(name) if self._index is not None and name in self else None
        if records is None:
            raise KeyError(name)
        return records

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _contains(self._names, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def items(self) -> ItemsView[str, Records]:
        return _ScannedItems(self)

    def file_count(self) -> int:
        return self._index._file_count() if self._index is not None else 0


class _ScannedItems(ItemsView[str, Records]):
    _mapping: ProjectMap

    def __iter__(self) -> Iterator[tuple[str, Records]]:
        index = self._mapping._index
        if index is not None:
            yield from index._scan(self._mapping._names)


@dataclass(frozen=True)
class IndexSnapshot:
    """The projects at one moment (names; records read when asked)."""

    projects: ProjectMap = field(default_factory=ProjectMap)

    def files_of(self, project: str) -> Records | None:
        return self.projects.get(project)

    def find(self, project: str, filename: str) -> FileRecord | None:
        for record in self.projects.get(project, ()):
            if record.filename == filename:
                return record
        return None

    @property
    def file_count(self) -> int:
        return self.projects.file_count()


class RepoIndex:
    """The index of one repository, as the server holds it."""

    def __init__(
        self,
        overlay_path: Path,
        database: Path | None = None,
        *,
        max_cached_records: int = MAX_CACHED_RECORDS,
        on_lost: Callable[[], object] | None = None,
    ) -> None:
        """``database``: the remote index's (default: ``index.sqlite3`` beside the
        overlay). ``on_lost`` is called (blocking, from the reader that found it) when the
        database turns out unreadable while serving: it should load the remote index
        again (``Repository.sync``)."""
        self._overlay_path = overlay_path
        self._store = SyncedIndex(database or overlay_path.with_name(DATABASE))
        self._on_lost = on_lost
        self._write_lock = threading.RLock()  # one change at a time
        self._lock = threading.Lock()  # the cache, the epoch, the file count
        self._publishing = threading.Lock()  # held while a change is applied
        self._epoch = 0  # odd while a change is applied
        self._cache: OrderedDict[str, Records] = OrderedDict()
        self._cached_records = 0
        self._max_cached_records = max_cached_records
        self._count: tuple[int, int] | None = None  # (epoch, file count)
        self._overlay: dict[str, FileRecord] = self._read_overlay()
        #: The overlay file's size after this process's last append, which ended it with
        #: a whole line (``None``: unknown).
        self._overlay_end: int | None = None
        #: The change log's records since the remote index (by filename).
        self._changes: dict[str, FileRecord] = {}
        #: Changes, then the overlay, by project and filename. The inner dicts are never
        #: changed once set (readers iterate them without a lock): an upload sets a copy.
        self._extra: dict[str, dict[str, FileRecord]] = {}
        #: Deleted files (``manage.Deletion`` by filename): their records are never shown.
        self._deleted: Mapping[str, Deletion] = {}
        #: When each overlay entry of this process's was added (``time.monotonic()``).
        self._added: dict[str, float] = {}
        self._rebuild_extra()
        try:
            self._store_names = self._store.names()
        except sqlite3.DatabaseError as exc:
            if not is_broken(exc):
                raise
            self._discard(exc)
            self._store_names = []
        self._snapshot = IndexSnapshot(ProjectMap(self._all_names(), self))

    @property
    def snapshot(self) -> IndexSnapshot:
        return self._snapshot

    def holds(self, version: str | None) -> bool:
        """Whether the remote index at ``version`` is loaded (``None``: no index)."""
        return self._store.holds(version)

    # -- changes ---------------------------------------------------------------------------

    def prepare_remote(self, version: str | None, records: Iterable[FileRecord]) -> Prepared:
        """Write the remote index at ``version`` to the database, to be made visible by
        ``set_remote`` (the records need not be kept meanwhile: the parse's memory can
        go back to the system before the index builds what it keeps)."""
        return self._store.prepare(version, records)

    def prepare_chain(self, version: str | None, chain: Chain) -> Prepared:
        """Write a segmented remote index to the database (``SyncedIndex.prepare_chain``),
        to be made visible by ``set_remote``."""
        return self._store.prepare_chain(version, chain)

    def set_remote(
        self,
        records: Iterable[FileRecord] | Prepared | None,
        *,
        version: str | None = None,
        changes: Iterable[FileRecord] = (),
        complete_since: float | None = None,
    ) -> None:
        """Replace the synced part of the index: the remote index at ``version`` holds
        ``records`` (or a ``prepare_remote`` load; ``None``: the one loaded already, as
        after a restart) and the change log ``changes`` since. Overlay entries the remote
        view now reflects (same bytes, same yanked state) leave the overlay.
        ``complete_since`` (a ``time.monotonic()`` stamp) says that the remote view holds
        every file stored before then (the index plus the whole change log, read after
        it): overlay entries added before then that it lacks leave too, files deleted or
        removed by hand."""
        with self._write_lock:
            if records is None or isinstance(records, Prepared):
                prepared = records
            else:
                prepared = self._store.prepare(version, records)
            fresh = {r.filename: r for r in changes}

            def apply() -> set[str] | None:
                touched = {r.project for r in (*self._changes.values(), *fresh.values())}
                if prepared is not None:
                    prepared.commit()
                    touched |= prepared.changed
                    if prepared.names_changed:
                        self._store_names = self._store.names()
                self._changes = fresh
                touched |= self._drop_reflected(complete_since)
                self._rebuild_extra()
                self._set_names(self._all_names())
                return None if prepared is not None and prepared.everything else touched

            try:
                self._publish(apply)
            finally:
                if prepared is not None:
                    prepared.rollback()  # only if apply failed before committing it

    def add_changes(self, changes: Iterable[FileRecord]) -> None:
        """Records the change log told of since the last sync."""
        with self._write_lock:
            fresh = {r.filename: r for r in changes}

            def apply() -> set[str]:
                self._changes = {**self._changes, **fresh}
                touched = {r.project for r in fresh.values()} | self._drop_reflected(None)
                self._rebuild_extra()
                self._recheck(touched)
                return touched

            self._publish(apply)

    def set_deleted(self, deleted: Mapping[str, Deletion]) -> None:
        """Hide the records of deleted files (``manage.Deletion.hides``) from now on, and
        drop them from the overlay."""
        with self._write_lock:
            new = dict(deleted)
            old = self._deleted
            touched = {d.project for d in new.values() if old.get(d.filename) != d}
            touched |= {d.project for d in old.values() if new.get(d.filename) != d}

            def apply() -> set[str]:
                self._deleted = new
                hidden = [n for n, r in self._overlay.items() if self._is_deleted(r)]
                if hidden:
                    for name in hidden:
                        touched.add(self._overlay.pop(name).project)
                    self._rewrite_overlay()
                self._rebuild_extra()
                self._recheck(touched)
                return touched

            self._publish(apply)

    def add(self, record: FileRecord) -> None:
        """Record an accepted upload: persist it to the overlay, then make it visible."""
        with self._write_lock:
            self._append_overlay(record)

            def apply() -> set[str]:
                self._overlay[record.filename] = record
                self._added[record.filename] = time.monotonic()
                files = dict(self._extra.get(record.project) or {})
                files[record.filename] = record
                self._extra[record.project] = files
                self._recheck({record.project})
                return {record.project}

            self._publish(apply)

    def _publish(self, apply: Callable[[], set[str] | None]) -> None:
        """Run ``apply`` (which changes the index and returns the projects it touched,
        ``None``: all) so that readers see all of it or none of it."""
        touched: set[str] | None = None
        with self._publishing:
            with self._lock:
                self._epoch += 1  # odd: readers wait
            try:
                touched = apply()
            finally:
                with self._lock:
                    self._epoch += 1
                    if touched is None:
                        self._cache.clear()
                        self._cached_records = 0
                    else:
                        for project in touched:
                            self._evict(project)

    def _drop_reflected(self, complete_since: float | None) -> set[str]:
        """Drop the overlay entries the remote view reflects; their projects."""

        def theirs(mine: FileRecord) -> FileRecord | None:
            return self._changes.get(mine.filename) or self._store.record(
                mine.project, mine.filename
            )

        reflected = [
            name
            for name, mine in self._overlay.items()
            if (
                (found := theirs(mine)) is None
                and complete_since is not None
                and self._added.get(name, 0.0) < complete_since
            )
            or (found is not None and (found.sha256, found.yanked) == (mine.sha256, mine.yanked))
        ]
        projects = set()
        for name in reflected:
            projects.add(self._overlay.pop(name).project)
            self._added.pop(name, None)
        if reflected:
            self._rewrite_overlay()
        return projects

    def _rebuild_extra(self) -> None:
        extra: dict[str, dict[str, FileRecord]] = {}
        for record in (*self._changes.values(), *self._overlay.values()):
            extra.setdefault(record.project, {})[record.filename] = record
        self._extra = extra

    def _is_deleted(self, record: FileRecord) -> bool:
        return _hidden(record, self._deleted)

    # -- names -----------------------------------------------------------------------------

    def _all_names(self) -> list[str]:
        """Every project with a record to show, in order (the stored names' list itself
        when nothing else counts)."""
        names = self._store_names
        extra = [p for p in self._extra if not _contains(names, p)]
        if extra:
            names = sorted([*names, *extra])
        hidden = {d.project for d in self._deleted.values()}
        gone = {p for p in hidden if _contains(names, p) and self._materialise(p) is None}
        if gone:
            names = [n for n in names if n not in gone]
        return names

    def _recheck(self, projects: Iterable[str]) -> None:
        """Add or remove these projects' names as they now have records to show or not."""
        names = self._snapshot.projects._names
        changed: list[str] | None = None
        for project in projects:
            shown = self._materialise(project) is not None
            if shown != _contains(changed if changed is not None else names, project):
                changed = list(names) if changed is None else changed
                if shown:
                    bisect.insort(changed, project)
                else:
                    changed.remove(project)
        if changed is not None:
            self._set_names(changed)

    def _set_names(self, names: list[str]) -> None:
        if names != self._snapshot.projects._names:
            self._snapshot = IndexSnapshot(ProjectMap(names, self))

    # -- reading ---------------------------------------------------------------------------

    def _records(self, project: str) -> Records | None:
        """A project's records (``None``: none to show), from the cache or read."""
        while True:
            with self._lock:
                cached = self._cache.get(project)
                if cached is not None:
                    self._cache.move_to_end(project)
                    return cached
                epoch = self._epoch
            if epoch % 2:  # a change is being applied: wait for it
                with self._publishing:
                    continue
            try:
                records = self._materialise(project)
            except sqlite3.DatabaseError as exc:
                if not is_broken(exc):
                    raise
                self._lost(exc)
                continue
            with self._lock:
                if self._epoch != epoch:
                    continue  # a change came meanwhile: read again
                if records is None:
                    return None
                cached = self._cache.get(project)
                if cached is not None:  # another reader was first: one tuple for all
                    return cached
                self._cache[project] = records
                self._cached_records += len(records)
                while self._cached_records > self._max_cached_records and len(self._cache) > 1:
                    _, gone = self._cache.popitem(last=False)
                    self._cached_records -= len(gone)
                return records

    def _materialise(self, project: str) -> Records | None:
        stored = self._store.records_of(project)
        return _shown(stored, self._extra.get(project), self._deleted)

    def _evict(self, project: str) -> None:
        gone = self._cache.pop(project, None)
        if gone is not None:
            self._cached_records -= len(gone)

    def _scan(self, names: list[str]) -> Iterator[tuple[str, Records]]:
        """Every named project with records, in one pass over the database."""
        extra, deleted = self._extra, self._deleted
        stored = self._store.scan()
        current: tuple[str, list[FileRecord]] | None = next(stored, None)
        try:
            for name in names:
                while current is not None and current[0] < name:
                    current = next(stored, None)
                here = current[1] if current is not None and current[0] == name else ()
                if shown := _shown(here, extra.get(name), deleted):
                    yield name, shown
        except sqlite3.DatabaseError as exc:
            if is_broken(exc):
                self._lost(exc)
            raise

    def _file_count(self) -> int:
        with self._lock:
            if self._count is not None and self._count[0] == self._epoch:
                return self._count[1]
            epoch = self._epoch
        touched = set(self._extra) | {d.project for d in self._deleted.values()}
        total = self._store.file_count
        for project in touched:
            total += len(self._records(project) or ()) - self._store.files_in(project)
        with self._lock:
            if self._epoch == epoch:
                self._count = (epoch, total)
        return total

    # -- an unreadable database ------------------------------------------------------------

    def _discard(self, exc: sqlite3.DatabaseError) -> None:
        log.error(
            "%s cannot be read (%s): it is built again from the remote index",
            self._store.path,
            exc,
        )
        self._store.discard()

    def _lost(self, exc: sqlite3.DatabaseError) -> None:
        """The database failed a reader: start again from an empty one and have the
        remote index loaded again (``on_lost``) before the reader reads again."""
        with self._write_lock:
            if self._store.loaded:  # not already discarded by another reader

                def apply() -> None:
                    self._discard(exc)
                    self._store_names = []
                    self._set_names(self._all_names())

                self._publish(apply)
        if self._on_lost is not None:
            self._on_lost()

    # -- the overlay file ------------------------------------------------------------------

    def _read_overlay(self) -> dict[str, FileRecord]:
        records: dict[str, FileRecord] = {}
        try:
            lines = self._overlay_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return records
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = FileRecord.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                # Only a crash mid-append leaves a broken line, and only as the last one.
                log.warning(
                    "%s:%d: skipping an unreadable overlay line", self._overlay_path, number
                )
                continue
            records[record.filename] = record
        return records

    def _rewrite_overlay(self) -> None:
        text = "".join(
            json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in self._overlay.values()
        )
        replace_file(self._overlay_path, text.encode("utf-8"))
        self._overlay_end = None

    def _append_overlay(self, record: FileRecord) -> None:
        line = (json.dumps(record.to_dict(), sort_keys=True) + "\n").encode("utf-8")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self._overlay_path, flags, 0o600)
        except FileNotFoundError:
            self._overlay_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._overlay_path, flags, 0o600)
        try:
            size = os.fstat(fd).st_size
            # A line cut short by an earlier crash must not swallow this one. A file that
            # still ends where this process's last whole line did needs no look (reading
            # the last byte was an open and a read more per upload).
            if size and size != self._overlay_end and not self._ends_with_newline():
                line = b"\n" + line
            self._overlay_end = None
            written = os.write(fd, line)
            os.fsync(fd)
            if written == len(line):
                self._overlay_end = size + written
        finally:
            os.close(fd)

    def _ends_with_newline(self) -> bool:
        with self._overlay_path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"


def _hidden(record: FileRecord, deleted: Mapping[str, Deletion]) -> bool:
    deletion = deleted.get(record.filename)
    return deletion is not None and deletion.hides(record)


def _shown(
    stored: Iterable[FileRecord],
    extra: Mapping[str, FileRecord] | None,
    deleted: Mapping[str, Deletion],
) -> Records | None:
    """A project's records as served: the stored ones, those of the change log and the
    overlay by filename over them, less deleted files, oldest version first."""
    files = {r.filename: r for r in stored}
    if extra:
        files.update(extra)
    shown = [r for r in files.values() if not _hidden(r, deleted)]
    return tuple(sorted(shown, key=_sort_key)) or None
