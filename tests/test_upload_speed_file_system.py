"""file_system ``put_file``: durable in order (bytes before names), confined to the
storage, and never reusing a staging name left behind."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from pywharf_backends.file_system import FileSystemBackend

from pywharf_core import files
from pywharf_core.errors import FileMissing
from pywharf_core.files import leftover_prefix
from pywharf_core.testing import put


def _named(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_each_name_appears_only_after_its_bytes_reached_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash (power loss) at any point leaves no file or sidecar whose bytes were not
    fsynced under its final name: the file and the sidecar are fsynced before they are
    linked or renamed there, the folder after, the journal record last."""
    backend = FileSystemBackend(tmp_path)
    events: list[tuple[str, str]] = []
    real_fsync, real_link, real_replace = os.fsync, os.link, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", _named(fd)))
        real_fsync(fd)

    def link(src: str | Path, dst: str | Path) -> None:
        events.append(("link", str(src)))
        real_link(src, dst)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(("replace", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    record, data = put(backend, "dura-ble", "1.0")

    moved = [(kind, path) for kind, path in events if kind != "fsync"]
    assert [kind for kind, _ in moved] == ["link", "replace"]
    for kind, path in moved:
        synced = events.index(("fsync", path))
        assert synced < events.index((kind, path))  # the bytes before the name
    folder = events.index(("fsync", str(tmp_path / "dura-ble")))
    assert folder > events.index(moved[-1])  # both names, in one folder fsync
    assert events[-1] == ("fsync", str(tmp_path / ".pywharf-journal.jsonl"))
    final = tmp_path / "dura-ble" / record.filename
    assert final.read_bytes() == data
    assert final.with_name(record.filename + ".metadata").read_bytes().startswith(b"Metadata")
    assert not list((tmp_path / ".pywharf-staging").glob(".tmp-*"))


def test_a_project_folder_linked_out_of_the_storage_is_not_written_through(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    backend = FileSystemBackend(tmp_path / "storage")
    (tmp_path / "storage" / "link-ed").symlink_to(outside)
    with pytest.raises(FileMissing):
        put(backend, "link-ed", "1.0")
    assert list(outside.iterdir()) == []


def test_a_project_folder_linked_within_the_storage_still_takes_uploads(
    tmp_path: Path,
) -> None:
    backend = FileSystemBackend(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "in-side").symlink_to(tmp_path / "elsewhere")
    record, data = put(backend, "in-side", "1.0")
    assert (tmp_path / "elsewhere" / record.filename).read_bytes() == data


def test_a_sidecar_name_left_by_an_earlier_process_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FileSystemBackend(tmp_path)
    monkeypatch.setattr(files, "_serial", itertools.count(7))
    left = tmp_path / ".pywharf-staging" / f"{leftover_prefix('.tmp-')}7.part"
    left.write_bytes(b"cut off")
    record, _ = put(backend, "left-over", "1.0")
    sidecar = tmp_path / "left-over" / (record.filename + ".metadata")
    assert sidecar.read_bytes().startswith(b"Metadata-Version")
    assert left.read_bytes() == b"cut off"  # another's file: left for the start-up sweep
