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
