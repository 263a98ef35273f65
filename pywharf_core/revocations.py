"""Sessions ended by logging out, so that a copied cookie stops working too.

A session's id is the SHA-256 of its signed cookie value: every cookie ever issued has
one, and the store holds no cookie that could be replayed. An entry is kept until the
session would have expired anyway.

Revocations are state that every replica must see: ``StateSessionRevocations`` keeps
them in the session's repository's shared state (``repo.state``, in the backend), read
again at most every ``REFRESH_SECONDS`` (so another replica honours a logout within
that), and at once on the server that logged out. ``RootSessionRevocations`` (under ROOT)
serves for a session whose repository is gone.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .files import create_once

REVOKED_DIR = "revoked_sessions"
_ID = re.compile(r"[0-9a-f]{64}")


def session_id(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


class SessionRevocations(Protocol):
    """The store of ended sessions. ``revoke`` must be visible to ``is_revoked`` on every
    server that shares the store as soon as it returns."""

    def revoke(self, session_id: str, expires: float, repo: str = "") -> None:
        """End the session ``session_id`` (of repository ``repo``); it could be forgotten
        after ``expires``."""

    def is_revoked(self, session_id: str, repo: str = "") -> bool:
        """Whether ``revoke`` was called for ``session_id``."""


class MemorySessionRevocations:
    """For one process (an app made without a ROOT, as tests make them)."""

    def __init__(self) -> None:
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def revoke(self, session_id: str, expires: float, repo: str = "") -> None:
        now = time.time()
        with self._lock:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._revoked[session_id] = expires

    def is_revoked(self, session_id: str, repo: str = "") -> bool:
        with self._lock:
            return session_id in self._revoked


class RootSessionRevocations:
    """One file per ended session, ``ROOT/revoked_sessions/<id>``, holding its expiry.
    Expired entries are removed when another session is revoked."""

    def __init__(self, root: Path) -> None:
        self.folder = root / REVOKED_DIR

    def revoke(self, session_id: str, expires: float, repo: str = "") -> None:
        if not _ID.fullmatch(session_id):
            raise ValueError(f"not a session id: {session_id!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        create_once(self.folder / session_id, f"{expires}\n".encode())
        self._prune()

    def is_revoked(self, session_id: str, repo: str = "") -> bool:
        return bool(_ID.fullmatch(session_id)) and (self.folder / session_id).is_file()

    def _prune(self) -> None:
        now = time.time()
        for path in self.folder.iterdir():
            if not _ID.fullmatch(path.name):
                continue
            try:
                if float(path.read_text(encoding="utf-8")) < now:
                    path.unlink(missing_ok=True)
            except (OSError, ValueError):
                continue


REVOKED_DOCUMENT = "sessions-revoked.json"
REFRESH_SECONDS = 5.0


class StateSessionRevocations:
    """Ended sessions in each repository's shared state (one JSON document of id →
    expiry), cached here and read again at most every ``REFRESH_SECONDS``."""

    def __init__(self, repository: Callable[[str], Any], fallback: SessionRevocations) -> None:
        self._repository = repository  # name -> Repository (with .state) or None
        self._fallback = fallback
        self._cache: dict[str, tuple[float, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def revoke(self, session_id: str, expires: float, repo: str = "") -> None:
        if not _ID.fullmatch(session_id):
            raise ValueError(f"not a session id: {session_id!r}")
        target = self._repository(repo) if repo else None
        if target is None:
            self._fallback.revoke(session_id, expires, repo)
            return
        now = time.time()

        def add(current: bytes | None) -> bytes:
            revoked = {k: v for k, v in _parse(current).items() if v > now}
            revoked[session_id] = expires
            return json.dumps(revoked, sort_keys=True).encode()

        stored = _parse(target.state.update(REVOKED_DOCUMENT, add))
        with self._lock:
            self._cache[repo] = (time.monotonic(), stored)

    def is_revoked(self, session_id: str, repo: str = "") -> bool:
        if self._fallback.is_revoked(session_id, repo):
            return True
        target = self._repository(repo) if repo else None
        if target is None:
            return False
        with self._lock:
            cached = self._cache.get(repo)
        if cached is None or time.monotonic() - cached[0] > REFRESH_SECONDS:
            current = target.state.read(REVOKED_DOCUMENT)
            cached = (time.monotonic(), _parse(None if current is None else current[0]))
            with self._lock:
                self._cache[repo] = cached
        return session_id in cached[1]


def _parse(data: bytes | None) -> dict[str, float]:
    if not data:
        return {}
    try:
        raw = json.loads(data)
        return {str(k): float(v) for k, v in raw.items() if _ID.fullmatch(str(k))}
    except (ValueError, TypeError, AttributeError):
        return {}
