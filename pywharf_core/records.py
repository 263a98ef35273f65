"""The file record: everything the index knows about one stored distribution file."""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One distribution file in a repository.

    ``yanked`` is ``None`` when the file is not yanked, else the reason (may be empty).
    ``core_metadata_sha256`` is set only when the backend stores the core-metadata file.
    ``backend_ref`` is the backend's own reference to the stored file (a relative path,
    a release id, an object key ...); the core never interprets it.
    """

    project: str
    filename: str
    version: str
    sha256: str
    size: int
    upload_time: float  # seconds since the epoch, UTC
    requires_python: str | None = None
    yanked: str | None = None
    core_metadata_sha256: str | None = None
    backend_ref: str = ""

    @property
    def upload_time_iso(self) -> str:
        """PEP 700 form: ISO 8601 UTC with a ``Z`` suffix."""
        moment = dt.datetime.fromtimestamp(self.upload_time, tz=dt.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def with_changes(self, **changes: Any) -> FileRecord:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for TOML and JSON; optional fields left out when unset."""
        data: dict[str, Any] = {
            "project": self.project,
            "filename": self.filename,
            "version": self.version,
            "sha256": self.sha256,
            "size": self.size,
            "upload_time": self.upload_time,
            "yanked": False if self.yanked is None else self.yanked,
            "backend_ref": self.backend_ref,
        }
        if self.requires_python:
            data["requires_python"] = self.requires_python
        if self.core_metadata_sha256:
            data["core_metadata_sha256"] = self.core_metadata_sha256
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileRecord:
        """Inverse of ``to_dict``; unknown keys are ignored so newer writers stay readable."""
        yanked = data.get("yanked", False)
        filename = str(data["filename"])
        backend_ref = str(data.get("backend_ref", ""))
        return cls(
            # A server holds every record: a project's name is one string for all its
            # files, and a backend_ref equal to the filename is the filename's string.
            project=sys.intern(str(data["project"])),
            filename=filename,
            version=str(data["version"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            upload_time=float(data.get("upload_time", 0.0)),
            requires_python=data.get("requires_python") or None,
            yanked=None if yanked is False else ("" if yanked is True else str(yanked)),
            core_metadata_sha256=data.get("core_metadata_sha256") or None,
            backend_ref=filename if backend_ref == filename else backend_ref,
        )
