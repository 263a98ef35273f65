"""The ``pywharf`` command (fire).

    pywharf server ROOT [--config …] [--admin_secret …] [--port 8888] [waitress flags …]

Backends add their own commands as ``pywharf <type>.<command>``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import fire

from .backend import available_backend_types, load_backend_spec
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
        debug=bool(debug),
        host=str(host),
        port=int(port),
        **waitress_options,
    )


def _text(value: Any) -> Any:
    # fire parses "1234" as an int; paths, secrets and URLs are text.
    return None if value is None else str(value)


def commands() -> dict[str, Callable[..., Any]]:
    """Core commands plus every installed backend's ``<type>.<command>``."""
    table: dict[str, Callable[..., Any]] = {"server": server}
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
