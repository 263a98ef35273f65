"""Writing files so that nobody ever sees half of one.

``write_temp`` puts the bytes in a fresh private (0600) file beside the target, fsynced;
``replace_file`` then renames it over the target; ``create_once`` links it to the target
only if the target does not exist yet, so that of several processes exactly one creates
it, and the name appears with its whole content or not at all.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import tempfile
import threading
import time
from pathlib import Path


def write_temp(directory: Path, data: bytes, durable: bool = True) -> Path:
    """A new file in ``directory`` (made if missing) holding ``data`` (mode 0600),
    fsynced when ``durable`` (a cache that is checked when read may skip the fsync)."""
    fd, name = create_private(directory, ".tmp-", ".part")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        Path(name).unlink(missing_ok=True)  # a full disk leaves no partial file behind
        raise
    return Path(name)


#: Numbers the files ``create_private`` names (``next`` on a count is atomic).
_serial = itertools.count()


def create_private(directory: Path, kind: str, suffix: str) -> tuple[int, str]:
    """A new empty file in ``directory`` (made if missing; mode 0600, open for reading
    and writing), named ``<kind><host>-<pid>-<n><suffix>`` so that a crash's leftover is
    known for whose it is; its descriptor and path. A counter, not ``mkstemp``'s random
    name: that name and its retries cost more than writing a small upload's sidecar
    (profiled). A name an earlier process of this pid left is not reused (``mkstemp``
    then). The folder is made only when the create finds it missing, not checked first."""
    prefix = leftover_prefix(kind)
    name = os.path.join(directory, f"{prefix}{next(_serial)}{suffix}")
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            return os.open(name, flags, 0o600), name
        except FileNotFoundError:
            directory.mkdir(parents=True, exist_ok=True)
            return os.open(name, flags, 0o600), name
    except FileExistsError:
        return tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)


def replace_file(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see ``write_temp`` for ``durable``)."""
    os.replace(write_temp(path.parent, data, durable), path)


def create_once(path: Path, data: bytes, durable: bool = True) -> bool:
    """Create ``path`` with ``data`` unless it exists; True if this call created it
    (see ``write_temp`` for ``durable``)."""
    tmp = write_temp(path.parent, data, durable)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


class ProcessLock:
    """An exclusive lock among this process's threads and other processes: a thread lock,
    then ``flock`` on ``path``, which stays open. filelock's ``FileLock`` took 130-190 µs
    per uncontended acquisition (its fork and re-entry bookkeeping), this 2 µs; both
    ``flock`` the same file, so each excludes the other."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            assert self._fd is not None
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


#: Temporary files are named for the process that writes them, so that one left by a
#: process that died (kill -9, a crash) is recognised at the next start and removed.
_HOST = socket.gethostname().replace("-", "_")[:32] or "host"
#: When this process started (near enough: when this module was imported).
_STARTED = time.time()


def leftover_prefix(kind: str) -> str:
    """``kind`` followed by this process's tag: ``<kind><host>-<pid>-``."""
    return f"{kind}{_HOST}-{os.getpid()}-"


def remove_dead_leftovers(directory: Path, kinds: tuple[str, ...], max_age: float) -> int:
    """Remove the temporary files in ``directory`` left by processes of this host that
    no longer run, and any older than ``max_age`` seconds (another host's, or unnamed);
    files of running processes stay. Returns how many were removed."""
    removed = 0
    cutoff = time.time() - max_age
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(kinds)]
    except OSError:
        return 0
    for path in candidates:
        try:
            mtime = path.stat().st_mtime
            if _dead_writer(path.name, kinds, mtime) or mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            pass  # gone already, or not ours to remove
    return removed


def _dead_writer(name: str, kinds: tuple[str, ...], mtime: float) -> bool:
    kind = next(k for k in kinds if name.startswith(k))
    host, _, rest = name[len(kind) :].partition("-")
    pid_text = rest.partition("-")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        # An earlier process with this pid (a container restarted: pid 1 again, same
        # host name) last wrote it before this one started; this process's are newer.
        return mtime < _STARTED - 1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False
