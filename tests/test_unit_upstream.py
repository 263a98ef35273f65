"""The upstream proxy's own housekeeping, without a server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from memory_backend import MemoryBackend

from pywharf_core.config import RepoPolicy
from pywharf_core.files import leftover_prefix
from pywharf_core.upstream import Upstream


def test_a_killed_servers_half_written_pages_and_downloads_are_removed_at_start(
    tmp_path: Path,
) -> None:
    """A backend that keeps no cache (the GitHub one) has downloads staged under ROOT,
    and pages are written there for every backend: what a killed server of this host
    left is removed when the next one starts; a running writer's files stay."""
    pages, files = tmp_path / "upstream-pages", tmp_path / "upstream-files"
    pages.mkdir()
    files.mkdir()
    ours = leftover_prefix(".upload-")
    theirs = ours.replace(f"-{os.getpid()}-", "-999999999-")  # above any pid_max
    left = [pages / f"{theirs.replace('.upload-', '.tmp-')}1.part", files / f"{theirs}2.part"]
    kept = [files / f"{ours}3.part", pages / "kept-project.json"]
    for path in left + kept:
        path.write_bytes(b"half")
    Upstream(RepoPolicy(upstream_url="http://127.0.0.1:9/simple/"), MemoryBackend(), tmp_path, "r")
    assert [path.exists() for path in left] == [False, False]
    assert [path.exists() for path in kept] == [True, True]
