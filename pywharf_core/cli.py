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

Environment mode (containers, GitHub Actions service containers): with no arguments,
``PYWHARF_COMMAND`` names the command, ``PYWHARF_COMMAND_<POSITIONAL>`` gives each
positional argument (e.g. ``PYWHARF_COMMAND_ROOT``) and ``PYWHARF_COMMAND_<FLAG>`` each flag.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fire
from packaging.utils import canonicalize_version
from waitress.adjustments import Adjustments

from .backend import BackendContext, available_backend_types, load_backend_spec
from .client import (
    audit_lines,
    call_tokens_api,
    delete_files,
    refresh_upstream,
    set_yanked,
    tokens_url,
)
from .client import project_page as fetch_project_page
from .client import promote as promote_release
from .client import set_status as set_project_status
from .config import SECRET_KEYS, RepoPolicy, split_table
from .dists import parse_filename
from .errors import ConfigError, PywharfError
from .flags import bool_flag, text_flag
from .job import terminal_progress
from .job import update_index as run_update_index
from .pypirc import read_pypirc
from .server import print_error, run_server
from .simple import sort_versions


def update_index(
    type: str,  # the seed's positional TYPE; shadows the builtin here only
    name: str,
    secret: str | None = None,
    secret_env: str | None = None,
    root: str = ".",
    create: bool = False,
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
        summary = run_update_index(backend, progress)
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


def refresh(
    index_url: str,
    project: str,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Drop a project's cached upstream page (a repository with upstream_url): the next
    request asks the upstream index again.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project whose upstream page to drop.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    url, username, password = _login(index_url, repo, secret, secret_env)
    print(refresh_upstream(url, str(project), username, password))


def token(
    action: str,
    index_url: str,
    permission: str = "upload",
    projects: str | None = None,
    expires_in: int | None = None,
    description: str = "",
    token_id: str | None = None,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Create, list or revoke a repository's API tokens (with its write secret).

    pywharf token create INDEX_URL --permission upload --projects a,b --expires_in 86400
    prints the new token (shown this once); list prints one token per line; revoke
    needs --token_id.

    Args:
        action: create, list or revoke.
        index_url: the index, e.g. http://host:8888/r/REPO/simple/ (or …/simple/ with --repo).
        permission: read (list and download) or upload (also upload).
        projects: comma-separated projects an upload token may upload to (default: all).
        expires_in: seconds until the token expires (default: never).
        description: what the token is for, e.g. the CI job holding it.
        token_id: the id of the token to revoke (see list).
        repo: the repository name; not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    url = tokens_url(str(index_url), None if repo is None else str(repo))
    write_secret = _secret_of("secret", secret, secret_env)
    if action == "create":
        body: dict[str, Any] = {"permission": str(permission), "description": str(description)}
        if projects:
            names = projects if isinstance(projects, (list, tuple)) else str(projects).split(",")
            body["projects"] = [str(p).strip() for p in names if str(p).strip()]
        if expires_in is not None:
            body["expires_in"] = int(expires_in)
        made = call_tokens_api(url, "POST", write_secret, body)
        print(made["token"])
        scope = ", ".join(made["projects"]) if made["projects"] else "all projects"
        print(
            f"id {made['id']}: {made['permission']}, {scope}, expires {made['expires'] or 'never'}"
            " (the token is shown this once)",
            file=sys.stderr,
        )
    elif action == "list":
        for row in call_tokens_api(url, "GET", write_secret):
            scope = ",".join(row["projects"]) if row["projects"] else "*"
            print(
                f"{row['id']}  {row['permission']:<6}  {scope}  expires {row['expires'] or 'never'}"
                f"  last used {row['last_used'] or '-'}  {row['description']}"
            )
    elif action == "revoke":
        if not token_id:
            raise PywharfError("give --token_id (pywharf token list shows the ids)")
        call_tokens_api(url + str(token_id), "DELETE", write_secret)
        print(f"OK: token {token_id} revoked")
    else:
        raise PywharfError(f"unknown action {action!r}: create, list or revoke")


def _set_yanked(
    index_url: Any, filename: Any, reason: str | None, repo: Any, secret: Any, secret_env: Any
) -> str:
    url, username, password = _login(index_url, repo, secret, secret_env)
    return set_yanked(url, str(filename), username, password, reason)


def delete(
    index_url: str,
    project: str,
    version: str | None = None,
    filename: str | None = None,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Delete files for good: every file of VERSION (each one named), or --filename.

    Installers can no longer get them, and by default the filename cannot be uploaded
    again with other bytes (allow_filename_reuse). Prefer yank for a release people use.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project name.
        version: delete every file of this version.
        filename: delete this one file instead.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    if (version is None) == (filename is None):
        raise PywharfError("give a VERSION or --filename (exactly one)")
    url, username, password = _login(index_url, repo, secret, secret_env)
    deleted = delete_files(
        url,
        str(project),
        None if version is None else str(version),
        None if filename is None else str(filename),
        username,
        password,
    )
    for name in deleted:
        print(f"deleted {name}")


def status(
    index_url: str,
    project: str,
    status: str,
    reason: str | None = None,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Set a project's status (PEP 792): active, archived, quarantined or deprecated.

    archived and quarantined refuse uploads; quarantined also offers no files.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project name.
        status: active, archived, quarantined or deprecated.
        reason: shown with the status on the project's pages.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    url, username, password = _login(index_url, repo, secret, secret_env)
    text = None if reason is None else str(reason)
    print(set_project_status(url, str(project), str(status), text, username, password))


def audit(
    index_url: str,
    since: str | None = None,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Print a repository's audit log: one JSON record per line, oldest first.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        since: an ISO 8601 date or time (UTC unless it says), or seconds since the epoch;
            default: the last week.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    url, username, password = _login(index_url, repo, secret, secret_env)
    text = audit_lines(url, None if since is None else str(since), username, password)
    if text:
        print(text)


def promote(
    index_url: str,
    project: str,
    version: str,
    to: str,
    source: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
    to_secret: str | None = None,
    to_secret_env: str | None = None,
) -> None:
    """Copy a release to another repository on the server (same bytes, same hashes).

    Files the target already holds with the same bytes are left alone; one it holds with
    other bytes stops the promotion before anything is copied.

    Args:
        index_url: the source index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project name.
        version: the version whose files are copied.
        to: the target repository's name.
        source: the source repository's name (also --from); not needed with an /r/REPO/simple/ URL.
        secret: the source's read or write secret.
        secret_env: name of an environment variable holding the source's secret instead.
        to_secret: the target's write secret.
        to_secret_env: name of an environment variable holding the target's secret instead.
    """
    url, username, password = _login(index_url, source, secret, secret_env)
    target_secret = _secret_of("to_secret", to_secret, to_secret_env)
    answer = promote_release(
        url, str(project), str(version), username, password, str(to), target_secret
    )
    for name in answer["copied"]:
        print(f"copied {name}")
    for name in answer["unchanged"]:
        print(f"already there: {name}")


def list_files(
    index_url: str,
    project: str,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Print a project's versions, newest first, each with its files (and yanks).

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project name.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's read or write secret.
        secret_env: name of an environment variable holding the secret instead.
    """
    url, username, password = _login(index_url, repo, secret, secret_env)
    page = fetch_project_page(url, str(project), username, password)
    if page is None:
        raise PywharfError(f"{project} is not in this repository")
    by_version: dict[str, list[str]] = {}
    for item in page.get("files", []):
        filename = str(item.get("filename", ""))
        try:
            version = str(parse_filename(filename).version)
        except PywharfError:
            continue
        yanked = item.get("yanked", False)
        note = (
            ""
            if yanked is False
            else f"  (yanked{': ' + yanked if isinstance(yanked, str) and yanked else ''})"
        )
        by_version.setdefault(version, []).append(filename + note)
    status = page.get("project-status", {}).get("status", "active")
    if status != "active":
        print(f"{page.get('name', project)}: {status}")
    for version in reversed(sort_versions(by_version)):
        print(version)
        for line in by_version[version]:
            print(f"  {line}")


def exists(
    index_url: str,
    requirement: str,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Exit 0 when the index offers PROJECT (or PROJECT==VERSION), 1 when not.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        requirement: PROJECT or PROJECT==VERSION.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's read or write secret.
        secret_env: name of an environment variable holding the secret instead.
    """
    project, _, version = str(requirement).partition("==")
    url, username, password = _login(index_url, repo, secret, secret_env)
    page = fetch_project_page(url, project.strip(), username, password)
    files = [str(item.get("filename", "")) for item in (page or {}).get("files", [])]
    found = bool(files)
    if found and version.strip():
        found = any(_file_version(f) == canonicalize_version(version.strip()) for f in files)
    sys.exit(0 if found else 1)


def _file_version(filename: str) -> str | None:
    try:
        return canonicalize_version(str(parse_filename(filename).version))
    except PywharfError:
        return None


def _secret_of(flag: str, value: Any, env: Any) -> str:
    if (value is None) == (env is None):
        raise PywharfError(f"give exactly one of --{flag} and --{flag}_env")
    if env is not None:
        found = os.environ.get(str(env))
        if not found:
            raise PywharfError(f"environment variable {env!r} is not set")
        return found
    return str(value)


def _login(index_url: Any, repo: Any, secret: Any, secret_env: Any) -> tuple[str, str, str]:
    """The index URL, username and password of a client command's flags."""
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
    return url, str(repo or "__token__"), str(secret)


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


# -- help and argument checks --------------------------------------------------------------
# fire runs a command as soon as it can and prints help only afterwards, takes a mistyped
# flag for a waitress option or a backend key, and reads -h as --host: so every command
# line is checked here first, and help is printed from the signatures without fire.

HELP_FLAGS = ("--help", "-h")


@dataclass(frozen=True)
class KeyRow:
    """One config key as help shows it: ``--name`` (type, default)."""

    name: str
    type: str
    default: str


def config_key_rows(config_class: type) -> list[KeyRow]:
    """A backend config class's keys, in declaration order, with types and defaults."""
    hints = typing.get_type_hints(config_class)
    rows = []
    for f in dataclasses.fields(config_class):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = _value_text(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _value_text(f.default_factory())
        else:
            default = "required"
        rows.append(KeyRow(f.name, _type_name(hints.get(f.name, Any)), default))
    return rows


def format_key_rows(rows: Sequence[KeyRow], prefix: str = "--") -> list[str]:
    width = max((len(r.name) for r in rows), default=0) + 2
    return [f"    {prefix}{r.name.ljust(width)}{r.type} (default: {r.default})" for r in rows]


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return re.sub(r"\b(?:typing|builtins)\.", "", str(hint)).replace("NoneType", "None")


def _parameters(func: Callable[..., Any]) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(func).parameters.values() if not p.name.startswith("_")]


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
#: Where ``-r`` puts the password from ~/.pypirc: never on a command line, never printed.
PYPIRC_VARIABLE = "PYWHARF_PYPIRC_PASSWORD"


def _with_pypirc(args: Sequence[str], user_flag: str) -> list[str]:
    """``args`` with ``-r NAME`` (or ``--repository NAME``) replaced by what the section
    of ~/.pypirc gives: the index URL first, then ``--repo`` and the secret, each unless
    given already (``user_flag``: the command's flag for the username)."""
    rest = list(args)
    for flag in ("-r", "--repository"):
        if flag in rest:
            at = rest.index(flag)
            if at + 1 >= len(rest):
                raise PywharfError(f"{flag} needs a name from ~/.pypirc")
            name = rest[at + 1]
            del rest[at : at + 2]
            break
    else:
        return rest
    login = read_pypirc(name)
    given = {a.split("=", 1)[0] for a in rest if a.startswith("--")}
    extra: list[str] = []
    if login.username and login.username != "__token__" and user_flag not in given:
        extra += [user_flag, login.username]
    if login.password and not given & {"--secret", "--secret_env"}:
        os.environ[PYPIRC_VARIABLE] = login.password
        extra += ["--secret_env", PYPIRC_VARIABLE]
    return [login.index_url, *rest, *extra]


#: Flags spelt as a Python keyword, per command: ``--from`` is ``--source``.
FLAG_ALIASES: dict[str, dict[str, str]] = {"promote": {"--from": "--source"}}

#: Arguments that may also be given by position after the required ones, per command
#: (``pywharf delete URL PROJECT 1.0`` as well as ``--version 1.0``).
OPTIONAL_ARGUMENTS: dict[str, tuple[str, ...]] = {"delete": ("version",)}


def _positional_names(func: Callable[..., Any]) -> list[str]:
    return [
        p.name
        for p in _parameters(func)
        if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    ]


def _argument_docs(func: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The docstring's summary and its ``Args:`` entries, joined to one line each."""
    doc = inspect.getdoc(func) or ""
    summary, _, rest = doc.partition("\nArgs:\n")
    entries: dict[str, str] = {}
    current = None
    for line in rest.splitlines():
        match = re.match(r"^    (\w+): ?(.*)$", line)
        if match:
            current = match.group(1)
            entries[current] = match.group(2)
        elif current and line.startswith("        "):
            entries[current] += " " + line.strip()
        elif line.strip():
            current = None
    return summary.strip(), entries


def _value_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return repr(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def command_help(command: str, func: Callable[..., Any], args: Sequence[str]) -> str:
    """Help for one command, from its signature and docstring; runs nothing."""
    summary, docs = _argument_docs(func)
    optional = OPTIONAL_ARGUMENTS.get(command, ())
    positional = _positional_names(func)
    names = [*(n.upper() for n in positional), *(f"[{n.upper()}]" for n in optional)]
    lines = [
        f"usage: pywharf {command} {' '.join(names)} [flags]".rstrip(),
        "",
        summary,
    ]
    if positional:
        lines += ["", "arguments:"]
        lines += [f"  {n.upper():<14}{docs.get(n, '')}" for n in (*positional, *optional)]
    lines += ["", "flags:"]
    for p in _parameters(func):
        if p.name in positional or p.kind is p.VAR_KEYWORD:
            continue
        kind = str(p.annotation) if p.annotation is not p.empty else ""
        lines.append(
            f"  --{p.name} {kind} (default: {_value_text(p.default)})".replace("  (", " (")
        )
        if docs.get(p.name):
            lines.append(f"      {docs[p.name]}")
    lines += ["  -h, --help", "      show this help and exit (runs nothing)"]
    if command == "server":
        lines += [
            "",
            "Any other --flag is passed on to waitress (e.g. --threads 32); the ones it knows:",
            "  " + ", ".join(sorted(WAITRESS_FLAGS - set(inspect.signature(func).parameters))),
        ]
    if command == "update_index":
        heading = "config keys of the {} backend (--<key> VALUE):"
        lines += ["", *backend_key_help(args, heading, "--")]
    if command == "server":
        heading = "keys of a [<repo>] table with type = {!r} in --config:"
        lines += ["", *backend_key_help([], heading, "")]
    return "\n".join(lines) + "\n"


def backend_key_help(args: Sequence[str], heading: str, prefix: str) -> list[str]:
    """The config keys of the backend named first in ``args``, or of every installed
    backend when none is named."""
    types = [a for a in args if not a.startswith("-")][:1] or available_backend_types()
    lines = []
    for backend_type in types:
        lines.append(heading.format(backend_type))
        lines += format_key_rows(backend_key_rows(backend_type), prefix)
    return lines


def backend_key_rows(backend_type: str) -> list[KeyRow]:
    """The keys of a repository table of this backend type: the core's policy keys (those
    that apply to it), then the backend's own."""
    spec = load_backend_spec(backend_type)
    policy = [
        row
        for row in config_key_rows(RepoPolicy)
        if spec.client_secrets or row.name not in SECRET_KEYS
    ]
    for i, row in enumerate(policy):
        if row.name == "max_file_bytes":  # its default is the backend's
            policy[i] = KeyRow(row.name, row.type, str(spec.file_size_limit))
    return policy + config_key_rows(spec.config_class)


def overview() -> str:
    table = commands()
    lines = [
        "usage: pywharf COMMAND [ARGUMENTS] [--flag VALUE …]",
        "",
        "commands (pywharf COMMAND --help for each):",
    ]
    for name, func in table.items():
        summary = (inspect.getdoc(func) or "").split("\n", 1)[0]
        lines.append(f"  {name:<24}{summary}")
    lines += [
        "",
        f"With no arguments and {ENV_PREFIX} set, the command is read from the environment.",
    ]
    return "\n".join(lines) + "\n"


WAITRESS_FLAGS = waitress_flags()


def check_arguments(command: str, func: Callable[..., Any], args: Sequence[str]) -> None:
    """Refuse, before anything runs, what fire would turn into a traceback or a silent
    mistake: an unknown flag, a missing or extra argument, a number that is not one.
    ``args`` follow the command; values are split off as fire splits them."""
    parameters = {p.name: p for p in inspect.signature(func).parameters.values()}
    positional = _positional_names(func)
    given: dict[str, str | None] = {}
    loose: list[str] = []
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if not arg.startswith("--") or arg == "--":
            if arg == "--":
                break
            loose.append(arg)
            continue
        key, equals, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not equals:
            is_bool = index + 1 == len(args) or args[index + 1].startswith("--")
            skip = not is_bool
            given[key] = None if is_bool else args[index + 1]
        else:
            given[key] = value
    known = {n for n, p in parameters.items() if p.kind is not p.VAR_KEYWORD}
    if command == "server":
        known |= WAITRESS_FLAGS
    if command == "update_index":
        backend_type = loose[0] if loose else (given.get("type") or "")
        if backend_type:
            known |= {r.name for r in backend_key_rows(str(backend_type))}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    open_ended = open_ended and command not in ("server", "update_index")
    for key, flag_value in given.items():
        bool_form = key.startswith("no") and key[2:] in known and flag_value is None
        if key not in known and not bool_form and not open_ended:
            if command == "update_index" and len(loose) >= 2:
                # Named as build_settings names a wrong key: the repository's table.
                close = closest(key, known)
                hint = f"; did you mean --{close}?" if close else ""
                raise ConfigError(
                    f"unknown flag or key{hint} (pywharf update_index {loose[0]} --help "
                    "lists them)",
                    source="<command line>",
                    table=loose[1],
                    key=key,
                )
            raise PywharfError(_unknown_flag(command, key, known))
        parameter = parameters.get(key)
        if parameter is not None and type(parameter.default) is int and flag_value is not None:
            if not re.fullmatch(r"-?\d+", flag_value.strip()):
                raise PywharfError(f"--{key} takes a whole number, not {flag_value!r}")
    missing = [n for n in positional[len(loose) :] if n not in given]
    if missing:
        names = " ".join(n.upper() for n in missing)
        raise PywharfError(
            f"'{command}' needs {names}: pywharf {command} "
            f"{' '.join(n.upper() for n in positional)} (see pywharf {command} --help)"
        )
    optional = [n for n in OPTIONAL_ARGUMENTS.get(command, ()) if n not in given]
    extra = len(loose) - len([n for n in positional if n not in given]) - len(optional)
    if extra > 0:
        raise PywharfError(
            f"'{command}' takes {len(positional) + len(optional)} argument(s), not "
            f"{len(loose)}: "
            f"unexpected {loose[-extra]!r} (a flag needs -- before its name)"
        )


def _unknown_flag(command: str, key: str, known: Iterable[str]) -> str:
    close = closest(key, known)
    hint = f"did you mean --{close}? " if close else ""
    return f"unknown flag --{key} for '{command}'; {hint}(pywharf {command} --help lists them)"


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate a typo most likely meant: fewest edits (a swap of two neighbours
    counts as one, so --prot means --port, not --root), at most a third of the word."""
    best: tuple[int, str] | None = None
    for candidate in sorted(candidates):
        distance = _edit_distance(word, candidate)
        if distance <= max(1, len(word) // 3) and (best is None or distance < best[0]):
            best = (distance, candidate)
    return None if best is None else best[1]


def _edit_distance(a: str, b: str) -> int:
    # Optimal string alignment distance: insertions, deletions, substitutions, swaps.
    rows = [list(range(len(b) + 1))] + [[i] + [0] * len(b) for i in range(1, len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[len(a)][len(b)]


def _wants_help(args: Sequence[str]) -> bool:
    before = args[: args.index("--")] if "--" in args else args
    return any(a in HELP_FLAGS for a in before)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        run_command(args)
    except PywharfError as exc:
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
        sys.stdout.write(overview())
        return
    command = args[0]
    if command not in table:
        close = closest(command, table)
        hint = f"; did you mean '{close}'?" if close else ""
        raise PywharfError(f"unknown command {command!r}{hint} (commands: {', '.join(table)})")
    if _wants_help(args[1:]):
        sys.stdout.write(command_help(command, table[command], args[1:]))
        return
    args = [command, *(FLAG_ALIASES.get(command, {}).get(a, a) for a in args[1:])]
    if command in CLIENT_COMMANDS:
        args = [command, *_with_pypirc(args[1:], "--source" if command == "promote" else "--repo")]
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
