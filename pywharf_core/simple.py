"""The Simple Repository API pages, built as one PEP 691-shaped dict and rendered as
PEP 503/691 HTML or JSON.

Links are relative to the page (``…/simple/<project>/``), so the same page works under
``/simple/``, ``/r/<repo>/simple/`` and any reverse-proxy prefix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import quote

from packaging.version import InvalidVersion, Version

from .index import IndexSnapshot
from .negotiation import JSON_V1
from .records import FileRecord
from .status import ACTIVE, ProjectStatus

#: PEP 629 version: 1.0 (PEP 691) + 1.1 (PEP 700: versions, size, upload-time) + 1.4
#: (PEP 792: project-status). 1.2 (PEP 708 tracks/alternate-locations) and 1.3 (PEP 740
#: provenance) are optional keys that this index does not serve.
API_VERSION = "1.4"


def project_list_data(snapshot: IndexSnapshot) -> dict[str, Any]:
    return {
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": name} for name in snapshot.projects],
    }


def project_page_data(
    project: str, records: tuple[FileRecord, ...], status: ProjectStatus = ACTIVE
) -> dict[str, Any]:
    """A project's page; a quarantined project's lists no versions and no files."""
    shown = () if status.hides_files else records
    return {
        "meta": {"api-version": API_VERSION},
        "name": project,
        "project-status": status.data(),
        "versions": _versions(shown),
        "files": [file_data(record) for record in shown],
    }


def file_data(record: FileRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "filename": record.filename,
        "url": quote(record.filename),
        "hashes": {"sha256": record.sha256},
    }
    if record.requires_python:
        item["requires-python"] = record.requires_python
    item["core-metadata"] = (
        {"sha256": record.core_metadata_sha256} if record.core_metadata_sha256 else False
    )
    item["yanked"] = False if record.yanked is None else (record.yanked or True)
    item["size"] = record.size
    item["upload-time"] = record.upload_time_iso
    return item


def _versions(records: tuple[FileRecord, ...]) -> list[str]:
    return sort_versions({record.version for record in records})


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Distinct versions, oldest first (PEP 440 order; anything else after, by text)."""

    def key(version: str) -> tuple[int, Version | str]:
        try:
            return (0, Version(version))
        except InvalidVersion:
            return (1, version)

    return sorted(set(versions), key=key)


def render(data: dict[str, Any], media_type: str) -> bytes:
    """The page in ``media_type`` (JSON, or HTML for both HTML forms)."""
    if media_type == JSON_V1:
        return json.dumps(data, separators=(",", ":")).encode("utf-8")
    if "projects" in data:
        return _project_list_html(data).encode("utf-8")
    return _project_page_html(data).encode("utf-8")


_HEAD = (
    "<!DOCTYPE html>\n<html>\n<head>\n"
    '<meta name="pypi:repository-version" content="{version}">\n'
    "<title>{title}</title>\n</head>\n<body>\n"
)


def _project_list_html(data: dict[str, Any]) -> str:
    parts = [_HEAD.format(version=data["meta"]["api-version"], title="Simple index")]
    for project in data["projects"]:
        name = escape(project["name"])
        parts.append(f'<a href="{quote(project["name"])}/">{name}</a><br>\n')
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def _project_page_html(data: dict[str, Any]) -> str:
    title = f"Links for {escape(data['name'])}"
    head = _HEAD.format(version=data["meta"]["api-version"], title=title)
    status = data.get("project-status")
    if status:  # PEP 792's meta tags, beside the repository version
        tags = f'<meta name="pypi:project-status" content="{escape(status["status"])}">\n'
        if status.get("reason"):
            tags += (
                f'<meta name="pypi:project-status-reason" content="{escape(status["reason"])}">\n'
            )
        head = head.replace("<title>", tags + "<title>", 1)
    parts = [head, f"<h1>{title}</h1>\n"]
    for item in data["files"]:
        hashes = item.get("hashes") or {}
        best = (
            {"sha256": hashes["sha256"]} if "sha256" in hashes else dict(list(hashes.items())[:1])
        )
        href = item["url"] + "".join(f"#{k}={v}" for k, v in best.items())
        attrs = [f'href="{escape(href)}"']
        if "requires-python" in item:
            attrs.append(f'data-requires-python="{escape(item["requires-python"])}"')
        metadata = item.get("core-metadata", False)
        if metadata:
            # PEP 714: data-core-metadata, and the legacy name with the same value.
            pairs = metadata.items() if isinstance(metadata, dict) else ()
            value = escape("".join(f"{k}={v}" for k, v in pairs) or "true")
            attrs.append(f'data-core-metadata="{value}" data-dist-info-metadata="{value}"')
        yanked = item.get("yanked", False)
        if yanked is not False:
            reason = "" if yanked is True else yanked
            attrs.append(f'data-yanked="{escape(reason)}"')
        parts.append(f"<a {' '.join(attrs)}>{escape(item['filename'])}</a><br>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)
