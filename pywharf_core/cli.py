"""The ``pywharf`` command (fire).

    pywharf server ROOT [--config …] [--admin_secret …] [--port 8888] [waitress flags …]
    pywharf update_index TYPE NAME [--secret S | --secret_env VAR] [--<config key> VALUE …]
    pywharf yank|unyank INDEX_URL FILENAME …
    pywharf refresh INDEX_URL PROJECT …   (drop a cached upstream page)
    pywharf token create|list|revoke INDEX_URL …
    pywharf delete INDEX_URL PROJECT [VERSION] [--filename F] …
    pywharf status INDEX_URL PROJECT active|archived|quarantined|deprecated [--reason …]
    pywharf audit INDEX_URL [--since …] …
    pywharf promote INDEX_URL PROJECT VERSION --from REPO --to REPO …
    pywharf list INDEX_URL PROJECT … / pywharf exists INDEX_URL PROJECT[==VERSION] …
    (each client command also takes -r NAME: the index, username and password from ~/.pypirc)

Backends add their own commands as ``pywharf <type>.<command>``.

This module reads the command line (or the environment) and runs the command: ``server``
(``server.run_server``) and ``update_index`` are here; the client commands are in
``cli_client`` and ``cli_tokens``, their logins in ``credentials``; help is printed by
``cli_usage`` and every command line is checked first by ``cli_checks``.

Environment mode (containers, GitHub Actions service containers): with no arguments,
``PYWHARF_COMMAND`` names the command, ``PYWHARF_COMMAND_<POSITIONAL>`` gives each
positional argument (e.g. ``PYWHARF_COMMAND_ROOT``) and ``PYWHARF_COMMAND_<FLAG>`` each flag.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import fire

from . import logs
from .backend import BackendContext, available_backend_types, load_backend_spec
from .cli_checks import check_arguments, closest
from .cli_client import audit, delete, exists, list_files, promote, refresh, status, unyank, yank
from .cli_tokens import token
from .cli_usage import ENV_PREFIX, HELP_FLAGS, command_help, overview, waitress_flags, wants_help
from .config import split_table
from .credentials import with_pypirc
from .errors import PywharfError
from .flags import bool_flag, text_flag
from .job import terminal_progress
from .job import update_index as run_update_index
from .server import print_error, run_server


def update_index(
    type: str,  # the seed's positional TYPE; shadows the builtin here only
    name: str,
    secret: str | None = None,
    secret_env: str | None = None,
    root: str = ".",
    create: bool = False,
    index_format: str = "auto",
    **config: Any,
) -> None:
    """Rebuild a repository's remote index from what its backend stores.

    Args:
        type: the backend type, e.g. file_system or github.
        name: the repository name.
        secret: the admin secret the backend needs (e.g. a GitHub token); file_system
            needs none.
        secret_env: name of an environment variable holding the secret instead.
        root: the folder a backend's defaults are relative to (file_system's default
            storage is ROOT/cache/NAME/storage, as for a server started on ROOT).
        create: start an empty storage when there is none yet (without it, a storage
            folder that does not exist is an error: a mistyped name or path).
        index_format: auto (a segmented index from 20,000 files on backends that keep
            shared state, else the single index.toml), toml (the single file, which
            pywharf 0.2 reads) or segments (a manifest, a base database and deltas).
        config: the backend's config keys, e.g. --storage_root DIR for file_system.
    """
    if secret is not None and secret_env is not None:
        raise PywharfError("give at most one of --secret and --secret_env")
    admin_secret = text_flag(secret)
    if secret_env is not None:
        admin_secret = os.environ.get(str(secret_env))
        if not admin_secret:
            raise PywharfError(f"environment variable {secret_env!r} is not set")
    backend_type, repo_name = str(type), str(name)
    spec = load_backend_spec(backend_type)
    # The core's keys (secrets, size cap, sync interval) are accepted and play no part here.
    _policy, settings = split_table(
        spec, config, source="<command line>", table=repo_name, serving=False, from_text=False
    )
    context = BackendContext(repo_name, Path(str(root)).resolve(), admin_secret, serving=False)
    if backend_type == "file_system" and not bool_flag("create", create):
        _require_storage_folder(context, settings)
    progress = terminal_progress(repo_name)
    try:
        backend = spec.create(context, settings)
        summary = run_update_index(backend, progress, str(index_format))
    except OSError as exc:  # a storage folder that cannot be created, read or written
        place = f"{exc.filename}: " if exc.filename else ""
        raise PywharfError(
            f"{place}{exc.strerror or exc}; check that this user can write the storage"
        ) from None
    if progress is not None:
        sys.stderr.write("\r\033[K")
    print(summary.line(repo_name))


def _require_storage_folder(context: BackendContext, settings: Any) -> None:
    # The file_system backend creates its folder when it starts: a mistyped name or path
    # would otherwise be indexed as an empty repository and reported as a success.
    storage_root = getattr(settings, "storage_root", None)
    folder = (
        Path(storage_root).resolve()
        if storage_root
        else context.root / "cache" / context.repo_name / "storage"
    )
    if not folder.is_dir():
        raise PywharfError(
            f"repository {context.repo_name!r} has no storage at {folder} (a typo in the "
            "name, --root or --storage_root?); give --create to start an empty one there"
        )


def commands() -> dict[str, Callable[..., Any]]:
    """Core commands plus every installed backend's ``<type>.<command>``."""
    table: dict[str, Callable[..., Any]] = {
        "server": run_server,
        "update_index": update_index,
        "yank": yank,
        "refresh": refresh,
        "token": token,
        "unyank": unyank,
        "delete": delete,
        "status": status,
        "audit": audit,
        "promote": promote,
        "list": list_files,
        "exists": exists,
    }
    for backend_type in available_backend_types():
        spec = load_backend_spec(backend_type)
        for name, command in spec.commands.items():
            table[f"{backend_type}.{name}"] = command
    return table


def environment_args(
    environ: Mapping[str, str], table: Mapping[str, Callable[..., Any]]
) -> list[str]:
    """The command line that environment mode stands for; a misspelt variable is an error."""
    command = environ[ENV_PREFIX]
    if command not in table:
        raise PywharfError(
            f"{ENV_PREFIX}={command!r} is not a command (one of: {', '.join(sorted(table))})"
        )
    parameters = inspect.signature(table[command]).parameters.values()
    positional = [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    flags = {p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD} - set(positional)
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters)
    if command == "server":  # its extra flags go to waitress: only waitress's own are valid
        flags |= waitress_flags()
        open_ended = False
    args = [command]
    for name in positional:
        variable = f"{ENV_PREFIX}_{name.upper()}"
        if variable not in environ:
            raise PywharfError(f"environment mode: set {variable} (the {name.upper()} argument)")
        args.append(environ[variable])
    for variable, value in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX + "_"):
            continue
        flag = variable[len(ENV_PREFIX) + 1 :].lower()
        if flag in positional:
            continue
        if flag not in flags and not open_ended:
            close = closest(flag, flags)
            if close:
                raise PywharfError(
                    f"environment variable {variable} names no flag of '{command}'; "
                    f"did you mean {ENV_PREFIX}_{close.upper()}?"
                )
            raise PywharfError(
                f"environment variable {variable} names no flag of '{command}' "
                f"(known: {', '.join(sorted(f.upper() for f in flags if not f.startswith('_')))})"
            )
        args.append(f"--{flag}={value}")
    return args


#: Commands that talk to a running server: they take ``-r NAME`` (``~/.pypirc``).
CLIENT_COMMANDS = (
    "yank",
    "unyank",
    "refresh",
    "delete",
    "status",
    "audit",
    "promote",
    "list",
    "exists",
)

#: Flags spelt as a Python keyword, per command: ``--from`` is ``--source``.
FLAG_ALIASES: dict[str, dict[str, str]] = {"promote": {"--from": "--source"}}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        run_command(args)
    except PywharfError as exc:
        # Warnings logged before the error are written first, the error last: in the
        # order they happened, whatever the background log writer was doing.
        logs.flush()
        print_error(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def run_command(args: list[str]) -> None:
    table = commands()
    if not args and os.environ.get(ENV_PREFIX):
        args = environment_args(os.environ, table)
    if not args:
        raise PywharfError("give a command (pywharf --help lists them)")
    if args[0] in HELP_FLAGS:
        sys.stdout.write(overview(table))
        return
    command = args[0]
    if command not in table:
        close = closest(command, table)
        hint = f"; did you mean '{close}'?" if close else ""
        raise PywharfError(f"unknown command {command!r}{hint} (commands: {', '.join(table)})")
    if wants_help(args[1:]):
        sys.stdout.write(command_help(command, table[command], args[1:]))
        return
    args = [command, *(FLAG_ALIASES.get(command, {}).get(a, a) for a in args[1:])]
    if command in CLIENT_COMMANDS:
        args = [command, *with_pypirc(args[1:], "--source" if command == "promote" else "--repo")]
    check_arguments(command, table[command], args[1:])
    fire.Fire(table, command=[command, *_positional_as_text(args[1:])], name="pywharf")


_NUMBER = re.compile(r"[-+]?[\d._]+([eE][-+]?\d+)?")


def _positional_as_text(args: Sequence[str]) -> list[str]:
    """``args`` with the positional ones that fire would parse as numbers quoted: every
    positional argument is text (a version "1.10" is not the number 1.1)."""
    kept: list[str] = []
    flag_value = False
    for index, arg in enumerate(args):
        if arg == "--":
            return [*kept, *args[index:]]
        if flag_value:
            flag_value = False
        elif arg.startswith("--"):
            flag_value = (
                "=" not in arg and index + 1 < len(args) and not args[index + 1].startswith("--")
            )
        elif _NUMBER.fullmatch(arg):
            arg = f'"{arg}"'
        kept.append(arg)
    return kept
