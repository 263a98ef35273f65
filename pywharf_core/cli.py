"""The ``pywharf`` command (fire).

    pywharf server ROOT [--config …] [--admin_secret …] [--port 8888] [waitress flags …]
    pywharf update_index TYPE NAME [--secret S | --secret_env VAR] [--<config key> VALUE …]
    pywharf yank|unyank INDEX_URL FILENAME …

Backends add their own commands as ``pywharf <type>.<command>``.

Environment mode (containers, GitHub Actions service containers): with no arguments,
``PYWHARF_COMMAND`` names the command, ``PYWHARF_COMMAND_<POSITIONAL>`` gives each
positional argument (e.g. ``PYWHARF_COMMAND_ROOT``) and ``PYWHARF_COMMAND_<FLAG>`` each flag.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fire
from waitress.adjustments import Adjustments

from .backend import BackendContext, available_backend_types, load_backend_spec
from .client import set_yanked
from .config import split_table
from .errors import PywharfError
from .flags import text_flag
from .job import terminal_progress
from .job import update_index as run_update_index
from .server import print_error, run_server


def update_index(
    type: str,  # the seed's positional TYPE; shadows the builtin here only
    name: str,
    secret: str | None = None,
    secret_env: str | None = None,
    root: str = ".",
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
    backend = spec.create(context, settings)
    progress = terminal_progress(repo_name)
    summary = run_update_index(backend, progress)
    if progress is not None:
        sys.stderr.write("\r\033[K")
    print(summary.line(repo_name))


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


def commands() -> dict[str, Callable[..., Any]]:
    """Core commands plus every installed backend's ``<type>.<command>``."""
    table: dict[str, Callable[..., Any]] = {
        "server": run_server,
        "update_index": update_index,
        "yank": yank,
        "unyank": unyank,
    }
    for backend_type in available_backend_types():
        spec = load_backend_spec(backend_type)
        for name, command in spec.commands.items():
            table[f"{backend_type}.{name}"] = command
    return table


ENV_PREFIX = "PYWHARF_COMMAND"


def waitress_flags() -> set[str]:
    """waitress's settings: the public class attributes of its ``Adjustments``."""
    return {
        name
        for name, value in vars(Adjustments).items()
        if not name.startswith("_") and not callable(value) and not isinstance(value, classmethod)
    }


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
            raise PywharfError(
                f"environment variable {variable} names no flag of '{command}' "
                f"(known: {', '.join(sorted(f.upper() for f in flags if not f.startswith('_')))})"
            )
        args.append(f"--{flag}={value}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and os.environ.get(ENV_PREFIX):
        try:
            args = environment_args(os.environ, commands())
        except PywharfError as exc:
            print_error(str(exc))
            sys.exit(2)
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
