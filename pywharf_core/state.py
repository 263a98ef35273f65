"""Small documents that every server of a repository must see alike: tokens and their
revocation, project status, audit records, replayed token ids …

They live in the repository's backend (``Backend.read_state``/``write_state``,
compare-and-swap) so that replicas on one storage agree and a lost server loses nothing;
a backend without them (GitHub) gets a store under the server's ROOT, which replicas do
not share (documented for that backend). ``StateStore.update`` is the one way to change a
document: read, change, compare-and-swap, and again on a conflict.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from .backend import Backend
from .errors import IndexConflict, NotSupported
from .files import ProcessLock, replace_file

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$")
MAX_ATTEMPTS = 50
UPDATE_LOCKS = 16


def check_state_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"not a state document name: {name!r}")
    return name


class LocalState:
    """State documents as files in a folder, versioned by their stat; compare-and-swap
    under a file lock (several processes may share the folder)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = ProcessLock(folder / ".state.lock")

    def read(self, name: str) -> tuple[bytes, str] | None:
        path = self.folder / check_state_name(name)
        try:
            with path.open("rb") as handle:
                return handle.read(), stat_version(os.fstat(handle.fileno()))
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes, expected_version: str | None) -> str:
        path = self.folder / check_state_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            try:
                current: str | None = stat_version(path.stat())
            except FileNotFoundError:
                current = None
            if current != expected_version:
                raise IndexConflict(f"the state document {name} changed since it was read")
            replace_file(path, data)
            return stat_version(path.stat())

    def delete(self, name: str) -> None:
        path = self.folder / check_state_name(name)
        with self._lock:
            path.unlink(missing_ok=True)


def stat_version(stat: os.stat_result) -> str:
    # Every write replaces the file: a new inode each time.
    return f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"


class StateStore:
    """A repository's state documents: in its backend when it keeps state, else local."""

    def __init__(self, backend: Backend, local_folder: Path) -> None:
        self._backend = backend
        self._local = LocalState(local_folder)
        self.shared = type(backend).read_state is not Backend.read_state
        # One lock per document name would grow with the audit log's days: a few
        # reentrant locks, each shared by the names that hash to it.
        self._updating = [threading.RLock() for _ in range(UPDATE_LOCKS)]

    def read(self, name: str) -> tuple[bytes, str] | None:
        check_state_name(name)
        if self.shared:
            try:
                return self._backend.read_state(name)
            except NotSupported:
                self.shared = False
        return self._local.read(name)

    def write(self, name: str, data: bytes, expected_version: str | None) -> str:
        check_state_name(name)
        if self.shared:
            return self._backend.write_state(name, data, expected_version)
        return self._local.write(name, data, expected_version)

    def update(self, name: str, change: Callable[[bytes | None], bytes]) -> bytes:
        """Apply ``change`` to the document's current bytes (``None`` when absent) and
        store the result by compare-and-swap, retrying on a conflict; returns what was
        stored. ``change`` may run several times: it must not have side effects.

        Updates of one document by this process take turns: compare-and-swap then only
        decides between servers. Sixteen uploads appending to the audit log at once
        otherwise all read one version, and all but one wrote in vain and read again."""
        with self._updating[hash(name) % UPDATE_LOCKS]:
            return self._update(name, change)

    def _update(self, name: str, change: Callable[[bytes | None], bytes]) -> bytes:
        for _ in range(MAX_ATTEMPTS):
            current = self.read(name)
            data = change(None if current is None else current[0])
            try:
                self.write(name, data, None if current is None else current[1])
                return data
            except IndexConflict:
                continue
        raise IndexConflict(f"the state document {name} kept changing; try again")
