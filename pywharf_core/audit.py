"""The audit log: one record per change to a repository, kept in its backend.

Records are JSON lines in the repository's shared state, in documents per UTC day
(``audit/2026-12-01.jsonl``, then ``audit/2026-12-01.1.jsonl``, ``.2.jsonl`` … once the
one before holds ``SEGMENT_BYTES``), each append a compare-and-swap
(``StateStore.update``), so servers sharing a storage write one log and appends racing
from several servers all survive. Appends racing in one process are written together
(one compare-and-swap for every record that queued while the previous one was written).
An append rewrites one segment, never the whole day: with one document a day, the 3,000th
upload of a day read and wrote 800 KB. A record::

    {"time": "2026-12-01T15:00:00.123456Z", "repo": "local", "action": "upload",
     "project": "mypkg", "filename": "mypkg-1.0.tar.gz", "sha256": "…",
     "who": {"kind": "write_secret"}, "address": "203.0.113.7"}

``who`` says which kind of credential made the change (``Actor.kind``), never a secret.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BadRequest, PywharfError

if TYPE_CHECKING:
    from .repository import Repository
    from .state import StateStore

log = logging.getLogger(__name__)

ACTIONS = (
    "upload", "yank", "unyank", "delete", "status", "promote_out", "promote_in", "initialize",
)  # fmt: skip
#: How far back one query may reach, in days (one state read per day).
MAX_DAYS = 400
#: Without ``since``: the last week.
DEFAULT_DAYS = 7
#: A day's segment takes no more appends once it holds this much (about 230 records).
SEGMENT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Actor:
    """Who made a change: the kind of credential (``write_secret``, ``read_secret``,
    ``session``, ``initialize`` …; ``token:<id>`` once tokens exist) and the client's
    address (after trusted proxies' ``X-Forwarded-For``)."""

    kind: str
    address: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    time: float
    repo: str
    action: str
    project: str | None
    filename: str | None
    sha256: str | None
    actor: Actor
    detail: str | None = None  # a yank's reason, a status and its reason …

    def to_dict(self) -> dict[str, Any]:
        moment = dt.datetime.fromtimestamp(self.time, tz=dt.timezone.utc)
        data: dict[str, Any] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "repo": self.repo,
            "action": self.action,
            "project": self.project,
            "filename": self.filename,
            "sha256": self.sha256,
            "who": {"kind": self.actor.kind},
            "address": self.actor.address,
        }
        if self.detail is not None:
            data["detail"] = self.detail
        return data


def document_name(day: dt.date, segment: int = 0) -> str:
    """The name of ``day``'s ``segment``-th document (the first has no number)."""
    return f"audit/{day.isoformat()}{f'.{segment}' if segment else ''}.jsonl"


class _SegmentFull(Exception):
    """The segment holds ``SEGMENT_BYTES``: the record goes to the next one."""


#: Per state store, the segment each day's appends went to last (the segments before
#: it are full, and stay so): an append starts there instead of reading them all again.
_last_segment: weakref.WeakKeyDictionary[StateStore, tuple[dt.date, int]] = (
    weakref.WeakKeyDictionary()
)


def append(
    repo: Repository,
    action: str,
    actor: Actor,
    project: str | None = None,
    filename: str | None = None,
    sha256: str | None = None,
    detail: str | None = None,
) -> AuditRecord:
    """Append one record to ``repo``'s log (blocking). The change it records is done:
    a failure to keep the record is logged, not raised."""
    record = AuditRecord(time.time(), repo.name, action, project, filename, sha256, actor, detail)
    line = (json.dumps(record.to_dict(), sort_keys=True) + "\n").encode("utf-8")
    day = dt.datetime.fromtimestamp(record.time, tz=dt.timezone.utc).date()
    waiting = _Waiting(day, line, action)
    batches = _batches_of(repo.state)
    with batches.queue_lock:
        batches.queue.append(waiting)
    # Group commit: the thread holding ``writer`` writes every record queued meanwhile
    # in one compare-and-swap, then the others find theirs written (each append read
    # and rewrote up to 64 KB with an fsync: a third of a small upload's CPU).
    with batches.writer:
        if not waiting.written:
            with batches.queue_lock:
                batch, batches.queue = batches.queue, []
            try:
                _write(repo, batch)
            finally:
                for each in batch:
                    each.written = True
    return record


@dataclass
class _Waiting:
    day: dt.date
    line: bytes
    action: str
    written: bool = False  # written, or given up on (and logged): set under ``writer``


class _Batches:
    """This process's appends to one state store, waiting to be written."""

    def __init__(self) -> None:
        self.queue_lock = threading.Lock()
        self.queue: list[_Waiting] = []
        self.writer = threading.Lock()


_batches: weakref.WeakKeyDictionary[StateStore, _Batches] = weakref.WeakKeyDictionary()
_batches_lock = threading.Lock()


def _batches_of(state: StateStore) -> _Batches:
    with _batches_lock:
        found = _batches.get(state)
        if found is None:
            found = _batches[state] = _Batches()
        return found


def _write(repo: Repository, batch: list[_Waiting]) -> None:
    """Append the records of ``batch`` (in order), a compare-and-swap per day they fall
    on; a failure is logged, not raised (the changes they record are done)."""
    for day in sorted({w.day for w in batch}):
        of_day = [w for w in batch if w.day == day]
        lines = b"".join(w.line for w in of_day)

        def add(data: bytes | None, lines: bytes = lines) -> bytes:
            current = data or b""
            if len(current) >= SEGMENT_BYTES:
                raise _SegmentFull
            if current and not current.endswith(b"\n"):
                current += b"\n"
            return current + lines

        last_day, segment = _last_segment.get(repo.state, (day, 0))
        segment = segment if last_day == day else 0
        try:
            while True:
                try:
                    repo.state.update(document_name(day, segment), add)
                    break
                except _SegmentFull:
                    segment += 1
            _last_segment[repo.state] = (day, segment)
        except (PywharfError, OSError) as exc:
            log.error("%s: %s were lost: %s", repo.name, _counted(of_day), exc)
        except Exception:  # a backend's own bug: the batch's other appenders return too
            log.exception("%s: %s were lost", repo.name, _counted(of_day))


def _counted(batch: list[_Waiting]) -> str:
    """``3 audit record(s) (delete, upload)``: how many, of which actions."""
    return f"{len(batch)} audit record(s) ({', '.join(sorted({w.action for w in batch}))})"


def parse_since(text: str | None, now: float) -> float:
    """``since`` as seconds since the epoch: an ISO 8601 date or time (UTC unless it says
    otherwise) or a number of seconds; default: ``DEFAULT_DAYS`` ago."""
    if text is None or not text.strip():
        return now - DEFAULT_DAYS * 86400
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"'since' must be an ISO 8601 date or time, or seconds since the epoch: {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def read_since(repo: Repository, since: float) -> Iterator[bytes]:
    """The log's lines (JSON, newline-terminated) from ``since`` on, oldest first;
    blocking. ``BadRequest`` when ``since`` reaches further back than ``MAX_DAYS``."""
    now = time.time()
    if since < now - MAX_DAYS * 86400:
        raise BadRequest(f"'since' may reach back {MAX_DAYS} days at most")
    day = dt.datetime.fromtimestamp(max(since, 0), tz=dt.timezone.utc).date()
    today = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).date()
    cutoff = dt.datetime.fromtimestamp(since, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    while day <= today:
        segment = 0
        # A day's segments follow one another without a gap: the first missing one ends it.
        while (current := repo.state.read(document_name(day, segment))) is not None:
            for line in current[0].splitlines():
                try:
                    if str(json.loads(line).get("time", "")) >= cutoff:
                        yield line + b"\n"
                except (ValueError, AttributeError):
                    continue  # a damaged line: skipped
            segment += 1
        day += dt.timedelta(days=1)
