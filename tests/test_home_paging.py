"""A repository's home page for people, a page of projects at a time: at a million files
the whole list took seconds to read and megabytes to send."""

from __future__ import annotations

import re
import time
from pathlib import Path

from test_browser import BROWSER_ACCEPT, session_cookie
from wharftest.cli import pywharf
from wharftest.server import get

from pywharf_core.testing import make_wheel
from pywharf_core.web import PAGE_ROWS

PROJECTS = 2 * PAGE_ROWS + 50


def rows(text: str) -> list[str]:
    return re.findall(r'<td><a href="([^"]+)/">', text)


def test_the_home_page_shows_a_page_of_projects_at_a_time(start_server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    storage = root / "cache" / "local" / "storage"
    for i in range(PROJECTS):
        filename, data, _ = make_wheel(f"paged-{i:03d}", "1.0")
        (storage / f"paged-{i:03d}").mkdir(parents=True)
        (storage / f"paged-{i:03d}" / filename).write_bytes(data)
    done = pywharf("update_index", "file_system", "local", "--root", str(root))
    assert done.returncode == 0, done.stderr
    server = start_server(root=root)
    cookies = session_cookie(server, {"repo": "local", "access": 1, "exp": time.time() + 600})

    def home(query: str) -> tuple[int, str]:
        answer = get(server, "simple/" + query, headers={"Accept": BROWSER_ACCEPT}, cookies=cookies)
        return answer.status_code, answer.text

    status, text = home("")
    assert status == 200
    assert rows(text) == [f"paged-{i:03d}" for i in range(PAGE_ROWS)]
    assert f"{PROJECTS} projects" in text and 'href="?page=2" rel="next"' in text
    assert 'rel="prev"' not in text
    status, text = home("?page=3")
    assert rows(text) == [f"paged-{i:03d}" for i in range(2 * PAGE_ROWS, PROJECTS)]
    assert 'href="?page=2" rel="prev"' in text and 'rel="next"' not in text
    assert f"{2 * PAGE_ROWS + 1}\u2013{PROJECTS} shown" in text
    # Past the end: the last page.
    assert rows(home("?page=999")[1]) == rows(text)
    # A search pages its matches, and the links keep the search.
    status, text = home("?q=paged-1")
    assert rows(text) == [f"paged-{i:03d}" for i in range(100, 200)]
    assert "100 matching" in text and 'rel="next"' not in text
    status, text = home("?q=paged-0")
    assert rows(text) == [f"paged-{i:03d}" for i in range(100)] and 'rel="next"' not in text
    status, text = home("?q=paged&page=2")
    assert rows(text)[0] == f"paged-{PAGE_ROWS:03d}"
    assert 'href="?q=paged&amp;page=3" rel="next"' in text
    # A page that is not a number: said so, the first page shown.
    for bad in ("?page=abc", "?page=0", "?page=-1", "?page=1e3", "?page=%D9%A3", "?page=9" * 3):
        status, text = home(bad)
        assert status == 400 and "whole number from 1" in text, bad
        assert rows(text) == [f"paged-{i:03d}" for i in range(PAGE_ROWS)]
