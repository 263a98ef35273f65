"""``pywharf_core.negotiation``: PEP 691 content negotiation, by function call."""

from __future__ import annotations

import pytest

from pywharf_core.errors import NotAcceptable
from pywharf_core.negotiation import HTML_V1, JSON_V1, TEXT_HTML, content_type_header, negotiate

LATEST_JSON = "application/vnd.pypi.simple.latest+json"
LATEST_HTML = "application/vnd.pypi.simple.latest+html"


@pytest.mark.parametrize("accept", [None, "", "   "])
def test_no_accept_header_gets_text_html(accept: str | None) -> None:
    assert negotiate(accept) == TEXT_HTML


@pytest.mark.parametrize(
    "accept, served",
    [
        (JSON_V1, JSON_V1),
        (LATEST_JSON, JSON_V1),
        (HTML_V1, HTML_V1),
        (LATEST_HTML, HTML_V1),
        ("text/html", TEXT_HTML),
        ("Application/VND.PyPI.Simple.V1+JSON", JSON_V1),  # media types are case-insensitive
        (f"  {JSON_V1}  ;  q=0.5  ", JSON_V1),
        ("*/*", TEXT_HTML),
        ("text/*", TEXT_HTML),
    ],
)
def test_named_types_and_wildcards(accept: str, served: str) -> None:
    assert negotiate(accept) == served


@pytest.mark.parametrize(
    "accept, served",
    [
        # the highest q wins, wherever it stands
        (f"text/html;q=0.2, {HTML_V1};q=0.9, {JSON_V1};q=0.5", HTML_V1),
        (f"{JSON_V1};q=0.01, */*;q=0.02", TEXT_HTML),
        # equal q: a type named outright beats a wildcard ...
        (f"*/*, {HTML_V1}", HTML_V1),
        (f"text/*;q=0.5, {LATEST_HTML};q=0.5", HTML_V1),
        # ... and among named types the server prefers JSON, then v1 HTML, then text/html
        (f"text/html, {HTML_V1}, {JSON_V1}", JSON_V1),
        (f"text/html, {LATEST_HTML}", HTML_V1),
        # q=0 means "not this"
        (f"{JSON_V1};q=0, text/html;q=0.1", TEXT_HTML),
        (f"{JSON_V1};q=0.0, */*;q=0.001", TEXT_HTML),
        # other parameters are ignored; the q parameter's name is case-insensitive
        (f"text/html;level=1;q=0.1, {JSON_V1};Q=0.2", JSON_V1),
        # an unparseable q drops that item only; empty items are skipped
        (f"{JSON_V1};q=high, , text/html;q=0.3", TEXT_HTML),
        # types we cannot serve are passed over
        (f"application/json, image/png;q=1, {HTML_V1};q=0.1", HTML_V1),
    ],
)
def test_q_values_then_explicitness_then_server_preference(accept: str, served: str) -> None:
    assert negotiate(accept) == served


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "image/png, application/xml;q=0.9",
        f"{JSON_V1};q=0",
        f"{JSON_V1};q=0, text/html;q=0, */*;q=0",
        "text/html;q=nonsense",
        ";q=1",
        ",",
    ],
)
def test_nothing_servable_is_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(accept)


@pytest.mark.parametrize(
    "query, served",
    [
        (JSON_V1, JSON_V1),
        (JSON_V1.replace("+", " "), JSON_V1),  # an unencoded "+" arrives as a space
        (f"  {LATEST_JSON.upper()} ", JSON_V1),
        (HTML_V1, HTML_V1),
        (LATEST_HTML, HTML_V1),
        ("text/html", TEXT_HTML),
    ],
)
def test_format_query_overrides_accept(query: str, served: str) -> None:
    assert negotiate("image/png", query) == served
    assert negotiate(None, query) == served


@pytest.mark.parametrize("query", ["json", "*/*", "text/*", "application/json", "html"])
def test_format_query_must_name_a_type_exactly(query: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(JSON_V1, query)


def test_an_empty_format_query_falls_back_to_accept() -> None:
    assert negotiate(JSON_V1, "") == JSON_V1
    assert negotiate(JSON_V1, None) == JSON_V1


def test_content_type_header_adds_a_charset_to_html_only() -> None:
    assert content_type_header(JSON_V1) == JSON_V1
    assert content_type_header(HTML_V1) == f"{HTML_V1}; charset=utf-8"
    assert content_type_header(TEXT_HTML) == "text/html; charset=utf-8"
