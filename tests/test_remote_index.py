"""The segmented remote index (``remoteindex``): update_index writes a base database and
deltas named by a manifest; servers open the base and fetch only the deltas they lack;
the single-file index of 0.2 and of the previous release is read and converted."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from pywharf_backends.file_system import FileSystemBackend
from test_pipeline import open_repo  # one file_system repository 'team'
from wharftest.cli import pywharf
from wharftest.server import get

from pywharf_core import remoteindex
from pywharf_core.backend import Backend
from pywharf_core.errors import IndexConflict, IndexFileError, IndexTooNew, PywharfError
from pywharf_core.indexfile import load_index
from pywharf_core.job import update_index
from pywharf_core.repository import Repository
from pywharf_core.testing import make_wheel


def storage_of(root: Path) -> Path:
    return root / "cache" / "team" / "storage"


def add_wheel(storage: Path, name: str, version: str = "1.0") -> str:
    filename, data, _ = make_wheel(name, version)
    (storage / name).mkdir(parents=True, exist_ok=True)
    (storage / name / filename).write_bytes(data)
    return filename


def manifest_of(backend: Backend) -> remoteindex.Manifest:
    current = backend.read_index()
    assert current is not None and remoteindex.is_manifest(current[0])
    return remoteindex.parse_manifest(current[0])


def names_on(repo: Repository) -> dict[str, list[str]]:
    snapshot = repo.index.snapshot
    return {
        project: sorted(r.filename for r in snapshot.files_of(project) or ())
        for project in snapshot.projects
    }


def test_deltas_are_fetched_alone_and_a_new_base_replaces_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = storage_of(tmp_path)
    for i in range(8):
        add_wheel(storage, f"seg-{i}")
    backend = FileSystemBackend(storage)
    assert update_index(backend, index_format="segments").changed
    first = manifest_of(backend)
    assert first.files == 8 and first.base.files == 8 and first.deltas == ()
    repo = open_repo(tmp_path)
    assert sorted(repo.index.snapshot.projects) == [f"seg-{i}" for i in range(8)]

    # One new file, one removed: a delta of two, and the server fetches only it.
    added = add_wheel(storage, "seg-3", "2.0")
    gone = next((storage / "seg-5").iterdir())
    gone.unlink()
    assert update_index(backend, index_format="segments").changed
    second = manifest_of(backend)
    assert second.base == first.base and [d.files for d in second.deltas] == [2]
    fetched: list[str] = []
    original = backend.read_state

    def counting(name: str) -> tuple[bytes, str] | None:
        fetched.append(name)
        return original(name)

    monkeypatch.setattr(backend, "read_state", counting)
    repo.backend = backend
    assert repo.sync()
    assert [n for n in fetched if n.startswith("index/")] == [second.deltas[0].name]
    listing = names_on(repo)
    assert "seg-5" not in listing and added in listing["seg-3"]
    assert repo.index.snapshot.file_count == 8

    # Enough change for a new base: the old segments are retired, not yet deleted.
    monkeypatch.setattr(remoteindex, "CONSOLIDATE_SHARE", 0.0)
    add_wheel(storage, "seg-new")
    assert update_index(backend, index_format="segments").changed
    third = manifest_of(backend)
    assert third.base != first.base and third.deltas == ()
    assert {name for name, _ in third.retired} == {first.base.name, second.deltas[0].name}
    assert backend.read_state(first.base.name) is not None
    fetched.clear()
    assert repo.sync()
    assert [n for n in fetched if n.startswith("index/")] == [third.base.name]
    assert "seg-new" in names_on(repo) and repo.index.snapshot.file_count == 9

    # An hour later the next update_index deletes what was retired.
    monkeypatch.setattr(remoteindex, "RETIRE_SECONDS", 0)
    add_wheel(storage, "seg-later")
    assert update_index(backend, index_format="segments").changed
    assert backend.read_state(first.base.name) is None
    assert backend.read_state(second.deltas[0].name) is None
    assert not {name for name, _ in manifest_of(backend).retired} & {first.base.name}


def test_a_restart_and_a_fresh_server_agree_with_the_records(tmp_path: Path) -> None:
    storage = storage_of(tmp_path)
    for i in range(5):
        add_wheel(storage, f"agree-{i}")
    backend = FileSystemBackend(storage)
    update_index(backend, index_format="segments")
    add_wheel(storage, "agree-1", "1.1")
    update_index(backend, index_format="segments")
    records, manifest = remoteindex.read_records(backend, backend.read_index()[0])  # type: ignore[index]
    assert manifest is not None and len(manifest.deltas) == 1
    expected: dict[str, list[str]] = {}
    for record in records:
        expected.setdefault(record.project, []).append(record.filename)
    expected = {k: sorted(v) for k, v in expected.items()}
    assert names_on(open_repo(tmp_path)) == expected  # base + delta, from nothing
    assert names_on(open_repo(tmp_path)) == expected  # a restart: the database holds it
    # The served record is the stored one, field for field.
    repo = open_repo(tmp_path)
    for record in records:
        assert repo.index.snapshot.find(record.project, record.filename) == record


def test_the_single_file_index_is_read_and_converted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remoteindex, "CONSOLIDATE_SHARE", 10.0)  # a delta even at 1 file
    storage = storage_of(tmp_path)
    add_wheel(storage, "conv-a")
    backend = FileSystemBackend(storage)
    update_index(backend, index_format="toml")
    single = backend.read_index()
    assert single is not None and not remoteindex.is_manifest(single[0])
    repo = open_repo(tmp_path)
    assert list(repo.index.snapshot.projects) == ["conv-a"]
    # Nothing changed but the format: converted all the same, and served the same.
    summary = update_index(backend, index_format="segments")
    assert summary.changed and manifest_of(backend).files == 1
    assert repo.sync() and names_on(repo) == {"conv-a": [make_wheel("conv-a", "1.0")[0]]}
    # auto keeps a segmented index segmented, whatever its size …
    add_wheel(storage, "conv-b")
    update_index(backend)
    assert len(manifest_of(backend).deltas) == 1
    # … and toml converts back, for servers of 0.2.
    update_index(backend, index_format="toml")
    back = load_index(backend.read_index()[0])  # type: ignore[index]
    assert sorted(r.project for r in back.records) == ["conv-a", "conv-b"]
    assert repo.sync() and sorted(names_on(repo)) == ["conv-a", "conv-b"]


def test_auto_segments_large_indexes_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pywharf_core.job

    storage = storage_of(tmp_path)
    add_wheel(storage, "auto-a")
    backend = FileSystemBackend(storage)
    update_index(backend)
    assert not remoteindex.is_manifest(backend.read_index()[0])  # type: ignore[index]
    monkeypatch.setattr(pywharf_core.job, "SEGMENTED_FROM", 2)
    add_wheel(storage, "auto-b")
    update_index(backend)
    assert manifest_of(backend).files == 2


@pytest.mark.parametrize(
    "spoil",
    ["garbage", "wrong-sha", "missing", "trigger", "not-zstd"],
)
def test_a_spoilt_segment_is_a_clear_sync_error_and_the_last_index_stays(
    tmp_path: Path, spoil: str
) -> None:
    storage = storage_of(tmp_path)
    add_wheel(storage, "keep-a")
    backend = FileSystemBackend(storage)
    update_index(backend, index_format="segments")
    repo = open_repo(tmp_path)
    assert list(repo.index.snapshot.projects) == ["keep-a"]
    add_wheel(storage, "keep-b")
    remoteindex.CONSOLIDATE_SHARE, saved = 0.0, remoteindex.CONSOLIDATE_SHARE
    try:
        update_index(backend, index_format="segments")  # a new base
    finally:
        remoteindex.CONSOLIDATE_SHARE = saved
    base = manifest_of(backend).base
    path = storage / ".pywharf-state" / base.name
    if spoil == "garbage":
        path.write_bytes(b"\0" * 100)
    elif spoil == "missing":
        path.unlink()
    elif spoil == "not-zstd":
        data = b"SQLite format 3\0" + b"\0" * 200
        path.write_bytes(data)
        _rename_manifest_sha(backend, base.sha256, data)
    elif spoil == "wrong-sha":
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:  # a valid, hash-matching database with a trigger in it: refused
        with_trigger = tmp_path / "evil.sqlite3"
        scratch = tmp_path / "scratch.sqlite3"
        remoteindex.write_base_to(backend, base, scratch)
        shutil.copy(scratch, with_trigger)
        connection = sqlite3.connect(with_trigger)
        connection.execute("CREATE TRIGGER t AFTER INSERT ON files BEGIN DELETE FROM files; END")
        connection.commit()
        connection.close()
        from backports import zstd

        data = zstd.compress(with_trigger.read_bytes())
        path.write_bytes(data)
        _rename_manifest_sha(backend, base.sha256, data)
    with pytest.raises(IndexFileError):
        repo.sync()
    assert list(repo.index.snapshot.projects) == ["keep-a"]  # the last good index
    # The sync thread's way: logged once, no traceback, served on.
    repo.sync_logged()
    assert repo.sync_failures == 1
    assert not list(tmp_path.glob("cache/team/*.building"))


def _rename_manifest_sha(backend: FileSystemBackend, old: str, data: bytes) -> None:
    import hashlib

    current = backend.read_index()
    assert current is not None
    text = current[0].decode().replace(old, hashlib.sha256(data).hexdigest())
    backend.write_index(text.encode(), current[1])


def test_a_manifest_from_a_newer_pywharf_is_refused_by_update_index(tmp_path: Path) -> None:
    storage = storage_of(tmp_path)
    add_wheel(storage, "new-a")
    backend = FileSystemBackend(storage)
    backend.write_index(b"format_version = 3\nmtime = 1\n", None)
    with pytest.raises(IndexTooNew):
        update_index(backend)
    assert backend.read_index()[0].startswith(b"format_version = 3")  # type: ignore[index]
    with pytest.raises(PywharfError, match="index_format"):
        update_index(backend, index_format="sharded")


@pytest.mark.parametrize(
    "text",
    [
        'format_version = 2\n[base]\nname = "../../etc/passwd"\nsha256 = "' + "0" * 64 + '"\n',
        'format_version = 2\n[base]\nname = "index/a"\nsha256 = "xyz"\n',
        "format_version = 2\n",
        'format_version = 2\n[base]\nname = "index/A"\nsha256 = "' + "0" * 64 + '"\n',
        "format_version = 2\n[base\n",
        'format_version = 2\nbase = "x"\n',
        'format_version = 2\n[base]\nname = "index/a..b"\nsha256 = "' + "0" * 64 + '"\n',
        'format_version = 2\nfiles = inf\n[base]\nname = "index/a"\nsha256 = "' + "0" * 64 + '"\n',
    ],
)
def test_a_malformed_manifest_is_an_index_file_error(text: str) -> None:
    with pytest.raises(IndexFileError):
        remoteindex.parse_manifest(text.encode())


def test_manifest_round_trip() -> None:
    manifest = remoteindex.Manifest(
        1.5,
        10,
        remoteindex.Segment("index/base-" + "a" * 64 + ".sqlite3.zst", "a" * 64, 9),
        (remoteindex.Segment("index/delta-" + "b" * 64 + ".json.zst", "b" * 64, 1),),
        (("index/delta-" + "c" * 64 + ".json.zst", 2.0),),
    )
    data = remoteindex.dump_manifest(manifest)
    assert remoteindex.is_manifest(data)
    assert remoteindex.parse_manifest(data) == manifest
    # A reader of the previous release refuses it with a message that says what to do.
    with pytest.raises(IndexTooNew, match="upgrade pywharf"):
        load_index(data)


def test_update_index_command_and_a_server_on_a_segmented_index(
    start_server, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    storage = root / "cache" / "local" / "storage"
    filename = add_wheel(storage, "served-seg")
    done = pywharf(
        "update_index", "file_system", "local", "--root", str(root), "--index_format", "segments"
    )
    assert done.returncode == 0, done.stderr
    assert remoteindex.is_manifest((storage / "index.toml").read_bytes())
    server = start_server(root=root)
    read = ("local", server.read_secret)
    assert "served-seg" in get(server, "simple/", auth=read).text
    page = get(server, "simple/served-seg/", auth=read)
    assert page.status_code == 200 and filename in page.text
    refused = pywharf(
        "update_index", "file_system", "local", "--root", str(root), "--index_format", "shards"
    )
    assert refused.returncode != 0 and "index_format" in refused.stderr
    assert "Traceback" not in refused.stderr


class NoSharedState(FileSystemBackend):
    """A backend that keeps no shared documents (as the github backend)."""

    read_state = Backend.read_state
    write_state = Backend.write_state


def test_a_backend_without_shared_state_keeps_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pywharf_core.job

    storage = storage_of(tmp_path)
    add_wheel(storage, "plain-a")
    backend = NoSharedState(storage)
    with pytest.raises(PywharfError, match="shared state"):
        update_index(backend, index_format="segments")
    assert backend.read_index() is None
    monkeypatch.setattr(pywharf_core.job, "SEGMENTED_FROM", 1)
    update_index(backend)
    current = backend.read_index()
    assert current is not None and not remoteindex.is_manifest(current[0])
    assert [r.project for r in load_index(current[0]).records] == ["plain-a"]


def test_a_yank_and_a_replaced_file_are_deltas_of_their_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remoteindex, "CONSOLIDATE_SHARE", 10.0)  # a delta, however large
    storage = storage_of(tmp_path)
    names = [add_wheel(storage, f"edit-{i}") for i in range(6)]
    backend = FileSystemBackend(storage)
    update_index(backend, index_format="segments")
    repo = open_repo(tmp_path)
    # A yank record written beside a file, and a file's bytes replaced by hand.
    (storage / "edit-1" / f"{names[1]}.yanked").write_text("broken")
    replaced = storage / "edit-2" / names[2]
    _, other, _ = make_wheel("edit-2", "1.0", b"other bytes")
    replaced.unlink()
    (storage / "edit-2" / f"{names[2]}.metadata").unlink()
    replaced.write_bytes(other)
    summary = update_index(backend)
    assert summary.changed and summary.files == 6 and summary.projects == 6
    manifest = manifest_of(backend)
    assert [d.files for d in manifest.deltas] == [2]
    delta = remoteindex.read_delta(backend, manifest.deltas[0])
    assert delta.removals == []
    by_name = {r.filename: r for r in delta.upserts}
    assert by_name[names[1]].yanked == "broken"
    import hashlib

    assert by_name[names[2]].sha256 == hashlib.sha256(other).hexdigest()
    assert repo.sync()
    assert repo.index.snapshot.find("edit-1", names[1]).yanked == "broken"  # type: ignore[union-attr]
    assert repo.index.snapshot.find("edit-2", names[2]) == by_name[names[2]]
    # Nothing more: unchanged, and no delta written.
    assert not update_index(backend).changed
    assert len(manifest_of(backend).deltas) == 1


def test_one_file_in_two_folders_is_not_a_change_on_every_run(tmp_path: Path) -> None:
    storage = storage_of(tmp_path)
    filename = add_wheel(storage, "twice")
    (storage / "copies" / "twice").mkdir(parents=True)
    shutil.copy(storage / "twice" / filename, storage / "copies" / "twice" / filename)
    backend = FileSystemBackend(storage)
    update_index(backend, index_format="segments")
    assert [update_index(backend).changed for _ in range(3)] == [False, False, False]


def test_segments_of_an_attempt_that_lost_are_retired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remoteindex, "CONSOLIDATE_SHARE", 10.0)
    storage = storage_of(tmp_path)
    add_wheel(storage, "race-a")
    backend = FileSystemBackend(storage)
    update_index(backend, index_format="segments")
    add_wheel(storage, "race-b")
    original = backend.write_index
    raced: list[str] = []

    def racing(data: bytes, expected: str | None) -> str:
        if not raced:  # another job wins meanwhile, with one more file
            raced.append("yes")
            add_wheel(storage, "race-c")
            update_index(FileSystemBackend(storage))
            raise IndexConflict("the index changed since it was read")
        return original(data, expected)

    monkeypatch.setattr(backend, "write_index", racing)
    assert not update_index(backend).changed  # the winner holds every file already
    manifest = manifest_of(backend)
    lost = [name for name, _ in manifest.retired]
    assert len(lost) == 1 and lost[0] not in manifest.segments()
    assert backend.read_state(lost[0]) is not None  # deleted an hour later
    assert [d.files for d in manifest.deltas] == [2]


def test_a_delta_that_cannot_be_applied_leaves_the_last_index(tmp_path: Path) -> None:
    storage = storage_of(tmp_path)
    filename = add_wheel(storage, "nan-a")
    backend = FileSystemBackend(storage)
    update_index(backend, index_format="segments")
    repo = open_repo(tmp_path)
    manifest = manifest_of(backend)
    record = remoteindex.read_records(backend, backend.read_index()[0])[0][0]  # type: ignore[index]
    bad = record.to_dict() | {"filename": "nan_a-2.0-py3-none-any.whl", "version": "2.0"}
    text = json.dumps({"upsert": [bad], "remove": []}).replace(str(bad["upload_time"]), "NaN")
    segment = remoteindex._store(backend, "delta", zstd_compress(text.encode()), 1, [])
    current = backend.read_index()
    assert current is not None
    spoilt = remoteindex.Manifest(2.0, 2, manifest.base, (segment,))
    backend.write_index(remoteindex.dump_manifest(spoilt), current[1])
    with pytest.raises(IndexFileError):
        repo.sync()
    assert repo.index.snapshot.find("nan-a", filename) == record  # not wiped
    assert repo.index.snapshot.file_count == 1


def zstd_compress(data: bytes) -> bytes:
    from backports import zstd

    return zstd.compress(data)


@pytest.mark.parametrize("index_format", ["toml", "segments"])
def test_files_uploaded_through_a_server_are_not_described_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index_format: str
) -> None:
    from pywharf_core.testing import put

    storage = storage_of(tmp_path)
    add_wheel(storage, "held-first")
    backend = FileSystemBackend(storage)
    update_index(backend, index_format=index_format)
    uploaded, _ = put(backend, "through-server", "1.0")  # as the server stores an upload
    assert backend.changes_since(None)[0] == [uploaded]

    def no_fetch(*args: object) -> Path:
        raise AssertionError("a file the journal describes was fetched again")

    monkeypatch.setattr(backend, "fetch_file", no_fetch)
    assert update_index(backend, index_format=index_format).changed
    records, _ = remoteindex.read_records(backend, backend.read_index()[0])  # type: ignore[index]
    assert uploaded in records  # the journal's record, as the server wrote it
    assert backend.changes_since(None)[0] == []  # and the journal compacted
