"""Runs the ``pywharf`` command line as a user would: a fresh process, output captured."""

from __future__ import annotations

import os
import subprocess
import sys


def pywharf(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m pywharf_core ARGS``; ``env`` is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "pywharf_core", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
