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
from .config import build_settings
from .errors import PywharfError
from .job import terminal_progress
from .job import update_index as run_update_index
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
    initialize_secret: str | None = None,
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
        initialize_secret: the proof POST /initialize/ needs to replace the configuration.
            Without it, /initialize/ works only on an untouched embedded default.
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
        config_or_admin_secret_can_be_text=_bool(
            "config_or_admin_secret_can_be_text", config_or_admin_secret_can_be_text
        ),
        auth_read_expires=int(auth_read_expires),
        auth_write_expires=int(auth_write_expires),
        extra_index_url=_text(extra_index_url),
        trusted_proxy=_text(trusted_proxy),
        initialize_secret=_text(initialize_secret),
        debug=_bool("debug", debug),
        host=str(host),
        port=int(port),
        **waitress_options,
    )


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
    admin_secret = _text(secret)
    if secret_env is not None:
        admin_secret = os.environ.get(str(secret_env))
        if not admin_secret:
            raise PywharfError(f"environment variable {secret_env!r} is not set")
    backend_type, repo_name = str(type), str(name)
    spec = load_backend_spec(backend_type)
    settings = build_settings(spec.config_class, config, source="<command line>", table=repo_name)
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


def _bool(flag: str, value: Any) -> bool:
    # fire hands "--debug=false" (and environment mode's strings) over as text.
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise PywharfError(f"--{flag} takes true or false, not {value!r}")


def _text(value: Any) -> Any:
    # fire parses "1234" as an int; paths, secrets and URLs are text.
    return None if value is None else str(value)


def commands() -> dict[str, Callable[..., Any]]:
    """Core commands plus every installed backend's ``<type>.<command>``."""
    table: dict[str, Callable[..., Any]] = {
        "server": server,
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
        flags |= {name for name, _ in Adjustments._params}
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
