"""Promote: copy a release from one repository to another on the server side (devpi's
``push``), across backends, with the same bytes and hashes.

Each file is copied create-only: a file the target already holds with the same sha256
is left alone (``unchanged``), one it holds with other bytes stops the promotion
(``FileExists``), before anything is copied. The target's rules apply as to an upload:
its project status (PEP 792) and the filename-reuse rule. Bytes are streamed from the
source's storage into the target's staging folder, hashed on the way, and refused unless
the hash is the one the source's index holds.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import manage, status
from .backend import FileStream, LocalFile, OpenedFile, RedirectTo, StagedFile
from .dists import same_version
from .errors import BackendUnavailable, FileExists, NotFound
from .records import FileRecord

if TYPE_CHECKING:
    from .repository import Repository

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: the files copied, and those the target already held."""

    project: str
    version: str
    copied: tuple[FileRecord, ...]
    unchanged: tuple[FileRecord, ...]


def release_files(repo: Repository, project: str, version: str) -> tuple[FileRecord, ...]:
    """The files of ``version`` of ``project`` that ``repo`` offers; ``NotFound`` if none."""
    records = repo.index.snapshot.files_of(project) or ()
    if repo.status_of(project).hides_files:
        records = ()
    chosen = tuple(r for r in records if _same_version(r.version, version))
    if not chosen:
        raise NotFound(f"Project {project!r} has no files of version {version!r} here")
    return chosen


def promote(source: Repository, target: Repository, project: str, version: str) -> Promotion:
    """Copy every file of the release to ``target`` (blocking)."""
    files = release_files(source, project, version)
    status.check_uploads_allowed(target, project)
    todo: list[FileRecord] = []
    unchanged: list[FileRecord] = []
    for record in files:  # every refusal before any copy
        held = target.index.snapshot.find(project, record.filename)
        if held is not None:
            if not hmac.compare_digest(held.sha256, record.sha256):
                raise FileExists(record.filename, held.sha256)
            unchanged.append(held)
            continue
        if not target.policy.allow_filename_reuse:
            manage.check_filename_reuse(target, record.filename, record.sha256)
        todo.append(record)
    copied = []
    for record in todo:
        stored = _copy(source, target, record)
        if stored is None:
            unchanged.append(record)
        else:
            copied.append(stored)
    log.info(
        "promoted %s %s from %s to %s: %d copied, %d unchanged",
        project, version, source.name, target.name, len(copied), len(unchanged),
    )  # fmt: skip
    return Promotion(project, version, tuple(copied), tuple(unchanged))


def _copy(source: Repository, target: Repository, record: FileRecord) -> FileRecord | None:
    """One file into the target; ``None`` when a racing writer stored the same bytes."""
    metadata = None
    if record.core_metadata_sha256:
        metadata = _read_all(source.backend.open_file(record, metadata=True))
        if hashlib.sha256(metadata).hexdigest() != record.core_metadata_sha256:
            raise BackendUnavailable(f"the stored metadata of {record.filename} is not its own")
    staged = _stage(source.backend.open_file(record), target.backend.staging_dir(), record)
    try:
        fresh = record.with_changes(backend_ref="", upload_time=time.time(), yanked=None)
        try:
            stored = target.backend.put_file(fresh, staged, metadata)
        except FileExists as exc:
            if exc.sha256 is not None and hmac.compare_digest(exc.sha256, record.sha256):
                return None
            raise
    finally:
        staged.path.unlink(missing_ok=True)
    target.index.add(stored)
    return stored


def _stage(opened: OpenedFile, folder: Path, record: FileRecord) -> StagedFile:
    """The file's bytes in ``folder``, hashed and checked against ``record``."""
    digest = hashlib.sha256()
    size = 0
    fd, name = tempfile.mkstemp(dir=folder, prefix=".upload-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(opened):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if digest.hexdigest() != record.sha256 or size != record.size:
            raise BackendUnavailable(
                f"the stored bytes of {record.filename} do not match its index record"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StagedFile(path, size, record.sha256)


def _chunks(opened: OpenedFile) -> Iterator[bytes]:
    if isinstance(opened, LocalFile):
        with opened.path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
    elif isinstance(opened, FileStream):
        try:
            yield from opened.chunks
        finally:
            opened.close()
    else:
        assert isinstance(opened, RedirectTo)
        try:
            # The backend's own expiring URL (S3 presigned, GitHub's signed asset URL).
            with urllib.request.urlopen(opened.url, timeout=60) as response:  # noqa: S310
                while chunk := response.read(CHUNK):
                    yield chunk
        except OSError as exc:
            raise BackendUnavailable(f"cannot read the source file: {exc}") from exc


def _read_all(opened: OpenedFile) -> bytes:
    return b"".join(_chunks(opened))


def _same_version(a: str, b: str) -> bool:
    try:
        return same_version(a, b)
    except ValueError:
        return a == b
