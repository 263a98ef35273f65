"""``-r NAME`` for the client commands: the index URL, username and password of a
repository in ``~/.pypirc``, the file twine already reads::

    [distutils]
    index-servers = prod

    [prod]
    repository = https://pkgs.example.com/simple/
    username = prod
    password = the write secret

so that nobody types a secret on a command line.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from .errors import PywharfError


@dataclass(frozen=True)
class PypircLogin:
    index_url: str
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never print a secret
        return f"PypircLogin(index_url={self.index_url!r}, username={self.username!r})"


def pypirc_path() -> Path:
    return Path.home() / ".pypirc"


def read_pypirc(name: str, path: Path | None = None) -> PypircLogin:
    """Section ``name`` of the file; ``PywharfError`` naming what is missing."""
    path = path or pypirc_path()
    parser = configparser.RawConfigParser()
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise PywharfError(f"-r {name}: there is no {path}") from None
    except (OSError, configparser.Error) as exc:
        raise PywharfError(f"-r {name}: cannot read {path}: {exc}") from None
    if not parser.has_section(name):
        known = ", ".join(s for s in parser.sections() if s != "distutils") or "none"
        raise PywharfError(f"-r {name}: {path} has no [{name}] section (it has: {known})")
    url = parser.get(name, "repository", fallback="").strip()
    if not url:
        raise PywharfError(f"-r {name}: [{name}] in {path} has no 'repository' URL")
    return PypircLogin(
        url,
        parser.get(name, "username", fallback=None),
        parser.get(name, "password", fallback=None),
    )
