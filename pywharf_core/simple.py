"""The Simple Repository API pages, built as one PEP 691-shaped dict and rendered.

Links are relative to the page (``/…/simple/<project>/``), so the same page works under
``/simple/``, ``/r/<repo>/simple/`` and any reverse-proxy prefix.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from .index import IndexSnapshot
from .records import FileRecord

#: PEP 629 version of what the pages offer.
API_VERSION = "1.0"


def project_list_data(snapshot: IndexSnapshot) -> dict[str, Any]:
    return {
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": name} for name in snapshot.projects],
    }


def project_page_data(project: str, records: tuple[FileRecord, ...]) -> dict[str, Any]:
    files = []
    for record in records:
        item: dict[str, Any] = {
            "filename": record.filename,
            "url": quote(record.filename),
            "hashes": {"sha256": record.sha256},
            "requires-python": record.requires_python,
            "yanked": False if record.yanked is None else (record.yanked or True),
            "size": record.size,
            "upload-time": record.upload_time_iso,
        }
        files.append(item)
    return {"meta": {"api-version": API_VERSION}, "name": project, "files": files}


_HEAD = (
    "<!DOCTYPE html>\n<html>\n<head>\n"
    '<meta name="pypi:repository-version" content="{version}">\n'
    "<title>{title}</title>\n</head>\n<body>\n"
)


def render_project_list_html(data: dict[str, Any]) -> str:
    parts = [_HEAD.format(version=data["meta"]["api-version"], title="Simple index")]
    for project in data["projects"]:
        name = escape(project["name"])
        parts.append(f'<a href="{quote(project["name"])}/">{name}</a><br>\n')
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def render_project_page_html(data: dict[str, Any]) -> str:
    title = f"Links for {escape(data['name'])}"
    parts = [_HEAD.format(version=data["meta"]["api-version"], title=title), f"<h1>{title}</h1>\n"]
    for item in data["files"]:
        href = item["url"] + "".join(f"#{k}={v}" for k, v in item["hashes"].items())
        attrs = [f'href="{escape(href)}"']
        if item["requires-python"]:
            attrs.append(f'data-requires-python="{escape(item["requires-python"])}"')
        yanked = item["yanked"]
        if yanked is not False:
            reason = "" if yanked is True else yanked
            attrs.append(f'data-yanked="{escape(reason)}"')
        parts.append(f"<a {' '.join(attrs)}>{escape(item['filename'])}</a><br>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)
