"""The one exception tree of pywharf.

::

    PywharfError
    ├── ConfigError              a config or secret file is wrong (names file, table, key)
    ├── BackendError             raised by backends; translated from their client libraries
    │   ├── FileExists           create-only write refused: the filename is taken
    │   ├── FileMissing          the file is not in storage
    │   ├── AccessDenied         the backend refused the credentials it was given
    │   ├── BackendUnavailable   the remote cannot be reached now (503 + Retry-After)
    │   ├── IndexConflict        the remote index moved since it was read
    │   └── NotSupported         the backend does not offer this optional operation (405)
    └── UploadRejected           the client's upload is wrong (400 unless said otherwise)
        ├── InvalidFilename
        ├── InvalidMetadata
        ├── DigestMismatch
        └── FileTooLarge         (413)

Exceptions carry fields, never data packed into text. Only the web layer
(``pywharf_core.app``) turns them into HTTP responses.
"""

from __future__ import annotations


class PywharfError(Exception):
    """Base of every error pywharf raises on purpose."""


class ConfigError(PywharfError):
    """A configuration or secret source is invalid.

    ``source`` is the file (or ``"<text>"``), ``table`` the repository table and
    ``key`` the offending key, each ``None`` when it does not apply.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        table: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.table = table
        self.key = key

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.table:
            where.append(f"[{self.table}]")
        if self.key:
            where.append(f"key {self.key!r}")
        prefix = " ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class BackendError(PywharfError):
    """Base of the errors a backend raises."""


class FileExists(BackendError):
    """A create-only write found the filename taken.

    ``sha256`` is the stored file's hex digest and ``backend_ref`` the backend's reference
    to it, each when the backend knows it.
    """

    def __init__(
        self, filename: str, sha256: str | None = None, backend_ref: str | None = None
    ) -> None:
        super().__init__(f"File already exists: {filename}")
        self.filename = filename
        self.sha256 = sha256
        self.backend_ref = backend_ref


class FileMissing(BackendError):
    def __init__(self, filename: str) -> None:
        super().__init__(f"File not found in storage: {filename}")
        self.filename = filename


class AccessDenied(BackendError):
    """The backend itself refused the (admin) credentials it holds."""


class BackendUnavailable(BackendError):
    """The backend's remote cannot be reached; retrying later may work."""

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IndexConflict(BackendError):
    """``write_index`` found that the remote index changed since it was read."""


class NotSupported(BackendError):
    """An optional backend operation (yanking, deleting) that this backend lacks."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"This repository's storage backend does not support {operation}")
        self.operation = operation


class UploadRejected(PywharfError):
    """An upload the client must fix. ``status`` is the HTTP status to answer."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidFilename(UploadRejected):
    pass


class InvalidMetadata(UploadRejected):
    pass


class DigestMismatch(UploadRejected):
    def __init__(self, algorithm: str) -> None:
        super().__init__(
            f"The {algorithm} digest sent with the upload does not match the file received"
        )
        self.algorithm = algorithm


class FileTooLarge(UploadRejected):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"File too large: this repository accepts files of at most {limit} bytes")
        self.limit = limit
