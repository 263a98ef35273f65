"""Reading a legacy-API upload (``multipart/form-data``) in one streaming pass.

The ``content`` part goes straight to a staging file while it is hashed and counted;
the size cap is enforced mid-stream. Only the small form fields pywharf uses are kept in
memory; the rest (descriptions, classifiers ...) are counted and dropped. ``feed`` is
synchronous and meant to run in a worker thread, fed with batches of the request body.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .backend import StagedFile
from .errors import DigestMismatch, FileTooLarge, UploadRejected

#: Form fields kept (all others are counted, then dropped).
KEPT_FIELDS = frozenset(
    {
        ":action",
        "protocol_version",
        "name",
        "version",
        "filetype",
        "pyversion",
        "metadata_version",
        "md5_digest",
        "sha256_digest",
        "blake2_256_digest",
        "requires_python",
    }
)
MAX_KEPT_FIELD_BYTES = 64 * 1024
#: All non-file parts together (descriptions can be long READMEs).
MAX_FORM_BYTES = 64 * 1024 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024
#: Headroom on top of a repository's ``max_file_bytes`` for everything but the file.
FORM_OVERHEAD_BYTES = MAX_FORM_BYTES + 1024 * 1024

# Client digest field → (hashlib constructor, kwargs)
_DIGESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sha256_digest": ("sha256", {}),
    "md5_digest": ("md5", {}),
    "blake2_256_digest": ("blake2b", {"digest_size": 32}),
}


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type, or ``UploadRejected``."""
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise UploadRejected(
            "Uploads must be multipart/form-data with a boundary, as twine, uv publish "
            "and poetry send them"
        )
    return boundary


@dataclass
class ReceivedUpload:
    """A fully received upload: the kept form fields and the staged file."""

    fields: dict[str, str]
    filename: str
    staged: StagedFile
    #: Hex digests computed while streaming, keyed by client field name.
    digests: dict[str, str] = field(default_factory=dict)

    def verify_client_digests(self) -> None:
        """Compare every digest the client sent with the file; ``DigestMismatch`` if any
        differs. Digests that arrived after the file are computed now, by a second read."""
        for field_name, (algorithm, kwargs) in _DIGESTS.items():
            sent = self.fields.get(field_name, "").strip().lower()
            if not sent:
                continue
            actual = self.digests.get(field_name)
            if actual is None:
                actual = _hash_file(self.staged.path, algorithm, kwargs)
                self.digests[field_name] = actual
            if not hmac.compare_digest(sent.encode(), actual.encode()):
                raise DigestMismatch(algorithm if algorithm != "blake2b" else "blake2_256")


def _hash_file(path: Path, algorithm: str, kwargs: dict[str, Any]) -> str:
    hasher = hashlib.new(algorithm, **kwargs)
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


class MultipartUpload:
    """Incremental reader of one upload body. Call ``feed`` with body batches, then
    ``finish``; call ``discard`` whenever the upload is abandoned."""

    def __init__(self, boundary: bytes, staging_dir: Path, max_file_bytes: int) -> None:
        self._staging_dir = staging_dir
        self._max_file_bytes = max_file_bytes
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )
        self.fields: dict[str, str] = {}
        self._form_bytes = 0
        self._ended = False
        # current part
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._header_bytes = 0
        self._part: str = "ignored"  # "content", "field", "ignored"
        self._field_name = ""
        self._field_value = bytearray()
        # the file
        self._filename: str | None = None
        self._file: Any = None
        self._path: Path | None = None
        self._size = 0
        self._hashers: dict[str, Any] = {}

    # -- driving ------------------------------------------------------------------
    def feed(self, data: bytes | bytearray) -> None:
        try:
            self._parser.write(bytes(data))
        except MultipartParseError as exc:
            raise UploadRejected(f"Malformed multipart body: {exc}") from exc

    def finish(self) -> ReceivedUpload:
        if not self._ended:
            raise UploadRejected("Malformed multipart body: it ends before its closing boundary")
        if self._path is None or self._filename is None:
            raise UploadRejected("The upload has no 'content' file part")
        self._close_file()
        digests = {name: hasher.hexdigest() for name, hasher in self._hashers.items()}
        staged = StagedFile(self._path, self._size, digests["sha256_digest"])
        return ReceivedUpload(dict(self.fields), self._filename, staged, digests)

    def discard(self) -> None:
        self._close_file()
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- parser callbacks -----------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._headers = {}
        self._header_bytes = 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise UploadRejected("Malformed multipart body: part headers too long")

    def _on_header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name = bytearray()
        self._header_value = bytearray()

    def _on_headers_finished(self) -> None:
        _kind, params = parse_options_header(self._headers.get("content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if name == "content" and filename is not None:
            if self._path is not None:
                raise UploadRejected("The upload has more than one 'content' file part")
            try:
                self._filename = filename.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UploadRejected("The uploaded filename is not valid UTF-8") from exc
            self._start_file()
            self._part = "content"
        elif filename is None and name in KEPT_FIELDS:
            self._part = "field"
            self._field_name = name
            self._field_value = bytearray()
        else:  # a field we do not use, or another file (gpg_signature)
            self._part = "ignored"

    def _start_file(self) -> None:
        fd, name = tempfile.mkstemp(dir=self._staging_dir, prefix=".upload-", suffix=".part")
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=1024 * 1024)
        # Hash only what the client sent digests for (fields usually come before the
        # file); sha256 always, it is the index's hash.
        self._hashers = {"sha256_digest": hashlib.sha256()}
        for field_name, (algorithm, kwargs) in _DIGESTS.items():
            if field_name in self.fields and field_name not in self._hashers:
                self._hashers[field_name] = hashlib.new(algorithm, **kwargs)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._part == "content":
            self._size += n
            if self._size > self._max_file_bytes:
                raise FileTooLarge(self._max_file_bytes)
            chunk = memoryview(data)[start:end]
            for hasher in self._hashers.values():
                hasher.update(chunk)
            self._file.write(chunk)
            return
        self._form_bytes += n
        if self._form_bytes > MAX_FORM_BYTES:
            raise FileTooLarge(self._max_file_bytes)
        if self._part == "field":
            if len(self._field_value) + n > MAX_KEPT_FIELD_BYTES:
                raise UploadRejected(f"Form field {self._field_name!r} is too long")
            self._field_value += data[start:end]

    def _on_part_end(self) -> None:
        if self._part == "field":
            try:
                self.fields[self._field_name] = self._field_value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UploadRejected(f"Form field {self._field_name!r} is not UTF-8") from exc
        self._part = "ignored"

    def _on_end(self) -> None:
        self._ended = True
