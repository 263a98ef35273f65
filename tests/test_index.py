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
    # A snapshot's names are of one moment; its records are read when asked: keep them.
    alpha, beta = index.snapshot.projects["alpha"], index.snapshot.projects["beta"]
    index.set_remote([record("alpha", "1.0"), record("beta", "1.0"), record("beta", "2.0")])
    after = index.snapshot
    assert after.projects["alpha"] is alpha  # unchanged: same tuple
    assert after.projects["beta"] is not beta
    assert [r.version for r in after.projects["beta"]] == ["1.0", "2.0"]
    alpha = after.projects["alpha"]
    index.set_remote([record("alpha", "1.0", yanked="bad"), record("beta", "1.0")])
    assert index.snapshot.projects["alpha"] is not alpha  # a yank is a change
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


def test_a_cached_project_keeps_its_tuple_until_evicted(tmp_path: Path) -> None:
    index = RepoIndex(tmp_path / "overlay.jsonl", max_cached_records=4)
    index.set_remote([record(p, v) for p in ("a", "b", "c") for v in ("1.0", "2.0")])
    a = index.snapshot.files_of("a")
    assert a is not None and index.snapshot.files_of("a") is a  # cached: the same tuple
    assert index.snapshot.files_of("b") is not None and index.snapshot.files_of("a") is a
    index.snapshot.files_of("c")  # 6 records > 4: the least recently used (b) goes
    assert index.snapshot.files_of("a") is a
    index.snapshot.files_of("b")  # back, and now a is the oldest
    index.snapshot.files_of("c")
    again = index.snapshot.files_of("a")
    assert again == a and again is not a  # read again: a new tuple (one re-render)


def test_the_project_list_changes_only_with_the_names(tmp_path: Path) -> None:
    index = RepoIndex(tmp_path / "overlay.jsonl")
    index.set_remote([record("alpha", "1.0")], version="v1")
    names = index.snapshot.projects
    index.add(record("alpha", "2.0"))  # a file more, the same names: the same list
    assert index.snapshot.projects is names and len(index.snapshot.files_of("alpha") or ()) == 2
    index.add(record("beta", "1.0"))
    assert index.snapshot.projects is not names and list(index.snapshot.projects) == [
        "alpha",
        "beta",
    ]
    assert "beta" in index.snapshot.projects and "gamma" not in index.snapshot.projects
    assert index.snapshot.file_count == 3
    assert [(name, len(files)) for name, files in index.snapshot.projects.items()] == [
        ("alpha", 2),
        ("beta", 1),
    ]


def test_a_deleted_last_file_removes_its_project(tmp_path: Path) -> None:
    from pywharf_core.manage import Deletion

    index = RepoIndex(tmp_path / "overlay.jsonl")
    only, other = record("alone", "1.0"), record("other", "1.0")
    index.set_remote([only, other], version="v1")
    assert index.snapshot.file_count == 2
    index.set_deleted({only.filename: Deletion("alone", only.filename, only.sha256, 5.0)})
    assert list(index.snapshot.projects) == ["other"]
    assert index.snapshot.files_of("alone") is None and index.snapshot.file_count == 1
    # A restart: the database holds v1, nothing is loaded, the deletion still applies.
    again = RepoIndex(tmp_path / "overlay.jsonl")
    assert again.holds("v1") and not again.holds("v2")
    again.set_deleted({only.filename: Deletion("alone", only.filename, only.sha256, 5.0)})
    again.set_remote(None, version="v1", changes=[record("other", "2.0")])
    assert list(again.snapshot.projects) == ["other"] and again.snapshot.file_count == 2


def test_an_unreadable_database_is_loaded_again_by_the_reader(tmp_path: Path) -> None:
    remote = [record(f"p{i:03d}", "1.0") for i in range(300)]
    reloads = []

    def reload() -> None:
        reloads.append(1)
        index.set_remote(remote, version="v1")

    index = RepoIndex(tmp_path / "overlay.jsonl", on_lost=reload)
    index.set_remote(remote, version="v1")
    database = tmp_path / "index.sqlite3"
    index._store.close()  # its pages are read from the file from now on
    with database.open("r+b") as handle:  # every page after the first: garbage
        handle.seek(4096)
        handle.write(b"\xff" * (database.stat().st_size - 4096))
    assert [r.filename for r in index.snapshot.files_of("p123") or ()] == [remote[123].filename]
    assert reloads == [1] and index.holds("v1")


def test_readers_never_see_half_of_a_change(tmp_path: Path) -> None:
    """The index and the change log of one sync are seen together: a file that moves
    from the change log into the index is never missing."""
    import threading

    index = RepoIndex(tmp_path / "overlay.jsonl", max_cached_records=1)
    base, moving = record("x", "1.0"), record("x", "2.0")
    index.set_remote([base], version="v1", changes=[moving])
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(len(index.snapshot.files_of("x") or ()))
            index.snapshot.files_of("y")  # evicts x (one record cached at most)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for round_ in range(150):
        if round_ % 2:
            index.set_remote([base], version="v1", changes=[moving])
        else:
            index.set_remote([base, moving], version="v2", changes=[])
    stop.set()
    for reader in readers:
        reader.join()
    assert seen == {2}
