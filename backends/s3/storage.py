"""The ``s3`` backend: files and index in an S3 bucket (AWS S3, MinIO, Ceph, R2 …).

Layout under ``<prefix>`` (default ``<repo name>/``)::

    index.toml                          the remote index; its ETag is its version
    <project>/<filename>                a distribution file; object metadata carries its
                                        sha256, requires-python and core-metadata sha256
    <project>/<filename>.metadata       its core metadata (PEP 658)
    <project>/<filename>.yanked         present when yanked; holds the reason
    .pywharf-state/<name>               the core's shared documents (tokens, status …)
    .pywharf-upstream/<project>/<file>  files fetched from the upstream index (shared
                                        by the replicas, never listed as the repository's)
    .pywharf-changes/<ms>-<uuid>.json   the change feed: one record per upload or yank
                                        not yet in the index (<ms>: 13-digit epoch ms)

Creating a file is a conditional write (``If-None-Match: *``, on the single PUT or on
completing the multipart upload), so of any number of replicas exactly one creates a
filename. The index is replaced with ``If-Match`` on the ETag it was read with.
Downloads redirect to presigned URLs, or stream through the server (``proxy_downloads``).

The change feed lets replicas see each other's uploads and yanks within a sync interval,
before ``update_index`` runs (``changes_since``). Each change is an object of its own
(S3 has no append), named by its writer's clock so that names sort by time. A reader
lists from a little before the newest name it saw (``CHANGE_LAG_SECONDS``: writers'
clocks differ, and a PUT may complete after a later-named one was listed) and reads only
the names it has not reported yet: a round with nothing new is one LIST. ``update_index``
deletes the changes the index it wrote holds (``compact_changes``).
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pywharf_core.backend import (
    Backend,
    BackendContext,
    FileStream,
    OpenedFile,
    RedirectTo,
    StagedFile,
    StoredFile,
)
from pywharf_core.errors import (
    AccessDenied,
    BackendError,
    BackendUnavailable,
    ConfigError,
    FileExists,
    FileMissing,
    IndexConflict,
)
from pywharf_core.records import FileRecord
from pywharf_core.state import check_state_name

log = logging.getLogger(__name__)

INDEX_KEY = "index.toml"
#: Files up to this size go up in one PUT; larger ones in parts of this size, each read
#: into memory once: memory stays at one part whatever the file size.
PART_BYTES = 8 * 1024 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
KNOWN_PRESENT_MAX = 200_000
UPSTREAM_CACHE = ".pywharf-upstream"
STATE = ".pywharf-state"
#: The change feed (see the module docstring).
CHANGES = ".pywharf-changes"
_CHANGE_NAME = re.compile(r"(\d{13})-[0-9a-f]{32}\.json")
#: How far before the newest change it saw a reader lists again. A change named earlier
#: than that when it appears (a writer's clock further behind, or a slower PUT) reaches
#: the other replicas with the next update_index only.
CHANGE_LAG_SECONDS = 120
#: Change objects read at once (a full reload reads the whole feed).
CHANGE_READERS = 8
#: Cursors of the change feed a backend remembers (the sync uses the last one only).
CURSORS_KEPT = 16
#: DeleteObjects takes at most this many keys.
DELETE_BATCH = 1000
#: Changes whose publication failed, kept to be tried again (beyond: left to the job).
UNPUBLISHED_MAX = 10_000
#: Multipart uploads begun longer ago than this are abandoned (update_index aborts them).
ABANDONED_UPLOAD_SECONDS = 24 * 3600
_UNAVAILABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
}


@dataclass(frozen=True)
class S3Config:
    bucket: str
    #: Key prefix of this repository; default "<repo name>/".
    prefix: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    #: Lifetime of presigned download URLs, seconds.
    presign_expires: int = 300
    #: Stream downloads through the server instead of redirecting to the bucket.
    proxy_downloads: bool = False

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("bucket must not be empty")
        if self.presign_expires <= 0:
            raise ValueError("presign_expires must be positive")


def create(context: BackendContext, config: S3Config) -> S3Backend:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError(
            "the s3 backend needs boto3: pip install '.[s3]' in a pywharf checkout (or boto3)",
            table=context.repo_name,
        ) from exc
    credentials: dict[str, str] = {}
    if context.admin_secret:  # "ACCESS_KEY_ID:SECRET_ACCESS_KEY"; else boto3's own chain
        key_id, sep, secret_key = context.admin_secret.partition(":")
        if not sep or not key_id or not secret_key:
            raise ConfigError(
                "the s3 admin secret must be ACCESS_KEY_ID:SECRET_ACCESS_KEY",
                table=context.repo_name,
            )
        credentials = {"aws_access_key_id": key_id, "aws_secret_access_key": secret_key}
    client = boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=config.region or "us-east-1",
        config=Config(
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
        ),
        **credentials,
    )
    prefix = config.prefix if config.prefix is not None else f"{context.repo_name}/"
    return S3Backend(client, config, prefix)


#: After S3 was found unreachable, downloads check it again before redirecting to a
#: presigned URL, for this many seconds (a URL into an outage cannot work).
DOWN_RECHECK_SECONDS = 30


class _Outage:
    """When S3 was last found unreachable (shared by the backend's calls)."""

    def __init__(self) -> None:
        self.until = 0.0

    def seen(self) -> None:
        self.until = time.monotonic() + DOWN_RECHECK_SECONDS

    @property
    def suspected(self) -> bool:
        return time.monotonic() < self.until


@contextmanager
def s3_errors(what: str, outage: _Outage | None = None) -> Iterator[None]:
    """Translate botocore's errors into pywharf's, in this one place. A 404 becomes
    ``FileMissing``; a failed condition (412, or 409 ``ConditionalRequestConflict`` for
    racing conditional writes) stays a ``ClientError`` for the caller to interpret."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if _is_precondition_failure(exc):
            raise
        if status == 404 or code in ("NoSuchKey", "NotFound", "404"):
            raise FileMissing(what) from exc
        if code in _UNAVAILABLE_CODES or status >= 500 or status == 429:
            if outage is not None:
                outage.seen()
            raise BackendUnavailable(f"S3 is unavailable ({code or status}) for {what}") from exc
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise AccessDenied(f"S3 refused the credentials ({code}) for {what}") from exc
        raise BackendError(
            f"S3 error {code or status} for {what}: {error.get('Message', '')}"
        ) from exc
    except BotoCoreError as exc:  # no connection, timeouts, …
        if outage is not None:
            outage.seen()
        raise BackendUnavailable(f"S3 cannot be reached for {what}: {exc}") from exc


def _is_precondition_failure(exc: Exception) -> bool:
    """A conditional write that lost: 412 PreconditionFailed, or 409
    ConditionalRequestConflict (AWS's answer to racing conditional writes of one key)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = exc.response.get("Error", {}).get("Code")
    return bool(
        status == 412
        or code in ("PreconditionFailed", "ConditionalRequestConflict")
        or (status == 409 and code in (None, "", "ConditionalRequestConflict"))
    )


class S3Backend(Backend):
    def __init__(self, client: Any, config: S3Config, prefix: str) -> None:
        self.client = client
        self.config = config
        self.bucket = config.bucket
        self.prefix = prefix
        self._outage = _Outage()
        # Keys seen to exist. Files are immutable, so one HEAD per key per server life
        # keeps "missing" an honest FileMissing without a HEAD on every download.
        self._present: OrderedDict[str, None] = OrderedDict()
        self._changes_prefix = f"{prefix}{CHANGES}/"
        # The reader's side of the change feed: for each cursor handed out lately, the
        # names within its lag window reported up to it.
        self._feed_lock = threading.Lock()
        self._feed_cursors: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._feed_serial = 0
        self._unpublished: deque[FileRecord] = deque(maxlen=UNPUBLISHED_MAX)

    # -- files ------------------------------------------------------------------------
    def put_file(
        self, record: FileRecord, staged: StagedFile, metadata: bytes | None = None
    ) -> FileRecord:
        key = self._key(record.project, record.filename)
        object_metadata = {"sha256": record.sha256}
        if record.requires_python:
            object_metadata["requires-python"] = record.requires_python
        if record.core_metadata_sha256:
            object_metadata["core-metadata-sha256"] = record.core_metadata_sha256
        try:
            with s3_errors(record.filename, self._outage):
                if staged.size <= PART_BYTES:
                    with staged.open() as body:
                        self.client.put_object(
                            Bucket=self.bucket,
                            Key=key,
                            Body=body,
                            IfNoneMatch="*",
                            Metadata=object_metadata,
                            ContentType="application/octet-stream",
                        )
                else:
                    self._multipart_create(key, staged, object_metadata)
        except Exception as exc:
            if not _is_precondition_failure(exc):
                raise
            raise FileExists(record.filename, self._stored_sha256(key), key) from None
        # Written after the file: a losing replica must never replace the winner's.
        if metadata is not None:
            with s3_errors(record.filename + ".metadata", self._outage):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key + ".metadata",
                    Body=metadata,
                    ContentType="text/plain; charset=utf-8",
                )
        with s3_errors(record.filename, self._outage):
            stored = self.client.head_object(Bucket=self.bucket, Key=key)
        published = record.with_changes(backend_ref=key, upload_time=_epoch(stored["LastModified"]))
        self._publish_change(published)
        return published

    def _multipart_create(self, key: str, staged: StagedFile, metadata: dict[str, str]) -> None:
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, Metadata=metadata, ContentType="application/octet-stream"
        )
        upload_id = upload["UploadId"]
        try:
            parts = []
            with staged.open() as handle:
                number = 1
                while chunk := handle.read(PART_BYTES):
                    part = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                    parts.append({"ETag": part["ETag"], "PartNumber": number})
                    number += 1
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # the original error matters more
                log.warning("could not abort the multipart upload of %s", key)
            raise

    def _stored_sha256(self, key: str) -> str | None:
        with s3_errors(key, self._outage):
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        sha256 = head.get("Metadata", {}).get("sha256")
        return None if sha256 is None else str(sha256)

    def _put_metadata_if_absent(self, key: str, metadata: bytes) -> None:
        try:
            with s3_errors(key + ".metadata", self._outage):
                self.client.put_object(
                    Bucket=self.bucket, Key=key + ".metadata", Body=metadata, IfNoneMatch="*"
                )
        except Exception as exc:
            if not _is_precondition_failure(exc):
                raise

    def open_file(self, record: FileRecord, *, metadata: bool = False) -> OpenedFile:
        key = record.backend_ref or self._key(record.project, record.filename)
        return self._open(key + ".metadata" if metadata else key)

    def _open(self, key: str) -> OpenedFile:
        if not key.startswith(self.prefix):  # a reference from the index, outside ours
            raise FileMissing(key)
        if not self.config.proxy_downloads:
            self._check_present(key)
            with s3_errors(key, self._outage):
                url = self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": key},
                    ExpiresIn=self.config.presign_expires,
                )
            return RedirectTo(str(url))
        with s3_errors(key, self._outage):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        return FileStream(
            chunks=_guarded(body.iter_chunks(DOWNLOAD_CHUNK), key, self._outage),
            size=int(response["ContentLength"]),
            close=body.close,
        )

    def _check_present(self, key: str) -> None:
        # A key seen before needs no HEAD, unless S3 was unreachable lately: a presigned
        # URL into an outage cannot work, and the client had better hear 503.
        if key in self._present and not self._outage.suspected:
            return
        with s3_errors(key, self._outage):
            self.client.head_object(Bucket=self.bucket, Key=key)
        self._present[key] = None
        while len(self._present) > KNOWN_PRESENT_MAX:
            self._present.popitem(last=False)

    def read_state(self, name: str) -> tuple[bytes, str] | None:
        return self._get_if_stored(f"{self.prefix}{STATE}/{check_state_name(name)}")

    def _get_if_stored(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or ``None`` when there is no such object."""
        try:
            with s3_errors(key, self._outage):
                response = self.client.get_object(Bucket=self.bucket, Key=key)
                return bytes(response["Body"].read()), str(response["ETag"])
        except FileMissing:
            return None

    def write_state(self, name: str, data: bytes, expected_version: str | None) -> str:
        key = f"{self.prefix}{STATE}/{check_state_name(name)}"
        return self._put_conditionally(key, data, expected_version, "application/json")

    def delete_state(self, name: str) -> None:
        key = f"{self.prefix}{STATE}/{check_state_name(name)}"
        with s3_errors(key, self._outage):
            self.client.delete_object(Bucket=self.bucket, Key=key)  # absent: no error in S3

    def put_cached(self, key: str, staged: Path) -> None:
        target = f"{self.prefix}{UPSTREAM_CACHE}/{key}"
        try:
            with s3_errors(target, self._outage):
                size = staged.stat().st_size
                if size <= PART_BYTES:
                    with staged.open("rb") as body:
                        self.client.put_object(
                            Bucket=self.bucket, Key=target, Body=body, IfNoneMatch="*"
                        )
                else:
                    self._multipart_create(target, StagedFile(staged, size, ""), {})
        except Exception as exc:
            if not _is_precondition_failure(exc):
                raise
            raise FileExists(key) from None

    def open_cached(self, key: str) -> OpenedFile:
        return self._open(f"{self.prefix}{UPSTREAM_CACHE}/{key}")

    def set_yanked(self, record: FileRecord, reason: str | None) -> None:
        key = (record.backend_ref or self._key(record.project, record.filename)) + ".yanked"
        with s3_errors(key, self._outage):
            if reason is None:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            else:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=reason.encode("utf-8"))
        self._publish_change(record.with_changes(yanked=reason))

    def delete_file(self, record: FileRecord) -> None:
        key = record.backend_ref or self._key(record.project, record.filename)
        if not key.startswith(self.prefix):  # a reference from the index, outside ours
            raise FileMissing(record.filename)
        self._present.pop(key, None)
        stored = self._is_stored(record)
        with s3_errors(record.filename, self._outage):
            # The sidecars first (see the file_system backend); deleting an absent key
            # is no error in S3.
            for sidecar in (key + ".yanked", key + ".metadata"):
                self.client.delete_object(Bucket=self.bucket, Key=sidecar)
            if stored:
                self.client.delete_object(Bucket=self.bucket, Key=key)
        if not stored:
            raise FileMissing(record.filename)

    def list_files(self) -> Iterator[StoredFile]:
        self._abort_abandoned_uploads()
        objects: dict[str, dict[str, Any]] = {}
        with s3_errors("the bucket listing", self._outage):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    objects[item["Key"]] = item
        for key in sorted(objects):
            name = key.rsplit("/", 1)[-1]
            if key == self.prefix + INDEX_KEY or name.endswith((".metadata", ".yanked")):
                continue
            if any(part.startswith(".") for part in key[len(self.prefix) :].split("/")):
                continue  # pywharf's own folders (the upstream cache), not distributions
            item = objects[key]
            yield StoredFile(
                ref=key,
                filename=name,
                size=int(item["Size"]),
                mtime=_epoch(item["LastModified"]),
                yanked=self._read_text(key + ".yanked") if key + ".yanked" in objects else None,
                has_metadata=key + ".metadata" in objects,
            )

    def _abort_abandoned_uploads(self) -> None:
        """Abort multipart uploads under this prefix begun more than a day ago: a server
        that died, or an abort that failed during an outage, leaves their parts billed
        but invisible. (On AWS a bucket lifecycle rule does the same: README.)"""
        cutoff = time.time() - ABANDONED_UPLOAD_SECONDS
        try:
            with s3_errors("the multipart upload listing", self._outage):
                paginator = self.client.get_paginator("list_multipart_uploads")
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                    for upload in page.get("Uploads", []):
                        if _epoch(upload["Initiated"]) < cutoff:
                            self.client.abort_multipart_upload(
                                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                            )
                            log.info("aborted an abandoned multipart upload of %s", upload["Key"])
        except (BackendError, FileMissing) as exc:
            log.warning("could not sweep abandoned multipart uploads: %s", exc)

    def stored_fields(self, entry: StoredFile) -> Mapping[str, Any] | None:
        """The record fields ``put_file`` kept in the object's metadata (one HEAD)."""
        with s3_errors(entry.ref, self._outage):
            head = self.client.head_object(Bucket=self.bucket, Key=entry.ref)
        meta = head.get("Metadata", {})
        if not meta.get("sha256"):
            return None
        return {
            "sha256": meta["sha256"],
            "requires_python": meta.get("requires-python"),
            "core_metadata_sha256": meta.get("core-metadata-sha256"),
        }

    def fetch_file(self, entry: StoredFile, into: Path) -> Path:
        if not entry.ref.startswith(self.prefix):
            raise FileMissing(entry.ref)
        with s3_errors(entry.ref, self._outage):
            self.client.download_file(self.bucket, entry.ref, str(into))
        return into

    def adopt_file(
        self, entry: StoredFile, record: FileRecord, metadata: bytes | None
    ) -> FileRecord:
        if metadata is not None:
            self._put_metadata_if_absent(entry.ref, metadata)
        return record

    def _read_text(self, key: str) -> str:
        with s3_errors(key, self._outage):
            return str(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode())

    # -- the change feed ----------------------------------------------------------------
    def changes_since(self, cursor: str | None) -> tuple[list[FileRecord], str | None]:
        """The change records named since ``cursor`` (``None``: the whole feed), in name
        order, and the next cursor (``"<mark ms>.<serial>"``). One LIST from the mark less
        ``CHANGE_LAG_SECONDS``, then a GET per object not reported yet. The names of the
        window already reported are remembered here for the last ``CURSORS_KEPT``
        cursors handed out; another cursor (of another process) reads its window again:
        records twice rather than one missed."""
        with self._feed_lock:
            self._retry_unpublished()
            mark = _cursor_mark(cursor)
            seen = self._feed_cursors.get(cursor or "", frozenset())
            lag = CHANGE_LAG_SECONDS * 1000
            listed = self._list_changes(max((mark or 0) - lag, 0))
            fresh = [key for key, _ in listed if key not in seen]
            records = [r for _, r in self._read_changes(fresh) if r is not None]
            # The mark never runs ahead of this clock: a writer whose clock is ahead
            # must not hide the changes of the others for as long.
            newest = min(max((stamp for _, stamp in listed), default=0), _now_ms())
            mark = max(mark or 0, newest)
            self._feed_serial += 1
            handed_out = f"{mark}.{self._feed_serial}"
            window = frozenset(key for key, stamp in listed if stamp >= mark - lag)
            self._feed_cursors[handed_out] = window
            while len(self._feed_cursors) > CURSORS_KEPT:
                self._feed_cursors.popitem(last=False)
            return records, handed_out

    def compact_changes(self, indexed: Callable[[FileRecord], bool]) -> None:
        """Delete the change objects the index just written holds, those a later change
        of the same file supersedes, those of files no longer stored (deleted), and
        unreadable ones. What stays happened after the job listed the bucket."""
        keys = [key for key, _ in self._list_changes(0)]
        latest: dict[str, tuple[str, FileRecord]] = {}
        doomed = []
        for key, record in self._read_changes(keys):
            if record is None:
                doomed.append(key)  # unreadable: warned about once more, then gone
                continue
            if (previous := latest.get(record.filename)) is not None:
                doomed.append(previous[0])
            latest[record.filename] = (key, record)
        doomed += [key for key, r in latest.values() if indexed(r) or not self._is_stored(r)]
        self._delete_keys(sorted(doomed))

    def _publish_change(self, record: FileRecord) -> None:
        """Tell the other replicas of ``record``. A failure fails nothing: the file is
        stored and the next ``update_index`` indexes it; the change is tried again on
        this server's next sync round."""
        try:
            self._put_change(record)
        except BackendError as exc:
            log.warning(
                "could not publish the change of %s to the other replicas (tried again "
                "on the next sync): %s",
                record.filename,
                exc,
            )
            self._unpublished.append(record)

    def _retry_unpublished(self) -> None:
        while self._unpublished:
            record = self._unpublished[0]
            try:
                self._put_change(record)
            except BackendError:
                return  # still failing: the next round tries again
            self._unpublished.popleft()
            log.info("published the change of %s after all", record.filename)

    def _put_change(self, record: FileRecord) -> None:
        key = f"{self._changes_prefix}{_now_ms():013d}-{uuid.uuid4().hex}.json"
        body = json.dumps(record.to_dict(), sort_keys=True).encode("utf-8")
        with s3_errors(key, self._outage):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )

    def _list_changes(self, since_ms: int) -> list[tuple[str, int]]:
        """The change objects named at ``since_ms`` or later, as (key, stamp), in order."""
        start_after = f"{self._changes_prefix}{since_ms:013d}"  # sorts before "<ms>-…"
        found = []
        with s3_errors("the change feed", self._outage):
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=self._changes_prefix, StartAfter=start_after
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])
                    if match := _CHANGE_NAME.fullmatch(key[len(self._changes_prefix) :]):
                        found.append((key, int(match.group(1))))
        return found

    def _read_changes(self, keys: list[str]) -> list[tuple[str, FileRecord | None]]:
        """Each key with its record (``None``: unreadable, skipped with a warning), in
        order; keys deleted meanwhile (compacted) are left out."""
        if len(keys) <= 1:
            bodies = [self._read_change(key) for key in keys]
        else:
            with ThreadPoolExecutor(min(CHANGE_READERS, len(keys))) as pool:
                bodies = list(pool.map(self._read_change, keys))
        pairs = zip(keys, bodies, strict=True)
        return [(key, _change_record(body, key)) for key, body in pairs if body is not None]

    def _read_change(self, key: str) -> bytes | None:
        stored = self._get_if_stored(key)
        return None if stored is None else stored[0]

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with s3_errors("the change feed", self._outage):
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            for error in response.get("Errors", []):
                log.warning("could not delete %s: %s", error.get("Key"), error.get("Message"))

    def _is_stored(self, record: FileRecord) -> bool:
        key = record.backend_ref or self._key(record.project, record.filename)
        if not key.startswith(self.prefix):
            return False
        try:
            with s3_errors(key, self._outage):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except FileMissing:
            return False
        return True

    # -- remote index -------------------------------------------------------------------
    def read_index(self) -> tuple[bytes, str] | None:
        try:
            with s3_errors("the index", self._outage):
                response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + INDEX_KEY)
                return bytes(response["Body"].read()), str(response["ETag"])
        except FileMissing:
            return None

    def index_version(self) -> str | None:
        try:
            with s3_errors("the index", self._outage):
                head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + INDEX_KEY)
                return str(head["ETag"])
        except FileMissing:
            return None

    def write_index(self, data: bytes, expected_version: str | None) -> str:
        return self._put_conditionally(
            self.prefix + INDEX_KEY, data, expected_version, "application/toml"
        )

    def _put_conditionally(
        self, key: str, data: bytes, expected_version: str | None, content_type: str
    ) -> str:
        """Compare-and-swap of one object on its ETag; ``IndexConflict`` when it moved."""
        condition = (
            {"IfNoneMatch": "*"} if expected_version is None else {"IfMatch": expected_version}
        )
        try:
            with s3_errors(key, self._outage):
                response = self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    ContentType=content_type,
                    **condition,
                )
        except Exception as exc:
            if _is_precondition_failure(exc):
                raise IndexConflict(f"{key} changed since it was read") from None
            raise
        return str(response["ETag"])

    def _key(self, project: str, filename: str) -> str:
        return f"{self.prefix}{project}/{filename}"


def _guarded(chunks: Iterator[bytes], key: str, outage: _Outage) -> Iterator[bytes]:
    with s3_errors(key, outage):
        yield from chunks


def _epoch(moment: Any) -> float:
    return float(calendar.timegm(moment.utctimetuple()))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _cursor_mark(cursor: str | None) -> int | None:
    """The mark of a cursor ``changes_since`` handed out; ``None`` for anything else
    (then the whole feed is read)."""
    mark = (cursor or "").partition(".")[0]
    return int(mark) if mark.isdigit() else None


def _change_record(body: bytes, key: str) -> FileRecord | None:
    try:
        return FileRecord.from_dict(json.loads(body))
    except (ValueError, KeyError, TypeError):
        log.warning("skipping an unreadable change record %s", key)
        return None
