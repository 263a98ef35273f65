"""The one exception tree of pywharf.

::

    PywharfError
    ├── ConfigError              a config or secret file is wrong (names file, table, key)
    ├── IndexFileError           the remote index file cannot be read
    │   └── IndexTooNew          …written by a newer pywharf
    ├── InitializeRefused        POST /initialize/ without the proof it needs
    ├── BackendError             raised by backends; translated from their client libraries
    │   ├── FileExists           create-only write refused: the filename is taken
    │   ├── FileMissing          the file is not in storage
    │   ├── AccessDenied         the backend refused the credentials it was given
    │   ├── BackendUnavailable   the remote cannot be reached now
    │   ├── IndexConflict        the remote index moved since it was read
    │   ├── InsufficientStorage  the storage is full
    │   └── NotSupported         the backend does not offer this optional operation
    ├── FilenameReused           an upload of a deleted filename with other bytes
    ├── ProjectStatusRefusal     an upload to an archived or quarantined project
    ├── UploadRejected           the client's upload is wrong
    │   ├── InvalidFilename
    │   ├── InvalidMetadata
    │   ├── DigestMismatch
    │   └── FileTooLarge
    ├── RequestRefused           who is asking may not do this
    │   ├── AuthRequired         no (valid) credentials
    │   ├── LoginRequired        a browser without a session: to the login page
    │   └── NotPermitted         valid credentials, too little permission
    ├── PublishingRefused        trusted publishing: an ID token that proves nothing
    ├── NotFound                 no such project or file in the repository
    ├── BadRequest               a request the client must fix (not an upload)
    └── NotAcceptable            nothing the client accepts can be served

Exceptions carry fields, never data packed into text, and no HTTP status: the web layer
(``pywharf_core.app``) maps each class to a response in one table.
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


class IndexFileError(PywharfError):
    """The remote index file cannot be read."""


class IndexTooNew(IndexFileError):
    """The remote index is of a format newer than this pywharf reads."""


class InitializeRefused(PywharfError):
    """``POST /initialize/`` without the proof it needs."""


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
    """The backend's remote cannot be reached; retrying after ``retry_after`` s may work."""

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamUnavailable(BackendUnavailable):
    """A repository's upstream index failed (or refused this server) with nothing cached
    to serve instead. Its message is written to be shown to the client: it names the
    project and the reason, never upstream's address or credentials. ``status`` is
    upstream's HTTP status when it answered (``None``: it could not be reached)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: int = 30) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


class IndexConflict(BackendError):
    """``write_index`` found that the remote index changed since it was read."""


class InsufficientStorage(BackendError):
    """The storage (or the staging folder) is full; nothing was kept."""


class NotSupported(BackendError):
    """An optional backend operation (yanking, deleting) that this backend lacks."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"This repository's storage backend does not support {operation}")
        self.operation = operation


class FilenameReused(PywharfError):
    """An upload under the name of a deleted file, with other bytes than it had.

    Refused unless the repository's ``allow_filename_reuse``: lock files (PEP 751) and
    hash-checking installs record a filename with its hash. ``deleted_sha256`` is the
    deleted file's digest.
    """

    def __init__(self, filename: str, deleted_sha256: str) -> None:
        super().__init__(
            f"File name reuse: {filename} was deleted from this repository, and its name "
            "cannot be used again with other contents (lock files and hash-checking "
            "installs recorded it with its hash); upload a new version instead"
        )
        self.filename = filename
        self.deleted_sha256 = deleted_sha256


class ProjectStatusRefusal(PywharfError):
    """An upload to a project whose status (PEP 792) takes none: ``status`` is
    ``archived`` or ``quarantined``, ``reason`` the maintainers' (may be ``None``)."""

    def __init__(self, project: str, status: str, reason: str | None) -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(f"Project {project} is {status}{why}: it takes no uploads")
        self.project = project
        self.status = status
        self.reason = reason


class UploadRejected(PywharfError):
    """An upload the client must fix; ``message`` says what to fix."""

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
    """More bytes than ``limit`` (the file, or ``what`` names another part)."""

    def __init__(self, limit: int, what: str = "files") -> None:
        super().__init__(f"Too large: this repository accepts {what} of at most {limit} bytes")
        self.limit = limit
        self.what = what


class RequestRefused(PywharfError):
    """Base of the refusals that depend on who is asking."""


class AuthRequired(RequestRefused):
    """No credentials, or wrong ones; ``realm`` goes into ``WWW-Authenticate``."""

    def __init__(self, realm: str) -> None:
        super().__init__(f"Authentication required for {realm!r}")
        self.realm = realm


class LoginRequired(RequestRefused):
    """A browser without a session: sent to the login page, then back."""


class NotPermitted(RequestRefused):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PublishingRefused(PywharfError):
    """Trusted publishing refused an ID token: ``code`` (PyPI's: ``invalid-token``,
    ``invalid-publisher``, ``invalid-payload``) and ``description`` say why."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class NotFound(PywharfError):
    """No such project or file here; ``message`` names what was asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(PywharfError):
    """A request (not an upload) the client must fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAcceptable(PywharfError):
    """Nothing the client accepts can be served."""
