"""``pywharf_core.pagecache``: rendered pages, compressed once per coding, bounded by
entries and by bytes."""

from __future__ import annotations

import gzip
import random

from pywharf_core.codings import IDENTITY, MIN_SIZE
from pywharf_core.pagecache import PageCache, etag_matches, rendered

HTML = "text/html"
BIG = b"".join(b'<a href="p-%d/">p-%d</a>\n' % (i, i) for i in range(400))  # ~10 KB


class Renders:
    """A render function that counts its calls."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.body


def test_a_page_is_rendered_once_and_compressed_once_per_coding(monkeypatch) -> None:
    from pywharf_core import codings

    compressions: list[str] = []
    real = codings.compress

    def counting(body: bytes, coding: str) -> bytes:
        compressions.append(coding)
        return real(body, coding)

    monkeypatch.setattr(codings, "compress", counting)
    cache, render, source = PageCache(), Renders(BIG), object()
    plain = cache.get("p", HTML, source, render)
    for _ in range(3):
        zipped = cache.get("p", HTML, source, render, coding="gzip")
        squeezed = cache.get("p", HTML, source, render, coding="zstd")
        assert cache.get("p", HTML, source, render) is plain
    assert render.calls == 1
    assert compressions == ["gzip", "zstd"]
    assert (plain.coding, zipped.coding, squeezed.coding) == (IDENTITY, "gzip", "zstd")
    assert gzip.decompress(zipped.body) == plain.body == BIG
    assert zipped.etag == plain.etag[:-1] + '-gzip"'
    assert squeezed.etag == plain.etag[:-1] + '-zstd"'
    assert cache.bytes_held == len(BIG) + len(zipped.body) + len(squeezed.body)


def test_a_compressed_form_is_dropped_with_its_page() -> None:
    cache, render = PageCache(), Renders(BIG)
    old = cache.get("p", HTML, object(), render, coding="gzip")
    new_source = object()
    render.body = BIG + b"<a>new</a>"
    new = cache.get("p", HTML, new_source, render, coding="gzip")
    assert render.calls == 2
    assert new.etag != old.etag and gzip.decompress(new.body) == render.body
    assert cache.bytes_held == len(render.body) + len(new.body)


def test_small_pages_stay_as_rendered() -> None:
    small = b"x" * (MIN_SIZE - 1)
    cache, source = PageCache(), object()
    page = cache.get("p", HTML, source, Renders(small), coding="gzip")
    assert page.coding == IDENTITY and page.body == small
    assert page is cache.get("p", HTML, source, Renders(small))
    assert cache.bytes_held == len(small)


def test_an_incompressible_page_stays_as_rendered() -> None:
    noise = random.Random(0).randbytes(4096)
    page = PageCache().get("p", HTML, object(), Renders(noise), coding="gzip")
    assert page.coding == IDENTITY and page.body == noise


def test_bounded_by_bytes_the_least_recently_used_going_first() -> None:
    page_size = len(BIG)
    cache = PageCache(max_bytes=3 * page_size)
    sources = {name: object() for name in "abcd"}
    for name in "abc":
        cache.get(name, HTML, sources[name], Renders(BIG))
    assert cache.bytes_held == 3 * page_size
    cache.get("a", HTML, sources["a"], Renders(BIG))  # a is used again: b is the oldest
    render = Renders(BIG)
    zipped = cache.get("a", HTML, sources["a"], render, coding="gzip")  # a grows: b goes
    assert cache.bytes_held == 2 * page_size + len(zipped.body)
    cache.get("d", HTML, sources["d"], render)  # c goes
    assert cache.bytes_held == 2 * page_size + len(zipped.body)
    for name, kept in (("a", True), ("d", True), ("b", False), ("c", False)):
        render = Renders(BIG)
        cache.get(name, HTML, sources[name], render)
        assert render.calls == (0 if kept else 1), name


def test_a_page_larger_than_the_budget_is_served_and_kept_alone() -> None:
    cache = PageCache(max_bytes=100)
    page = cache.get("big", HTML, source := object(), Renders(BIG), coding="zstd")
    assert page.coding == "zstd"
    render = Renders(BIG)
    cache.get("big", HTML, source, render, coding="zstd")
    assert render.calls == 0
    cache.get("other", HTML, object(), Renders(b"x"))
    assert cache.bytes_held == 1


def test_bounded_by_entries() -> None:
    cache = PageCache(max_entries=2)
    for name in "abc":
        cache.get(name, HTML, object(), Renders(BIG), coding="gzip")
    assert cache.bytes_held == 2 * (len(BIG) + len(gzip.compress(BIG, 6, mtime=0)))


def test_etag_matches_each_form_by_weak_comparison() -> None:
    page = rendered(BIG)
    zipped = PageCache().get("p", HTML, object(), Renders(BIG), coding="gzip")
    assert etag_matches(zipped.etag, zipped.etag)
    assert etag_matches(f'"x", W/{zipped.etag}', zipped.etag)
    assert not etag_matches(page.etag, zipped.etag)
    assert not etag_matches(zipped.etag, page.etag)
    assert etag_matches("*", zipped.etag)
