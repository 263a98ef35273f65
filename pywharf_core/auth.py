"""Basic-auth credentials and the cache of access decisions.

Backends compare secrets in constant time; this cache keeps their answers for
``auth_read_expires`` / ``auth_write_expires`` seconds so that a request costs a dict
lookup, not a backend call (GitHub) or a slow hash. Keys are digests of the secret, so
the cache holds no secret in the clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .backend import Access


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def parse_basic_auth(header: str | None) -> Credentials | None:
    """``Authorization: Basic …`` → credentials; anything else → ``None``."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        # The header arrives as latin-1 text: a byte outside ASCII is no base64 (b64decode
        # would raise ValueError on the str), and the decoded bytes must be UTF-8.
        raw = encoded.strip().encode("ascii")
        decoded = base64.b64decode(raw, validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return Credentials(username, password)


class AccessCache:
    """Remembers positive access decisions for a while; bounded in size.

    One cache serves one configuration: a new configuration (``/initialize/``) gets a
    ``renewed()`` cache, so a secret it rotated out is refused at once."""

    def __init__(self, read_expires: float, write_expires: float, max_entries: int = 4096) -> None:
        self._read_expires, self._write_expires = read_expires, write_expires
        self._expires = {Access.READ: read_expires, Access.WRITE: write_expires}
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, bytes], tuple[Access, float]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, repo: str, secret: str) -> Access | None:
        """The remembered decision, or ``None`` when there is none (or it expired)."""
        key = self._key(repo, secret)
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[1] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return hit[0]

    def decide(self, repo: str, secret: str, check: Callable[[str], Access]) -> Access:
        """The remembered decision, else ``check(secret)`` (remembered when positive)."""
        cached = self.lookup(repo, secret)
        if cached is not None:
            return cached
        access = check(secret)
        if access is not Access.NONE and self._expires[access] > 0:
            with self._lock:
                self._entries[self._key(repo, secret)] = (
                    access,
                    time.monotonic() + self._expires[access],
                )
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
        return access

    @staticmethod
    def _key(repo: str, secret: str) -> tuple[str, bytes]:
        return (repo, hashlib.sha256(secret.encode("utf-8")).digest())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def renewed(self) -> AccessCache:
        """An empty cache with the same settings, for the next configuration. Requests
        still in flight on the old repositories write into this (old) one, never into
        the new: clearing one shared cache would race with them."""
        return AccessCache(self._read_expires, self._write_expires, self._max_entries)
