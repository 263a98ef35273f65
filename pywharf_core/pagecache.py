"""Rendered simple pages, cached per (project, media type), with strong ETags, each
compressed once per content coding a client asks for (``codings``).

An entry is valid while its source — a project's records tuple, or the project list —
is the very object the index hands out now: the index (``index.RepoIndex``) keeps a
project's tuple while the project is unchanged and held in its LRU, and a change
replaces only the tuples of the projects it touches, so other projects' pages stay
cached (a tuple evicted and read again costs one render). The ETag is a digest of the
body, so it stays right across restarts and across replicas that serve the same index;
a compressed form's ETag is that digest with the coding's name (``codings.coded_etag``).

Bounded twice: by entries (``max_entries``) and by the bytes of every body held, rendered
and compressed (``max_bytes``), the least recently used entry going first. A compressed
form is kept only when it is smaller: 4 to 40 % of its page (a project list compresses
well, the sha256 digests of a project page do not), and only in the codings that
clients asked for.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from . import codings
from .codings import IDENTITY


@dataclass(frozen=True)
class RenderedPage:
    """One form of a page as sent: its bytes, their ETag, their content coding."""

    body: bytes
    etag: str  # quoted, strong
    coding: str = IDENTITY


def rendered(body: bytes) -> RenderedPage:
    """``body`` as a page, with its ETag."""
    return RenderedPage(body, f'"{hashlib.sha256(body).hexdigest()[:40]}"')


@dataclass(eq=False)
class _Entry:
    source: object
    page: RenderedPage
    #: Coding → that form, or the page itself where compressing saved nothing.
    coded: dict[str, RenderedPage] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.page.body) + sum(
            len(form.body) for form in self.coded.values() if form is not self.page
        )


class PageCache:
    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        """At most ``max_entries`` pages, holding at most ``max_bytes`` of bodies, rendered
        and compressed (a page larger than that alone stays until another is cached)."""
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[tuple[str | None, str, Hashable], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        project: str | None,
        media_type: str,
        source: object,
        render: Callable[[], bytes],
        variant: Hashable = None,
        coding: str = IDENTITY,
    ) -> RenderedPage:
        """The cached page, or ``render()``'s, in ``coding`` (``codings.choose_coding``)
        where that makes it smaller, else as rendered. ``variant``: what else the page
        shows (a project's status): another value is another entry."""
        key = (project, media_type, variant)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.source is source:
                self._entries.move_to_end(key)
                form = entry.page if coding == IDENTITY else entry.coded.get(coding)
                if form is not None:
                    return form
            else:
                entry = None
        if entry is None:  # rendered (and compressed, below) outside the lock
            entry = _Entry(source, rendered(render()))
            with self._lock:
                old = self._entries.pop(key, None)
                self._bytes += entry.size - (old.size if old is not None else 0)
                self._entries[key] = entry
                self._evict()
        if coding == IDENTITY:
            return entry.page
        form = compressed(entry.page, coding)
        with self._lock:
            # Kept unless another thread replaced or dropped the entry meanwhile.
            if self._entries.get(key) is entry and coding not in entry.coded:
                entry.coded[coding] = form
                if form is not entry.page:
                    self._bytes += len(form.body)
                    self._evict()
        return form

    def _evict(self) -> None:
        while len(self._entries) > 1 and (
            len(self._entries) > self._max_entries or self._bytes > self._max_bytes
        ):
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    @property
    def bytes_held(self) -> int:
        """The bytes of every body held, rendered and compressed."""
        return self._bytes


def compressed(page: RenderedPage, coding: str) -> RenderedPage:
    """``page`` in ``coding``, or ``page`` itself where that would not make it smaller:
    pages under ``codings.MIN_SIZE`` are not compressed at all."""
    if len(page.body) < codings.MIN_SIZE:
        return page
    body = codings.compress(page.body, coding)
    if len(body) >= len(page.body):
        return page
    return RenderedPage(body, codings.coded_etag(page.etag, coding), coding)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match asks."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))
