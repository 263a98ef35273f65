"""Browser sessions: a signed cookie naming the repository, the permission and the
expiry — never the secret — and the CSRF token of the login form.

The signing key is random, generated once and kept in ``ROOT/session_key`` (mode 0600),
or given with ``--session_key`` (or ``PYWHARF_COMMAND_SESSION_KEY``) so that replicas
share it. A request counts as a browser's when it carries no ``Authorization`` header,
its ``Accept`` prefers ``text/html`` and it is a navigation (``is_browser``); nothing
looks at the User-Agent.

Logging out ends the session on the server too (``SessionRevocations``): a copy of the
cookie stops working at once, not when it expires.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

from .backend import Access
from .errors import NotAcceptable
from .files import create_once
from .negotiation import TEXT_HTML, negotiate
from .revocations import MemorySessionRevocations, SessionRevocations, session_id

SESSION_COOKIE = "pywharf_session"
CSRF_COOKIE = "pywharf_csrf"
KEY_FILE = "session_key"
#: What ``secrets.token_urlsafe(24)`` makes; a CSRF cookie that is not one is replaced.
_NONCE = re.compile(r"[A-Za-z0-9_-]{32}")


@dataclass(frozen=True)
class Session:
    repo: str
    access: Access
    expires: float
    id: str = ""  # the SHA-256 of the cookie: what logging out revokes


def load_or_create_key(root: Path, given: str | None) -> str:
    """The signing key: ``given``, else the one kept under ROOT (created once)."""
    if given:
        return given
    path = root / KEY_FILE
    # Another server starting on this ROOT at the same moment gets the same key.
    create_once(path, (secrets.token_hex(32) + "\n").encode())
    return path.read_text(encoding="utf-8").strip()


class SessionSigner:
    def __init__(
        self, key: str, lifetime: int, revocations: SessionRevocations | None = None
    ) -> None:
        """``revocations``: where logouts are kept; without it, in this process only."""
        self.lifetime = lifetime
        self.revocations = revocations or MemorySessionRevocations()
        self._sessions = URLSafeSerializer(key, salt="pywharf-session")
        self._csrf = URLSafeSerializer(key, salt="pywharf-login-csrf")

    # -- sessions ---------------------------------------------------------------------
    def read(self, request: Request) -> Session | None:
        """The request's valid session, or ``None`` (missing, forged, expired or ended)."""
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return None
        try:
            data = self._sessions.loads(value)
            session = Session(
                str(data["repo"]),
                Access(int(data["access"])),
                float(data["exp"]),
                session_id(value),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if session.expires <= time.time() or session.access is Access.NONE:
            return None
        if self.revocations.is_revoked(session.id, session.repo):
            return None
        return session

    def end(self, session: Session) -> None:
        """Log out: ``session`` is refused from now on, wherever its cookie is sent."""
        self.revocations.revoke(session.id, session.expires, session.repo)

    def issue(self, response: Response, request: Request, repo: str, access: Access) -> None:
        expires = time.time() + self.lifetime
        value = self._sessions.dumps({"repo": repo, "access": int(access), "exp": expires})
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=self.lifetime,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")

    # -- the login form's CSRF token (double submit: cookie and hidden field) -------------
    def csrf_token(self, request: Request) -> tuple[str, str]:
        """(cookie value, form value): the form's token is the signed cookie nonce."""
        nonce = _csrf_nonce(request) or secrets.token_urlsafe(24)
        return nonce, self._csrf.dumps(nonce)

    def csrf_valid(self, request: Request, form_token: str) -> bool:
        nonce = _csrf_nonce(request)
        if not nonce or not form_token:
            return False
        try:
            signed = str(self._csrf.loads(form_token))
        except BadSignature:
            return False
        # Bytes: compare_digest refuses str with characters outside ASCII.
        return secrets.compare_digest(signed.encode("utf-8"), nonce.encode("ascii"))

    @staticmethod
    def set_csrf_cookie(response: Response, request: Request, nonce: str) -> None:
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


def _csrf_nonce(request: Request) -> str | None:
    """The CSRF cookie's nonce when it is one this server could have made, else None
    (anything else a client sends is neither reflected nor compared)."""
    nonce = request.cookies.get(CSRF_COOKIE)
    return nonce if nonce and _NONCE.fullmatch(nonce) else None


def is_browser(request: Request) -> bool:
    """A person's browser navigating to a page: no credentials, HTML preferred over
    everything else it accepts, and a sign that only a browser's navigation gives —
    ``Sec-Fetch-Mode: navigate`` or ``Sec-Fetch-Dest: document`` (every current browser),
    or an ``Accept`` that names ``application/xhtml+xml`` beside ``text/html`` (every
    browser's navigation, older ones too). pip before 22.2 sends a bare
    ``Accept: text/html`` without credentials, and must get a 401 (its keyring support
    answers that), not the login page."""
    if "authorization" in request.headers:
        return False
    accept = request.headers.get("accept", "").lower()
    if "text/html" not in accept:
        return False
    navigating = (
        request.headers.get("sec-fetch-mode", "").lower() == "navigate"
        or request.headers.get("sec-fetch-dest", "").lower() == "document"
        or "application/xhtml+xml" in accept
    )
    if not navigating:
        return False
    try:
        return negotiate(accept) == TEXT_HTML
    except NotAcceptable:
        return False
