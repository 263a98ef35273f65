"""The in-memory index: a sync keeps unchanged projects' tuples, so their pages stay cached."""

from __future__ import annotations

from pathlib import Path

from pywharf_core.index import RepoIndex
from pywharf_core.records import FileRecord


def record(project: str, version: str, yanked: str | None = None) -> FileRecord:
    return FileRecord(
        project=project,
        filename=f"{project}-{version}.tar.gz",
        version=version,
        sha256="0" * 64,
        size=1,
        upload_time=1.0,
        yanked=yanked,
    )


def test_set_remote_keeps_unchanged_projects(tmp_path: Path) -> None:
    index = RepoIndex(tmp_path / "overlay.jsonl")
    index.set_remote([record("alpha", "1.0"), record("beta", "1.0")])
    before = index.snapshot
    index.set_remote([record("alpha", "1.0"), record("beta", "1.0"), record("beta", "2.0")])
    after = index.snapshot
    assert after.projects["alpha"] is before.projects["alpha"]  # unchanged: same tuple
    assert after.projects["beta"] is not before.projects["beta"]
    assert [r.version for r in after.projects["beta"]] == ["1.0", "2.0"]
    index.set_remote([record("alpha", "1.0", yanked="bad"), record("beta", "1.0")])
    assert index.snapshot.projects["alpha"] is not after.projects["alpha"]  # a yank is a change
    assert list(index.snapshot.projects) == ["alpha", "beta"]


def test_index_file_round_trips_awkward_values_and_stays_standard_toml() -> None:
    import sys

    from pywharf_core.errors import IndexFileError
    from pywharf_core.indexfile import IndexFile, dump_index, load_index

    records = (
        FileRecord(
            project="q-uote",
            filename="q_uote-1.0-py3-none-any.whl",
            version="1.0",
            sha256="a" * 64,
            size=2**40,
            upload_time=1795249319.6780715,
            requires_python='>=3.10,!="3.11"',
            yanked='broken "build"\nsee #12 \\ é',
            core_metadata_sha256="b" * 64,
            backend_ref="sub/dir/q_uote-1.0-py3-none-any.whl",
        ),
        record("plain", "2.0"),  # no optional fields: none may be written as a string
        record("yanked-empty", "1.0", yanked=""),
    )
    data = dump_index(IndexFile(1795249335.927198, records))
    assert b"null" not in data
    loaded = load_index(data)
    assert loaded.mtime == 1795249335.927198
    assert sorted(loaded.records, key=lambda r: r.filename) == sorted(
        records, key=lambda r: r.filename
    )
    if sys.version_info >= (3, 11):  # any TOML reader can read what pywharf writes
        import tomllib

        parsed = {f["project"]: f for f in tomllib.loads(data.decode())["files"]}
        assert parsed["q-uote"]["yanked"] == 'broken "build"\nsee #12 \\ é'
        assert parsed["plain"]["yanked"] is False
    try:
        load_index(b'format_version = 1\n[[files]]\nproject = "x\n')
    except IndexFileError as exc:
        assert "invalid index file" in str(exc)
    else:
        raise AssertionError("a broken index file was accepted")
