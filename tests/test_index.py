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


def test_a_deletion_hides_older_records_only_and_leaves_the_overlay(tmp_path: Path) -> None:
    from pywharf_core.manage import Deletion, dump_deletions, parse_deletions

    index = RepoIndex(tmp_path / "overlay.jsonl")
    old = record("alpha", "1.0")
    index.add(old)
    index.set_remote([old, record("alpha", "2.0")])
    gone = Deletion("alpha", old.filename, old.sha256, deleted_at=5.0)
    assert parse_deletions(dump_deletions({old.filename: gone})) == {old.filename: gone}
    assert parse_deletions(b"not json") == {} and parse_deletions(b'{"x": 1}') == {}
    index.set_deleted({old.filename: gone})
    assert [r.version for r in index.snapshot.projects["alpha"]] == ["2.0"]
    assert old.filename not in (tmp_path / "overlay.jsonl").read_text()
    # A later upload of the name is another file: shown.
    index.add(old.with_changes(upload_time=6.0))
    assert [r.version for r in index.snapshot.projects["alpha"]] == ["1.0", "2.0"]


def test_a_complete_remote_view_drops_overlay_entries_it_lacks(tmp_path: Path) -> None:
    import time

    index = RepoIndex(tmp_path / "overlay.jsonl")
    removed, fresh = record("alpha", "1.0"), record("alpha", "2.0")
    index.add(removed)
    started = time.monotonic()
    index.add(fresh)  # added after the view was read: kept
    index.set_remote([], complete_since=None)
    assert len(index.snapshot.projects["alpha"]) == 2  # an incomplete view drops nothing
    index.set_remote([], complete_since=started)
    assert [r.version for r in index.snapshot.projects["alpha"]] == ["2.0"]
    assert RepoIndex(tmp_path / "overlay.jsonl").snapshot.file_count == 1
