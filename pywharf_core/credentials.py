"""Where a client command's index URL, username and secret come from: its flags
(``--repo``, ``--secret``, or ``--secret_env`` naming an environment variable), or a
section of ``~/.pypirc`` named by ``-r NAME`` (``pypirc.read_pypirc``). A secret is never
printed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .errors import PywharfError
from .pypirc import read_pypirc

#: Where ``-r`` puts the password from ~/.pypirc: never on a command line, never printed.
PYPIRC_VARIABLE = "PYWHARF_PYPIRC_PASSWORD"


def with_pypirc(args: Sequence[str], user_flag: str) -> list[str]:
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


def secret_of(flag: str, value: Any, env: Any) -> str:
    """The secret of ``--FLAG`` or, with ``--FLAG_env``, of the variable it names."""
    if (value is None) == (env is None):
        raise PywharfError(f"give exactly one of --{flag} and --{flag}_env")
    if env is not None:
        found = os.environ.get(str(env))
        if not found:
            raise PywharfError(f"environment variable {env!r} is not set")
        return found
    return str(value)


def login(index_url: Any, repo: Any, secret: Any, secret_env: Any) -> tuple[str, str, str]:
    """The index URL, username and password of a client command's flags."""
    url = str(index_url)
    if repo is None and "/r/" not in url:
        raise PywharfError("give --repo (the repository name), or use an …/r/<repo>/simple/ URL")
    return url, str(repo or "__token__"), secret_of("secret", secret, secret_env)
