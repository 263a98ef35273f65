"""Runs a real ``pywharf server`` process (waitress) on 127.0.0.1 and a free port."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

STARTUP_TIMEOUT = 30.0
#: The ``--metrics_token`` of servers whose tests read /metrics or /readyz's detail.
METRICS_TOKEN = "metrics-t0ken"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


class WharfServer:
    """One ``pywharf server ROOT`` subprocess. ``url`` ends with ``/``."""

    def __init__(
        self, root: Path, *args: str, env: dict[str, str] | None = None, env_mode: bool = False
    ) -> None:
        """``env_mode``: start with no arguments, configured by PYWHARF_COMMAND_* only."""
        self.root = root
        self.args = args
        self.env = env
        self.env_mode = env_mode
        self.banner = ""
        self.url = ""
        self.log_path = root.parent / f"{root.name}-server.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> WharfServer:
        environment = {**os.environ, **(self.env or {})}
        if self.env_mode:
            command = [sys.executable, "-m", "pywharf_core"]
            environment.update(
                PYWHARF_COMMAND="server",
                PYWHARF_COMMAND_ROOT=str(self.root),
                PYWHARF_COMMAND_HOST="127.0.0.1",
                PYWHARF_COMMAND_PORT="0",
            )
        else:
            command = [
                sys.executable,
                "-m",
                "pywharf_core",
                "server",
                str(self.root),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                *self.args,
            ]
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, text=True, env=environment
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                self.banner = "".join(lines)
                return self
        self.stop()
        raise RuntimeError(
            f"pywharf server did not start: {''.join(lines)}\n{self.log_path.read_text()}"
        )

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def secret(self, kind: str) -> str:
        """The embedded default's read or write secret, as the banner printed it."""
        match = re.search(rf"{kind} secret:\s+(\S+)", self.banner)
        assert match, self.banner
        return match.group(1)

    @property
    def read_secret(self) -> str:
        return self.secret("read")

    @property
    def write_secret(self) -> str:
        return self.secret("write")

    def index_url(self, user: str, password: str, prefix: str = "simple/") -> str:
        host = self.url.split("//", 1)[1]
        return f"http://{user}:{password}@{host}{prefix}"

    def log_text(self) -> str:
        """The server's log, with every line of the requests answered so far: the server
        writes its log from a thread of its own, a moment later. A marker request goes
        last; once its access-log line is there, all earlier lines are."""
        if self.proc is None or self.proc.poll() is not None:
            return self.log_path.read_text()
        marker = f"/log-marker-{uuid.uuid4().hex}"
        try:
            requests.get(self.url.rstrip("/") + marker, timeout=10)
        except requests.ConnectionError:  # not serving (stopping): nothing more will come
            return self.log_path.read_text()
        deadline = time.monotonic() + 10
        while marker not in (text := self.log_path.read_text()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never logged {marker}")
            time.sleep(0.02)
        return text

    def pid_status(self, field: str) -> int:
        """A field of /proc/<pid>/status in kB (e.g. VmHWM, the peak RSS)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if hasattr(self, "_log"):
            self._log.close()


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def get(server: WharfServer, path: str, **kwargs: object) -> requests.Response:
    """``GET`` a path of the server without following redirects."""
    kwargs.setdefault("allow_redirects", False)
    return requests.get(server.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def upload_file(
    server: WharfServer,
    path: Path,
    name: str,
    version: str,
    auth: tuple[str, str],
    timeout: float = 120,
) -> requests.Response:
    """A minimal legacy-API upload, streamed from ``path`` (for tests that are not about
    a particular client)."""
    with path.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    fields = {":action": "file_upload", "name": name, "version": version, "sha256_digest": sha256}
    with path.open("rb") as handle:
        return requests.post(
            server.url + "simple/",
            auth=auth,
            data=fields,
            files={"content": (path.name, handle)},
            timeout=timeout,
        )


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - started
