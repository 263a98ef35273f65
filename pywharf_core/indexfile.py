"""The remote index file: TOML written by ``pywharf update_index``, read by servers.

::

    format_version = 1
    mtime = 1700000000          # when the job wrote it (seconds since the epoch)

    [[files]]
    project = "foo-bar"         # normalized
    filename = "foo_bar-1.0-py3-none-any.whl"
    version = "1.0"
    sha256 = "…"
    size = 1234
    upload_time = 1699999999.5
    yanked = false              # or the reason, a string
    requires_python = ">=3.10"  # optional
    core_metadata_sha256 = "…"  # optional: the backend stores <filename>.metadata
    backend_ref = "…"           # the backend's own reference

Readers ignore keys they do not know, so newer writers stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass

import toml

from .errors import PywharfError
from .records import FileRecord

FORMAT_VERSION = 1


class IndexFileError(PywharfError):
    """The remote index file cannot be read."""


@dataclass(frozen=True)
class IndexFile:
    mtime: float
    records: tuple[FileRecord, ...]


def dump_index(index: IndexFile) -> bytes:
    data = {
        "format_version": FORMAT_VERSION,
        "mtime": index.mtime,
        "files": [r.to_dict() for r in sorted(index.records, key=lambda r: r.filename)],
    }
    text: str = toml.dumps(data)
    return text.encode("utf-8")


def load_index(data: bytes) -> IndexFile:
    try:
        parsed = toml.loads(data.decode("utf-8"))
        version = int(parsed.get("format_version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise IndexFileError(
                f"index format version {version} is newer than this pywharf reads "
                f"({FORMAT_VERSION}); upgrade pywharf"
            )
        records = tuple(FileRecord.from_dict(item) for item in parsed.get("files", []))
        return IndexFile(float(parsed.get("mtime", 0)), records)
    except (UnicodeDecodeError, toml.TomlDecodeError, KeyError, TypeError, ValueError) as exc:
        raise IndexFileError(f"invalid index file: {exc}") from exc
