"""Configuration: the repositories TOML and the admin-secret TOML (seed formats).

Config::

    [<repo name>]
    type = "<backend type>"
    <backend key> = <value>

Admin secrets::

    [<repo name>]
    type = "<backend type>"
    raw = "<secret>"        # or: env = "<ENVIRONMENT VARIABLE>"

Every problem is a ``ConfigError`` naming the source, the table and the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The standard TOML 1.0 parser (tomli is the same code for Python 3.10): its errors say
# where, unlike the unmaintained toml package's ("Key group not on a line by itself").
if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from .backend import BackendSpec, load_backend_spec
from .errors import ConfigError


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
class RepoConfig:
    """One repository: its name, backend spec and typed backend settings."""

    name: str
    spec: BackendSpec
    settings: Any  # an instance of spec.config_class
    source: str = ""  # the file (or text label) the table came from


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
        settings_in = {k: v for k, v in table.items() if k != "type"}
        settings = build_settings(spec.config_class, settings_in, source=source.label, table=name)
        repos[name] = RepoConfig(name, spec, settings, source.label)
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
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is type(None):
            continue
        converted = _convert(value, option)
        if converted is not _FAIL:
            return converted
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ConfigError(f"expected {wanted}, got {value!r}", source=source, table=table, key=key)


_FAIL = object()


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
    return value if isinstance(value, kind) else _FAIL


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
