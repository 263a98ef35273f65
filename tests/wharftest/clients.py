"""The real packaging clients, run as subprocesses in hermetic environments."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment minus this machine's pip/uv/twine/poetry settings, with a
    private HOME, so that only what a test passes reaches the client."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "TWINE_", "POETRY_", "PYTHON_KEYRING"))
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(home / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        POETRY_CONFIG_DIR=str(home / "poetry-config"),
        POETRY_CACHE_DIR=str(home / "poetry-cache"),
        TWINE_NON_INTERACTIVE="1",
    )
    env.update(extra)
    return env


def run(
    command: Sequence[str], env: dict[str, str], cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(command), env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def pip_install(
    index_url: str, target: Path, *requirements: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--index-url",
            index_url,
            "--target",
            str(target),
            *requirements,
        ],
        env,
        check=check,
    )


def uv_pip_install(
    index_url: str, target: Path, *requirements: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(
        [
            str(BIN / "uv"),
            "pip",
            "install",
            "--python",
            sys.executable,
            "--index-url",
            index_url,
            "--target",
            str(target),
            *requirements,
        ],
        env,
        check=check,
    )


def twine_upload(
    repository_url: str,
    user: str,
    password: str,
    *files: Path,
    env: dict[str, str],
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return run(
        [
            sys.executable,
            "-m",
            "twine",
            "upload",
            "--verbose",
            "--disable-progress-bar",
            "--repository-url",
            repository_url,
            f"--username={user}",  # "=": a secret may start with "-"
            f"--password={password}",
            *map(str, files),
        ],
        env,
        check=check,
    )


def uv_publish(
    publish_url: str,
    user: str,
    password: str,
    *files: Path,
    env: dict[str, str],
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return run(
        [
            str(BIN / "uv"),
            "publish",
            "--publish-url",
            publish_url,
            f"--username={user}",
            f"--password={password}",
            *map(str, files),
        ],
        env,
        check=check,
    )


def import_from(target: Path, statement: str, env: dict[str, str]) -> str:
    """Run ``statement`` with only ``target`` added to the path; return its stdout."""
    return run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(target)!r}); {statement}",
        ],
        env,
    ).stdout.strip()
