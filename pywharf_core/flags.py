"""Flag values as fire hands them over: it parses "1234" as an int and "false" as text."""

from __future__ import annotations

from typing import Any

from .errors import PywharfError


def bool_flag(flag: str, value: Any) -> bool:
    # fire hands "--debug=false" (and environment mode's strings) over as text.
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise PywharfError(f"--{flag} takes true or false, not {value!r}")


def text_flag(value: Any) -> Any:
    # fire parses "1234" as an int; paths, secrets and URLs are text.
    return None if value is None else str(value)
