"""Configuration: the repositories TOML and the admin-secret TOML (seed formats).

Config::

    [<repo name>]
    type = "<backend type>"
    <backend key> = <value>

Admin secrets::

    [<repo name>]
    type = "<backend type>"
    raw = "<secret>"        # or: env = "<ENVIRONMENT VARIABLE>"

Four keys of every table are the core's policy, whatever the backend (``RepoPolicy``):
``read_secret``, ``write_secret``, ``max_file_bytes`` and ``sync_index_interval``; the
rest go to the backend's config class. Every problem is a ``ConfigError`` naming the
source, the table and the key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The standard TOML 1.0 parser (tomli is the same code for Python 3.10): its errors say
# where, unlike the unmaintained toml package's ("Key group not on a line by itself").
if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from .backend import BackendSpec, load_backend_spec
from .errors import ConfigError

log = logging.getLogger(__name__)

#: Secrets shorter than this are accepted with a warning.
SHORT_SECRET = 16


@dataclass(frozen=True)
class TomlSource:
    """Parsed TOML and where it came from (a path, or ``<config text>``)."""

    label: str
    data: dict[str, Any]


def read_toml(value: str | os.PathLike[str], *, can_be_text: bool, what: str) -> TomlSource:
    """Read a TOML file, or, with ``can_be_text``, take ``value`` itself as TOML text
    when it does not name an existing file."""
    text: str
    label: str
    path = Path(os.fspath(value))
    if can_be_text and not _is_file(path):
        text, label = os.fspath(value), f"<{what} text>"
    else:
        label = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {what} file: {exc.strerror}", source=label) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{what} file is not UTF-8 text", source=label) from exc
    return parse_toml(text, label)


def parse_toml(text: str, label: str) -> TomlSource:
    """Parse TOML; a syntax error names the line and column, e.g.
    ``config.toml: invalid TOML at line 3, column 5: Expected ']' …``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_error(str(exc)), source=label) from None
    return TomlSource(label, data)


def _syntax_error(message: str) -> str:
    # tomllib puts the place at the end: "Expected ']' … (at line 1, column 3)".
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match is None:
        return f"invalid TOML: {message}"  # e.g. "(at end of document)"
    reason = message[: match.start()]
    return f"invalid TOML at line {match.group(1)}, column {match.group(2)}: {reason}"


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a TOML text too long to be a file name
        return False


@dataclass(frozen=True)
class TrustedPublisher:
    """A CI workflow that may trade its OIDC identity for a short upload token
    (``trusted_publishers = [{ provider = "github", … }]``; see ``oidc.py``)."""

    #: The identity provider: "github" (GitHub Actions) is the one supported.
    provider: str
    #: The GitHub repository the workflow runs in, ``owner/name``.
    repository: str
    #: The workflow's file name under .github/workflows/, e.g. ``release.yml``.
    workflow: str
    #: The GitHub environment the job must run in; ``None``: any.
    environment: str | None = None
    #: The projects the minted token may upload to; empty: every project.
    projects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.provider != "github":
            raise ValueError(f"provider must be 'github', not {self.provider!r}")
        owner, _, name = self.repository.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository must be 'owner/name', not {self.repository!r}")
        if (
            not self.workflow
            or "/" in self.workflow
            or not self.workflow.endswith((".yml", ".yaml"))
        ):
            raise ValueError(
                f"workflow must be a file name such as 'release.yml', not {self.workflow!r}"
            )
        if self.environment == "":
            raise ValueError("environment must not be empty (leave it out for any)")


@dataclass(frozen=True)
class RepoPolicy:
    """The core's rules for one repository, whatever its backend."""

    #: The clients' secrets (backends with ``client_secrets``); a server needs both.
    read_secret: str | None = None
    write_secret: str | None = None
    #: Largest accepted distribution file, in bytes (default: the backend spec's).
    max_file_bytes: int = 5368709119
    #: Seconds between checks of the remote index.
    sync_index_interval: int = 60
    #: An index (PEP 503/691) behind this repository: projects with no private file are
    #: served from it (cached). Credentials may be part of the URL.
    upstream_url: str | None = None
    #: Seconds an upstream project page is fresh.
    upstream_ttl: int = 600
    #: Projects that may mix private and upstream files (normalized names or patterns).
    upstream_allow: tuple[str, ...] = ()
    #: Seconds: upstream files younger than this (or without an upload time) are hidden.
    upstream_cooldown: int = 0
    #: Name patterns never asked of upstream (reserved for private projects).
    upstream_deny: tuple[str, ...] = ()
    #: CI workflows that may mint short-lived upload tokens (trusted publishing).
    trusted_publishers: tuple[TrustedPublisher, ...] = ()
    #: Let a deleted file's name be uploaded again with other bytes (PyPI never does:
    #: lock files and hash-checking installs recorded the name with its hash).
    allow_filename_reuse: bool = False

    def __post_init__(self) -> None:
        if self.max_file_bytes <= 0:
            raise ValueError("max_file_bytes must be positive")
        if self.sync_index_interval <= 0:
            raise ValueError("sync_index_interval must be positive")
        if self.upstream_ttl < 0 or self.upstream_cooldown < 0:
            raise ValueError("upstream_ttl and upstream_cooldown must not be negative")
        if self.upstream_url is not None:
            check_upstream_url(self.upstream_url)

    def __repr__(self) -> str:  # never print a secret
        return (
            f"RepoPolicy(max_file_bytes={self.max_file_bytes}, "
            f"sync_index_interval={self.sync_index_interval})"
        )


def check_upstream_url(url: str) -> None:
    """``ValueError`` unless ``url`` is an absolute http(s) URL (credentials allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("upstream_url must be an http:// or https:// index URL")


POLICY_KEYS = tuple(f.name for f in dataclasses.fields(RepoPolicy))
SECRET_KEYS = ("read_secret", "write_secret")


@dataclass(frozen=True)
class RepoConfig:
    """One repository: its name, backend spec, core policy and typed backend settings."""

    name: str
    spec: BackendSpec
    settings: Any  # an instance of spec.config_class
    source: str = ""  # the file (or text label) the table came from
    policy: RepoPolicy = RepoPolicy()


def split_table(
    spec: BackendSpec,
    values: dict[str, Any],
    *,
    source: str,
    table: str,
    serving: bool = True,
    from_text: bool = True,
) -> tuple[RepoPolicy, Any]:
    """A repository table's keys parsed into the core's policy and the backend's
    settings. ``serving``: the two client secrets are required (a job needs none).
    ``from_text``: the values come from TOML, so a secret must be a string (the command
    line's fire turns digits into numbers)."""
    policy_keys = (
        POLICY_KEYS
        if spec.client_secrets
        else tuple(k for k in POLICY_KEYS if k not in SECRET_KEYS)
    )
    backend_keys = {f.name for f in dataclasses.fields(spec.config_class) if f.init}
    for key in values:
        if key not in policy_keys and key not in backend_keys:
            allowed = ", ".join(["type", *sorted({*policy_keys, *backend_keys})])
            raise ConfigError(
                f"unknown key (allowed: {allowed})", source=source, table=table, key=key
            )
    policy_values = {k: v for k, v in values.items() if k in policy_keys}
    for key in SECRET_KEYS:
        if from_text and key in policy_values and not isinstance(policy_values[key], str):
            raise ConfigError(
                f"expected a string, got {policy_values[key]!r} (put the secret in quotes)",
                source=source,
                table=table,
                key=key,
            )
    policy_values.setdefault("max_file_bytes", spec.file_size_limit)
    policy: RepoPolicy = build_settings(RepoPolicy, policy_values, source=source, table=table)
    if serving and spec.client_secrets:
        _check_secrets(policy, source, table)
    settings = build_settings(
        spec.config_class,
        {k: v for k, v in values.items() if k not in policy_keys},
        source=source,
        table=table,
    )
    return policy, settings


def _check_secrets(policy: RepoPolicy, source: str, table: str) -> None:
    for key in SECRET_KEYS:
        if not getattr(policy, key):
            raise ConfigError(
                "required key is missing or empty", source=source, table=table, key=key
            )
    if policy.read_secret == policy.write_secret:
        raise ConfigError(
            "read_secret and write_secret are equal, so every reader could upload: "
            "give them different values",
            source=source,
            table=table,
            key="read_secret",
        )
    for key in SECRET_KEYS:
        if len(getattr(policy, key)) < SHORT_SECRET:
            log.warning(
                "%s [%s] %s is shorter than %d characters: anyone who can try passwords "
                "may guess it",
                source,
                table,
                key,
                SHORT_SECRET,
            )


def parse_repo_configs(source: TomlSource) -> dict[str, RepoConfig]:
    repos: dict[str, RepoConfig] = {}
    if not source.data:
        raise ConfigError("no repository tables found", source=source.label)
    for name, table in source.data.items():
        if not isinstance(table, dict):
            raise ConfigError(
                "expected a table [<repo name>] with a 'type' key", source=source.label, table=name
            )
        _check_repo_name(name, source.label)
        backend_type = table.get("type")
        if not isinstance(backend_type, str):
            raise ConfigError(
                "missing 'type' (the backend)", source=source.label, table=name, key="type"
            )
        try:
            spec = load_backend_spec(backend_type)
        except ConfigError as exc:
            raise ConfigError(exc.message, source=source.label, table=name, key="type") from None
        values = {k: v for k, v in table.items() if k != "type"}
        policy, settings = split_table(spec, values, source=source.label, table=name)
        repos[name] = RepoConfig(name, spec, settings, source.label, policy)
    return repos


def _check_repo_name(name: str, label: str) -> None:
    # The name is a basic-auth username and a folder name under ROOT/cache.
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigError(
            "a repository name may hold only letters, digits, '-', '_' and '.', "
            "and may not start with '.'",
            source=label,
            table=name,
        )


def parse_admin_secrets(source: TomlSource, repos: dict[str, RepoConfig]) -> dict[str, str]:
    """Resolve ``raw``/``env`` secrets; every repo whose backend needs one must have one."""
    secrets: dict[str, str] = {}
    for name, table in source.data.items():
        if not isinstance(table, dict):
            raise ConfigError(
                "expected a table with 'raw' or 'env'", source=source.label, table=name
            )
        unknown = set(table) - {"type", "raw", "env"}
        if unknown:
            raise ConfigError(
                "unknown key (allowed: type, raw, env)",
                source=source.label,
                table=name,
                key=sorted(unknown)[0],
            )
        repo = repos.get(name)
        if repo is not None and "type" in table and table["type"] != repo.spec.type:
            raise ConfigError(
                f"type {table['type']!r} differs from the config's {repo.spec.type!r}",
                source=source.label,
                table=name,
                key="type",
            )
        if "raw" in table:
            secrets[name] = str(table["raw"])
        elif "env" in table:
            value = os.environ.get(str(table["env"]))
            if not value:
                raise ConfigError(
                    f"environment variable {table['env']!r} is not set",
                    source=source.label,
                    table=name,
                    key="env",
                )
            secrets[name] = value
        else:
            raise ConfigError("missing 'raw' or 'env'", source=source.label, table=name, key="raw")
    for name, repo in repos.items():
        if repo.spec.admin_secret and name not in secrets:
            raise ConfigError(
                f"missing admin secret for this {repo.spec.type} repository",
                source=source.label,
                table=name,
            )
    return secrets


def build_settings(cls: type, values: dict[str, Any], *, source: str, table: str) -> Any:
    """Instantiate the backend's frozen dataclass ``cls`` from ``values``, checking keys
    and types. Strings are converted where the field wants an int, float or bool (CLI)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            allowed = ", ".join(["type", *sorted(fields)])
            raise ConfigError(
                f"unknown key (allowed: {allowed})", source=source, table=table, key=key
            )
        kwargs[key] = _coerce(value, hints[key], source=source, table=table, key=key)
    for name, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and name not in kwargs:
            raise ConfigError("required key is missing", source=source, table=table, key=name)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), source=source, table=table) from exc


def _coerce(value: Any, hint: Any, *, source: str, table: str, key: str) -> Any:
    item = _dataclass_items(hint)
    if item is not None:  # an array of tables, e.g. trusted_publishers
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(
                'expected an array of tables, e.g. [{ provider = "github", … }]',
                source=source,
                table=table,
                key=key,
            )
        converted = []
        for i, entry in enumerate(value):
            try:
                converted.append(build_settings(item, entry, source=source, table=table))
            except ConfigError as exc:
                inner = f".{exc.key}" if exc.key else ""
                raise ConfigError(
                    exc.message, source=source, table=table, key=f"{key}[{i}]{inner}"
                ) from None
        return tuple(converted)
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is type(None):
            continue
        converted = _convert(value, option)
        if converted is not _FAIL:
            return converted
    wanted = " or ".join(_type_name(o) for o in options if o is not type(None))
    raise ConfigError(f"expected {wanted}, got {value!r}", source=source, table=table, key=key)


_FAIL = object()


def _dataclass_items(hint: Any) -> type | None:
    """The item class of ``tuple[SomeDataclass, ...]``, else ``None``."""
    if typing.get_origin(hint) is not tuple:
        return None
    args = typing.get_args(hint)
    if args and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _convert(value: Any, kind: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return _FAIL
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return _FAIL
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return _FAIL
    if kind is str:
        # fire turns "123" into 123; a secret or a name is still meant as text.
        return (
            str(value)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool)
            else _FAIL
        )
    if typing.get_origin(kind) is tuple:  # tuple[str, ...]: a TOML array of strings
        if isinstance(value, str):  # the command line: comma-separated
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        return _FAIL
    return value if isinstance(value, kind) else _FAIL


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "an array of strings"
    return str(getattr(kind, "__name__", kind))


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
