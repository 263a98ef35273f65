"""Deciding on a request's headers, before its body is read, whether the app will refuse it.

waitress reads a request's whole body (to memory, then a temp file) before the app is
called, so without this a stranger could make the server spool gigabytes. The waitress
channel (``pywharf_core.waitress_channel``) asks the gate once the headers are in
(``HeaderGate.remembered`` in place when the credentials were verified lately, else
``HeaderGate.submit`` in a worker thread), and holds the body back until it answers:

- a POST under ``/simple/`` or ``/r/<repo>/simple/`` (upload, yank, unyank) must pass the
  view's own checks first: ``views.refuse_cross_site`` and ``views.authorize`` for write
  access (401, 403, or 303 to the login page for a browser);
- its body may not exceed the repository's limit (an upload: ``max_file_bytes`` plus the
  form's overhead) or, on every other route, ``small_body`` bytes (413).

A refused request never has its body read: the app is still called, with a body whose
first read raises the refusal, so that every answer is the app's own (its error table,
access log and metrics). Under uvicorn the app authorizes before it reads the body
anyway, and ``limit_body`` applies the same size limits.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from .backend import Access
from .blocking import mark_dedicated
from .errors import FileTooLarge, PywharfError
from .upload import FORM_OVERHEAD_BYTES

if TYPE_CHECKING:
    from .repository import Repository

log = logging.getLogger(__name__)

#: Bodies of every request but an upload: forms of a few fields (login, yank) and the
#: configuration posted to /initialize/ (two files of at most 1 MiB).
SMALL_BODY_BYTES = 4 * 1024 * 1024

#: The routes that change a repository: (repository named in the path, or None; upload?)
_CHANGING = re.compile(r"^(?:/r/(?P<repo>[^/]+))?/simple/(?P<rest>.*)$")

#: The scope key (and WSGI environ key) carrying a refusal decided on the headers.
REFUSAL_KEY = "pywharf.refusal"


@dataclass(frozen=True)
class Verdict:
    """``refusal``: the error the app will answer with (the body is never read); else
    the body may be read up to ``body_limit`` bytes."""

    refusal: PywharfError | None
    body_limit: int


class HeaderGate:
    """Checks requests on their headers, for the app ``app`` (a Starlette app whose state
    holds the repositories and sessions, as ``create_app`` makes it)."""

    def __init__(self, app: Any, small_body: int = SMALL_BODY_BYTES, threads: int = 2) -> None:
        self.app = app
        self.small_body = small_body
        # Authorization may call a backend (GitHub): never on waitress's I/O thread.
        self._pool = ThreadPoolExecutor(threads, "pywharf-gate", initializer=mark_dedicated)
        self._local = threading.local()

    def needs_credentials(self, method: str, path: str) -> bool:
        """Whether the request is checked for credentials (in a worker thread)."""
        return method == "POST" and _CHANGING.match(path) is not None

    def quick(self, path: str, content_length: int | None) -> Verdict:
        """The verdict on a request that needs no credentials (decided in place)."""
        return self._sized(self.small_body, content_length, "request bodies on this route")

    def submit(self, scope: dict[str, Any], done: Callable[[Verdict], None]) -> None:
        """Checks the request in a worker thread; calls ``done`` there with the verdict."""

        def run() -> None:
            try:
                verdict = self.check(scope)
            except Exception:  # never leave a request waiting: the app will decide
                log.exception("the header check failed; the app decides")
                verdict = Verdict(None, self.small_body)
            done(verdict)

        self._pool.submit(run)

    def check(self, scope: dict[str, Any]) -> Verdict:
        """The verdict on a POST that changes a repository (blocking: may call a backend)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(self._check(scope))

    def remembered(self, scope: dict[str, Any]) -> Verdict | None:
        """The verdict on a POST that changes a repository when it needs no blocking
        work: no Origin of another site, and basic-auth credentials verified lately
        (``views.authorize_remembered``); else ``None``, and ``submit`` decides. Cheap
        enough for waitress's I/O thread: an upload then waits for no other thread."""
        from . import views

        request, match = self._request(scope)
        try:
            views.refuse_cross_site(request)
            need, token_may_upload = self._needs(match)
            repo = views.authorize_remembered(request, need, token_may_upload=token_may_upload)
        except PywharfError as refusal:
            return Verdict(refusal, 0)
        return None if repo is None else self._verdict(request, match, repo)

    async def _check(self, scope: dict[str, Any]) -> Verdict:
        from . import views  # the views' own checks; imported late (views imports much)

        request, match = self._request(scope)
        try:
            views.refuse_cross_site(request)
            need, token_may_upload = self._needs(match)
            repo = await views.authorize(request, need, token_may_upload=token_may_upload)
        except PywharfError as refusal:
            return Verdict(refusal, 0)
        return self._verdict(request, match, repo)

    def _request(self, scope: dict[str, Any]) -> tuple[Request, re.Match[str]]:
        from . import views

        match = _CHANGING.match(scope["path"])
        assert match is not None
        scope = {**scope, "app": self.app, "path_params": {}, views.GATE_SCOPE_KEY: True}
        if match["repo"] is not None:
            scope["path_params"]["repo"] = match["repo"]
        return Request(scope), match

    @staticmethod
    def _needs(match: re.Match[str]) -> tuple[Access, bool]:
        """What the view itself asks: an upload token passes on the upload route only;
        a promotion needs only to read its source (the target is checked by the view)."""
        need = Access.READ if match["rest"].endswith("/promote") else Access.WRITE
        return need, match["rest"] == ""

    def _verdict(self, request: Request, match: re.Match[str], repo: Repository) -> Verdict:
        length = request.headers.get("content-length")
        declared = int(length) if length and length.isdigit() else None
        if match["rest"] == "":  # the upload route
            return self._sized(repo.policy.max_file_bytes, declared, "files", FORM_OVERHEAD_BYTES)
        return self._sized(self.small_body, declared, "request bodies on this route")

    @staticmethod
    def _sized(limit: int, declared: int | None, what: str, overhead: int = 0) -> Verdict:
        if declared is not None and declared > limit + overhead:
            return Verdict(FileTooLarge(limit, what), 0)
        return Verdict(None, limit + overhead)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def scope_from_headers(
    method: str, path: str, query: str, headers: Mapping[str, str], client: tuple[str, int]
) -> dict[str, Any]:
    """An ASGI HTTP scope for the checks, from waitress's parsed request (headers keyed
    as waitress keys them: ``CONTENT_LENGTH``, ``AUTHORIZATION``)."""
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode("latin-1"),
        "root_path": "",
        "query_string": query.encode("latin-1"),
        "headers": [
            (key.lower().replace("_", "-").encode("latin-1"), value.encode("latin-1"))
            for key, value in headers.items()
        ],
        "client": client,
        "server": None,
        "scheme": "http",
        "http_version": "1.1",
    }


def limit_body(app: Any, small_body: int = SMALL_BODY_BYTES) -> Any:
    """ASGI wrapper for servers that stream bodies (uvicorn): a body past the limit
    (``small_body``, or for an upload the view's own check) raises ``FileTooLarge`` from
    ``receive``, which the app answers with 413, as the waitress adapter does with a
    refusal decided on the headers."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        match = _CHANGING.match(scope["path"])
        if scope["method"] == "POST" and match is not None and match["rest"] == "":
            await app(scope, receive, send)  # the upload view checks its repository's limit
            return
        received = 0

        async def limited() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            received += len(message.get("body", b""))
            if received > small_body:
                raise FileTooLarge(small_body, "request bodies on this route")
            return message

        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > small_body:
            refusal = FileTooLarge(small_body, "request bodies on this route")

            async def refuse() -> dict[str, Any]:
                raise refusal

            await app(scope, refuse, send)
            return
        await app(scope, limited, send)

    return wrapped
