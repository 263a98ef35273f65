"""The backend contract and the plugin registry.

A backend is a package that registers a ``BackendSpec`` under the entry-point group
``pywharf.backends``; the built-in backends register exactly as a third party's would::

    [project.entry-points."pywharf.backends"]
    file_system = "pywharf_backends.file_system:SPEC"

Methods of ``Backend`` block; the server calls them from worker threads.
"""

from __future__ import annotations

import abc
import builtins
import enum
import hmac
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ConfigError, NotSupported
from .records import FileRecord

ENTRY_POINT_GROUP = "pywharf.backends"


class Access(enum.IntEnum):
    """What a secret allows; ordered so that ``access >= Access.READ`` reads well."""

    NONE = 0
    READ = 1
    WRITE = 2


def compare_secrets(secret: str, read_secret: str | None, write_secret: str | None) -> Access:
    """The access ``secret`` grants against a repository's read and write secrets, in
    constant time: both comparisons always run, and an unset secret matches nothing."""
    given = secret.encode("utf-8")
    write = (write_secret or "").encode("utf-8")
    read = (read_secret or "").encode("utf-8")
    is_write = hmac.compare_digest(given, write) and bool(write)
    is_read = hmac.compare_digest(given, read) and bool(read)
    if is_write:
        return Access.WRITE
    return Access.READ if is_read else Access.NONE


def require_client_secrets(context: BackendContext, settings: Any) -> None:
    """A serving repository needs ``read_secret`` and ``write_secret``; a job needs none."""
    if context.serving:
        for key in ("read_secret", "write_secret"):
            if not getattr(settings, key):
                raise ConfigError(
                    "required key is missing or empty", table=context.repo_name, key=key
                )


@dataclass(frozen=True)
class StagedFile:
    """An upload fully received on local disk, hashed and counted.

    ``path`` lies in the backend's ``staging_dir()``, so a local backend may link it into
    place; remote backends read it with ``open()``. The server deletes it afterwards.
    """

    path: Path
    size: int
    sha256: str

    def open(self) -> BinaryIO:
        return self.path.open("rb")


@dataclass(frozen=True)
class LocalFile:
    """``open_file`` answer: a file on this machine, served by the server itself."""

    path: Path


@dataclass(frozen=True)
class RedirectTo:
    """``open_file`` answer: send the client to this (expiring) URL."""

    url: str


@dataclass(frozen=True)
class FileStream:
    """``open_file`` answer: a stream of chunks; ``close`` is called when done."""

    chunks: Iterator[bytes]
    size: int | None = None
    close: Callable[[], None] = lambda: None


OpenedFile = LocalFile | RedirectTo | FileStream


class Backend(abc.ABC):
    """Storage of one package repository. Subclasses implement the abstract methods."""

    #: Largest accepted distribution file, in bytes.
    max_file_bytes: int
    #: Seconds between checks of the remote index.
    sync_index_interval: int

    @abc.abstractmethod
    def check_access(self, secret: str) -> Access:
        """What ``secret`` may do. A wrong secret is ``Access.NONE``, not an error;
        an unreachable remote raises ``BackendUnavailable``. Compare in constant time."""

    @abc.abstractmethod
    def put_file(
        self, record: FileRecord, staged: StagedFile, metadata: bytes | None = None
    ) -> FileRecord:
        """Store ``staged`` as ``record.filename`` (and its core metadata beside it).

        Create-only and atomic: afterwards the file is either fully stored or invisible.
        Raises ``FileExists`` (with the stored sha256 when known) if the name is taken.
        Returns the record completed with ``backend_ref``.
        """

    @abc.abstractmethod
    def open_file(self, record: FileRecord) -> OpenedFile:
        """How to deliver a stored file; raises ``FileMissing``."""

    @abc.abstractmethod
    def open_metadata(self, record: FileRecord) -> OpenedFile:
        """How to deliver the core-metadata file stored beside ``record`` (PEP 658);
        raises ``FileMissing``. Called only for records with ``core_metadata_sha256``."""

    @abc.abstractmethod
    def list_files(self, known: Mapping[str, FileRecord] | None = None) -> Iterable[FileRecord]:
        """Every published file, with its yanked state; used by ``update_index`` only.

        ``known`` holds the last index's records by ``backend_ref``: a backend may reuse
        one whose file did not change instead of reading the file again."""

    @abc.abstractmethod
    def read_index(self) -> tuple[bytes, str] | None:
        """The remote index file and its version tag, or ``None`` when there is none."""

    @abc.abstractmethod
    def write_index(self, data: bytes, expected_version: str | None) -> str:
        """Replace the remote index if its version is still ``expected_version``
        (``None``: there must be none yet); else raise ``IndexConflict``.
        Returns the new version tag."""

    def set_yanked(self, record: FileRecord, reason: str | None) -> None:
        """Record that ``record`` is yanked (``reason``, may be empty) or not (``None``),
        in storage, so that ``list_files`` reports it. Optional: the default refuses."""
        raise NotSupported("yanking")

    def changes_since(self, cursor: str | None) -> tuple[list[FileRecord], str | None]:
        """Records published or changed since ``cursor`` (``None``: since the remote index
        was written) that the remote index may not hold yet, and the cursor for next
        time. Lets servers sharing a storage see each other's uploads before
        ``update_index`` runs. Optional: the default reports nothing."""
        return [], cursor

    def index_version(self) -> str | None:
        """Cheap "changed?" probe of the remote index; override when cheaper than a read."""
        current = self.read_index()
        return None if current is None else current[1]

    def staging_dir(self) -> Path:
        """Where uploads are spooled while they arrive. Local backends return a folder on
        the same file system as their storage, so that storing is a link, not a copy."""
        return Path(tempfile.gettempdir())


@dataclass(frozen=True)
class BackendContext:
    """What a backend factory is told about where it runs."""

    repo_name: str
    root: Path  # the server's ROOT folder (or the working folder of a CLI job)
    admin_secret: str | None = None
    #: False for jobs (update_index), which need no client secrets.
    serving: bool = True


@dataclass(frozen=True)
class BackendSpec:
    """What a backend plugin registers.

    ``config_class`` is a frozen dataclass: its fields are the config keys, with types
    and defaults; unknown keys are refused. ``create`` builds the backend.
    ``commands`` become CLI commands ``pywharf <type>.<name>``. ``admin_secret`` says
    whether the server needs an admin secret for this backend type.
    """

    type: str
    config_class: builtins.type
    create: Callable[[BackendContext, Any], Backend]
    commands: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    admin_secret: bool = False


def available_backend_types() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


@cache
def load_backend_spec(backend_type: str) -> BackendSpec:
    """The spec registered under ``backend_type``; imported lazily, on first use."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == backend_type]
    if not matches:
        known = ", ".join(available_backend_types()) or "none"
        raise ConfigError(
            f"unknown backend type {backend_type!r} (installed: {known}); install the "
            f"package that provides it, registered under the entry-point group "
            f"{ENTRY_POINT_GROUP!r}",
            key="type",
        )
    spec = matches[0].load()
    if not isinstance(spec, BackendSpec) or spec.type != backend_type:
        raise ConfigError(
            f"entry point {matches[0].value!r} does not provide a BackendSpec of type "
            f"{backend_type!r}",
            key="type",
        )
    return spec
