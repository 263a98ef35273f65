"""What an upstream index says about one project: its page parsed into PEP 691 shape,
and that shape as this server offers it (file URLs pointing here).

Upstream answers in PEP 691 JSON (kept whole: unknown keys pass through) or in PEP 503
HTML. HTML is read with the standard library's ``html.parser``, as pip reads it: an
index page is a list of anchors whose attributes carry everything (PEP 503, 592, 629,
658, 714, 740, 792), and a full DOM library costs a second and more to import and ten
times the time to parse, all on the cold path of a first install.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import cached_property
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from . import dists
from .errors import InvalidFilename


class PageUnreadable(Exception):
    """Upstream's page cannot be read (the message says why; no upstream URL in it)."""


@dataclass(frozen=True)
class UpstreamPage:
    """Upstream's answer for one project, PEP 691-shaped (``files`` carry absolute
    upstream URLs), with what revalidation needs. ``derived`` maps a wheel's filename
    to the sha256 of the core metadata this server extracted from its verified cached
    copy, for files upstream offers no metadata for (served per PEP 658)."""

    project: str
    data: dict[str, Any]
    etag: str | None
    last_modified: str | None
    fetched_at: float
    missing: bool = False
    derived: dict[str, str] = field(default_factory=dict)

    @cached_property
    def by_filename(self) -> dict[str, dict[str, Any]]:
        return {
            str(item.get("filename")): item
            for item in self.data.get("files", [])
            if isinstance(item, dict)
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "project": self.project,
                "data": self.data,
                "etag": self.etag,
                "last_modified": self.last_modified,
                "fetched_at": self.fetched_at,
                "missing": self.missing,
                "derived": self.derived,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> UpstreamPage:
        raw = json.loads(text)
        derived = raw.get("derived") or {}
        return cls(
            str(raw["project"]),
            dict(raw["data"]),
            raw.get("etag"),
            raw.get("last_modified"),
            float(raw["fetched_at"]),
            bool(raw.get("missing", False)),
            {str(k): str(v) for k, v in derived.items()} if isinstance(derived, dict) else {},
        )


def parse_page(project: str, body: bytes, content_type: str, page_url: str) -> dict[str, Any]:
    """Upstream's project page as a PEP 691 dict whose file URLs are absolute; files whose
    names are not valid distribution filenames are dropped. ``PageUnreadable`` else."""
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            raise PageUnreadable("a JSON page that does not parse") from None
        if not isinstance(data, dict) or not isinstance(data.get("files", []), list):
            raise PageUnreadable("a JSON page without a files list")
    else:
        data = html_page(project, body, page_url)
    files = []
    for item in data.get("files", []):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        try:
            dists.parse_filename(str(item.get("filename", "")))
        except InvalidFilename:
            continue
        item = dict(item)
        item["url"] = urljoin(page_url, item["url"])
        # Known keys are rendered into HTML too: keep them only in the types PEP 691 says.
        hashes = item.get("hashes")
        item["hashes"] = {
            str(k): v
            for k, v in (hashes.items() if isinstance(hashes, dict) else ())
            if isinstance(v, str) and v.isalnum()
        }
        if not isinstance(item.get("requires-python", ""), str):
            del item["requires-python"]
        if not isinstance(item.get("yanked", False), (bool, str)):
            item["yanked"] = True
        files.append(item)
    data = dict(data)
    data["files"] = files
    return data


class _Anchors(HTMLParser):
    """The anchors of a PEP 503 page (attributes unescaped by the parser), its
    ``<base href>`` and its ``<meta name=… content=…>`` pairs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href") or None
        elif tag == "meta":
            named = dict(attrs)
            name, content = named.get("name"), named.get("content")
            if name and content is not None:
                self.meta.setdefault(name, content)


def html_page(project: str, body: bytes, page_url: str) -> dict[str, Any]:
    """A PEP 503 HTML page as the PEP 691 dict it stands for."""
    parser = _Anchors()
    try:
        parser.feed(body.decode("utf-8", "replace"))
        parser.close()
    except (AssertionError, ValueError) as exc:  # what html.parser raises on broken markup
        raise PageUnreadable(f"an HTML page that does not parse ({type(exc).__name__})") from None
    base = urljoin(page_url, parser.base) if parser.base else page_url
    files = [item for attrs in parser.anchors if (item := _anchor_file(attrs, base))]
    meta: dict[str, Any] = {"api-version": parser.meta.get("pypi:repository-version", "1.0")}
    data: dict[str, Any] = {"meta": meta, "name": project, "files": files}
    status = parser.meta.get("pypi:project-status")
    if status:  # PEP 792
        data["project-status"] = {"status": status}
        reason = parser.meta.get("pypi:project-status-reason")
        if reason:
            data["project-status"]["reason"] = reason
    return data


def _anchor_file(attrs: dict[str, str | None], base: str) -> dict[str, Any] | None:
    href = attrs.get("href")
    if not href:
        return None
    url, _, fragment = urljoin(base, href).partition("#")
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    item: dict[str, Any] = {"filename": filename, "url": url, "hashes": {}}
    name, sep, value = fragment.partition("=")
    if sep and name and value:
        item["hashes"][name] = value
    if attrs.get("data-requires-python"):
        item["requires-python"] = attrs["data-requires-python"]
    if "data-yanked" in attrs:  # PEP 592: present, with the reason or empty
        item["yanked"] = attrs["data-yanked"] or True
    else:
        item["yanked"] = False
    # PEP 714: data-core-metadata, else the older name (PEP 658).
    declared = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
    if declared is not None:
        algorithm, sep, digest = declared.partition("=")
        item["core-metadata"] = {algorithm: digest} if sep and algorithm and digest else True
    if attrs.get("data-provenance"):  # PEP 740
        item["provenance"] = urljoin(base, str(attrs["data-provenance"]))
    return item


def served_file(item: dict[str, Any], derived_metadata: str | None = None) -> dict[str, Any]:
    """An upstream file dict as this server offers it: the URL points here, and core
    metadata is offered when upstream offers it or this server derived it."""
    served = {
        k: v
        for k, v in item.items()
        if k not in ("url", "dist-info-metadata", "data-dist-info-metadata")
    }
    served["url"] = quote(str(item["filename"]))
    metadata = upstream_metadata(item)
    if not metadata and derived_metadata:
        metadata = {"sha256": derived_metadata}
    served["core-metadata"] = metadata if metadata else False
    served.setdefault("yanked", False)
    return served


def upstream_metadata(item: dict[str, Any]) -> Any:
    """What upstream declares of a file's core metadata (PEP 691 / 714 keys), or False."""
    return item.get(
        "core-metadata", item.get("dist-info-metadata", item.get("data-dist-info-metadata", False))
    )


def upstream_sha256(item: dict[str, Any], metadata: bool) -> str | None:
    """The sha256 upstream declared for a file (or its core metadata), if any."""
    if metadata:
        declared = upstream_metadata(item)
        value = declared.get("sha256") if isinstance(declared, dict) else None
    else:
        value = item.get("hashes", {}).get("sha256")
    return str(value).lower() if isinstance(value, str) and len(value) == 64 else None


def upload_time(item: dict[str, Any]) -> float | None:
    value = item.get("upload-time")
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def newer_api_version(a: str, b: str) -> str:
    def key(version: str) -> tuple[int, int]:
        major, _, minor = version.partition(".")
        try:
            return int(major), int(minor or 0)
        except ValueError:
            return (0, 0)

    return a if key(a) > key(b) else b


def offered_versions(
    upstream: dict[str, Any], offered: list[dict[str, Any]], visible: list[dict[str, Any]]
) -> list[str]:
    """PEP 700 versions: upstream's list less the versions whose every file is hidden by
    the cooldown, plus the versions of the files offered."""
    from .simple import sort_versions

    offered_set = set()
    for item in offered:
        try:
            offered_set.add(str(dists.parse_filename(str(item["filename"])).version))
        except InvalidFilename:
            continue
    hidden: set[str] = set()
    visible_names = {str(f.get("filename")) for f in visible}
    for item in upstream.get("files", []):
        if item.get("filename") not in visible_names:
            try:
                hidden.add(str(dists.parse_filename(str(item["filename"])).version))
            except InvalidFilename:
                continue
    listed = [str(v) for v in upstream.get("versions", []) if isinstance(v, str)]
    return sort_versions(
        {*(v for v in listed if v not in hidden or v in offered_set), *offered_set}
    )
