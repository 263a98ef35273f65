"""The backend contract and the plugin registry.

A backend is a package that registers a ``BackendSpec`` under the entry-point group
``pywharf.backends``; the built-in backends register exactly as a third party's would::

    [project.entry-points."pywharf.backends"]
    file_system = "pywharf_backends.file_system:SPEC"

A backend stores; the core decides. ``Backend``'s docstrings are the whole contract, and
``pywharf_core.testing.BackendConformance`` checks it.
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
    given = secret.encode("utf-8", "surrogateescape")
    write = (write_secret or "").encode("utf-8")
    read = (read_secret or "").encode("utf-8")
    is_write = hmac.compare_digest(given, write) and bool(write)
    is_read = hmac.compare_digest(given, read) and bool(read)
    if is_write:
        return Access.WRITE
    return Access.READ if is_read else Access.NONE


@dataclass(frozen=True)
class StagedFile:
    """An upload fully received on local disk, hashed and counted.

    ``path`` lies in the backend's ``staging_dir()``, so a local backend may link it into
    place; remote backends read it with ``open()``. The core deletes it afterwards.
    """

    path: Path
    size: int
    sha256: str

    def open(self) -> BinaryIO:
        return self.path.open("rb")


@dataclass(frozen=True)
class StoredFile:
    """One file a backend holds, as ``list_files`` reports it (no bytes read).

    ``ref`` is the backend's reference (it becomes ``FileRecord.backend_ref``); ``mtime``
    a modification stamp in seconds that changes when the file is replaced; ``yanked``
    the reason when the backend keeps a yank record for it; ``has_metadata`` whether its
    core-metadata sidecar is stored; ``stored`` the record fields the backend kept beside
    the file at ``put_file`` (``FileRecord.to_dict`` keys) when it has them at no extra
    cost, else ``None``.
    """

    ref: str
    filename: str
    size: int
    mtime: float
    yanked: str | None = None
    has_metadata: bool = False
    stored: Mapping[str, Any] | None = None


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
    """Storage of one package repository: it stores, the core decides.

    Everything about what a distribution file is (filenames, core metadata, hashes,
    sizes, digests, duplicates, which names are distributions) is the core's. A backend
    puts bytes under a name create-only, opens them, lists what it holds, fetches bytes,
    and reads and compare-and-swaps the remote index: six required methods. The others
    are optional, with safe defaults. Methods block; the core calls them from worker
    threads, several at once. Foreign errors are translated into ``pywharf_core.errors``
    in one place of the backend; an unreachable remote is ``BackendUnavailable``.
    """

    # -- required ------------------------------------------------------------------------
    @abc.abstractmethod
    def put_file(
        self, record: FileRecord, staged: StagedFile, metadata: bytes | None = None
    ) -> FileRecord:
        """Store ``staged`` as ``record.filename``, and ``metadata`` (the core-metadata
        file, PEP 658) beside it when given.

        Must guarantee: create-only and atomic. Afterwards the file is either fully
        stored or invisible, and of any number of concurrent calls for one filename (on
        any number of servers sharing the storage) exactly one succeeds. The sidecar is
        written after the file, never over another server's.
        Raises ``FileExists`` when the name is taken, with the stored file's sha256 when
        the backend knows it without reading the file, and its reference.
        Returns ``record`` with ``backend_ref`` set (and ``upload_time`` when the storage
        stamps files itself).
        """

    @abc.abstractmethod
    def open_file(self, record: FileRecord, *, metadata: bool = False) -> OpenedFile:
        """How to deliver a stored file (with ``metadata``: its core-metadata sidecar):
        a local path, a stream, or an expiring redirect. Raises ``FileMissing`` when it
        is not stored; never opens anything outside the repository's storage, whatever
        ``record.backend_ref`` says."""

    @abc.abstractmethod
    def list_files(self) -> Iterable[StoredFile]:
        """Every file the storage holds for this repository, without reading contents.
        May include names that are not distributions (the core skips them) but never
        sidecars, the index, drafts or half-written files. Used by ``update_index``."""

    @abc.abstractmethod
    def fetch_file(self, entry: StoredFile, into: Path) -> Path:
        """A local path holding the bytes of ``entry``: ``into`` after downloading
        them there, or the backend's own path when the file is already local (the core
        only reads it). Raises ``FileMissing``."""

    @abc.abstractmethod
    def read_index(self) -> tuple[bytes, str] | None:
        """The remote index file and its version tag, or ``None`` when there is none."""

    @abc.abstractmethod
    def write_index(self, data: bytes, expected_version: str | None) -> str:
        """Replace the remote index if its version is still ``expected_version``
        (``None``: there must be none yet); else raise ``IndexConflict``. Atomic: a
        reader sees the old or the new index, never a mix. Returns the new version."""

    # -- optional ------------------------------------------------------------------------
    def check_access(self, secret: str) -> Access | None:
        """What ``secret`` may do, for backends whose credentials are their own (GitHub
        tokens). A wrong secret is ``Access.NONE``, not an error; compare in constant
        time. Default ``None``: the core compares the repository's ``read_secret`` and
        ``write_secret``."""
        return None

    def stored_fields(self, entry: StoredFile) -> Mapping[str, Any] | None:
        """The record fields kept beside ``entry`` at ``put_file`` when reading them is
        cheaper than fetching the file (one metadata request). Default:
        ``entry.stored``. With them the core describes a file without fetching it."""
        return entry.stored

    def adopt_file(
        self, entry: StoredFile, record: FileRecord, metadata: bytes | None
    ) -> FileRecord:
        """Keep what the core learnt about a file it described (one put in storage by
        other means, or one whose sidecar a crash cut off): store ``metadata`` as its
        sidecar unless one exists, and the record where the backend keeps records.
        Returns ``record`` as stored (``core_metadata_sha256`` cleared when no sidecar
        is kept). Default: keeps nothing."""
        return record.with_changes(core_metadata_sha256=None)

    def adopt_later(
        self, entry: StoredFile, record: FileRecord, metadata: bytes | None
    ) -> FileRecord:
        """``adopt_file`` for ``update_index``, which describes thousands of files before
        it writes the index that names their sidecars: what this stores need only be
        durable once ``settle_adopted`` returns (so that a file system syncs once, not
        once a sidecar). Default: ``adopt_file``."""
        return self.adopt_file(entry, record, metadata)

    def settle_adopted(self) -> None:
        """Make durable what ``adopt_later`` stored; called before an index naming it is
        written. Default: nothing (``adopt_later`` was ``adopt_file``)."""
        return None

    def set_yanked(self, record: FileRecord, reason: str | None) -> None:
        """Record that ``record`` is yanked (``reason``, may be empty) or not (``None``),
        so that ``list_files`` reports it. Default: ``NotSupported``."""
        raise NotSupported("yanking")

    def delete_file(self, record: FileRecord) -> None:
        """Remove the stored file ``record`` names with its core-metadata sidecar and its
        yank record, so that neither ``list_files`` nor ``open_file`` reports any of them
        again (on any server of the storage). Never removes anything outside the
        repository's storage, whatever ``record.backend_ref`` says. Raises
        ``FileMissing`` when the file is not stored (what is left of its sidecars is
        removed all the same). The core records the deletion itself (shared state), so
        a backend keeps no trace of it. Default: ``NotSupported``."""
        raise NotSupported("deleting")

    def changes_since(self, cursor: str | None) -> tuple[list[FileRecord], str | None]:
        """Records published or changed since ``cursor`` (``None``: since the remote index
        was written) that the remote index may not hold yet, and the cursor for next
        time. Lets servers sharing a storage see each other's uploads before
        ``update_index`` runs. Default: reports nothing."""
        return [], cursor

    def compact_changes(self, indexed: Callable[[FileRecord], bool]) -> None:
        """Forget the change records (``changes_since``) that the remote index just
        written holds: ``indexed(record)`` says whether it does (same file, digest and
        yanked state). Records of files no longer stored go too. Called by
        ``update_index`` after it wrote the index; the core never parses the index for a
        backend. Default: nothing to forget."""
        return None

    def read_state(self, name: str) -> tuple[bytes, str] | None:
        """A small document of the core's (tokens, revocations, project status, audit
        records …) kept with the repository's files so that every server on the storage
        sees it, and its version; ``None`` when there is none. ``name`` is a relative
        path of lowercase letters, digits, ``._-`` and ``/``, chosen by the core; state is
        never listed by ``list_files``. Default: ``NotSupported``, and the core keeps the
        state under the server's ROOT (then replicas do not share it)."""
        raise NotSupported("shared state")

    def write_state(self, name: str, data: bytes, expected_version: str | None) -> str:
        """Replace the document ``name`` if its version is still ``expected_version``
        (``None``: there must be none yet), atomically, like ``write_index``; else raise
        ``IndexConflict``. Returns the new version. Default: ``NotSupported``."""
        raise NotSupported("shared state")

    def delete_state(self, name: str) -> None:
        """Remove the document ``name`` (absent: nothing happens). Used for parts of the
        remote index that no manifest names any more. Default: ``NotSupported`` (they
        are then kept)."""
        raise NotSupported("deleting shared state")

    def put_cached(self, key: str, staged: Path) -> None:
        """Keep a file fetched from the repository's upstream index (``key`` is
        ``<project>/<filename>``), apart from the repository's own files: never listed by
        ``list_files``, shared by the servers on this storage. Create-only and atomic
        like ``put_file`` (``FileExists`` when present). Default: ``NotSupported``, and the
        core keeps the upstream cache under the server's ROOT."""
        raise NotSupported("an upstream cache")

    def open_cached(self, key: str) -> OpenedFile:
        """How to deliver a file kept by ``put_cached``; ``FileMissing`` when absent."""
        raise NotSupported("an upstream cache")

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
    #: False for jobs (update_index).
    serving: bool = True


@dataclass(frozen=True)
class BackendSpec:
    """What a backend plugin registers.

    ``config_class`` is a frozen dataclass: its fields are the backend's own config
    keys, with types and defaults; unknown keys are refused. The core's keys
    (``read_secret``, ``write_secret``, ``max_file_bytes``, ``sync_index_interval``)
    never reach it. ``create`` builds the backend. ``commands`` become CLI commands
    ``pywharf <type>.<name>``. ``admin_secret``: the server needs an admin secret for
    this type. ``client_secrets``: clients log in with the core's read and write
    secrets (``False``: the backend's ``check_access`` decides, and those keys are
    refused). ``file_size_limit``: the largest file the storage takes, the default of
    the repository's ``max_file_bytes``.
    """

    type: str
    config_class: builtins.type
    create: Callable[[BackendContext, Any], Backend]
    commands: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    admin_secret: bool = False
    client_secrets: bool = True
    file_size_limit: int = 5368709119


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
