"""Builds real wheels and sdists for the tests."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import pep517_backend
from .pep517_backend import Content, dist_name, write_wheel


@dataclass(frozen=True)
class Dist:
    path: Path
    name: str
    version: str

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def sha256(self) -> str:
        return sha256_of(self.path)


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def core_metadata(
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    summary: str = "",
    description: str = "",
    description_type: str = "text/markdown",
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if summary:
        lines.append(f"Summary: {summary}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires_dist]
    if description:
        lines.append(f"Description-Content-Type: {description_type}")
    return "\n".join(lines) + "\n\n" + description


def module_files(
    module: str,
    version: str,
    *,
    imports: Sequence[str] = (),
    extra: dict[str, Content] | None = None,
) -> dict[str, Content]:
    source = f'VERSION = "{version}"\n' + "".join(f"import {m}\n" for m in imports)
    return {f"{module}/__init__.py": source.encode(), **(extra or {})}


def build_wheel(
    out: Path,
    name: str,
    version: str,
    *,
    module: str | None = None,
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    imports: Sequence[str] = (),
    extra: dict[str, Content] | None = None,
    summary: str = "",
    description: str = "",
    description_type: str = "text/markdown",
) -> Dist:
    out.mkdir(parents=True, exist_ok=True)
    metadata = core_metadata(
        name,
        version,
        requires_python=requires_python,
        requires_dist=requires_dist,
        summary=summary,
        description=description,
        description_type=description_type,
    )
    files = module_files(module or dist_name(name), version, imports=imports, extra=extra)
    filename = write_wheel(str(out), name, version, metadata, files)
    return Dist(out / filename, name, version)


def build_sdist(
    out: Path,
    name: str,
    version: str,
    *,
    module: str | None = None,
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    imports: Sequence[str] = (),
    legacy_filename: bool = False,
) -> Dist:
    """An sdist whose in-tree build backend needs nothing from any index.

    ``legacy_filename``: name the file ``<Name as given>-<version>.tar.gz`` (pre-PEP 625),
    as old tools did, instead of the normalized ``<dist_name>-<version>.tar.gz``.
    """
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name if legacy_filename else dist_name(name)}-{version}"
    metadata = core_metadata(
        name, version, requires_python=requires_python, requires_dist=requires_dist
    )
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "pep517_backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
    )
    members: dict[str, bytes] = {
        "PKG-INFO": metadata.encode(),
        "pyproject.toml": pyproject.encode(),
        "pep517_backend.py": Path(pep517_backend.__file__).read_bytes(),
    }
    for arcname, content in module_files(
        module or dist_name(name), version, imports=imports
    ).items():
        assert isinstance(content, bytes)
        members[f"src/{arcname}"] = content
    path = out / f"{stem}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for arcname, data in members.items():
            info = tarfile.TarInfo(f"{stem}/{arcname}")
            info.size = len(data)
            info.mtime = 1704067200
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return Dist(path, name, version)


def filler(size: int) -> Content:
    """Content of ``size`` bytes, streamed in 1 MiB blocks (never held whole in memory)."""
    block = hashlib.sha256(b"pywharf").digest() * (1 << 15)  # 1 MiB, not compressible to 0

    def write(handle: object) -> None:
        left = size
        while left > 0:
            piece = block[: min(left, len(block))]
            handle.write(piece)  # type: ignore[attr-defined]
            left -= len(piece)

    return write
