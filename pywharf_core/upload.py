"""The whole upload (PyPI's legacy API), read top to bottom:

1. **receive**: the declared length is checked, then the ``multipart/form-data`` body is
   parsed as it streams in; the ``content`` part goes straight to a staging file while it
   is counted against the one size cap and hashed in the same pass. Only the small form
   fields pywharf uses are kept; the rest (descriptions, classifiers …) are counted and
   dropped.
2. **validate**: action, project name, version, filename, the client's digests (at
   least one strong one is required, as PyPI does), an empty file.
3. **describe**: ``dists.describe`` reads the core metadata and makes the index record.
4. **store**: ``backend.put_file``, create-only; identical bytes already stored are a
   no-op, different bytes a conflict.
5. **index**: the record joins the repository's in-memory index (read-your-writes), and
   its summary the repository's summary cache (the home page's search).

``accept_upload`` is the one entry; it runs the blocking steps through ``run_blocking``.
"""

from __future__ import annotations

import errno
import functools
import hmac
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from . import dists, manage, status
from .backend import StagedFile, StoredFile
from .blocking import run_blocking
from .errors import (
    DigestMismatch,
    FileExists,
    FileTooLarge,
    InsufficientStorage,
    NotPermitted,
    UploadRejected,
)
from .files import create_private
from .records import FileRecord
from .repository import Repository

log = logging.getLogger(__name__)

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
#: Digests strong enough to vouch for a file; md5 alone is not (PyPI refuses it too).
STRONG_DIGESTS = ("sha256_digest", "blake2_256_digest")
MAX_KEPT_FIELD_BYTES = 64 * 1024
#: All non-file parts together (descriptions can be long READMEs).
MAX_FORM_BYTES = 64 * 1024 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024
MAX_BOUNDARY = 70  # RFC 2046
#: Headroom on top of a repository's ``max_file_bytes`` for everything but the file.
FORM_OVERHEAD_BYTES = MAX_FORM_BYTES + 1024 * 1024
#: Body chunks are handed to the parser in batches of this size (fewer thread hops).
BATCH_BYTES = 1024 * 1024


class UploadResult(Enum):
    STORED = "stored"
    IDENTICAL = "identical"  # the same bytes were already stored: nothing changed


@dataclass(frozen=True)
class UploadOutcome:
    result: UploadResult
    record: FileRecord

    @property
    def message(self) -> str:
        if self.result is UploadResult.IDENTICAL:
            return f"OK: {self.record.filename} was already stored with identical content"
        return f"OK: stored {self.record.filename}"


async def accept_upload(
    repo: Repository,
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    allowed_projects: frozenset[str] | None = None,
) -> UploadOutcome:
    """Receive, validate, describe, store and index one upload to ``repo``.

    ``allowed_projects``: the (normalized) projects the uploader may upload to, ``None``
    for every project (a project-scoped token gives a set); another is ``NotPermitted``.

    Raises ``UploadRejected`` (and its kinds: ``FileTooLarge``, ``DigestMismatch`` …),
    ``FileExists`` for a filename taken by other bytes, ``InsufficientStorage``, or what
    the backend raises. Nothing half-written is left behind whatever happens.
    """
    limit = repo.policy.max_file_bytes
    boundary = _multipart_boundary(content_type)
    if content_length and content_length.isdigit():
        if int(content_length) > limit + FORM_OVERHEAD_BYTES:
            raise FileTooLarge(limit)
    reader = MultipartUpload(boundary, repo.backend.staging_dir(), limit)
    try:
        # Chunks are kept as they come and handed over one worker hop per MiB: growing
        # one buffer copied every byte again (26% of an upload's CPU, profiled).
        batch: list[bytes] = []
        size = 0
        async for chunk in body:
            batch.append(chunk)
            size += len(chunk)
            if size >= BATCH_BYTES:
                chunks, batch, size = batch, [], 0
                await run_blocking(reader.feed_all, chunks)
        await run_blocking(reader.feed_all, batch)
        received = await run_blocking(reader.finish)
        return await run_blocking(_validate_describe_store, repo, received, allowed_projects)
    finally:
        await run_blocking(reader.discard)


@dataclass
class ReceivedUpload:
    """A fully received upload: the kept form fields, the staged file, and the hex
    digests computed while it streamed (keyed by client field name)."""

    fields: dict[str, str]
    filename: str
    staged: StagedFile
    digests: dict[str, str]


def _validate_describe_store(
    repo: Repository, upload: ReceivedUpload, allowed_projects: frozenset[str] | None = None
) -> UploadOutcome:
    """Steps 2 to 5 (blocking)."""
    # -- validate
    fields = upload.fields
    action = fields.get(":action", "")
    if action != "file_upload":
        raise UploadRejected(
            f"Unsupported ':action' {action!r}: this index accepts 'file_upload' only"
        )
    name, version = fields.get("name", "").strip(), fields.get("version", "").strip()
    if not name or not version:
        raise UploadRejected("The form fields 'name' and 'version' are required")
    project = dists.check_project_name(name)
    if allowed_projects is not None and project not in allowed_projects:
        raise NotPermitted(
            f"This token may not upload to project {project!r} (it may upload to: "
            f"{', '.join(sorted(allowed_projects))})"
        )
    dist = dists.parse_filename(upload.filename)
    if project != dist.project:
        raise UploadRejected(f"Filename {dist.filename!r} does not belong to project {name!r}")
    if not dists.same_version(version, dist.version):
        raise UploadRejected(f"Filename {dist.filename!r} does not match version {version!r}")
    if upload.staged.size == 0:
        raise UploadRejected("The uploaded file is empty")
    _verify_digests(upload)

    status.check_uploads_allowed(repo, dist.project)
    known = repo.index.snapshot.find(dist.project, dist.filename)
    if known is not None:
        if known.sha256 != upload.staged.sha256:
            raise FileExists(dist.filename, known.sha256)
        return UploadOutcome(UploadResult.IDENTICAL, known)
    if not repo.policy.allow_filename_reuse:
        manage.check_filename_reuse(repo, dist.filename, upload.staged.sha256)

    # -- describe
    described = dists.describe(
        upload.staged.path,
        dist,
        upload_time=time.time(),
        sha256=upload.staged.sha256,
        size=upload.staged.size,
    )
    record, metadata = described.record, described.metadata

    # -- store
    try:
        stored = repo.backend.put_file(record, upload.staged, metadata)
    except FileExists as exc:
        existing = _identical_after_race(repo, record, metadata, exc)
        if existing is None:
            raise
        repo.summaries.offer(existing, described.summary)
        return UploadOutcome(UploadResult.IDENTICAL, existing)

    # -- index
    repo.index.add(stored)
    repo.summaries.offer(stored, described.summary)  # after the index: see SummaryCache.save
    log.info("%s: stored %s (%d bytes)", repo.name, stored.filename, stored.size)
    return UploadOutcome(UploadResult.STORED, stored)


def _verify_digests(upload: ReceivedUpload) -> None:
    """Every digest the client sent must match; at least one strong one must be sent.
    A digest field that arrived after the file is computed now, by a second read."""
    sent = {
        name: upload.fields[name].strip().lower()
        for name in dists.DIGESTS
        if upload.fields.get(name, "").strip()
    }
    if not any(name in sent for name in STRONG_DIGESTS):
        raise UploadRejected(
            "The upload carries no sha256_digest or blake2_256_digest field: send one "
            "(twine, uv publish and poetry do) so that the file can be checked"
        )
    for name, value in sent.items():
        actual = upload.digests.get(name) or dists.hash_file(upload.staged.path, name)
        if not hmac.compare_digest(value.encode(), actual.encode()):
            raise DigestMismatch(name.removesuffix("_digest"))


def _identical_after_race(
    repo: Repository, record: FileRecord, metadata: bytes | None, exc: FileExists
) -> FileRecord | None:
    """The name was taken while this upload was stored: by the same bytes (a racing
    upload, or one before a crash that came between storing and indexing), the stored
    file is indexed and its sidecar repaired, and the upload changes nothing; by other
    bytes, ``None``."""
    ref = exc.backend_ref or ""
    stored_sha256 = exc.sha256
    if stored_sha256 is None and ref:
        entry = StoredFile(ref, record.filename, record.size, record.upload_time)
        with tempfile.TemporaryDirectory(dir=repo.backend.staging_dir()) as folder:
            local = repo.backend.fetch_file(entry, Path(folder) / record.filename)
            stored_sha256 = dists.hash_file(local)
    if stored_sha256 != record.sha256:
        return None
    existing = repo.index.snapshot.find(record.project, record.filename)
    if existing is None:
        entry = StoredFile(ref, record.filename, record.size, record.upload_time)
        existing = repo.backend.adopt_file(entry, record.with_changes(backend_ref=ref), metadata)
        repo.index.add(existing)
    elif metadata is not None:
        entry = StoredFile(ref, record.filename, record.size, record.upload_time)
        repo.backend.adopt_file(entry, existing, metadata)  # a sidecar a crash cut off
    return existing


# -- receive --------------------------------------------------------------------------------


def _multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type, or ``UploadRejected``."""
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise UploadRejected(
            "Uploads must be multipart/form-data with a boundary, as twine, uv publish "
            "and poetry send them"
        )
    if len(boundary) > MAX_BOUNDARY:
        raise UploadRejected(
            f"The multipart boundary is longer than {MAX_BOUNDARY} characters (RFC 2046)"
        )
    return boundary


class MultipartUpload:
    """Incremental reader of one upload body. Call ``feed`` with body batches, then
    ``finish``; always call ``discard`` afterwards (it removes the staging file)."""

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
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._size = 0
        self._hashes = dists.Hashes()

    # -- driving ------------------------------------------------------------------
    def feed(self, data: bytes | bytearray) -> None:
        self.feed_all([bytes(data)])

    def feed_all(self, chunks: list[bytes]) -> None:
        try:
            for chunk in chunks:
                self._parser.write(chunk)
        except MultipartParseError as exc:
            raise UploadRejected(f"Malformed multipart body: {exc}") from exc

    def finish(self) -> ReceivedUpload:
        if not self._ended:
            raise UploadRejected("Malformed multipart body: it ends before its closing boundary")
        if self._path is None or self._filename is None:
            raise UploadRejected("The upload has no 'content' file part")
        self._close_file()
        digests = self._hashes.hexdigests()
        staged = StagedFile(self._path, self._size, digests["sha256_digest"])
        return ReceivedUpload(dict(self.fields), self._filename, staged, digests)

    def discard(self) -> None:
        try:
            self._close_file()
        except OSError:
            pass  # a full disk fails the flush too: the file goes all the same
        finally:
            if self._path is not None:
                self._path.unlink(missing_ok=True)

    def _close_file(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            try:
                handle.close()
            except OSError as exc:
                raise _storage_error(exc) from exc

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
        self._form_bytes += n  # endless header-only parts count against the form cap too
        if self._form_bytes > MAX_FORM_BYTES:
            raise FileTooLarge(MAX_FORM_BYTES, "form fields (besides the file)")

    def _on_header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name = bytearray()
        self._header_value = bytearray()

    def _on_headers_finished(self) -> None:
        params = _disposition_params(self._headers.get("content-disposition", b""))
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
        try:
            fd, name = create_private(self._staging_dir, ".upload-", ".part")
        except OSError as exc:
            raise _storage_error(exc) from exc
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=1024 * 1024)
        # Hash what the client sent digests for (fields usually come before the file);
        # sha256 always, it is the index's hash. A digest sent later is checked by a
        # second read.
        self._hashes = dists.Hashes(
            tuple(f for f in dists.DIGESTS if f in self.fields and f != "sha256_digest")
        )

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._part == "content":
            self._size += n
            if self._size > self._max_file_bytes:
                raise FileTooLarge(self._max_file_bytes)
            chunk = memoryview(data)[start:end]
            self._hashes.update(chunk)
            assert self._file is not None
            try:
                self._file.write(chunk)
            except OSError as exc:
                raise _storage_error(exc) from exc
            return
        self._form_bytes += n
        if self._form_bytes > MAX_FORM_BYTES:
            raise FileTooLarge(MAX_FORM_BYTES, "form fields (besides the file)")
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


@functools.lru_cache(maxsize=64)
def _disposition_params(header: bytes) -> dict[bytes, bytes]:
    """The parameters of a part's ``Content-Disposition`` (read only: the dict is
    shared). Cached: a form's field headers are the same in every upload, and parsing
    them was half of the receiving step's CPU for a small wheel (profiled)."""
    return parse_options_header(header)[1]


def _storage_error(exc: OSError) -> Exception:
    """A staging write that failed: a full disk is the client's 507, anything else the
    server's own fault."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("The server's storage is full; try again later")
    return exc
