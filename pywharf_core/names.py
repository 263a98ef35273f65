"""Project names and distribution filenames: what is allowed, and what they mean."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from .errors import InvalidFilename

# Anything that could steer a path or a header; filenames are used as storage keys.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\:]")
_MAX_FILENAME = 255


def normalize(name: str) -> str:
    """PEP 503 normalization: lowercase, runs of ``-_.`` become one ``-``."""
    return canonicalize_name(name)


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


def parse_dist_filename(filename: str) -> DistFilename:
    """Parse and vet an uploaded filename; raise ``InvalidFilename`` saying what is wrong."""
    if not filename or len(filename) > _MAX_FILENAME:
        raise InvalidFilename(f"Invalid filename: must be 1 to {_MAX_FILENAME} characters")
    if _FORBIDDEN.search(filename) or filename.startswith("."):
        raise InvalidFilename(
            f"Invalid filename {filename!r}: path separators, control characters and a "
            "leading dot are not allowed"
        )
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return DistFilename(filename, normalize(name), version, "bdist_wheel")
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return DistFilename(filename, normalize(name), version, "sdist")
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise InvalidFilename(f"Invalid filename {filename!r}: {exc}") from exc
    raise InvalidFilename(
        f"Invalid filename {filename!r}: only wheels (.whl) and sdists (.tar.gz, .zip) are accepted"
    )


def same_version(a: str | Version, b: str | Version) -> bool:
    """True when two version strings name the same release (``1.0`` == ``1.0.0``)."""
    return canonicalize_version(str(a)) == canonicalize_version(str(b))
