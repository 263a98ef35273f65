"""Command lines refused before anything runs. fire runs a command as soon as it can,
takes a mistyped flag for a waitress option or a backend key, and reads -h as --host: so
every command line is checked here first, against the command's signature."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .cli_usage import OPTIONAL_ARGUMENTS, WAITRESS_FLAGS, backend_key_rows, positional_names
from .errors import ConfigError, PywharfError


def check_arguments(command: str, func: Callable[..., Any], args: Sequence[str]) -> None:
    """Refuse, before anything runs, what fire would turn into a traceback or a silent
    mistake: an unknown flag, a missing or extra argument, a number that is not one.
    ``args`` follow the command; values are split off as fire splits them."""
    parameters = {p.name: p for p in inspect.signature(func).parameters.values()}
    positional = positional_names(func)
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
