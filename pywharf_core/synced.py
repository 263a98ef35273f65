"""The last synced remote index of a repository, kept in SQLite under ROOT.

A server holds the remote index here rather than as Python objects, so that neither its
memory nor its start grows with the number of files (issue 19): a record costs ~170 bytes
on disk and nothing in memory until a project is asked for. It is a cache of the
backend's index, rebuilt from it whenever it is missing or cannot be read.

``ROOT/cache/<repo>/index.sqlite3`` (WAL journal)::

    meta(key, value)             'version': the remote index version it holds (absent:
                                 nothing loaded yet; NULL: the remote had no index)
    files(project, filename, …)  one row per file, keyed by (project, filename): a
                                 project's records are one range of the b-tree
    projects(name, files)        the projects and how many files each has

A load of a new remote version (``prepare``, then ``Prepared.commit``) compares the
stored rows with the new records project by project and writes only what differs, in
one transaction: readers see the previous version until it commits, and a process killed
meanwhile leaves the previous version. A first load (or a rebuild) writes a new file
beside the old one and renames it over it. Digests are kept as 32 bytes, and a
``backend_ref`` that is the filename (or ``<project>/<filename>``) as a marker.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from .errors import IndexFileError
from .records import FileRecord

log = logging.getLogger(__name__)

#: ``PRAGMA user_version`` of the layout below; another value is rebuilt.
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE files (
    project TEXT NOT NULL,
    filename TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 NOT NULL,
    size INTEGER NOT NULL,
    upload_time REAL NOT NULL,
    requires_python TEXT,
    yanked TEXT,
    core_metadata_sha256,
    backend_ref,
    PRIMARY KEY (project, filename)
) WITHOUT ROWID;
CREATE TABLE projects (name TEXT PRIMARY KEY, files INTEGER NOT NULL) WITHOUT ROWID;
"""
#: Every row, in key order (the diff and the scan read them so).
SELECT_ALL = (
    "SELECT project, filename, version, sha256, size, upload_time, requires_python, yanked, "
    "core_metadata_sha256, backend_ref FROM files ORDER BY project, filename"
)
#: What ``update_index`` needs to tell that a stored file is unchanged (``job.Known``):
#: the core-metadata digest only as present ('') or not.
SELECT_KNOWN = """
SELECT project, filename, size, upload_time,
    CASE WHEN core_metadata_sha256 IS NULL THEN NULL ELSE '' END, yanked,
    CASE WHEN backend_ref IS NULL THEN filename
        WHEN typeof(backend_ref) = 'integer' AND backend_ref = 0 THEN project || '/' || filename
        ELSE backend_ref END
FROM files
"""
#: A project's rows, and one file's, without the project.
SELECT_PROJECT = (
    "SELECT filename, version, sha256, size, upload_time, requires_python, yanked, "
    "core_metadata_sha256, backend_ref FROM files WHERE project = ?"
)
SELECT_FILE = SELECT_PROJECT + " AND filename = ?"
INSERT = (
    "INSERT OR REPLACE INTO files (project, filename, version, sha256, size, upload_time, "
    "requires_python, yanked, core_metadata_sha256, backend_ref) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The page cache of each connection (KiB): a project is a few pages; the OS caches the rest.
CACHE_KIB = 4096

Row = tuple[Any, ...]


#: SQLITE_BUSY and SQLITE_LOCKED: another connection holds the database, it is not broken.
_BUSY = (5, 6)


def is_broken(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the database cannot be read (corrupt, not a database, an I/O
    error …) rather than that it is busy: then it is built again. Without SQLite's error
    code (Python 3.10), any error but an ``OperationalError`` (busy is one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return not isinstance(exc, sqlite3.OperationalError)
    return code & 0xFF not in _BUSY


def _busy(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _BUSY


def _digest_in(text: str | None) -> bytes | str | None:
    """A lowercase hex sha256 as its 32 bytes; anything else as it is."""
    if text is not None and len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return text
        if raw.hex() == text:  # fromhex also takes upper case and spaces
            return raw
    return text


def _digest_out(value: bytes | str | None) -> str | None:
    return value.hex() if isinstance(value, bytes) else value


def encode(record: FileRecord) -> Row:
    """``record`` as a row of ``files``."""
    ref: str | int | None = record.backend_ref
    if ref == record.filename:
        ref = None
    elif ref == f"{record.project}/{record.filename}":
        ref = 0
    return (
        record.project,
        record.filename,
        record.version,
        _digest_in(record.sha256),
        record.size,
        record.upload_time,
        record.requires_python,
        record.yanked,
        _digest_in(record.core_metadata_sha256),
        ref,
    )


def decode(project: str, row: Row) -> FileRecord:
    """A row of ``files`` without its project (``SELECT`` from ``filename`` on)."""
    filename, version, sha256, size, upload_time, requires, yanked, metadata, ref = row
    if ref is None:
        ref = filename
    elif ref == 0:
        ref = f"{project}/{filename}"
    return FileRecord(
        project,
        filename,
        version,
        _digest_out(sha256) or "",
        size,
        upload_time,
        requires,
        yanked,
        _digest_out(metadata),
        ref,
    )


@dataclass
class Prepared:
    """A load written but not committed: what it changes, and ``commit``/``rollback``."""

    #: The remote index version it loads.
    version: str | None
    #: Projects whose records differ from what the store held.
    changed: set[str]
    #: Whether the set of project names differs.
    names_changed: bool
    #: Whether the store was empty before (every project is new).
    everything: bool
    _finish: Any = field(repr=False)
    done: bool = False

    def commit(self) -> None:
        self.done = True
        self._finish(True)

    def rollback(self) -> None:
        """Undo it, unless it was committed already (then nothing happens)."""
        if not self.done:
            self.done = True
            self._finish(False)


class SyncedIndex:
    """The store (see the module's docstring). Reads come from any thread through one
    connection under a lock (measured as fast as a connection per thread for project
    pages, see docs/decisions.md, with one page cache); loads from one thread at a time
    through a second connection. A database that cannot be opened is replaced by an
    empty one: the next sync loads it from the backend."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        #: (loaded, version): whether a remote index was loaded, and its version.
        self._holds: tuple[bool, str | None] = (False, None)
        #: The segments of a segmented remote index it holds: (base, deltas applied).
        self._chain: tuple[str | None, tuple[str, ...]] = (None, ())
        self._files = 0
        self._remove_leftovers()
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if _busy(exc):
                raise
            log.warning("%s cannot be read (%s); it is built again from the backend", path, exc)
            self.discard()

    # -- what it holds ---------------------------------------------------------------------

    def holds(self, version: str | None) -> bool:
        """Whether it holds the remote index at ``version`` (``None``: no index)."""
        return self._holds == (True, version)

    @property
    def loaded(self) -> bool:
        return self._holds[0]

    @property
    def version(self) -> str | None:
        """The version of the remote index it holds (``None`` also when not ``loaded``)."""
        return self._holds[1]

    @property
    def file_count(self) -> int:
        return self._files

    def records_of(self, project: str) -> list[FileRecord]:
        rows = self._query(SELECT_PROJECT, (project,))
        return [decode(project, row) for row in rows]

    def record(self, project: str, filename: str) -> FileRecord | None:
        rows = self._query(SELECT_FILE, (project, filename))
        return decode(project, rows[0]) if rows else None

    def files_in(self, project: str) -> int:
        rows = self._query("SELECT files FROM projects WHERE name = ?", (project,))
        return int(rows[0][0]) if rows else 0

    def names(self) -> list[str]:
        """Every project's name, in order."""
        return [name for (name,) in self._query("SELECT name FROM projects ORDER BY name")]

    def _query(self, sql: str, parameters: tuple[str, ...] = ()) -> list[Row]:
        with self._read_lock:
            if self._reader is None:
                self._reader = self._connect(self.path)
            return self._reader.execute(sql, parameters).fetchall()

    def scan(self) -> Iterator[tuple[str, list[FileRecord]]]:
        """Every project and its records, in name order, read through a connection of
        its own (a scan does not hold up the readers)."""
        if not self.loaded:
            return
        connection = self._connect(self.path)
        try:
            rows = connection.execute(SELECT_ALL)
            for project, group in groupby(rows, key=itemgetter(0)):
                yield project, [decode(project, row[1:]) for row in group]
        finally:
            connection.close()

    # -- loading ---------------------------------------------------------------------------

    def prepare(self, version: str | None, records: Iterable[FileRecord]) -> Prepared:
        """Write ``records`` as the remote index at ``version`` without committing. A
        filename given twice for one project keeps its last record. The caller commits
        or rolls back; until then other loads wait."""
        self._write_lock.acquire()
        try:
            ordered = sorted(records, key=attrgetter("project", "filename"))
            if self.loaded:
                try:
                    return self._prepare_diff(version, ordered)
                except sqlite3.DatabaseError as exc:
                    if not is_broken(exc):
                        raise
                    log.error("%s cannot be read (%s); it is built again", self.path, exc)
                    self._reset()
            return self._prepare_new(version, ordered)
        except BaseException:
            self._write_lock.release()
            raise

    def _prepare_diff(self, version: str | None, ordered: list[FileRecord]) -> Prepared:
        writer = self._write()
        writer.execute("BEGIN IMMEDIATE")
        try:
            old = writer.execute(SELECT_ALL)
            upserts: list[Row] = []
            deletes: list[tuple[str, str]] = []
            counts: dict[str, int] = {}
            total, names_changed = self._files, False
            for project, before, after in _by_project(old, map(encode, ordered)):
                if before == after:
                    continue
                upserts.extend(row for name, row in after.items() if before.get(name) != row)
                deletes.extend((project, name) for name in before.keys() - after.keys())
                counts[project] = len(after)
                total += len(after) - len(before)
                names_changed = names_changed or not before or not after
            writer.executemany("DELETE FROM files WHERE project = ? AND filename = ?", deletes)
            writer.executemany(INSERT, upserts)
            writer.executemany(
                "INSERT OR REPLACE INTO projects (name, files) VALUES (?, ?)",
                [(name, n) for name, n in counts.items() if n],
            )
            gone = [(name,) for name, n in counts.items() if not n]
            writer.executemany("DELETE FROM projects WHERE name = ?", gone)
            set_meta(writer, version, total, None, ())
        except BaseException:
            writer.execute("ROLLBACK")
            raise

        finish = self._finish_in_place(writer, version, total, (None, ()))
        return Prepared(version, set(counts), names_changed, False, finish)

    def _prepare_new(self, version: str | None, ordered: list[FileRecord]) -> Prepared:
        """Nothing loaded yet: build a new file beside the store, renamed over it at
        commit (faster than a journalled write, and nothing to roll back)."""
        building = self._building()
        total = build_database(building, ordered, version)
        return Prepared(version, set(), True, True, self._finish_new(building, version, total))

    def prepare_chain(self, version: str | None, chain: Chain) -> Prepared:
        """Load a segmented remote index at ``version``: the database ``chain.base``
        followed by its deltas in order (``remoteindex``). When the store holds the base
        and a first part of the deltas only the rest is fetched and applied, in one
        transaction; else the base database is fetched to a new file (its layout is
        checked: it came from the storage), the deltas are applied to it and it replaces
        the store at commit. The caller commits or rolls back."""
        base, deltas = chain.base, chain.deltas
        fetch_base, fetch_delta = chain.fetch_base, chain.fetch_delta
        self._write_lock.acquire()
        try:
            held_base, held_deltas = self._chain
            extends = held_base == base and deltas[: len(held_deltas)] == held_deltas
            if self.loaded and extends:
                try:
                    fetched = [fetch_delta(name) for name in deltas[len(held_deltas) :]]
                    return self._prepare_apply(version, base, deltas, fetched)
                except sqlite3.IntegrityError as exc:  # the delta's fault, not the store's
                    raise IndexFileError(f"a delta of {base} cannot be applied: {exc}") from exc
                except sqlite3.DatabaseError as exc:
                    if not is_broken(exc):
                        raise
                    log.error("%s cannot be read (%s); it is built again", self.path, exc)
                    self._reset()
            building = self._building()
            try:
                fetch_base(building)
                fetched = [fetch_delta(name) for name in deltas]
                total = apply_to_base(building, version, base, deltas, fetched)
            except sqlite3.DatabaseError as exc:
                building.unlink(missing_ok=True)
                raise IndexFileError(f"{base} is not a pywharf index database: {exc}") from exc
            except BaseException:
                building.unlink(missing_ok=True)
                raise
            finish = self._finish_new(building, version, total, (base, deltas))
            return Prepared(version, set(), True, True, finish)
        except BaseException:
            self._write_lock.release()
            raise

    def _prepare_apply(
        self, version: str | None, base: str, deltas: tuple[str, ...], fetched: list[Delta]
    ) -> Prepared:
        writer = self._write()
        writer.execute("BEGIN IMMEDIATE")
        try:
            changed, names_changed = apply_deltas(writer, fetched)
            (total,) = writer.execute("SELECT coalesce(sum(files), 0) FROM projects").fetchone()
            set_meta(writer, version, total, base, deltas)
        except BaseException:
            writer.execute("ROLLBACK")
            raise

        finish = self._finish_in_place(writer, version, int(total), (base, deltas))
        return Prepared(version, changed, names_changed, False, finish)

    def _finish_in_place(
        self,
        writer: sqlite3.Connection,
        version: str | None,
        total: int,
        chain: tuple[str | None, tuple[str, ...]],
    ) -> Callable[[bool], None]:
        """Commit or roll back the load ``writer``'s open transaction holds."""

        def finish(commit: bool) -> None:
            try:
                if not commit:
                    writer.execute("ROLLBACK")
                    return
                writer.execute("COMMIT")
                self._holds, self._files, self._chain = (True, version), total, chain
                with contextlib.suppress(sqlite3.OperationalError):  # busy readers: later
                    writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                self._write_lock.release()

        return finish

    def _building(self) -> Path:
        building = self.path.with_name(f"{self.path.name}.{os.getpid()}.building")
        building.unlink(missing_ok=True)
        return building

    def _finish_new(
        self,
        building: Path,
        version: str | None,
        total: int,
        chain: tuple[str | None, tuple[str, ...]] = (None, ()),
    ) -> Callable[[bool], None]:
        def finish(commit: bool) -> None:
            try:
                if not commit:
                    building.unlink(missing_ok=True)
                    return
                with open(building, "rb+") as handle:
                    os.fsync(handle.fileno())
                with self._read_lock:
                    self._close()
                    for suffix in ("-wal", "-shm"):
                        Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                    os.replace(building, self.path)
                    self._holds, self._files = (True, version), int(total)
                    self._chain = chain
            finally:
                self._write_lock.release()

        return finish

    # -- the file --------------------------------------------------------------------------

    def discard(self) -> None:
        """Forget the database (unreadable): an empty one replaces it, to be loaded again."""
        with self._write_lock:
            self._reset()

    def _reset(self) -> None:
        with self._read_lock:
            self._close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._holds, self._files, self._chain = (False, None), 0, (None, ())
            self._open()

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._close()

    def _open(self) -> None:
        """Open (or create) the database and read what it holds; raises
        ``sqlite3.DatabaseError`` when it is not one of ours."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        reader = self._connect(self.path)
        try:
            if fresh:
                reader.executescript(SCHEMA)
                reader.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            (layout,) = reader.execute("PRAGMA user_version").fetchone()
            if layout != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"layout {layout}, not {SCHEMA_VERSION}")
            reader.execute("PRAGMA journal_mode=WAL")
            meta = dict(reader.execute("SELECT key, value FROM meta").fetchall())
        except BaseException:
            reader.close()
            raise
        self._reader = reader
        self._holds = ("version" in meta, meta.get("version"))
        self._files = int(meta.get("files") or 0)
        self._chain = _chain_of(meta)

    def _connect(self, path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")  # a cache: a power cut may lose a load
        connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        connection.execute("PRAGMA busy_timeout=10000")
        return connection

    def _write(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._connect(self.path)
        return self._writer

    def _close(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._reader = self._writer = None

    def _remove_leftovers(self) -> None:
        """Files of a first load that a killed process left (``*.building``)."""
        with contextlib.suppress(OSError):
            for leftover in self.path.parent.glob(f"{self.path.name}.*.building"):
                leftover.unlink(missing_ok=True)


@dataclass(frozen=True)
class Delta:
    """One delta of a segmented remote index: records added or changed, and the
    (project, filename) of records removed (applied first)."""

    upserts: Sequence[FileRecord]
    removals: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Chain:
    """A segmented remote index as the store loads it: the names of its base and deltas,
    and how to fetch them (``remoteindex.chain_of``)."""

    base: str
    deltas: tuple[str, ...]
    #: Writes the base database to the path it is given.
    fetch_base: Callable[[Path], None]
    fetch_delta: Callable[[str], Delta]


def build_database(path: Path, records: Iterable[FileRecord], version: str | None) -> int:
    """Write a new database at ``path`` holding ``records`` (sorted by project and
    filename: the b-tree is then written in order) and ``version``; returns the number of
    files. Without a journal: the file is not visible under its final name until done."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.executescript(SCHEMA)
        connection.execute("BEGIN")
        connection.executemany(INSERT, map(encode, records))
        connection.execute(
            "INSERT INTO projects (name, files) "
            "SELECT project, count(*) FROM files GROUP BY project"
        )
        (total,) = connection.execute("SELECT count(*) FROM files").fetchone()
        set_meta(connection, version, total, None, ())
        connection.execute("COMMIT")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    return int(total)


def check_layout(connection: sqlite3.Connection) -> None:
    """Raise ``sqlite3.DatabaseError`` unless the database is exactly of ``SCHEMA``'s
    layout: a base database comes from the storage, and one with triggers, views or
    other tables is refused before any query of ours runs on it."""
    (layout,) = connection.execute("PRAGMA user_version").fetchone()
    if layout != SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"layout {layout}, not {SCHEMA_VERSION}")
    found = sorted(connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    if found != _expected_layout():
        raise sqlite3.DatabaseError("not a pywharf index database (its tables differ)")


@functools.cache
def _expected_layout() -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(":memory:")
    try:
        connection.executescript(SCHEMA)
        return sorted(connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        connection.close()


def set_meta(
    connection: sqlite3.Connection,
    version: str | None,
    total: int,
    base: str | None,
    deltas: tuple[str, ...],
) -> None:
    chain = json.dumps({"base": base, "deltas": list(deltas)}) if base is not None else None
    connection.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?), ('files', ?), "
        "('chain', ?)",
        (version, total, chain),
    )


def _chain_of(meta: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    try:
        chain = json.loads(meta.get("chain") or "null")
        if chain is None:
            return None, ()
        return str(chain["base"]), tuple(str(name) for name in chain["deltas"])
    except (ValueError, TypeError, KeyError):
        return None, ()


def apply_deltas(connection: sqlite3.Connection, deltas: list[Delta]) -> tuple[set[str], bool]:
    """Apply ``deltas`` in order within the caller's transaction; returns the projects
    they change and whether a project came or went."""
    changed: set[str] = set()
    for delta in deltas:
        connection.executemany(
            "DELETE FROM files WHERE project = ? AND filename = ?", delta.removals
        )
        connection.executemany(INSERT, map(encode, delta.upserts))
        changed.update(project for project, _ in delta.removals)
        changed.update(record.project for record in delta.upserts)
    names_changed = False
    for project in changed:
        before = connection.execute("SELECT files FROM projects WHERE name = ?", (project,))
        had = before.fetchone() is not None
        (count,) = connection.execute(
            "SELECT count(*) FROM files WHERE project = ?", (project,)
        ).fetchone()
        if count:
            connection.execute(
                "INSERT OR REPLACE INTO projects (name, files) VALUES (?, ?)", (project, count)
            )
        else:
            connection.execute("DELETE FROM projects WHERE name = ?", (project,))
        names_changed = names_changed or had != bool(count)
    return changed, names_changed


def apply_to_base(
    path: Path, version: str | None, base: str, deltas: tuple[str, ...], fetched: list[Delta]
) -> int:
    """Check the base database at ``path``, apply ``fetched`` to it and record the chain;
    returns its number of files."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA trusted_schema=OFF")
        check_layout(connection)
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        apply_deltas(connection, fetched)
        (total,) = connection.execute("SELECT coalesce(sum(files), 0) FROM projects").fetchone()
        set_meta(connection, version, total, base, deltas)
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    return int(total)


def _by_project(
    old: Iterable[Row], new: Iterable[Row]
) -> Iterator[tuple[str, dict[str, Row], dict[str, Row]]]:
    """Both sorted by (project, filename): each project with its rows in ``old`` and in
    ``new`` by filename (either may be empty; a repeated filename keeps its last row)."""
    old_groups = groupby(old, key=itemgetter(0))
    new_groups = groupby(new, key=itemgetter(0))
    old_next = next(old_groups, None)
    new_next = next(new_groups, None)
    while old_next is not None or new_next is not None:
        if new_next is None or (old_next is not None and old_next[0] < new_next[0]):
            assert old_next is not None
            yield old_next[0], {row[1]: row for row in old_next[1]}, {}
            old_next = next(old_groups, None)
        elif old_next is None or new_next[0] < old_next[0]:
            yield new_next[0], {}, {row[1]: row for row in new_next[1]}
            new_next = next(new_groups, None)
        else:
            before = {row[1]: row for row in old_next[1]}
            yield new_next[0], before, {row[1]: row for row in new_next[1]}
            old_next = next(old_groups, None)
            new_next = next(new_groups, None)
