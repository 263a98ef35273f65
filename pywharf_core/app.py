"""The pywharf ASGI application: routes, middleware, and the one place where pywharf
errors become HTTP statuses."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from . import hints, ops, views, web
from .errors import (
    BackendUnavailable,
    ConfigError,
    FileExists,
    FileMissing,
    NotSupported,
    PywharfError,
    UploadRejected,
)
from .negotiation import JSON_V1, TEXT_HTML, NotAcceptable
from .proxy import ProxyHeadersMiddleware
from .repository import Repositories, Repository
from .runtime import InitializeRefused
from .sessions import SessionSigner

log = logging.getLogger(__name__)

#: Response header carrying a custom HTTP reason phrase. ASGI has no reason phrase, so
#: the waitress adapter (``pywharf_core.wsgi``) moves it into the status line (PyPI puts
#: its upload errors there, and twine prints it).
REASON_HEADER = "x-pywharf-reason"


def create_app(
    repositories: Mapping[str, Repository],
    *,
    debug: bool = False,
    extra_index_url: str | None = None,
    trusted_proxies: Iterable[str] = (),
    session_key: str | None = None,
    session_lifetime: int = 12 * 3600,
) -> Starlette:
    """The pywharf ASGI application serving ``repositories``.

    ``extra_index_url``: where to redirect requests for projects a repository does not
    hold (off by default: redirecting unknown names invites dependency confusion).
    ``trusted_proxies``: peer addresses (or ``"*"``) whose ``X-Forwarded-Proto``,
    ``-Host`` and ``-Prefix`` headers are believed.
    ``session_key``: signs browser sessions; without it a random one (sessions then end
    with the process; ``pywharf server`` keeps one under ROOT).
    """
    simple_routes = [
        Route("/", views.list_or_upload, methods=["GET", "POST"]),
        Route("/{project}", views.project_without_slash, methods=["GET"]),
        Route("/{project}/", views.project_page, methods=["GET"]),
        Route("/{project}/{filename}", views.download, methods=["GET"]),
        Route("/{project}/{filename}/yank", views.yank, methods=["POST"]),
        Route("/{project}/{filename}/unyank", views.unyank, methods=["POST"]),
        *hints.SIMPLE_ROUTES,  # last: only what nothing above matched
    ]
    state = Repositories(repositories)
    metrics = ops.Metrics()
    app = Starlette(
        debug=debug,
        routes=[
            Mount("/simple", routes=simple_routes),
            Mount("/r/{repo}/simple", routes=simple_routes),
            Route("/index_mtime/", views.index_mtime, methods=["GET"]),
            Route("/r/{repo}/index_mtime/", views.index_mtime, methods=["GET"]),
            Route("/initialize/", views.initialize, methods=["POST"]),
            Route("/", web.root, methods=["GET"]),
            Route("/login/", web.login, methods=["GET", "POST"]),
            Route("/logout/", web.logout, methods=["GET", "POST"]),
            Route("/healthz", ops.healthz, methods=["GET"]),
            Route("/readyz", ops.readyz, methods=["GET"]),
            Route("/metrics", ops.metrics, methods=["GET"]),
            *hints.ROUTES,  # last: only what nothing above matched
        ],
        middleware=[
            Middleware(ProxyHeadersMiddleware, trusted=tuple(trusted_proxies)),
            Middleware(ops.ObservabilityMiddleware, metrics=metrics),
        ],
        exception_handlers={
            views.AuthRequired: _auth_required,
            views.LoginRequired: _login_required,
            views.NotPermitted: _not_permitted,
            NotAcceptable: _not_acceptable,
            PywharfError: _pywharf_error,
            ClientDisconnect: _client_disconnect,
        },
    )
    app.state.repositories = state
    app.state.sessions = SessionSigner(session_key or secrets.token_hex(32), session_lifetime)
    app.state.metrics = metrics
    # Read at scrape time: the served repositories may be replaced while running.
    metrics.watch(lambda: app.state.repositories)
    app.state.extra_index_url = extra_index_url.rstrip("/") + "/" if extra_index_url else None
    return app


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    reason = " ".join(message.split())[:200].encode("latin-1", "replace").decode("latin-1")
    return PlainTextResponse(
        message + "\n", status_code=status, headers={REASON_HEADER: reason, **(headers or {})}
    )


async def _auth_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, views.AuthRequired)
    realm = exc.realm.replace('"', "")
    return error_response(
        401,
        "Authentication required: log in with the repository name as username and its "
        "read or write secret as password",
        {"WWW-Authenticate": f'Basic realm="{realm}"'},
    )


async def _login_required(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = f"{request.base_url}login/?next={quote(target, safe='/')}"
    return RedirectResponse(login, status_code=303)


async def _not_permitted(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, views.NotPermitted)
    return error_response(403, exc.message)


async def _not_acceptable(request: Request, exc: Exception) -> Response:
    return error_response(
        406,
        f"Not acceptable: this index serves {JSON_V1}, application/vnd.pypi.simple.v1+html "
        f"and {TEXT_HTML} (and the 'latest' aliases)",
    )


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    return error_response(400, "The client closed the connection before the body was complete")


async def _pywharf_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, FileExists):
        return error_response(409, f"File already exists: {exc.filename} (with other content)")
    if isinstance(exc, UploadRejected):
        return error_response(exc.status, exc.message)
    if isinstance(exc, NotSupported):
        return error_response(405, str(exc))
    if isinstance(exc, InitializeRefused):
        return error_response(403, str(exc))
    if isinstance(exc, ConfigError):  # a posted configuration; the old one stays in force
        return error_response(400, f"Configuration refused, nothing changed: {exc}")
    if isinstance(exc, FileMissing):
        log.error("%s", exc)
        return error_response(404, str(exc))
    if isinstance(exc, BackendUnavailable):
        log.warning("backend unavailable: %s", exc)
        return error_response(
            503,
            "The storage backend is unavailable; try again later",
            {"Retry-After": str(exc.retry_after)},
        )
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal server error; the server log has the details")
