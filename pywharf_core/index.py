"""A repository's in-memory index: the last synced remote index plus an overlay.

The overlay holds the files this server accepted since (read-your-writes). It is an
append-only JSON-lines file under ROOT, fsynced per record, so a restart does not hide an
accepted upload. Readers take ``snapshot`` (an immutable value) without locking; writers
build a new snapshot and swap the reference.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from .files import replace_file
from .records import FileRecord

if TYPE_CHECKING:
    from .manage import Deletion

log = logging.getLogger(__name__)


def _sort_key(record: FileRecord) -> tuple[int, Version | str, str]:
    try:
        return (0, Version(record.version), record.filename)
    except InvalidVersion:
        return (1, record.version, record.filename)


@dataclass(frozen=True)
class IndexSnapshot:
    """Projects (normalized name → records, oldest version first) at one moment. A change
    replaces only the tuples of the projects it touches (pages are cached by them)."""

    projects: Mapping[str, tuple[FileRecord, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def files_of(self, project: str) -> tuple[FileRecord, ...] | None:
        return self.projects.get(project)

    def find(self, project: str, filename: str) -> FileRecord | None:
        for record in self.projects.get(project, ()):
            if record.filename == filename:
                return record
        return None

    @property
    def file_count(self) -> int:
        return sum(len(records) for records in self.projects.values())


def build_snapshot(
    records: Iterable[FileRecord], previous: IndexSnapshot | None = None
) -> IndexSnapshot:
    """A snapshot of ``records`` (later ones win: overlay after remote). A project whose
    records equal ``previous``'s keeps its very tuple, so its cached pages stay valid."""
    grouped: dict[str, dict[str, FileRecord]] = {}
    for record in records:
        grouped.setdefault(record.project, {})[record.filename] = record
    old = previous.projects if previous is not None else {}
    projects = {}
    for name, files in sorted(grouped.items()):
        fresh = tuple(sorted(files.values(), key=_sort_key))
        kept = old.get(name)
        projects[name] = kept if kept == fresh and kept is not None else fresh
    return IndexSnapshot(MappingProxyType(projects))


class RepoIndex:
    """The index of one repository, as the server holds it."""

    def __init__(self, overlay_path: Path) -> None:
        self._overlay_path = overlay_path
        self._lock = threading.Lock()
        self._remote: tuple[FileRecord, ...] = ()
        self._overlay: dict[str, FileRecord] = self._read_overlay()
        #: Deleted files (``manage.Deletion`` by filename): their records are never shown.
        self._deleted: Mapping[str, Deletion] = {}
        #: When each overlay entry of this process's was added (``time.monotonic()``).
        self._added: dict[str, float] = {}
        self._snapshot = build_snapshot(self._overlay.values())

    @property
    def snapshot(self) -> IndexSnapshot:
        return self._snapshot

    def set_remote(
        self, records: Iterable[FileRecord], *, complete_since: float | None = None
    ) -> None:
        """Replace the synced part of the index. Overlay entries the remote view now
        reflects (same bytes, same yanked state) leave the overlay. ``complete_since``
        (a ``time.monotonic()`` stamp) says that the remote view holds every file stored
        before then (the index plus the whole change log, read after it): overlay entries
        added before then that it lacks leave too, files deleted or removed by hand."""
        with self._lock:
            self._remote = tuple(records)
            remote = {r.filename: r for r in self._remote}
            reflected = [
                name
                for name, mine in self._overlay.items()
                if (
                    (theirs := remote.get(name)) is None
                    and complete_since is not None
                    and self._added.get(name, 0.0) < complete_since
                )
                or (
                    theirs is not None
                    and (theirs.sha256, theirs.yanked) == (mine.sha256, mine.yanked)
                )
            ]
            if reflected:
                for name in reflected:
                    del self._overlay[name]
                    self._added.pop(name, None)
                self._rewrite_overlay()
            self._rebuild()

    def set_deleted(self, deleted: Mapping[str, Deletion]) -> None:
        """Hide the records of deleted files (``manage.Deletion.hides``) from now on, and
        drop them from the overlay."""
        with self._lock:
            self._deleted = dict(deleted)
            hidden = [n for n, r in self._overlay.items() if self._is_deleted(r)]
            if hidden:
                for name in hidden:
                    del self._overlay[name]
                self._rewrite_overlay()
            self._rebuild()

    def _is_deleted(self, record: FileRecord) -> bool:
        deletion = self._deleted.get(record.filename)
        return deletion is not None and deletion.hides(record)

    def add(self, record: FileRecord) -> None:
        """Record an accepted upload: persist it to the overlay, then make it visible."""
        with self._lock:
            self._append_overlay(record)
            self._overlay[record.filename] = record
            self._added[record.filename] = time.monotonic()
            old = self._snapshot
            files = {r.filename: r for r in old.projects.get(record.project, ())}
            files[record.filename] = record
            projects = dict(old.projects)
            is_new_project = record.project not in projects
            projects[record.project] = tuple(sorted(files.values(), key=_sort_key))
            if is_new_project:  # keep the project list in name order
                projects = dict(sorted(projects.items()))
            self._snapshot = IndexSnapshot(MappingProxyType(projects))

    def _rebuild(self) -> None:
        records = [*self._remote, *self._overlay.values()]
        if self._deleted:
            records = [r for r in records if not self._is_deleted(r)]
        self._snapshot = build_snapshot(records, previous=self._snapshot)

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

    def _append_overlay(self, record: FileRecord) -> None:
        self._overlay_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.to_dict(), sort_keys=True) + "\n"
        fd = os.open(self._overlay_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # A line cut short by an earlier crash must not swallow this one.
            if os.fstat(fd).st_size and not self._ends_with_newline():
                line = "\n" + line
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ends_with_newline(self) -> bool:
        with self._overlay_path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
