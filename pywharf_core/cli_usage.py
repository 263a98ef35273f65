"""Help for the ``pywharf`` command, printed from the commands' signatures and
docstrings and the backends' config classes, without running anything (fire prints help
only after running a command)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments

from .backend import available_backend_types, load_backend_spec
from .config import SECRET_KEYS, RepoPolicy

#: Environment mode's variable (``cli.environment_args``): it names the command.
ENV_PREFIX = "PYWHARF_COMMAND"
HELP_FLAGS = ("--help", "-h")

#: Arguments that may also be given by position after the required ones, per command
#: (``pywharf delete URL PROJECT 1.0`` as well as ``--version 1.0``).
OPTIONAL_ARGUMENTS: dict[str, tuple[str, ...]] = {"delete": ("version",)}


def waitress_flags() -> set[str]:
    """waitress's settings: the public class attributes of its ``Adjustments``."""
    return {
        name
        for name, value in vars(Adjustments).items()
        if not name.startswith("_") and not callable(value) and not isinstance(value, classmethod)
    }


WAITRESS_FLAGS = waitress_flags()


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


def positional_names(func: Callable[..., Any]) -> list[str]:
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
    positional = positional_names(func)
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


def overview(table: Mapping[str, Callable[..., Any]]) -> str:
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


def wants_help(args: Sequence[str]) -> bool:
    before = args[: args.index("--")] if "--" in args else args
    return any(a in HELP_FLAGS for a in before)
