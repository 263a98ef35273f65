"""A stored file's core metadata (its PEP 658 sidecar), read back through the backend.

The one reader of stored metadata for the pages: the project page's description and
links (``web``), and the home page's summaries (``summaries``) both come here.
"""

from __future__ import annotations

import email.parser
import urllib.request
from email.message import Message

from .backend import Backend, FileStream, LocalFile, OpenedFile
from .errors import BackendUnavailable, FileMissing
from .records import FileRecord

#: A METADATA file is a few KiB (a long README: a few hundred); never read more than this.
MAX_METADATA_FETCH = 16 * 1024 * 1024


def read_stored_metadata(backend: Backend, record: FileRecord) -> Message:
    """The file's stored core metadata, parsed. Raises ``FileMissing`` when the file has
    none (sdists), or what the backend raises (``BackendError``); an expiring URL that
    cannot be read is ``BackendUnavailable``."""
    if not record.core_metadata_sha256:
        raise FileMissing(record.filename)
    return parse_metadata(_read_small(backend.open_file(record, metadata=True)))


def parse_metadata(raw: bytes) -> Message:
    """Core metadata is UTF-8 (the core metadata spec): decoded first, so that a header
    such as ``Summary: Café`` reads as text (``email`` alone hands back undecodable
    header objects for non-ASCII bytes)."""
    return email.parser.Parser().parsestr(raw.decode("utf-8", "replace"))


def _read_small(opened: OpenedFile) -> bytes:
    if isinstance(opened, LocalFile):
        with opened.path.open("rb") as handle:
            return handle.read(MAX_METADATA_FETCH)
    if isinstance(opened, FileStream):
        try:
            return b"".join(opened.chunks)[:MAX_METADATA_FETCH]
        finally:
            opened.close()
    try:
        with urllib.request.urlopen(opened.url, timeout=30) as response:  # noqa: S310 (backend URL)
            return bytes(response.read(MAX_METADATA_FETCH))
    except OSError as exc:  # URLError and timeouts are OSErrors
        raise BackendUnavailable(f"cannot read the stored metadata: {exc}") from exc
