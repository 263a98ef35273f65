"""Project status markers (PEP 792): active, archived, quarantined, deprecated.

Kept in the repository's shared state document ``status.json`` (``{"<project>":
{"status": …, "reason": …}}``; an active project without a reason has no entry), so every
server of the repository serves the same status; ``Repository.sync`` re-reads it when its
version moved, and a change made here shows at once on this server.

What the core does with a status: ``archived`` and ``quarantined`` refuse uploads;
``quarantined`` offers no files (pages list none, downloads are ``404``); the pages carry
the status and its reason (``simple.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BadRequest, NotFound, ProjectStatusRefusal

if TYPE_CHECKING:
    from .repository import Repository

log = logging.getLogger(__name__)

#: The shared state document of project statuses.
STATUS = "status.json"
STATUSES = ("active", "archived", "quarantined", "deprecated")
#: Longest reason kept, in characters: it is shown on every page of the project.
MAX_REASON = 1000


@dataclass(frozen=True)
class ProjectStatus:
    status: str = "active"
    reason: str | None = None

    @property
    def refuses_uploads(self) -> bool:
        return self.status in ("archived", "quarantined")

    @property
    def hides_files(self) -> bool:
        return self.status == "quarantined"

    def data(self) -> dict[str, Any]:
        """The PEP 792 ``project-status`` object."""
        data: dict[str, Any] = {"status": self.status}
        if self.reason:
            data["reason"] = self.reason
        return data


ACTIVE = ProjectStatus()


def checked_status(status: str, reason: str | None) -> ProjectStatus:
    """``status`` and ``reason`` as a ``ProjectStatus``, or ``BadRequest`` saying why."""
    if status not in STATUSES:
        raise BadRequest(
            f"Unknown project status {status[:40]!r}: one of {', '.join(STATUSES)} (PEP 792)"
        )
    reason = (reason or "").strip() or None
    if reason is not None:
        if len(reason) > MAX_REASON:
            raise BadRequest(f"The reason is longer than {MAX_REASON} characters")
        if any(ord(c) < 32 and c not in "\t\n" for c in reason):
            raise BadRequest("The reason holds control characters")
    return ProjectStatus(status, reason)


def parse_statuses(data: bytes | None) -> dict[str, ProjectStatus]:
    """The statuses a ``status.json`` holds (by project); unreadable entries skipped."""
    if not data:
        return {}
    try:
        raw = json.loads(data)
    except ValueError:
        log.warning("%s cannot be read; every project is served as active", STATUS)
        return {}
    statuses = {}
    for project, entry in raw.items() if isinstance(raw, dict) else ():
        try:
            statuses[project] = checked_status(str(entry["status"]), entry.get("reason"))
        except (KeyError, TypeError, AttributeError, BadRequest):
            log.warning("%s: skipping an unreadable entry for %r", STATUS, project)
    return statuses


def dump_statuses(statuses: Mapping[str, ProjectStatus]) -> bytes:
    data = {project: statuses[project].data() for project in sorted(statuses)}
    return json.dumps(data, indent=1, sort_keys=True).encode("utf-8")


def set_status(repo: Repository, project: str, status: ProjectStatus) -> ProjectStatus:
    """Give ``project`` (which must have files here) ``status``; blocking."""
    if repo.index.snapshot.files_of(project) is None:
        raise NotFound(f"Project {project!r} is not in this repository")

    def change(data: bytes | None) -> bytes:
        statuses = parse_statuses(data)
        if status == ACTIVE:
            statuses.pop(project, None)
        else:
            statuses[project] = status
        return dump_statuses(statuses)

    stored = repo.state.update(STATUS, change)
    repo.apply_statuses(parse_statuses(stored))
    log.info("%s: %s is now %s", repo.name, project, status.status)
    return status


def check_uploads_allowed(repo: Repository, project: str) -> None:
    """``ProjectStatusRefusal`` when ``project``'s status refuses uploads (blocking: reads
    the shared document, which another server may have just changed)."""
    current = repo.state.read(STATUS)
    status = parse_statuses(None if current is None else current[0]).get(project, ACTIVE)
    if status.refuses_uploads:
        raise ProjectStatusRefusal(project, status.status, status.reason)
