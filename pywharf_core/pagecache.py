"""Rendered simple pages, cached per (project, media type), with strong ETags.

An entry is valid while its source — a project's records tuple, or the project mapping
for the list — is the very object of the current snapshot: snapshots are immutable and
an upload replaces only the tuple of the project it touches, so other projects' pages
stay cached. The ETag is a digest of the body, so it stays right across restarts and
across replicas that serve the same index.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class RenderedPage:
    body: bytes
    etag: str  # quoted, strong


class PageCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[
            tuple[str | None, str, Hashable], tuple[object, RenderedPage]
        ] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        project: str | None,
        media_type: str,
        source: object,
        render: Callable[[], bytes],
        variant: Hashable = None,
    ) -> RenderedPage:
        """The cached page, or ``render()``'s. ``variant``: what else the page shows
        (a project's status): another value is another entry."""
        key = (project, media_type, variant)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is source:
                self._entries.move_to_end(key)
                return entry[1]
        body = render()
        page = RenderedPage(body, f'"{hashlib.sha256(body).hexdigest()[:40]}"')
        with self._lock:
            self._entries[key] = (source, page)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return page


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match asks."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))
