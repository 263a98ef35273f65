"""The ``pywharf`` command (fire).

    pywharf server ROOT [--config …] [--admin_secret …] [--port 8888] [waitress flags …]

Backends add their own commands as ``pywharf <type>.<command>``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import fire

from .backend import available_backend_types, load_backend_spec
from .client import set_yanked
from .errors import PywharfError
from .server import print_error, run_server


def server(
    root: str,
    config: str | None = None,
    admin_secret: str | None = None,
    config_or_admin_secret_can_be_text: bool = False,
    auth_read_expires: int = 3600,
    auth_write_expires: int = 300,
    extra_index_url: str | None = None,
    trusted_proxy: str | None = None,
    debug: bool = False,
    host: str = "0.0.0.0",  # noqa: S104 (the seed default; containers need it)
    port: int = 8888,
    **waitress_options: Any,
) -> None:
    """Run the pywharf server.

    Args:
        root: folder for the server's state (cache, overlay, embedded default secrets).
        config: repositories config TOML (a path, or text with
            --config_or_admin_secret_can_be_text). Without it, the embedded default
            is served, one file_system repository named 'local' with generated secrets.
        admin_secret: admin secrets TOML (path or text), for backends that need one.
        config_or_admin_secret_can_be_text: take --config/--admin_secret as TOML text
            when they do not name a file.
        auth_read_expires: seconds a verified read secret is remembered.
        auth_write_expires: seconds a verified write secret is remembered.
        extra_index_url: redirect requests for projects this server does not hold to
            this index. Off by default, for safety against dependency confusion.
        trusted_proxy: comma-separated addresses of reverse proxies (or *) whose
            X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Prefix headers are
            believed. Other peers' forwarded headers are ignored.
        debug: debug logging and tracebacks in the log.
        host: address to listen on.
        port: port to listen on; 0 picks a free port and prints it.
        waitress_options: any other flag is passed on to waitress.serve
            (e.g. --threads 32).
    """
    run_server(
        root=_text(root),
        config=_text(config),
        admin_secret=_text(admin_secret),
        config_or_admin_secret_can_be_text=bool(config_or_admin_secret_can_be_text),
        auth_read_expires=int(auth_read_expires),
        auth_write_expires=int(auth_write_expires),
        extra_index_url=_text(extra_index_url),
        trusted_proxy=_text(trusted_proxy),
        debug=bool(debug),
        host=str(host),
        port=int(port),
        **waitress_options,
    )


def yank(
    index_url: str,
    filename: str,
    reason: str = "",
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Yank a file (PEP 592): installers skip it unless its version is pinned with ==.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        filename: the file to yank, e.g. mypkg-1.0-py3-none-any.whl
        reason: shown to users of the yanked file.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    print(_set_yanked(index_url, filename, str(reason), repo, secret, secret_env))


def unyank(
    index_url: str,
    filename: str,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Undo a yank.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        filename: the file to unyank.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    print(_set_yanked(index_url, filename, None, repo, secret, secret_env))


def _set_yanked(
    index_url: Any, filename: Any, reason: str | None, repo: Any, secret: Any, secret_env: Any
) -> str:
    url = str(index_url)
    if repo is None and "/r/" not in url:
        raise PywharfError("give --repo (the repository name), or use an …/r/<repo>/simple/ URL")
    if (secret is None) == (secret_env is None):
        raise PywharfError("give exactly one of --secret and --secret_env")
    if secret_env is not None:
        value = os.environ.get(str(secret_env))
        if not value:
            raise PywharfError(f"environment variable {secret_env!r} is not set")
        secret = value
    return set_yanked(url, str(filename), str(repo or "__token__"), str(secret), reason)


def _text(value: Any) -> Any:
    # fire parses "1234" as an int; paths, secrets and URLs are text.
    return None if value is None else str(value)


def commands() -> dict[str, Callable[..., Any]]:
    """Core commands plus every installed backend's ``<type>.<command>``."""
    table: dict[str, Callable[..., Any]] = {"server": server, "yank": yank, "unyank": unyank}
    for backend_type in available_backend_types():
        spec = load_backend_spec(backend_type)
        for name, command in spec.commands.items():
            table[f"{backend_type}.{name}"] = command
    return table


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args and "--" not in args:
        # fire wants `cmd -- --help`; a plain --help must show help and exit 0 too.
        args = [a for a in args if a != "--help"] + ["--", "--help"]
    try:
        fire.Fire(commands(), command=args, name="pywharf")
    except PywharfError as exc:
        print_error(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
