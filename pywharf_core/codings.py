"""Content codings (RFC 9110 §8.4) for the simple pages: which one a client gets, and the
compressors. Pages are compressed once, when ``pagecache`` first needs a coding of a page,
and the compressed bytes are cached beside the page; files are never compressed.

Offered: ``zstd`` (the standard library's ``compression.zstd`` from Python 3.14, the
``backports.zstd`` package before it) and ``gzip`` (the standard library). Measured:
pip sends ``Accept-Encoding: gzip, deflate``, uv ``gzip, deflate, zstd``; neither asks for
``br``, so brotli is not offered (docs/decisions.md).
"""

from __future__ import annotations

import functools
import gzip
import sys
from collections.abc import Callable, Sequence

from .negotiation import parse_weighted

IDENTITY = "identity"

#: Pages smaller than this are sent as they are: what compression would save fits in the
#: packet the headers (~500 bytes) already take.
MIN_SIZE = 1024
#: Levels: the page is compressed once, but again after each change of its project (the
#: project list, after each new project), so no slow levels. zlib's default; zstd's
#: default, which gains 1-2% less than level 10 on these pages at a tenth of the time.
GZIP_LEVEL = 6
ZSTD_LEVEL = 3


def _gzip(body: bytes) -> bytes:
    # mtime=0: the same page gives the same bytes on every replica (its ETag is shared).
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def _zstd_compressor() -> Callable[[bytes], bytes] | None:
    try:
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd
    except ImportError:  # installed without its dependencies: gzip alone
        return None

    def compress(body: bytes) -> bytes:
        return zstd.compress(body, level=ZSTD_LEVEL)

    return compress


#: Each offered coding and its compressor, in the server's order of preference: zstd
#: compresses these pages 1.1-3x smaller than gzip, faster, and decompresses faster.
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    name: compressor
    for name, compressor in (("zstd", _zstd_compressor()), ("gzip", _gzip))
    if compressor is not None
}
OFFERED: tuple[str, ...] = tuple(COMPRESSORS)
#: RFC 9110 §8.4.1.3: a recipient should take ``x-gzip`` for ``gzip``.
_ALIASES = {"x-gzip": "gzip"}


@functools.lru_cache(maxsize=256)  # clients send a few values, again and again (3.4 µs each)
def choose_coding(accept_encoding: str | None, offered: Sequence[str] = OFFERED) -> str:
    """The coding to send, from ``offered`` (in the server's order of preference) or
    ``identity``, for an ``Accept-Encoding`` value (RFC 9110 §12.5.3).

    No header, or an empty one: ``identity``. A coding is acceptable when listed with
    q > 0, or unlisted while ``*`` has q > 0; the highest q wins and the server's order
    breaks ties, compressed before ``identity``. ``identity`` is acceptable unless refused
    (``identity;q=0``, or ``*;q=0`` without it), but it is always the answer when nothing
    else is: RFC 9110 says a server ought to answer without a coding then, rather than
    406. Items that do not parse (a bad q) are ignored; a coding listed twice takes its
    lowest q."""
    if not accept_encoding:
        return IDENTITY
    listed: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, q = _parse_item(item)
        if coding is not None:
            listed[coding] = min(q, listed.get(coding, q))
    star = listed.get("*")
    best, best_rank = IDENTITY, (0.0, 0)
    for preference, coding in enumerate(reversed(offered), start=1):
        q = listed.get(coding, star if star is not None else 0.0)
        if q > 0 and (q, preference) > best_rank:
            best, best_rank = coding, (q, preference)
    identity_q = listed.get(IDENTITY, star if star is not None else 0.0)
    # Tied with a coding, identity loses (preference 0); only listed or starred it can win.
    return IDENTITY if identity_q > best_rank[0] else best


def _parse_item(item: str) -> tuple[str | None, float]:
    coding, q = parse_weighted(item)
    if coding is None or not 0.0 <= q <= 1.0:  # also nan, inf: not a qvalue
        return None, 0.0
    return _ALIASES.get(coding, coding), q


def compress(body: bytes, coding: str) -> bytes:
    """``body`` in ``coding`` (one of ``OFFERED``)."""
    return COMPRESSORS[coding](body)


def coded_etag(etag: str, coding: str) -> str:
    """The strong ETag of ``coding``'s form of the page whose ETag is ``etag``: another
    representation, another tag (RFC 9110 §8.8.3), derived so that every replica agrees."""
    return etag if coding == IDENTITY else f'{etag[:-1]}-{coding}"'
