"""The ``s3`` backend: files and index in an S3 bucket (AWS S3, MinIO, Ceph, R2 …).

Layout under ``<prefix>`` (default ``<repo name>/``)::

    index.toml                          the remote index; its ETag is its version
    <project>/<filename>                a distribution file; object metadata carries its
                                        sha256, requires-python and core-metadata sha256
    <project>/<filename>.metadata       its core metadata (PEP 658)
    <project>/<filename>.yanked         present when yanked; holds the reason

Creating a file is a conditional write (``If-None-Match: *``, on the single PUT or on
completing the multipart upload), so of any number of replicas exactly one creates a
filename. The index is replaced with ``If-Match`` on the ETag it was read with.
Downloads redirect to presigned URLs, or stream through the server (``proxy_downloads``).
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pywharf_core.backend import (
    Access,
    Backend,
    BackendContext,
    FileStream,
    OpenedFile,
    RedirectTo,
    StagedFile,
    compare_secrets,
    require_client_secrets,
)
from pywharf_core.errors import (
    AccessDenied,
    BackendError,
    BackendUnavailable,
    ConfigError,
    FileExists,
    FileMissing,
    IndexConflict,
    InvalidFilename,
    InvalidMetadata,
)
from pywharf_core.metadata import read_dist_metadata
from pywharf_core.names import parse_dist_filename
from pywharf_core.records import FileRecord

log = logging.getLogger(__name__)

INDEX_KEY = "index.toml"
#: Files up to this size go up in one PUT; larger ones in parts of this size, each read
#: into memory once: memory stays at one part whatever the file size.
PART_BYTES = 8 * 1024 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
KNOWN_PRESENT_MAX = 200_000
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
    read_secret: str | None = None
    write_secret: str | None = None
    max_file_bytes: int = 5368709119
    sync_index_interval: int = 60
    #: Lifetime of presigned download URLs, seconds.
    presign_expires: int = 300
    #: Stream downloads through the server instead of redirecting to the bucket.
    proxy_downloads: bool = False

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("bucket must not be empty")
        if min(self.max_file_bytes, self.sync_index_interval, self.presign_expires) <= 0:
            raise ValueError("max_file_bytes, sync_index_interval, presign_expires must be > 0")


def create(context: BackendContext, config: S3Config) -> S3Backend:
    require_client_secrets(context, config)
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError(
            "the s3 backend needs boto3: pip install 'pywharf[s3]'", table=context.repo_name
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


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Translate botocore's errors into pywharf's, in this one place. A 404 becomes
    ``FileMissing``; a 412 stays a ``ClientError`` for the caller to interpret."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if status == 412 or code == "PreconditionFailed":
            raise
        if status == 404 or code in ("NoSuchKey", "NotFound", "404"):
            raise FileMissing(what) from exc
        if code in _UNAVAILABLE_CODES or status >= 500 or status == 429:
            raise BackendUnavailable(f"S3 is unavailable ({code or status}) for {what}") from exc
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise AccessDenied(f"S3 refused the credentials ({code}) for {what}") from exc
        raise BackendError(
            f"S3 error {code or status} for {what}: {error.get('Message', '')}"
        ) from exc
    except BotoCoreError as exc:  # no connection, timeouts, …
        raise BackendUnavailable(f"S3 cannot be reached for {what}: {exc}") from exc


def _is_precondition_failure(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return bool(status == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed")


class S3Backend(Backend):
    def __init__(self, client: Any, config: S3Config, prefix: str) -> None:
        self.client = client
        self.config = config
        self.bucket = config.bucket
        self.prefix = prefix
        self.max_file_bytes = config.max_file_bytes
        self.sync_index_interval = config.sync_index_interval
        # Keys seen to exist. Files are immutable, so one HEAD per key per server life
        # keeps "missing" an honest FileMissing without a HEAD on every download.
        self._present: OrderedDict[str, None] = OrderedDict()

    def check_access(self, secret: str) -> Access:
        return compare_secrets(secret, self.config.read_secret, self.config.write_secret)

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
            with s3_errors(record.filename):
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
            stored_sha256 = self._stored_sha256(key)
            if stored_sha256 == record.sha256 and metadata is not None:
                self._put_metadata_if_absent(key, metadata)  # repair after a crash
            raise FileExists(record.filename, stored_sha256, key) from None
        # Written after the file: a losing replica must never replace the winner's.
        if metadata is not None:
            with s3_errors(record.filename + ".metadata"):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key + ".metadata",
                    Body=metadata,
                    ContentType="text/plain; charset=utf-8",
                )
        with s3_errors(record.filename):
            stored = self.client.head_object(Bucket=self.bucket, Key=key)
        return record.with_changes(backend_ref=key, upload_time=_epoch(stored["LastModified"]))

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
        with s3_errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        sha256 = head.get("Metadata", {}).get("sha256")
        return None if sha256 is None else str(sha256)

    def _put_metadata_if_absent(self, key: str, metadata: bytes) -> None:
        try:
            with s3_errors(key + ".metadata"):
                self.client.put_object(
                    Bucket=self.bucket, Key=key + ".metadata", Body=metadata, IfNoneMatch="*"
                )
        except Exception as exc:
            if not _is_precondition_failure(exc):
                raise

    def open_file(self, record: FileRecord) -> OpenedFile:
        return self._open(record.backend_ref or self._key(record.project, record.filename))

    def open_metadata(self, record: FileRecord) -> OpenedFile:
        key = record.backend_ref or self._key(record.project, record.filename)
        return self._open(key + ".metadata")

    def _open(self, key: str) -> OpenedFile:
        if not key.startswith(self.prefix):  # a reference from the index, outside ours
            raise FileMissing(key)
        if not self.config.proxy_downloads:
            self._check_present(key)
            with s3_errors(key):
                url = self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": key},
                    ExpiresIn=self.config.presign_expires,
                )
            return RedirectTo(str(url))
        with s3_errors(key):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        return FileStream(
            chunks=_guarded(body.iter_chunks(DOWNLOAD_CHUNK), key),
            size=int(response["ContentLength"]),
            close=body.close,
        )

    def _check_present(self, key: str) -> None:
        if key in self._present:
            return
        with s3_errors(key):
            self.client.head_object(Bucket=self.bucket, Key=key)
        self._present[key] = None
        while len(self._present) > KNOWN_PRESENT_MAX:
            self._present.popitem(last=False)

    def set_yanked(self, record: FileRecord, reason: str | None) -> None:
        key = (record.backend_ref or self._key(record.project, record.filename)) + ".yanked"
        with s3_errors(key):
            if reason is None:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            else:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=reason.encode("utf-8"))

    def list_files(self, known: Mapping[str, FileRecord] | None = None) -> Iterator[FileRecord]:
        known = known or {}
        objects: dict[str, dict[str, Any]] = {}
        with s3_errors("the bucket listing"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    objects[item["Key"]] = item
        for key in sorted(objects):
            name = key.rsplit("/", 1)[-1]
            if key == self.prefix + INDEX_KEY or name.endswith((".metadata", ".yanked")):
                continue
            try:
                dist = parse_dist_filename(name)
            except InvalidFilename:
                continue
            item = objects[key]
            yanked = self._read_text(key + ".yanked") if key + ".yanked" in objects else None
            previous = known.get(key)
            if (
                previous is not None
                and previous.size == item["Size"]
                and previous.upload_time == _epoch(item["LastModified"])
            ):
                yield previous.with_changes(yanked=yanked)
                continue
            try:
                yield self._describe(key, item, dist, key + ".metadata" in objects, yanked)
            except InvalidMetadata as exc:
                log.warning("skipping s3://%s/%s: %s", self.bucket, key, exc.message)

    def _describe(
        self, key: str, item: dict[str, Any], dist: Any, has_metadata: bool, yanked: str | None
    ) -> FileRecord:
        with s3_errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        meta = head.get("Metadata", {})
        sha256 = meta.get("sha256")
        requires_python = meta.get("requires-python")
        core_sha = meta.get("core-metadata-sha256") if has_metadata else None
        if sha256 is None or (dist.is_wheel and core_sha is None):
            # Put into the bucket by other means: read it once, as the job's import path.
            sha256, requires_python, core_sha = self._import(key, dist)
        return FileRecord(
            project=dist.project,
            filename=dist.filename,
            version=str(dist.version),
            sha256=sha256,
            size=int(item["Size"]),
            upload_time=_epoch(item["LastModified"]),
            requires_python=requires_python,
            yanked=yanked,
            core_metadata_sha256=core_sha,
            backend_ref=key,
        )

    def _import(self, key: str, dist: Any) -> tuple[str, str | None, str | None]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / dist.filename
            with s3_errors(key):
                self.client.download_file(self.bucket, key, str(path))
            hasher = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(DOWNLOAD_CHUNK):
                    hasher.update(chunk)
            meta = read_dist_metadata(path, dist)
        core_sha = None
        if meta.core_metadata is not None:
            core_sha = hashlib.sha256(meta.core_metadata).hexdigest()
            self._put_metadata_if_absent(key, meta.core_metadata)
        return hasher.hexdigest(), meta.requires_python, core_sha

    def _read_text(self, key: str) -> str:
        with s3_errors(key):
            return str(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode())

    # -- remote index -------------------------------------------------------------------
    def read_index(self) -> tuple[bytes, str] | None:
        try:
            with s3_errors("the index"):
                response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + INDEX_KEY)
                return bytes(response["Body"].read()), str(response["ETag"])
        except FileMissing:
            return None

    def index_version(self) -> str | None:
        try:
            with s3_errors("the index"):
                head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + INDEX_KEY)
                return str(head["ETag"])
        except FileMissing:
            return None

    def write_index(self, data: bytes, expected_version: str | None) -> str:
        condition = (
            {"IfNoneMatch": "*"} if expected_version is None else {"IfMatch": expected_version}
        )
        try:
            with s3_errors("the index"):
                response = self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.prefix + INDEX_KEY,
                    Body=data,
                    ContentType="application/toml",
                    **condition,
                )
        except Exception as exc:
            if _is_precondition_failure(exc):
                raise IndexConflict("the index changed since it was read") from None
            raise
        return str(response["ETag"])

    def _key(self, project: str, filename: str) -> str:
        return f"{self.prefix}{project}/{filename}"


def _guarded(chunks: Iterator[bytes], key: str) -> Iterator[bytes]:
    with s3_errors(key):
        yield from chunks


def _epoch(moment: Any) -> float:
    return float(calendar.timegm(moment.utctimetuple()))
