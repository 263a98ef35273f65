"""``pywharf_core.audit`` and ``StateStore.update`` under concurrent appends: a day's log in
segments, every record kept, in order, and one process's appends taking turns."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from pywharf_backends.file_system import FileSystemBackend

from pywharf_core import audit
from pywharf_core.files import ProcessLock
from pywharf_core.state import StateStore


class FakeRepo:
    def __init__(self, folder: Path) -> None:
        self.name = "team"
        self.state = StateStore(FileSystemBackend(folder / "storage"), folder / "local")


def append(repo: FakeRepo, filename: str) -> None:
    who = audit.Actor("write_secret", "192.0.2.1")
    audit.append(repo, "upload", who, "proj", filename, "0" * 64)  # type: ignore[arg-type]


def test_a_day_fills_segments_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "SEGMENT_BYTES", 1000)
    repo = FakeRepo(tmp_path)
    for i in range(20):
        append(repo, f"f{i}")
    day = time.gmtime()
    folder = tmp_path / "storage" / ".pywharf-state" / "audit"
    names = sorted(path.name for path in folder.glob("*.jsonl"))
    first = f"{day.tm_year:04d}-{day.tm_mon:02d}-{day.tm_mday:02d}"
    assert f"{first}.jsonl" in names and f"{first}.1.jsonl" in names
    for name in names:  # a segment takes no append once it holds SEGMENT_BYTES
        assert (folder / name).stat().st_size < 1000 + 400
    lines = list(audit.read_since(repo, time.time() - 60))  # type: ignore[arg-type]
    assert [json.loads(line)["filename"] for line in lines] == [f"f{i}" for i in range(20)]
    # A new process (no memory of the last segment) appends after the full ones.
    append(FakeRepo(tmp_path), "late")
    lines = list(audit.read_since(repo, time.time() - 60))  # type: ignore[arg-type]
    assert json.loads(lines[-1])["filename"] == "late" and len(lines) == 21


def test_concurrent_appends_all_survive_without_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "SEGMENT_BYTES", 4000)
    repo = FakeRepo(tmp_path)
    writes = []
    write = repo.state.write

    def counted(name: str, data: bytes, expected: str | None) -> str:
        writes.append(name)
        time.sleep(0.005)  # a slow disk: the appends that arrive meanwhile queue up
        return write(name, data, expected)

    monkeypatch.setattr(repo.state, "write", counted)

    def appender(t: int) -> None:
        for i in range(10):
            append(repo, f"t{t}-{i}")

    threads = [threading.Thread(target=appender, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = list(audit.read_since(repo, time.time() - 60))  # type: ignore[arg-type]
    assert sorted(json.loads(line)["filename"] for line in lines) == sorted(
        f"t{t}-{i}" for t in range(8) for i in range(10)
    )
    # One process's appends never race each other (no write in vain), and those that
    # queued while one was written go together: fewer writes than records.
    assert len(writes) < 80
    for t in range(8):  # each thread's records in the order it appended them
        mine = [json.loads(line)["filename"] for line in lines]
        mine = [name for name in mine if name.startswith(f"t{t}-")]
        assert mine == [f"t{t}-{i}" for i in range(10)]


def test_a_lost_batch_is_logged_and_the_appenders_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = FakeRepo(tmp_path)

    def refused(name: str, data: bytes, expected: str | None) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(repo.state, "write", refused)
    lost = _lost_in_concurrent_appends(repo, 4, caplog)
    assert lost and sum(int(m.split(": ")[1].split()[0]) for m in lost) == 4
    assert all("No space left" in m and "upload" in m for m in lost)
    monkeypatch.undo()
    append(repo, "after")  # the next append is written
    lines = list(audit.read_since(repo, time.time() - 60))  # type: ignore[arg-type]
    assert [json.loads(line)["filename"] for line in lines] == ["after"]


def test_process_lock_excludes_threads(tmp_path: Path) -> None:
    lock = ProcessLock(tmp_path / "x.lock")
    inside = []
    overlaps = []

    def hold() -> None:
        for _ in range(50):
            with lock:
                inside.append(1)
                overlaps.append(len(inside))
                inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(overlaps) == 1 and len(overlaps) == 200


def test_an_unexpected_failure_is_logged_for_the_whole_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = FakeRepo(tmp_path)

    def broken(name: str, change: object) -> bytes:
        time.sleep(0.01)  # the others queue meanwhile
        raise RuntimeError("a backend's own bug")

    monkeypatch.setattr(repo.state, "update", broken)
    lost = _lost_in_concurrent_appends(repo, 6, caplog)
    assert sum(int(m.split(": ")[1].split()[0]) for m in lost) == 6


def _lost_in_concurrent_appends(
    repo: FakeRepo, count: int, caplog: pytest.LogCaptureFixture
) -> list[str]:
    """``count`` threads append at once; every one returns; the log's lost-record lines."""
    threads = [threading.Thread(target=append, args=(repo, f"lost-{t}")) for t in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    return [r.getMessage() for r in caplog.records if "audit record" in r.getMessage()]
