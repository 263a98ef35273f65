"""Search by summary on a repository's home page: one short line per project.

A project's summary is the ``Summary`` of its latest release's core metadata. Index
records carry none (issue 19 aims at a million files in bounded memory: no string per
file), so this cache keeps one capped string per *project*, with the name of the file it
came from: a newer release makes the entry stale.

It is derived data that any server rebuilds for itself, so it lives under the server's
ROOT (``cache/<repo>/summaries.jsonl``, one JSON object a line, the last line for a
project wins), never in the backend. It is filled

- at upload, from the core metadata the upload pipeline read anyway (``offer``); this
  also covers sdists, whose metadata is not stored;
- lazily, for projects whose latest file with stored metadata is not described yet
  (uploaded on another replica, promoted, or stored before this cache existed): the home
  page calls ``fill_soon``, which starts at most one background thread per repository;
  it reads those files' metadata one at a time (``metadata.read_stored_metadata``, the
  project page's reader) and rewrites the cache when done.

A search never reads metadata: it matches names and cached summaries in memory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .backend import Backend
from .errors import PywharfError
from .files import replace_file
from .metadata import read_stored_metadata
from .records import FileRecord

log = logging.getLogger(__name__)

#: A summary is one line (PyPI shows 512 characters at most); longer ones are cut.
MAX_SUMMARY_CHARS = 512
#: A longer search is refused (400): no name or summary is that long.
MAX_QUERY_CHARS = 200
#: A file whose metadata could not be read is not asked for again for this long (seconds).
RETRY_AFTER = 600.0
#: ``fill_soon`` looks for undescribed projects at most this often (seconds).
SCAN_PAUSE = 5.0
#: The lazy fill rewrites the cache after this many reads (and when it ends).
SAVE_EVERY = 200

_SEPARATORS = re.compile(r"[-_.]+")

Projects = Mapping[str, Sequence[FileRecord]]


def cap_summary(text: str | None) -> str:
    """One line of at most ``MAX_SUMMARY_CHARS`` (folded header lines, tabs and runs of
    spaces become one space)."""
    line = " ".join((text or "").split())
    if len(line) > MAX_SUMMARY_CHARS:
        return line[: MAX_SUMMARY_CHARS - 1] + "…"
    return line


@dataclass(frozen=True)
class Search:
    """The words of a search, casefolded, and each spelt as a normalized project name
    spells it (``Foo_Bar`` finds ``foo-bar``)."""

    words: tuple[str, ...]
    name_words: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Search:
        words = tuple(dict.fromkeys(text.casefold().split()))  # each word once
        return cls(words, tuple(_SEPARATORS.sub("-", word) for word in words))

    def matches(self, name: str, summary: str) -> bool:
        """Every word is in the (normalized) name or in the summary; no words match all."""
        if not self.words:
            return True
        folded = summary.casefold()
        return all(
            n in name or w in folded for w, n in zip(self.words, self.name_words, strict=True)
        )


def latest_described(records: Sequence[FileRecord]) -> FileRecord | None:
    """The newest file whose core metadata is stored (``records``: oldest first)."""
    for record in reversed(records):
        if record.core_metadata_sha256:
            return record
    return None


def describes_latest(filename: str, records: Sequence[FileRecord]) -> bool:
    """Whether a summary read from ``filename`` is the project's current one: the file
    is of the newest release, or it is the newest file with stored metadata (when the
    newest release has none, e.g. only an sdist, that is the best there is)."""
    if not records:
        return False
    newest = records[-1].version
    for record in reversed(records):
        if record.version != newest:
            break
        if record.filename == filename:
            return True
    source = latest_described(records)
    return source is not None and source.filename == filename


def read_summary(backend: Backend, record: FileRecord) -> str:
    """The ``Summary`` of ``record``'s stored core metadata ("" when it has none);
    raises what ``read_stored_metadata`` raises."""
    return cap_summary(read_stored_metadata(backend, record).get("Summary"))


class SummaryCache:
    """One repository's summaries by project (see the module's docstring)."""

    def __init__(
        self,
        path: Path,
        read: Callable[[FileRecord], str],
        projects: Callable[[], Projects | None],
        name: str = "",
    ) -> None:
        """``read`` gives a file's summary from its stored metadata (blocking; may raise
        ``PywharfError`` or ``OSError``); ``projects`` the index's projects as they are
        now, or ``None`` while the repository has never been synced (then nothing is
        filled and nothing forgotten: the index is not whole)."""
        self._path = path
        self._read = read
        self._projects = projects
        self._name = name
        self._lock = threading.Lock()
        #: project -> (filename the summary came from, summary)
        self._entries: dict[str, tuple[str, str]] = {}
        #: filename -> when reading its metadata failed (time.monotonic())
        self._failed: dict[str, float] = {}
        self._filling = False
        self._scanned: float | None = None  # when the last fill ended
        self._load()

    def summary(self, project: str) -> str:
        entry = self._entries.get(project)
        return entry[1] if entry is not None else ""

    def offer(self, record: FileRecord, summary: str | None) -> None:
        """At upload: ``record`` has just been indexed, with this ``Summary`` in its core
        metadata. Kept unless the cache describes a newer release already."""
        records = (self._projects() or {}).get(record.project, ())
        entry = self._entries.get(record.project)
        if (
            entry is not None
            and describes_latest(entry[0], records)
            and not describes_latest(record.filename, records)
        ):
            return  # an older release uploaded late
        self._remember(record.project, record.filename, cap_summary(summary))

    def stale(self, projects: Projects) -> list[FileRecord]:
        """The files to read for projects whose summary is missing or stale (leaving out
        those whose metadata could not be read a moment ago)."""
        now = time.monotonic()
        wanted = []
        for name, records in projects.items():
            entry = self._entries.get(name)
            if entry is not None and describes_latest(entry[0], records):
                continue
            source = latest_described(records)
            if source is None:
                continue  # nothing to read: only what an upload offers
            failed_at = self._failed.get(source.filename)
            if failed_at is None or now - failed_at >= RETRY_AFTER:
                wanted.append(source)
        return wanted

    def fill_soon(self) -> bool:
        """Describe the projects that are not, in a background thread (at most one at a
        time, looking at most every ``SCAN_PAUSE`` seconds); True if one was started."""
        with self._lock:
            recently = self._scanned is not None and time.monotonic() - self._scanned < SCAN_PAUSE
            if self._filling or recently:
                return False
            self._filling = True
        thread = threading.Thread(target=self.fill, name=f"summaries-{self._name}", daemon=True)
        thread.start()
        return True

    def fill(self) -> int:
        """Read the summaries of the stale projects now (blocking); how many were read."""
        self._filling = True
        try:
            projects = self._projects()
            return 0 if projects is None else self._fill(self.stale(projects))
        except Exception:  # a background thread: nobody else would hear of it
            log.exception("%s: filling the summary cache failed", self._name)
            return 0
        finally:
            self._scanned = time.monotonic()
            self._filling = False

    def _fill(self, sources: list[FileRecord]) -> int:
        read = failed = 0
        for source in sources:
            before = self._entries.get(source.project)
            try:
                summary = self._read(source)
            except (PywharfError, OSError) as exc:
                failed += 1
                self._failed[source.filename] = time.monotonic()
                log.debug("%s: no summary from %s: %s", self._name, source.filename, exc)
                continue
            with self._lock:
                if self._entries.get(source.project) == before:  # no upload meanwhile
                    self._entries[source.project] = (source.filename, summary)
            read += 1
            if read % SAVE_EVERY == 0:
                self.save()
        if failed:
            log.warning(
                "%s: could not read the core metadata of %d files for the summary cache "
                "(tried again in %d s)",
                self._name,
                failed,
                RETRY_AFTER,
            )
            self._forget_old_failures()
        if read:
            self.save()
        return read

    def _forget_old_failures(self) -> None:
        now = time.monotonic()
        for filename, when in list(self._failed.items()):
            if now - when >= RETRY_AFTER:
                del self._failed[filename]

    # -- the file under ROOT ---------------------------------------------------------------

    def _remember(self, project: str, filename: str, summary: str) -> None:
        line = _line(project, (filename, summary))
        with self._lock:
            self._entries[project] = (filename, summary)
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                # 0600, as replace_file writes it: a private repository's summaries.
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as handle:
                    handle.write(line)
            except OSError as exc:  # a cache: the page still works, a later fill redoes it
                log.warning("%s: cannot write %s: %s", self._name, self._path, exc)

    def save(self) -> None:
        """Rewrite the file from memory, leaving out projects no longer in the index."""
        with self._lock:
            projects = self._projects()  # read under the lock: an offer comes after its index
            if projects is not None:
                for gone in [p for p in self._entries if p not in projects]:
                    del self._entries[gone]
            self._rewrite()

    def _rewrite(self) -> None:
        text = "".join(_line(p, entry) for p, entry in self._entries.items())
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(self._path, text.encode("utf-8"))
        except OSError as exc:
            log.warning("%s: cannot write %s: %s", self._name, self._path, exc)

    def _load(self) -> None:
        try:
            with self._path.open(encoding="utf-8", errors="replace") as handle:
                lines = handle.readlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("%s: cannot read %s: %s", self._name, self._path, exc)
            return
        for line in lines:
            try:
                data = json.loads(line)
                entry = (str(data["filename"]), cap_summary(str(data["summary"])))
                # The index interns project names (FileRecord.from_dict): one string.
                self._entries[sys.intern(str(data["project"]))] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash, or an unknown format: refilled
        if len(lines) > 2 * len(self._entries) + 64:  # mostly superseded lines
            self._rewrite()


def _line(project: str, entry: tuple[str, str]) -> str:
    return json.dumps({"project": project, "filename": entry[0], "summary": entry[1]}) + "\n"
