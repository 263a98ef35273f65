"""What maintainers change about published files beyond uploading: deleting them, and
the rule that a deleted filename is not reused with other bytes.

A deletion removes the file from the backend (``Backend.delete_file``) and records it in
the repository's shared state document ``deleted.json``::

    {"<filename>": {"project": …, "sha256": …, "deleted_at": <seconds since the epoch>}}

Every server of the repository re-reads that document when it syncs (``Repository.sync``)
and hides any record of a deleted filename uploaded no later than its deletion: a stale
remote index, another server's journal or overlay cannot bring it back, and a later
upload of the name (newer ``upload_time``) is a different file. The record also keeps the
deleted file's sha256, for the filename-reuse rule of uploads.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import FileMissing, FilenameReused

if TYPE_CHECKING:
    from .records import FileRecord
    from .repository import Repository

log = logging.getLogger(__name__)

#: The shared state document of deleted filenames.
DELETED = "deleted.json"


@dataclass(frozen=True)
class Deletion:
    """One deleted file: what it was, and when it went."""

    project: str
    filename: str
    sha256: str
    deleted_at: float

    def hides(self, record: FileRecord) -> bool:
        """Whether ``record`` is (a view of) the deleted file rather than a later upload."""
        return record.filename == self.filename and record.upload_time <= self.deleted_at


def parse_deletions(data: bytes | None) -> dict[str, Deletion]:
    """The deletions a ``deleted.json`` holds (by filename); unreadable entries skipped."""
    if not data:
        return {}
    try:
        raw = json.loads(data)
    except ValueError:
        log.warning("%s cannot be read; no deletion is applied", DELETED)
        return {}
    deletions = {}
    for filename, entry in raw.items() if isinstance(raw, dict) else ():
        try:
            deletions[filename] = Deletion(
                str(entry["project"]), filename, str(entry["sha256"]), float(entry["deleted_at"])
            )
        except (KeyError, TypeError, ValueError):
            log.warning("%s: skipping an unreadable entry for %r", DELETED, filename)
    return deletions


def dump_deletions(deletions: Mapping[str, Deletion]) -> bytes:
    data = {
        d.filename: {"project": d.project, "sha256": d.sha256, "deleted_at": d.deleted_at}
        for d in sorted(deletions.values(), key=lambda d: d.filename)
    }
    return json.dumps(data, indent=1, sort_keys=True).encode("utf-8")


def delete_file(repo: Repository, project: str, filename: str) -> FileRecord:
    """Delete ``filename`` of ``project`` from ``repo`` (blocking); returns its record.

    The storage first, then the shared record: a failure between the two leaves a listed
    file whose download is 404, and deleting it again completes the job (the storage's
    ``FileMissing`` is then no error). The other order could hide a file that stays
    stored, with nothing left to delete it by. Raises ``FileMissing`` when the
    repository lists no such file of that project."""
    record = repo.index.snapshot.find(project, filename)
    if record is None:
        raise FileMissing(filename)
    try:
        repo.backend.delete_file(record)
    except FileMissing:
        log.warning("%s: %s was already gone from the storage", repo.name, filename)
    deletion = Deletion(record.project, record.filename, record.sha256, time.time())

    def add(data: bytes | None) -> bytes:
        deletions = parse_deletions(data)
        deletions[filename] = deletion
        return dump_deletions(deletions)

    stored = repo.state.update(DELETED, add)
    repo.apply_deletions(parse_deletions(stored))
    log.info("%s: deleted %s", repo.name, filename)
    return record


def check_filename_reuse(repo: Repository, filename: str, sha256: str) -> None:
    """``FilenameReused`` when ``filename`` was deleted and ``sha256`` is not the bytes it
    had (blocking: reads the shared record, which another server may have just changed)."""
    current = repo.state.read(DELETED)
    deletion = parse_deletions(None if current is None else current[0]).get(filename)
    if deletion is not None and not hmac.compare_digest(deletion.sha256, sha256):
        raise FilenameReused(filename, deletion.sha256)
