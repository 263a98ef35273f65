"""Core metadata of uploaded distributions: a wheel's METADATA, an sdist's PKG-INFO."""

from __future__ import annotations

import email.parser
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidMetadata
from .names import DistFilename, normalize, same_version

# A METADATA file is a few KiB; the cap keeps a hostile archive from filling memory.
MAX_METADATA_BYTES = 16 * 1024 * 1024
# An sdist's PKG-INFO sits near the start; stop looking after this many members.
MAX_SDIST_MEMBERS_SCANNED = 10_000


@dataclass(frozen=True)
class DistMetadata:
    requires_python: str | None
    #: The verbatim core-metadata file to serve per PEP 658 (wheels only), else None.
    core_metadata: bytes | None


def read_dist_metadata(path: Path, dist: DistFilename) -> DistMetadata:
    """Read and check the metadata inside the distribution at ``path``."""
    raw = _wheel_metadata(path, dist) if dist.is_wheel else _sdist_pkg_info(path, dist)
    fields = email.parser.BytesHeaderParser().parsebytes(raw)
    name, version = fields.get("Name"), fields.get("Version")
    if not name or not version:
        raise InvalidMetadata(f"{dist.filename}: the core metadata has no Name or Version")
    if normalize(name) != dist.project or not same_version(version, dist.version):
        raise InvalidMetadata(
            f"{dist.filename}: the core metadata names {name} {version}, "
            "which does not match the filename"
        )
    requires_python = (fields.get("Requires-Python") or "").strip() or None
    return DistMetadata(requires_python, raw if dist.is_wheel else None)


def _wheel_metadata(path: Path, dist: DistFilename) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            candidates = [
                info
                for info in archive.infolist()
                if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")
            ]
            if len(candidates) != 1:
                raise InvalidMetadata(
                    f"{dist.filename}: a wheel must hold exactly one "
                    "<name>-<version>.dist-info/METADATA"
                )
            if candidates[0].file_size > MAX_METADATA_BYTES:
                raise InvalidMetadata(f"{dist.filename}: METADATA is too large")
            return archive.read(candidates[0])
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InvalidMetadata(f"{dist.filename}: not a valid wheel (zip) file: {exc}") from exc


def _sdist_pkg_info(path: Path, dist: DistFilename) -> bytes:
    try:
        if dist.filename.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist()[:MAX_SDIST_MEMBERS_SCANNED]:
                    if info.filename.count("/") == 1 and info.filename.endswith("/PKG-INFO"):
                        if info.file_size > MAX_METADATA_BYTES:
                            break
                        return archive.read(info)
        else:
            with tarfile.open(path, mode="r:gz") as archive:
                for count, member in enumerate(archive):
                    if count >= MAX_SDIST_MEMBERS_SCANNED:
                        break
                    if (
                        member.isfile()
                        and member.name.count("/") == 1
                        and member.name.endswith("/PKG-INFO")
                    ):
                        if member.size > MAX_METADATA_BYTES:
                            break
                        handle = archive.extractfile(member)
                        if handle is not None:
                            return handle.read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InvalidMetadata(f"{dist.filename}: not a valid sdist archive: {exc}") from exc
    raise InvalidMetadata(f"{dist.filename}: an sdist must hold <name>-<version>/PKG-INFO")
