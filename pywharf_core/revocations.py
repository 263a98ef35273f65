"""Sessions ended by logging out, so that a copied cookie stops working too.

A session's id is the SHA-256 of its signed cookie value: every cookie ever issued has
one, and the store holds no cookie that could be replayed. An entry is kept until the
session would have expired anyway.

Where this belongs: revocations are state that every replica must see, which DESIGN §5
puts in the repository's backend. The backend contract is being rewritten; until it
lands, ``RootSessionRevocations`` keeps them under ROOT (shared by servers that share a
ROOT), behind this small interface so that a backend-held store can replace it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from typing import Protocol

from .files import create_once

REVOKED_DIR = "revoked_sessions"
_ID = re.compile(r"[0-9a-f]{64}")


def session_id(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


class SessionRevocations(Protocol):
    """The store of ended sessions. ``revoke`` must be visible to ``is_revoked`` on every
    server that shares the store as soon as it returns."""

    def revoke(self, session_id: str, expires: float) -> None:
        """End the session ``session_id``; it could be forgotten after ``expires``."""

    def is_revoked(self, session_id: str) -> bool:
        """Whether ``revoke`` was called for ``session_id``."""


class MemorySessionRevocations:
    """For one process (an app made without a ROOT, as tests make them)."""

    def __init__(self) -> None:
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def revoke(self, session_id: str, expires: float) -> None:
        now = time.time()
        with self._lock:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._revoked[session_id] = expires

    def is_revoked(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._revoked


class RootSessionRevocations:
    """One file per ended session, ``ROOT/revoked_sessions/<id>``, holding its expiry.
    Expired entries are removed when another session is revoked."""

    def __init__(self, root: Path) -> None:
        self.folder = root / REVOKED_DIR

    def revoke(self, session_id: str, expires: float) -> None:
        if not _ID.fullmatch(session_id):
            raise ValueError(f"not a session id: {session_id!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        create_once(self.folder / session_id, f"{expires}\n".encode())
        self._prune()

    def is_revoked(self, session_id: str) -> bool:
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
