"""Writing files so that nobody ever sees half of one.

``write_temp`` puts the bytes in a fresh private (0600) file beside the target, fsynced;
``replace_file`` then renames it over the target; ``create_once`` links it to the target
only if the target does not exist yet, so that of several processes exactly one creates
it, and the name appears with its whole content or not at all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_temp(directory: Path, data: bytes) -> Path:
    """A new fsynced file in ``directory`` holding ``data`` (mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(name)


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    os.replace(write_temp(path.parent, data), path)


def create_once(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists; True if this call created it."""
    tmp = write_temp(path.parent, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True
