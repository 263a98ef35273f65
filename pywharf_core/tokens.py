"""API tokens: passwords a team can hand out, scoped, expiring and revocable.

A token reads ``pywharf-<id>-<secret>``: the fixed prefix lets secret scanners find a
leaked one, the id finds its record, and only the SHA-256 of the whole token is stored
(the secret has 256 random bits, so a plain hash is as good as a slow one), compared in
constant time. Records live in the repository's state document ``tokens.json``
(``Repository.state``), so every replica sees a creation or a revocation and a restart
loses nothing. A revoked token's record is deleted; an expired one is dropped at the
next change.

Each server keeps the document in memory and reads it again when it is older than the
repository's ``sync_index_interval``, or at most once a second when a token is not in it
(a token another replica just created).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .backend import Access
from .dists import normalize
from .errors import BadRequest, NotFound
from .state import StateStore

TOKEN_PREFIX = "pywharf-"  # noqa: S105 (a prefix, not a password)
DOCUMENT = "tokens.json"
PERMISSIONS = {"read": Access.READ, "upload": Access.WRITE}
#: The longest life a token may be given (a year); "no expiry" is asked by leaving it out.
MAX_EXPIRES_IN = 366 * 24 * 3600
MAX_DESCRIPTION = 200
MAX_PROJECTS = 100
#: A token missing from the document in memory makes a re-read at most this often.
MISS_REREAD_SECONDS = 1.0
_TOKEN = re.compile(r"^pywharf-([0-9a-f]{16})-([A-Za-z0-9_-]{43})$")


def looks_like_token(password: str) -> bool:
    return password.startswith(TOKEN_PREFIX)


@dataclass(frozen=True)
class TokenGrant:
    """What a valid token allows: ``access`` (READ, or WRITE for an upload token, which
    only uploads) and the projects it may upload to (``None``: every project)."""

    id: str
    access: Access
    projects: frozenset[str] | None


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``token`` is shown this once, ``record`` is what is kept."""

    token: str
    record: dict[str, Any]


def rfc3339(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(int(stamp), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_view(record: dict[str, Any], last_used: float | None = None) -> dict[str, Any]:
    """A record as the API shows it (never the hash)."""
    return {
        "id": record["id"],
        "permission": record["permission"],
        "projects": record["projects"],
        "expires": rfc3339(record["expires"]),
        "description": record["description"],
        "created": rfc3339(record["created"]),
        "last_used": rfc3339(last_used),
    }


def check_request(data: Any) -> tuple[str, list[str] | None, int | None, str]:
    """A creation request's fields, validated: ``BadRequest`` naming the field."""
    if not isinstance(data, dict):
        raise BadRequest('Send a JSON object, e.g. {"permission": "upload"}')
    unknown = set(data) - {"permission", "projects", "expires_in", "description"}
    if unknown:
        raise BadRequest(
            f"Unknown field {sorted(unknown)[0]!r} (fields: permission, projects, "
            "expires_in, description)"
        )
    permission = data.get("permission")
    if permission not in PERMISSIONS:
        raise BadRequest(f"'permission' must be 'read' or 'upload', not {permission!r}")
    projects = data.get("projects")
    if projects is not None:
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            raise BadRequest("'projects' must be a list of project names")
        if not projects or len(projects) > MAX_PROJECTS:
            raise BadRequest(f"'projects' must name 1 to {MAX_PROJECTS} projects (or be left out)")
        projects = sorted({normalize(p) for p in projects})
        if any(not p or len(p) > 200 for p in projects):
            raise BadRequest("'projects' holds an empty or overlong name")
    expires_in = data.get("expires_in")
    if expires_in is not None:
        if not isinstance(expires_in, int) or isinstance(expires_in, bool):
            raise BadRequest("'expires_in' must be a whole number of seconds")
        if not 0 < expires_in <= MAX_EXPIRES_IN:
            raise BadRequest(
                f"'expires_in' must be between 1 and {MAX_EXPIRES_IN} seconds "
                "(leave it out for a token that does not expire)"
            )
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise BadRequest(f"'description' must be text of at most {MAX_DESCRIPTION} characters")
    return permission, projects, expires_in, description


class TokenStore:
    """One repository's tokens (thread-safe; the methods that may read the backend block)."""

    def __init__(self, state: StateStore, refresh_seconds: float) -> None:
        self._state = state
        self._refresh_seconds = refresh_seconds
        self._records: dict[str, dict[str, Any]] = {}
        self._read_at = -float("inf")  # monotonic
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- use -----------------------------------------------------------------------------
    def cached(self, token: str) -> TokenGrant | None:
        """The grant of ``token`` from the document in memory, when that is fresh; no I/O."""
        if time.monotonic() - self._read_at >= self._refresh_seconds:
            return None
        return self._grant(token)

    def check(self, token: str) -> TokenGrant | None:
        """The grant of ``token``, or ``None`` (malformed, unknown, revoked, expired).
        May re-read the document (blocking)."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        age = time.monotonic() - self._read_at
        if age >= self._refresh_seconds or (
            match.group(1) not in self._records and age >= MISS_REREAD_SECONDS
        ):
            self._reload()
        return self._grant(token)

    def _grant(self, token: str) -> TokenGrant | None:
        match = _TOKEN.match(token)
        if match is None:
            return None
        record = self._records.get(match.group(1))
        digest = hashlib.sha256(token.encode("ascii")).hexdigest()
        stored = record["sha256"] if record is not None else "0" * 64
        if not hmac.compare_digest(digest, stored) or record is None:
            return None
        if record["expires"] is not None and record["expires"] <= time.time():
            return None
        self._last_used[record["id"]] = time.time()
        projects = record["projects"]
        return TokenGrant(
            record["id"],
            PERMISSIONS[record["permission"]],
            None if projects is None else frozenset(projects),
        )

    def _reload(self) -> None:
        current = self._state.read(DOCUMENT)
        self._set(current[0] if current is not None else None)

    def _set(self, data: bytes | None) -> None:
        with self._lock:
            self._records = {r["id"]: r for r in _records(data)}
            self._read_at = time.monotonic()

    # -- management -------------------------------------------------------------------------
    def create(
        self,
        permission: str,
        projects: Iterable[str] | None,
        expires_in: int | None,
        description: str,
    ) -> NewToken:
        """A new token (blocking: written to the backend before it is returned)."""
        token_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}{token_id}-{secrets.token_urlsafe(32)}"
        now = time.time()
        record = {
            "id": token_id,
            "sha256": hashlib.sha256(token.encode("ascii")).hexdigest(),
            "permission": permission,
            "projects": None if projects is None else sorted(projects),
            "expires": None if expires_in is None else int(now + expires_in),
            "description": description,
            "created": int(now),
        }

        def add(data: bytes | None) -> bytes:
            kept = [r for r in _records(data) if r["expires"] is None or r["expires"] > now]
            return _dump([*kept, record])

        self._set(self._state.update(DOCUMENT, add))
        return NewToken(token, record)

    def list(self) -> list[dict[str, Any]]:
        """Every token not expired, newest first, as the API shows them (blocking)."""
        self._reload()
        now = time.time()
        records = [r for r in self._records.values() if r["expires"] is None or r["expires"] > now]
        records.sort(key=lambda r: r["created"], reverse=True)
        return [public_view(r, self._last_used.get(r["id"])) for r in records]

    def revoke(self, token_id: str) -> None:
        """Delete a token's record (blocking); ``NotFound`` for an unknown id."""
        found = False

        def remove(data: bytes | None) -> bytes:
            nonlocal found
            records = _records(data)
            kept = [r for r in records if r["id"] != token_id]
            found = len(kept) < len(records)
            return _dump(kept)

        self._set(self._state.update(DOCUMENT, remove))
        if not found:
            raise NotFound(f"No token with id {token_id!r} in this repository")


def _records(data: bytes | None) -> list[dict[str, Any]]:
    if not data:
        return []
    records = json.loads(data).get("tokens", [])
    return [r for r in records if isinstance(r, dict) and "id" in r and "sha256" in r]


def _dump(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"version": 1, "tokens": records}, indent=1).encode("utf-8")
