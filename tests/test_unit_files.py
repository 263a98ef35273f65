"""``pywharf_core.files``: atomic replace, create-once under a race, and the sweep of
temporary files left by dead processes (the dead-pid case is in test_pipeline.py)."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

from pywharf_core import files
from pywharf_core.files import (
    create_once,
    create_private,
    leftover_prefix,
    remove_dead_leftovers,
    replace_file,
    write_temp,
)


def test_create_private_makes_a_missing_folder_and_never_takes_a_name_twice(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "staging" / "not-yet"
    made = [create_private(folder, ".upload-", ".part") for _ in range(2)]
    for fd, _ in made:
        os.close(fd)
    names = [Path(name) for _, name in made]
    assert names[0] != names[1] and all(p.parent == folder for p in names)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in names)


def test_write_temp_is_private_and_complete(tmp_path: Path) -> None:
    path = write_temp(tmp_path / "new" / "dir", b"payload")
    assert path.parent == tmp_path / "new" / "dir"
    assert path.name.startswith(leftover_prefix(".tmp-")) and path.name.endswith(".part")
    assert path.read_bytes() == b"payload"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replace_file_creates_and_replaces_leaving_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "index.toml"
    replace_file(target, b"first")
    assert target.read_bytes() == b"first"
    inode = target.stat().st_ino
    replace_file(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert target.stat().st_ino != inode  # a new file renamed over, not rewritten in place
    assert sorted(p.name for p in target.parent.iterdir()) == ["index.toml"]


def test_create_once_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "key"
    assert create_once(target, b"one") is True
    assert create_once(target, b"two") is False
    assert target.read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_create_once_racing_threads_make_exactly_one_winner(tmp_path: Path) -> None:
    target = tmp_path / "contested"
    start = threading.Barrier(8)
    results: dict[int, bool] = {}

    def racer(n: int) -> None:
        start.wait()
        results[n] = create_once(target, f"writer {n} ".encode() * 1000)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, created in results.items() if created]
    assert len(results) == 8 and len(winners) == 1
    assert target.read_bytes() == f"writer {winners[0]} ".encode() * 1000  # whole, not mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contested"]


def aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"partial")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_old_leftovers_go_whoever_wrote_them_and_fresh_ones_of_others_stay(
    tmp_path: Path,
) -> None:
    kinds = (".upload-", ".tmp-")
    old_foreign = aged(tmp_path / ".upload-otherhost-12-a.part", 7200)
    fresh_foreign = aged(tmp_path / ".upload-otherhost-12-b.part", 10)
    old_unnamed = aged(tmp_path / ".tmp-whatever", 7200)
    fresh_unnamed = aged(tmp_path / ".tmp-notapid-x-y", 10)
    old_mine = aged(tmp_path / (leftover_prefix(".tmp-") + "c.part"), 7200)
    fresh_mine = aged(tmp_path / (leftover_prefix(".upload-") + "d.part"), 0)
    unrelated = aged(tmp_path / "foo-1.0.tar.gz", 7200)
    other_kind = aged(tmp_path / ".journal-otherhost-1-x", 7200)
    assert remove_dead_leftovers(tmp_path, kinds, 3600) == 3
    assert not old_foreign.exists() and not old_unnamed.exists() and not old_mine.exists()
    for kept in (fresh_foreign, fresh_unnamed, fresh_mine, unrelated, other_kind):
        assert kept.exists(), kept.name
    assert remove_dead_leftovers(tmp_path, kinds, 3600) == 0


def test_a_file_named_for_this_pid_but_older_than_this_process_is_a_dead_ones(
    tmp_path: Path,
) -> None:
    """A container restarted is pid 1 again with the same host name: what the last run
    of pid 1 left is removed at once, not kept for a day as a running writer's."""
    before_start = time.time() - files._STARTED + 5
    earlier_run = aged(tmp_path / (leftover_prefix(".upload-") + "e.part"), before_start)
    writing_now = aged(tmp_path / (leftover_prefix(".upload-") + "f.part"), 0)
    assert remove_dead_leftovers(tmp_path, (".upload-",), 24 * 3600) == 1
    assert not earlier_run.exists() and writing_now.exists()


def test_a_missing_folder_is_nothing_to_do(tmp_path: Path) -> None:
    assert remove_dead_leftovers(tmp_path / "missing", (".upload-",), 0) == 0
