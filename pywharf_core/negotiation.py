"""PEP 691 content negotiation: which form of a simple page a client gets."""

from __future__ import annotations

import functools

from .errors import NotAcceptable

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"

#: What a client may name (in Accept or ?format=) → the concrete form served.
_NAMED = {
    JSON_V1: JSON_V1,
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    HTML_V1: HTML_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
    TEXT_HTML: TEXT_HTML,
}
#: Wildcards fall back to the oldest, most widely understood form.
_WILDCARDS = {"*/*": TEXT_HTML, "text/*": TEXT_HTML}
#: Among equal q-values the server prefers, in this order:
_PREFERENCE = (JSON_V1, HTML_V1, TEXT_HTML)


@functools.lru_cache(maxsize=256)  # clients send a few Accept values, again and again
def negotiate(accept: str | None, format_override: str | None = None) -> str:
    """The media type to answer with; raises ``NotAcceptable``."""
    if format_override:
        # An unencoded "+" in a query string arrives as a space; media types have none.
        chosen = _NAMED.get(format_override.strip().lower().replace(" ", "+"))
        if chosen is None:
            raise NotAcceptable()
        return chosen
    if not accept or not accept.strip():
        return TEXT_HTML
    best: tuple[float, int, int] | None = None  # (q, explicit, preference) — higher wins
    chosen_type = None
    for item in accept.split(","):
        media, q = parse_weighted(item)
        if media is None or q <= 0:
            continue
        explicit = media in _NAMED
        served = _NAMED.get(media) or _WILDCARDS.get(media)
        if served is None:
            continue
        rank = (q, int(explicit), len(_PREFERENCE) - _PREFERENCE.index(served))
        if best is None or rank > best:
            best, chosen_type = rank, served
    if chosen_type is None:
        raise NotAcceptable()
    return chosen_type


def parse_weighted(item: str) -> tuple[str | None, float]:
    """One item of ``Accept`` or ``Accept-Encoding`` (``value;param=…;q=…``): the value,
    lowercased, and its q (1 unless given); ``(None, 0.0)`` when the value is empty or
    q is no number."""
    parts = [p.strip() for p in item.split(";")]
    media = parts[0].lower()
    if not media:
        return None, 0.0
    q = 1.0
    for param in parts[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return None, 0.0
    return media, q


def content_type_header(media_type: str) -> str:
    return media_type if media_type == JSON_V1 else f"{media_type}; charset=utf-8"
