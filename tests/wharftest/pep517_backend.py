"""A dependency-free PEP 517 build backend, shipped inside the test sdists.

Installing an sdist runs its build backend in an isolated environment; a backend that
needs nothing from an index lets pip and uv build our test sdists with no network.
The same ``write_wheel`` builds the tests' wheels directly.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from typing import BinaryIO

#: File content: bytes, or a function that streams the content into an open handle.
Content = bytes | Callable[[BinaryIO], None]


def dist_name(name: str) -> str:
    """The name as it appears in wheel filenames and .dist-info folders."""
    return re.sub(r"[-_.]+", "_", name).lower()


class _HashingWriter:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.handle.write(data)


def write_wheel(
    directory: str, name: str, version: str, metadata: str, files: Mapping[str, Content]
) -> str:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``directory``; return its filename."""
    base = f"{dist_name(name)}-{version}"
    filename = f"{base}-py3-none-any.whl"
    dist_info = f"{base}.dist-info"
    entries: dict[str, Content] = dict(files)
    entries[f"{dist_info}/METADATA"] = metadata.encode("utf-8")
    entries[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: pywharf-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record_lines = []
    with zipfile.ZipFile(os.path.join(directory, filename), "w") as archive:
        for arcname, content in entries.items():
            # Large test payloads are stored, not deflated, so their size is what is sent.
            compress = zipfile.ZIP_STORED if callable(content) else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = compress
            with archive.open(info, "w", force_zip64=True) as handle:
                writer = _HashingWriter(handle)  # type: ignore[arg-type]
                if callable(content):
                    content(writer)  # type: ignore[arg-type]
                else:
                    writer.write(content)
            digest = base64.urlsafe_b64encode(writer.hasher.digest()).rstrip(b"=").decode()
            record_lines.append(f"{arcname},sha256={digest},{writer.size}")
        record_lines.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record_lines) + "\n")
    return filename


# -- the PEP 517 hooks, used when this file sits in an sdist ------------------------------


def _read_pkg_info() -> tuple[str, str, str]:
    with open("PKG-INFO", encoding="utf-8") as handle:
        text = handle.read()
    fields = dict(
        line.split(": ", 1) for line in text.splitlines() if ": " in line and not line[0].isspace()
    )
    return fields["Name"], fields["Version"], text


def _package_files() -> dict[str, Content]:
    files: dict[str, Content] = {}
    for folder, _dirs, names in os.walk("src"):
        for file_name in names:
            path = os.path.join(folder, file_name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, "src").replace(os.sep, "/")] = handle.read()
    return files


def get_requires_for_build_wheel(config_settings: object = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: object = None) -> list[str]:
    return []


def build_sdist(sdist_directory: str, config_settings: object = None) -> str:
    import tarfile

    name, version, _ = _read_pkg_info()
    stem = f"{dist_name(name)}-{version}"
    with tarfile.open(os.path.join(sdist_directory, f"{stem}.tar.gz"), "w:gz") as archive:
        for folder, _dirs, names in os.walk("."):
            for file_name in names:
                path = os.path.join(folder, file_name)
                archive.add(path, arcname=f"{stem}/{os.path.relpath(path, '.')}")
    return f"{stem}.tar.gz"


def build_wheel(
    wheel_directory: str, config_settings: object = None, metadata_directory: object = None
) -> str:
    name, version, metadata = _read_pkg_info()
    return write_wheel(wheel_directory, name, version, metadata, _package_files())
