"""``pywharf_core.codings``: Accept-Encoding negotiation (RFC 9110 §12.5.3) and the
compressors, by function call."""

from __future__ import annotations

import gzip

import pytest

from pywharf_core import codings
from pywharf_core.codings import IDENTITY, OFFERED, choose_coding, coded_etag, compress

BOTH = ("zstd", "gzip")


def test_zstd_and_gzip_are_offered_zstd_first() -> None:
    # backports.zstd is a dependency before Python 3.14, the standard library's after.
    assert OFFERED == BOTH


@pytest.mark.parametrize(
    "accept_encoding, chosen",
    [
        (None, IDENTITY),  # no preference stated: what every client can read
        ("", IDENTITY),  # "does not want any content coding"
        ("   ", IDENTITY),
        ("gzip, deflate", "gzip"),  # pip
        ("gzip, deflate, zstd", "zstd"),  # uv: equal q, the server's preference
        ("gzip, deflate, br, zstd", "zstd"),  # browsers, curl --compressed
        ("deflate", IDENTITY),
        ("br", IDENTITY),
        ("GZIP", "gzip"),  # codings are case-insensitive
        ("x-gzip", "gzip"),  # RFC 9110 §8.4.1.3
        ("zstd;q=0.3, gzip;q=0.8", "gzip"),  # the client's q first
        ("gzip;q=0.8, zstd", "zstd"),
        (" gzip ; q=0.5 , zstd ; Q=0.4 ", "gzip"),
        ("identity", IDENTITY),
        ("gzip;q=0.5", "gzip"),  # identity unlisted: acceptable, but least preferred
        ("gzip;q=0.5, identity", IDENTITY),  # identity listed with a higher q
        ("gzip, identity", "gzip"),  # tied: compressed first
        ("identity;q=0.5, gzip;q=0.5", "gzip"),
        ("*", "zstd"),  # anything: the server's first
        ("*;q=0.5, gzip", "gzip"),  # listed beats starred
        ("gzip;q=0, *", "zstd"),  # a refusal is kept against the star
        ("zstd;q=0, *", "gzip"),
        ("zstd;q=0, gzip;q=0", IDENTITY),
        ("gzip;q=0", IDENTITY),
        ("identity;q=0", IDENTITY),  # nothing acceptable: still answered, uncompressed
        ("*;q=0", IDENTITY),
        ("identity;q=0, *;q=0", IDENTITY),
        ("gzip, gzip;q=0", IDENTITY),  # listed twice: the lower q
        ("gzip;q=0.001", "gzip"),
        ("gzip;q=1.000", "gzip"),
    ],
)
def test_choose_coding(accept_encoding: str | None, chosen: str) -> None:
    assert choose_coding(accept_encoding, BOTH) == chosen


@pytest.mark.parametrize(
    "accept_encoding",
    [
        "gzip;q=x",
        "gzip;q=",
        "gzip;q=nan",
        "gzip;q=inf",
        "gzip;q=1e999",
        "gzip;q=-1",
        "gzip;q=2",
        ";;;,,,",
        ",",
        ";q=1",
        "\x00",
        "é",
        "gzip" * 1000,
    ],
)
def test_items_that_do_not_parse_are_ignored(accept_encoding: str) -> None:
    assert choose_coding(accept_encoding, BOTH) == IDENTITY
    assert choose_coding(f"{accept_encoding}, zstd;q=0.1", BOTH) == "zstd"


def test_gzip_alone_where_zstd_is_missing() -> None:
    assert choose_coding("gzip, deflate, zstd", ("gzip",)) == "gzip"
    assert choose_coding("zstd", ("gzip",)) == IDENTITY
    assert choose_coding("*", ("gzip",)) == "gzip"


def test_compressed_bodies_decompress_to_the_body() -> None:
    body = b"".join(b'<a href="p-%d/">p-%d</a>\n' % (i, i) for i in range(500))
    zipped = compress(body, "gzip")
    assert gzip.decompress(zipped) == body and len(zipped) < len(body) / 5
    assert compress(body, "gzip") == zipped  # no timestamp: every replica's bytes agree
    from backports import zstd

    squeezed = compress(body, "zstd")
    assert zstd.decompress(squeezed) == body and len(squeezed) < len(zipped)


def test_each_coding_has_its_own_etag() -> None:
    etag = '"' + "a" * 40 + '"'
    assert coded_etag(etag, IDENTITY) == etag
    assert coded_etag(etag, "gzip") == '"' + "a" * 40 + '-gzip"'
    assert coded_etag(etag, "zstd") == '"' + "a" * 40 + '-zstd"'
    assert len({coded_etag(etag, c) for c in (IDENTITY, *codings.OFFERED)}) == 3
