"""Distribution files: what a filename means, what core metadata a file holds, and its
hashes. The only describer of a file: uploads and ``update_index`` both come here.

Every rule follows the packaging specifications through ``packaging``: filenames
(``packaging.utils``), project names (PEP 508 / core metadata: ASCII letters, digits and
``._-``, starting and ending with a letter or digit), versions (PEP 440) and core
metadata (``packaging.metadata.parse_email``, which decodes what ``email`` alone would
hand back as opaque header objects).

Archives come from strangers, so nothing inside one is trusted: a metadata member is
inflated through a hard cap (a declared size means nothing), and an sdist's tar stream is
read no further than a budget proportional to the file's own size.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from packaging.metadata import parse_email
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidName,
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .errors import InvalidFilename, InvalidMetadata
from .records import FileRecord

#: A METADATA / PKG-INFO file is a few KiB (a long README makes it a few hundred); this
#: bounds the bytes inflated for it whatever the archive declares.
MAX_METADATA_BYTES = 4 * 1024 * 1024
#: An sdist's tar stream is inflated at most this many times its compressed size (plus a
#: floor): source compresses 3-10x, a gzip bomb 1000x.
MAX_SDIST_INFLATION = 20
MIN_SDIST_SCAN_BYTES = 64 * 1024 * 1024
#: Stop looking for PKG-INFO after this many archive members.
MAX_MEMBERS_SCANNED = 20_000
HASH_CHUNK = 1024 * 1024
SIDECAR_SUFFIXES = (".metadata", ".yanked")

# Anything that could steer a path or a header; filenames are used as storage keys.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\:]")
_MAX_FILENAME = 255


@dataclass(frozen=True)
class DistFilename:
    """A parsed wheel or sdist filename."""

    filename: str
    project: str  # normalized
    version: Version
    kind: str  # "bdist_wheel" or "sdist"

    @property
    def is_wheel(self) -> bool:
        return self.kind == "bdist_wheel"


def normalize(name: str) -> str:
    """PEP 503 normalization: lowercase, runs of ``-_.`` become one ``-``."""
    return canonicalize_name(name)


def check_project_name(name: str, what: str = "project name") -> str:
    """``name`` normalized, or ``InvalidMetadata`` saying which rule it breaks."""
    try:
        return canonicalize_name(name, validate=True)
    except InvalidName:
        raise InvalidMetadata(
            f"Invalid {what} {name!r}: a project name is ASCII letters, digits, '.', '_' "
            "and '-', starting and ending with a letter or digit (PEP 508)"
        ) from None


def parse_filename(filename: str) -> DistFilename:
    """Parse and vet a distribution filename; ``InvalidFilename`` says what is wrong."""
    if not filename or len(filename) > _MAX_FILENAME:
        raise InvalidFilename(f"Invalid filename: must be 1 to {_MAX_FILENAME} characters")
    if _FORBIDDEN.search(filename) or filename.startswith(".") or not filename.isascii():
        raise InvalidFilename(
            f"Invalid filename {filename!r}: non-ASCII characters, path separators, "
            "control characters and a leading dot are not allowed"
        )
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            kind = "bdist_wheel"
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            kind = "sdist"
        else:
            raise InvalidFilename(
                f"Invalid filename {filename!r}: only wheels (.whl) and sdists (.tar.gz, "
                ".zip) are accepted"
            )
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise InvalidFilename(f"Invalid filename {filename!r}: {exc}") from exc
    try:
        project = canonicalize_name(name, validate=True)
    except InvalidName:
        raise InvalidFilename(
            f"Invalid filename {filename!r}: {name!r} is not a valid project name (PEP 508)"
        ) from None
    return DistFilename(filename, project, version, kind)


def is_distribution(filename: str) -> bool:
    """Whether a stored name is a distribution file (not a sidecar, not anything else)."""
    if filename.endswith(SIDECAR_SUFFIXES):
        return False
    try:
        parse_filename(filename)
    except InvalidFilename:
        return False
    return True


def same_version(a: str | Version, b: str | Version) -> bool:
    """True when two version strings name the same release (``1.0`` == ``1.0.0``)."""
    return canonicalize_version(str(a)) == canonicalize_version(str(b))


# -- hashes -------------------------------------------------------------------------------

#: Client digest form fields → hashlib constructor.
DIGESTS: dict[str, Callable[[], Any]] = {
    "sha256_digest": hashlib.sha256,
    "md5_digest": hashlib.md5,
    "blake2_256_digest": lambda: hashlib.blake2b(digest_size=32),
}


class Hashes:
    """Several digests of one stream, updated in one pass: sha256 always (the index's
    hash), and each client digest field named in ``extra``."""

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self._hashers = {name: DIGESTS[name]() for name in ("sha256_digest", *extra)}

    def update(self, chunk: bytes | memoryview) -> None:
        for hasher in self._hashers.values():
            hasher.update(chunk)

    def hexdigests(self) -> dict[str, str]:
        return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}


def hash_file(path: Path, field: str = "sha256_digest") -> str:
    """The hex digest of a file (``field`` names the algorithm as a client digest field)."""
    with path.open("rb") as handle:
        return hash_stream(handle, field)


def hash_stream(handle: IO[bytes], field: str = "sha256_digest") -> str:
    if sys.version_info >= (3, 11):
        return hashlib.file_digest(handle, DIGESTS[field]).hexdigest()
    hasher = DIGESTS[field]()  # pragma: no cover - Python 3.10
    while chunk := handle.read(HASH_CHUNK):  # pragma: no cover
        hasher.update(chunk)
    return str(hasher.hexdigest())  # pragma: no cover


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- core metadata --------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreMetadata:
    """What the core reads from a distribution's METADATA / PKG-INFO."""

    name: str
    version: str
    requires_python: str | None
    #: The verbatim file, served per PEP 658 (wheels only); None for sdists.
    raw: bytes | None
    summary: str | None = None


def read_core_metadata(path: Path, dist: DistFilename) -> CoreMetadata:
    """Read and check the core metadata inside the distribution at ``path``: it must
    name the project and version of its filename; ``InvalidMetadata`` says what is wrong."""
    raw = _wheel_metadata(path, dist) if dist.is_wheel else _sdist_pkg_info(path, dist)
    fields, unparsed = parse_email(raw)
    doubtful = sorted(k for k in unparsed if k.lower() in ("name", "version", "requires-python"))
    if doubtful:
        raise InvalidMetadata(
            f"{dist.filename}: the core metadata's {doubtful[0]} appears more than once or "
            "is not valid UTF-8"
        )
    name, version = fields.get("name"), fields.get("version")
    if not name or not version:
        raise InvalidMetadata(f"{dist.filename}: the core metadata has no Name or Version")
    project = check_project_name(name, "Name in the core metadata")
    try:
        Version(version)
    except InvalidVersion:
        raise InvalidMetadata(
            f"{dist.filename}: the core metadata's Version {version!r} is not a valid "
            "version (PEP 440)"
        ) from None
    if project != dist.project or not same_version(version, dist.version):
        raise InvalidMetadata(
            f"{dist.filename}: the core metadata names {name} {version}, "
            "which does not match the filename"
        )
    requires_python = (fields.get("requires_python") or "").strip() or None
    if requires_python is not None:
        try:
            SpecifierSet(requires_python)
        except InvalidSpecifier:
            raise InvalidMetadata(
                f"{dist.filename}: Requires-Python {requires_python!r} is not a valid "
                "version specifier (PEP 440)"
            ) from None
    summary = fields.get("summary")
    return CoreMetadata(name, version, requires_python, raw if dist.is_wheel else None, summary)


#: What zipfile raises for archives it cannot read: corrupt, an encrypted member
#: (RuntimeError), a compression method it lacks (NotImplementedError) …
_UNREADABLE_ZIP = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)


def _read_capped(handle: IO[bytes], what: str) -> bytes:
    data = handle.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise InvalidMetadata(f"{what} is larger than {MAX_METADATA_BYTES} bytes")
    return data


def _wheel_metadata(path: Path, dist: DistFilename) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            candidates = [
                info
                for info in archive.infolist()[:MAX_MEMBERS_SCANNED]
                if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")
            ]
            if len(candidates) != 1:
                raise InvalidMetadata(
                    f"{dist.filename}: a wheel must hold exactly one "
                    "<name>-<version>.dist-info/METADATA"
                )
            with archive.open(candidates[0]) as member:
                return _read_capped(member, f"{dist.filename}: METADATA")
    except _UNREADABLE_ZIP as exc:
        raise InvalidMetadata(f"{dist.filename}: not a valid wheel (zip) file: {exc}") from exc


def _sdist_pkg_info(path: Path, dist: DistFilename) -> bytes:
    try:
        if dist.filename.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist()[:MAX_MEMBERS_SCANNED]:
                    if info.filename.count("/") == 1 and info.filename.endswith("/PKG-INFO"):
                        with archive.open(info) as member:
                            return _read_capped(member, f"{dist.filename}: PKG-INFO")
        else:
            budget = max(MIN_SDIST_SCAN_BYTES, MAX_SDIST_INFLATION * path.stat().st_size)
            with gzip.open(path, "rb") as inflated:
                stream = cast(IO[bytes], _Budgeted(inflated, budget))
                with tarfile.open(fileobj=stream, mode="r|") as archive:
                    found = _tar_pkg_info(archive, dist)
                    if found is not None:
                        return found
    except _ScanBudgetSpent:
        raise InvalidMetadata(
            f"{dist.filename}: no PKG-INFO within the first {MAX_SDIST_INFLATION}x of the "
            "file's size once inflated; put PKG-INFO near the start of the archive"
        ) from None
    except (tarfile.TarError, *_UNREADABLE_ZIP) as exc:
        raise InvalidMetadata(f"{dist.filename}: not a valid sdist archive: {exc}") from exc
    raise InvalidMetadata(f"{dist.filename}: an sdist must hold <name>-<version>/PKG-INFO")


def _tar_pkg_info(archive: tarfile.TarFile, dist: DistFilename) -> bytes | None:
    for count, member in enumerate(archive):
        if count >= MAX_MEMBERS_SCANNED:
            return None
        if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
            handle = archive.extractfile(member)
            if handle is not None:
                return _read_capped(handle, f"{dist.filename}: PKG-INFO")
    return None


class _ScanBudgetSpent(Exception):
    pass


class _Budgeted:
    """A read-only stream that raises ``_ScanBudgetSpent`` past ``budget`` bytes."""

    def __init__(self, stream: gzip.GzipFile, budget: int) -> None:
        self._stream = stream
        self._left = budget

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(HASH_CHUNK if size is None or size < 0 else size)
        self._left -= len(data)
        if self._left < 0:
            raise _ScanBudgetSpent()
        return data


@dataclass(frozen=True)
class Description:
    """What ``describe`` makes of a file: its index record, the core-metadata file to
    store beside it (wheels; ``None`` for sdists), and its ``Summary`` (for the summary
    cache: index records carry no per-file text)."""

    record: FileRecord
    metadata: bytes | None
    summary: str | None


def describe(
    path: Path,
    dist: DistFilename,
    *,
    upload_time: float,
    sha256: str | None = None,
    size: int | None = None,
    yanked: str | None = None,
    backend_ref: str = "",
) -> Description:
    """The index record of the distribution file at ``path``, its core-metadata file
    (wheels) to store beside it, and its summary. ``sha256`` and ``size`` are computed
    when not given (an upload has them from its one pass over the bytes)."""
    meta = read_core_metadata(path, dist)
    record = FileRecord(
        project=dist.project,
        filename=dist.filename,
        version=str(dist.version),
        sha256=sha256 if sha256 is not None else hash_file(path),
        size=size if size is not None else path.stat().st_size,
        upload_time=upload_time,
        requires_python=meta.requires_python,
        yanked=yanked,
        core_metadata_sha256=sha256_bytes(meta.raw) if meta.raw is not None else None,
        backend_ref=backend_ref,
    )
    return Description(record, meta.raw, meta.summary)
