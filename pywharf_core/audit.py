"""The audit log: one record per change to a repository, kept in its backend.

Records are JSON lines in the repository's shared state, in documents per UTC day
(``audit/2026-12-01.jsonl``, then ``audit/2026-12-01.1.jsonl``, ``.2.jsonl`` … once the
one before holds ``SEGMENT_BYTES``), each append a compare-and-swap
(``StateStore.update``), so servers sharing a storage write one log and appends racing
from several servers all survive. An append rewrites one segment, never the whole day:
with one document a day, the 3,000th upload of a day read and wrote 800 KB. A record::

    {"time": "2026-12-01T15:00:00.123456Z", "repo": "local", "action": "upload",
     "project": "mypkg", "filename": "mypkg-1.0.tar.gz", "sha256": "…",
     "who": {"kind": "write_secret"}, "address": "203.0.113.7"}

``who`` says which kind of credential made the change (``Actor.kind``), never a secret.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
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

    def add(data: bytes | None) -> bytes:
        current = data or b""
        if len(current) >= SEGMENT_BYTES:
            raise _SegmentFull
        if current and not current.endswith(b"\n"):
            current += b"\n"
        return current + line

    day = dt.datetime.fromtimestamp(record.time, tz=dt.timezone.utc).date()
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
        log.error("%s: the audit record of a %s was lost: %s", repo.name, action, exc)
    return record


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
