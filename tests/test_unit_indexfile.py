"""``pywharf_core.indexfile``: the remote index file, its forward compatibility and the
formats of pywharf 0.2 and before (the awkward-values round trip is in test_index.py)."""

from __future__ import annotations

import pytest

from pywharf_core.errors import IndexFileError
from pywharf_core.indexfile import FORMAT_VERSION, IndexFile, dump_index, load_index
from pywharf_core.records import FileRecord


def record(filename: str, **changes: object) -> FileRecord:
    project, version = filename.split("-")[:2]
    base = FileRecord(project, filename, version, "a" * 64, 10, 1_700_000_000.5)
    return base.with_changes(**changes)


def test_a_dump_is_sorted_versioned_and_loads_back() -> None:
    records = (
        record("zeta-1.0.tar.gz", yanked="broken"),
        record("alpha-2.0-py3-none-any.whl", requires_python=">=3.9"),
        record("alpha-1.0.zip", core_metadata_sha256="c" * 64, backend_ref="x/y"),
    )
    data = dump_index(IndexFile(1_700_000_001.25, records))
    text = data.decode()
    assert text.startswith(f"format_version = {FORMAT_VERSION}")
    positions = [text.index(r.filename) for r in sorted(records, key=lambda r: r.filename)]
    assert positions == sorted(positions)
    loaded = load_index(data)
    assert loaded.mtime == 1_700_000_001.25
    assert set(loaded.records) == set(records)
    assert dump_index(loaded) == data


def test_an_empty_index_round_trips() -> None:
    loaded = load_index(dump_index(IndexFile(0.0, ())))
    assert loaded == IndexFile(0.0, ())


def test_newer_writers_stay_readable() -> None:
    data = b"""
format_version = 1
mtime = 5
written_by = "pywharf 9"

[[files]]
project = "alpha"
filename = "alpha-1.0.tar.gz"
version = "1.0"
sha256 = "abc"
size = 3
yanked = true
signature = "a key this reader does not know"
"""
    loaded = load_index(data)
    assert loaded.mtime == 5.0
    (only,) = loaded.records
    assert (only.filename, only.size, only.yanked, only.upload_time) == (
        "alpha-1.0.tar.gz",
        3,
        "",  # yanked without a reason
        0.0,  # upload_time missing
    )


def test_a_newer_format_version_is_refused_by_name() -> None:
    with pytest.raises(IndexFileError, match="format version 2 is newer"):
        load_index(b"format_version = 2\nmtime = 1\n")


def test_pywharf_0_2_pkgs_format_loads() -> None:
    data = b"""mtime = 1600000000

[[pkgs]]
type = "github"
distrib = "foo-bar"
package = "foo_bar-1.0-py3-none-any"
ext = "whl"
sha256 = "aaa"
url = "https://github.com/o/r/releases/download/foo-bar-1.0/foo_bar-1.0-py3-none-any.whl"

[pkgs.meta]
name = "foo-bar"
requires_python = ">=3.6"

[[pkgs]]
type = "file_system"
distrib = "foo-bar"
package = "Foo_Bar-1.1"
ext = ".tar.gz"
sha256 = "bbb"
"""
    loaded = load_index(data)
    assert loaded.mtime == 1_600_000_000.0
    wheel, sdist = loaded.records
    assert (wheel.project, wheel.filename, wheel.version, wheel.sha256) == (
        "foo-bar",
        "foo_bar-1.0-py3-none-any.whl",
        "1.0",
        "aaa",
    )
    assert wheel.requires_python == ">=3.6"
    assert wheel.backend_ref.endswith("/foo_bar-1.0-py3-none-any.whl")
    assert (sdist.filename, sdist.project, sdist.requires_python, sdist.backend_ref) == (
        "Foo_Bar-1.1.tar.gz",
        "foo-bar",
        None,
        "",
    )
    for old in loaded.records:  # 0.2 kept neither: zero until update_index rewrites the file
        assert (old.size, old.upload_time, old.yanked) == (0, 0.0, None)


def test_the_per_project_arrays_before_0_2_load() -> None:
    data = b"""
[[foo-bar]]
distrib = "foo-bar"
package = "foo_bar-1.0-py3-none-any"
ext = ".whl"
sha256 = "aaa"
meta = {}

[[baz]]
distrib = "baz"
package = "baz-2.0"
ext = ".zip"
sha256 = "bbb"
"""
    loaded = load_index(data)
    assert loaded.mtime == 0.0
    assert sorted((r.project, r.filename, r.version, r.sha256) for r in loaded.records) == [
        ("baz", "baz-2.0.zip", "2.0", "bbb"),
        ("foo-bar", "foo_bar-1.0-py3-none-any.whl", "1.0", "aaa"),
    ]


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\xff\xfe", "invalid index file"),
        (b'format_version = 1\n[[files]]\nproject = "x', "invalid index file"),
        (b'format_version = "one"', "invalid index file"),
        (b'format_version = 1\nmtime = "now"', "invalid index file"),
        (b'[[files]]\nproject = "a"\nfilename = "a-1.0.zip"\nversion = "1.0"', "sha256"),
        (
            b'[[files]]\nproject = "a"\nfilename = "a-1.0.zip"\nversion = "1.0"\nsha256 = "x"\n'
            b'size = "big"',
            "invalid index file",
        ),
        (b'[[pkgs]]\npackage = "foo-1.0"\next = "exe"\nsha256 = "x"', "only wheels"),
        (b'[[pkgs]]\npackage = "foo-1.0"\next = "zip"', "sha256"),
        (b"pkgs = [1, 2]", "invalid index file"),
    ],
)
def test_broken_index_files_are_index_file_errors(data: bytes, words: str) -> None:
    with pytest.raises(IndexFileError, match=words):
        load_index(data)


@pytest.mark.parametrize(
    "data",
    [
        b"format_version = 1\nfiles = [1]",
        b'files = "abc"',
        b'[[pkgs]]\npackage = "foo-1.0"\next = "zip"\nsha256 = "x"\nmeta = "oops"',
    ],
)
def test_entries_that_are_not_tables_are_index_file_errors(data: bytes) -> None:
    with pytest.raises(IndexFileError):
        load_index(data)
