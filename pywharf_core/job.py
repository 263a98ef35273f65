"""``pywharf update_index``: rebuild a repository's remote index from its storage.

Lists every published file (reusing the last index's records for files that did not
change), and writes the new index only when it differs, by compare-and-swap on the
backend's index version: a concurrent writer makes this one start over, cleanly.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backend import Backend
from .errors import IndexConflict, IndexFileError
from .indexfile import IndexFile, dump_index, load_index
from .records import FileRecord

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


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


def update_index(backend: Backend, progress: Callable[[int], None] | None = None) -> UpdateSummary:
    started = time.monotonic()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        current = backend.read_index()
        previous: tuple[FileRecord, ...] = ()
        if current is not None:
            try:
                previous = load_index(current[0]).records
            except IndexFileError as exc:
                log.warning("the current index cannot be read (%s); rebuilding it", exc)
        known = {r.backend_ref: r for r in previous if r.backend_ref}
        records: list[FileRecord] = []
        for record in backend.list_files(known):
            records.append(record)
            if progress is not None:
                progress(len(records))
        records.sort(key=lambda r: r.filename)
        changed = records != sorted(previous, key=lambda r: r.filename) or current is None
        if changed:
            data = dump_index(IndexFile(time.time(), tuple(records)))
            try:
                backend.write_index(data, None if current is None else current[1])
            except IndexConflict:
                log.warning("the index changed while it was rebuilt; starting over")
                continue
        return UpdateSummary(
            files=len(records),
            projects=len({r.project for r in records}),
            changed=changed,
            seconds=time.monotonic() - started,
            attempts=attempt,
        )
    raise IndexConflict(f"the index kept changing; gave up after {MAX_ATTEMPTS} attempts")


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
