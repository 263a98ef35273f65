"""Reading an upstream's project page (pure functions: no server)."""

from __future__ import annotations

import json

import pytest

from pywharf_core.upstream import UpstreamPage, _carry_derived
from pywharf_core.upstream_page import (
    PageUnreadable,
    html_page,
    parse_page,
    served_file,
    upstream_sha256,
)

PAGE_URL = "https://index.example/simple/demo/"
SHA = "a" * 64
META_SHA = "b" * 64

HTML = f"""<!DOCTYPE html>
<html><head>
<meta name="pypi:repository-version" content="1.3">
<meta name="pypi:project-status" content="deprecated">
<meta name="pypi:project-status-reason" content="use demo2 &amp; friends">
<title>Links for demo</title></head>
<body><h1>Links for demo</h1>
<a href="../../files/demo-1.0-py3-none-any.whl#sha256={SHA}"
   data-requires-python="&gt;=3.8"
   data-core-metadata="sha256={META_SHA}">demo-1.0-py3-none-any.whl</a><br>
<a href="https://cdn.example/demo-1.0.tar.gz#md5=abc" data-yanked="">demo-1.0.tar.gz</a>
<a href="demo-0.9-py3-none-any.whl" data-yanked="broken &lt;build&gt;"
   data-dist-info-metadata="true"
   data-provenance="demo-0.9-py3-none-any.whl.provenance">demo-0.9-py3-none-any.whl</a>
<a href="/files/demo%5Fx-1.0-py3-none-any.whl">odd text</a>
<a>no href</a>
<a href="not-a-distribution.txt">readme</a>
</body></html>
""".encode()


def test_html_page_reads_every_attribute_the_peps_define() -> None:
    data = html_page("demo", HTML, PAGE_URL)
    files = {f["filename"]: f for f in data["files"]}
    assert data["meta"] == {"api-version": "1.3"}
    assert data["project-status"] == {"status": "deprecated", "reason": "use demo2 & friends"}
    wheel = files["demo-1.0-py3-none-any.whl"]
    assert wheel["url"] == "https://index.example/files/demo-1.0-py3-none-any.whl"
    assert wheel["hashes"] == {"sha256": SHA}
    assert wheel["requires-python"] == ">=3.8"  # entities unescaped
    assert wheel["core-metadata"] == {"sha256": META_SHA}
    assert wheel["yanked"] is False
    sdist = files["demo-1.0.tar.gz"]
    assert sdist["url"] == "https://cdn.example/demo-1.0.tar.gz"
    assert sdist["hashes"] == {"md5": "abc"} and sdist["yanked"] is True
    old = files["demo-0.9-py3-none-any.whl"]
    assert old["yanked"] == "broken <build>"
    assert old["core-metadata"] is True  # PEP 658's older attribute, no digest
    assert old["provenance"] == PAGE_URL + "demo-0.9-py3-none-any.whl.provenance"
    assert "demo_x-1.0-py3-none-any.whl" in files  # the filename is the URL's, unquoted


def test_a_base_tag_moves_relative_links() -> None:
    body = b'<base href="https://mirror.example/pkgs/"><a href="x-1.0.tar.gz">x</a>'
    (item,) = html_page("x", body, PAGE_URL)["files"]
    assert item["url"] == "https://mirror.example/pkgs/x-1.0.tar.gz"


def test_parse_page_drops_what_is_no_distribution_and_keeps_json_keys() -> None:
    data = parse_page("demo", HTML, "text/html", PAGE_URL)
    assert sorted(f["filename"] for f in data["files"]) == [
        "demo-0.9-py3-none-any.whl",
        "demo-1.0-py3-none-any.whl",
        "demo-1.0.tar.gz",
        "demo_x-1.0-py3-none-any.whl",
    ]
    body = json.dumps(
        {
            "meta": {"api-version": "1.4"},
            "name": "demo",
            "x-extra": 1,
            "files": [
                {
                    "filename": "demo-1.0.tar.gz",
                    "url": "f/demo-1.0.tar.gz",
                    "hashes": {"sha256": SHA},
                },
                {"filename": "../evil", "url": "x"},
                "not a dict",
                {"filename": "demo-2.0.tar.gz", "url": 5},
                {"filename": "demo-3.0.tar.gz", "url": "y", "hashes": {"sha256": "<b>"}},
            ],
        }
    ).encode()
    data = parse_page("demo", body, "application/vnd.pypi.simple.v1+json", PAGE_URL)
    assert data["x-extra"] == 1
    assert [f["filename"] for f in data["files"]] == ["demo-1.0.tar.gz", "demo-3.0.tar.gz"]
    assert data["files"][0]["url"] == PAGE_URL + "f/demo-1.0.tar.gz"
    assert data["files"][1]["hashes"] == {}  # a value that is no digest is not kept


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"files": 3}'])
def test_a_json_page_that_is_no_page_is_unreadable(body: bytes) -> None:
    with pytest.raises(PageUnreadable):
        parse_page("demo", body, "application/vnd.pypi.simple.v1+json", PAGE_URL)


@pytest.mark.parametrize(
    "body",
    [b"", b"<a href", b"\xff\xfe<a href='x-1.0.tar.gz'>", b"<![CDATA[", b"<a href='&#xffffffff;'>"],
)
def test_broken_html_never_raises_anything_else(body: bytes) -> None:
    try:
        data = html_page("x", body, PAGE_URL)
    except PageUnreadable:
        return
    assert isinstance(data["files"], list)


def test_served_file_points_here_and_offers_derived_metadata() -> None:
    item = {
        "filename": "demo-1.0-py3-none-any.whl",
        "url": "https://up/x",
        "hashes": {"sha256": SHA},
    }
    assert served_file(item) == {
        "filename": "demo-1.0-py3-none-any.whl",
        "url": "demo-1.0-py3-none-any.whl",
        "hashes": {"sha256": SHA},
        "core-metadata": False,
        "yanked": False,
    }
    assert served_file(item, META_SHA)["core-metadata"] == {"sha256": META_SHA}
    upstream_says = {**item, "dist-info-metadata": {"sha256": SHA}}
    assert served_file(upstream_says, META_SHA)["core-metadata"] == {"sha256": SHA}
    assert upstream_sha256(upstream_says, metadata=True) == SHA
    assert upstream_sha256(item, metadata=True) is None


def _page(files: list[dict], derived: dict[str, str]) -> UpstreamPage:
    return UpstreamPage("demo", {"files": files}, None, None, 0.0, derived=derived)


def test_derived_metadata_survives_revalidation_only_for_the_same_bytes() -> None:
    same = {"filename": "demo-1.0-py3-none-any.whl", "url": "u", "hashes": {"sha256": SHA}}
    changed = {"filename": "demo-2.0-py3-none-any.whl", "url": "u", "hashes": {"sha256": SHA}}
    earlier = _page(
        [same, {**changed, "hashes": {"sha256": "c" * 64}}],
        {same["filename"]: META_SHA, changed["filename"]: META_SHA, "gone.whl": META_SHA},
    )
    fresh = _page([same, changed], {})
    assert _carry_derived(fresh, earlier).derived == {same["filename"]: META_SHA}
    now_declared = _page([{**same, "core-metadata": {"sha256": SHA}}], {})
    assert _carry_derived(now_declared, earlier).derived == {}


def test_a_page_round_trips_through_its_file() -> None:
    page = _page([{"filename": "a-1.0.tar.gz"}], {"a-1.0.tar.gz": META_SHA})
    again = UpstreamPage.from_json(page.to_json())
    assert again == page and again.by_filename == {"a-1.0.tar.gz": {"filename": "a-1.0.tar.gz"}}
    old_file = json.loads(page.to_json())
    del old_file["derived"]  # written before derived metadata existed
    assert UpstreamPage.from_json(json.dumps(old_file)).derived == {}
