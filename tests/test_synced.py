"""The synced remote index in SQLite (``pywharf_core.synced``): loads, diffs, what a
killed load leaves, and an unreadable database."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from pywharf_core.records import FileRecord
from pywharf_core.synced import SyncedIndex


def record(project: str, version: str, **changes: object) -> FileRecord:
    filename = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    plain = FileRecord(
        project=project,
        filename=filename,
        version=version,
        sha256=hashlib.sha256(f"{project} {version}".encode()).hexdigest(),
        size=10,
        upload_time=1.5,
        backend_ref=f"{project}/{filename}",
    )
    return plain.with_changes(**changes)


def corpus(projects: int, versions: int = 2) -> list[FileRecord]:
    return [record(f"p{i:04d}", f"1.{v}") for i in range(projects) for v in range(versions)]


def test_a_first_load_holds_every_record_as_it_was(tmp_path: Path) -> None:
    awkward = [
        record("a", "1.0", sha256="A" * 64),  # upper case: kept as text, read back as it was
        record("a", "2.0", sha256="not-hex", core_metadata_sha256="b" * 64),
        record("b", "1.0", backend_ref="b_1.0.whl", yanked=""),  # no marker for this one
        record("b", "2.0", yanked='broken "build" é', requires_python=">=3.10"),
        record("c", "1.0", filename="c-1.0-py3-none-any.whl", backend_ref="c-1.0-py3-none-any.whl"),
    ]
    store = SyncedIndex(tmp_path / "index.sqlite3")
    assert not store.loaded and not store.holds(None)
    prepared = store.prepare("v1", awkward)
    assert prepared.everything and prepared.names_changed
    prepared.commit()
    assert store.holds("v1") and not store.holds("v2") and store.file_count == 5
    assert store.names() == ["a", "b", "c"]
    held = [r for name in store.names() for r in store.records_of(name)]
    assert sorted(held, key=lambda r: r.filename) == sorted(awkward, key=lambda r: r.filename)
    assert store.record("b", awkward[3].filename) == awkward[3]
    assert store.files_in("a") == 2 and store.files_in("z") == 0
    assert [(name, len(records)) for name, records in store.scan()] == [
        ("a", 2),
        ("b", 2),
        ("c", 1),
    ]
    store.close()
    reopened = SyncedIndex(tmp_path / "index.sqlite3")  # a restart reads nothing else
    assert reopened.holds("v1") and reopened.file_count == 5
    assert reopened.records_of("b") == store.records_of("b")


def test_a_new_version_writes_only_what_changed(tmp_path: Path) -> None:
    store = SyncedIndex(tmp_path / "index.sqlite3")
    first = corpus(50)
    store.prepare("v1", first).commit()
    second = [r for r in first if r.project != "p0003"]  # a project gone
    second[0] = second[0].with_changes(yanked="bad")  # p0000 yanked
    second = [r for r in second if r.filename != second[5].filename]  # p0002 lost a file
    second += [record("p0010", "9.0"), record("new", "1.0")]  # one grew, one is new
    second.append(second[20].with_changes(size=99))  # given twice: the last one counts
    prepared = store.prepare("v2", second)
    assert prepared.changed == {"p0000", "p0002", "p0003", "p0010", "p0011", "new"}
    assert prepared.names_changed and not prepared.everything
    prepared.commit()
    assert store.holds("v2") and store.file_count == 100 - 2 - 1 + 2
    assert "p0003" not in store.names() and "new" in store.names()
    assert store.records_of("p0000")[0].yanked == "bad"
    assert {r.version: r.size for r in store.records_of("p0011")} == {"1.0": 10, "1.1": 99}
    # The same records again: nothing changes, nothing is written.
    again = store.prepare("v3", second)
    assert again.changed == set() and not again.names_changed
    again.commit()
    assert store.holds("v3")


def test_a_rolled_back_load_leaves_the_old_version(tmp_path: Path) -> None:
    store = SyncedIndex(tmp_path / "index.sqlite3")
    store.prepare("v1", corpus(3)).commit()
    store.prepare("v2", corpus(5)).rollback()
    assert store.holds("v1") and store.names() == ["p0000", "p0001", "p0002"]
    store.prepare(None, []).commit()  # the remote has no index any more
    assert store.holds(None) and store.names() == [] and store.file_count == 0


KILLED_LOAD = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_synced import corpus
from pywharf_core import synced

store = synced.SyncedIndex(Path({path!r}))
if {first!r}:
    store.prepare("v1", corpus(2)).commit()

    class Dying:  # the writer connection, killed halfway through the new version's rows
        def __init__(self, real):
            self.real = real
        def __getattr__(self, name):
            return getattr(self.real, name)
        def executemany(self, sql, rows):
            if sql == synced.INSERT:
                rows = list(rows)
                self.real.executemany(sql, rows[: len(rows) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return self.real.executemany(sql, rows)

    store._writer = Dying(store._write())
else:
    real_encode, count = synced.encode, [0]

    def encode(record):  # killed halfway through a first load
        count[0] += 1
        if count[0] == 2000:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_encode(record)

    synced.encode = encode
store.prepare("v2", corpus(3000)).commit()
"""


def run_killed(path: Path, *, first_done: bool) -> None:
    script = KILLED_LOAD.format(tests=str(Path(__file__).parent), path=str(path), first=first_done)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


def test_a_load_killed_midway_leaves_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    run_killed(path, first_done=True)
    store = SyncedIndex(path)
    assert store.holds("v1") and store.file_count == 4
    assert store.names() == ["p0000", "p0001"]
    store.prepare("v2", corpus(3000)).commit()  # and it loads as if nothing happened
    assert store.file_count == 6000 and len(store.records_of("p2999")) == 2


def test_a_first_load_killed_midway_is_started_again(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    run_killed(path, first_done=False)
    assert list(tmp_path.glob("index.sqlite3.*.building"))  # what the dead load wrote
    store = SyncedIndex(path)
    assert not store.loaded and store.names() == []
    assert not list(tmp_path.glob("*.building"))
    store.prepare("v2", corpus(10)).commit()
    assert store.holds("v2") and store.file_count == 20


def test_a_file_that_is_no_database_is_replaced_by_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    path.write_bytes(b"this is not a database" * 1000)
    store = SyncedIndex(path)
    assert not store.loaded and store.names() == []
    store.prepare("v1", corpus(2)).commit()
    assert store.holds("v1")
    store.close()
    # Another layout (a later pywharf's, or an older one's) is not read either.
    import sqlite3

    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    assert not SyncedIndex(path).loaded


def test_a_busy_database_is_not_taken_for_a_broken_one(tmp_path: Path) -> None:
    import sqlite3

    from pywharf_core.synced import is_broken

    path = tmp_path / "index.sqlite3"
    SyncedIndex(path).prepare("v1", corpus(2)).commit()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiter = sqlite3.connect(path, timeout=0)
    try:
        waiter.execute("INSERT INTO meta (key, value) VALUES ('x', 1)")
    except sqlite3.DatabaseError as exc:
        busy = exc
    else:
        raise AssertionError("the exclusive lock did not hold")
    finally:
        waiter.close()
        holder.close()
    assert not is_broken(busy)
    path.write_bytes(b"\0" * 8192)
    try:
        sqlite3.connect(path).execute("SELECT * FROM meta")
    except sqlite3.DatabaseError as exc:
        assert is_broken(exc)
    else:
        raise AssertionError("zeros read as a database")
