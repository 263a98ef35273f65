"""The pywharf ASGI application: routes, middleware, and the one table that turns
pywharf's errors into HTTP responses."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from . import hints, ops, tokenviews, views, web
from .errors import (
    AccessDenied,
    AuthRequired,
    BackendError,
    BackendUnavailable,
    BadRequest,
    ConfigError,
    FileExists,
    FileMissing,
    FilenameReused,
    FileTooLarge,
    InitializeRefused,
    InsufficientStorage,
    LoginRequired,
    NotAcceptable,
    NotFound,
    NotPermitted,
    NotSupported,
    ProjectStatusRefusal,
    PublishingRefused,
    PywharfError,
    UploadRejected,
    UpstreamUnavailable,
)
from .negotiation import JSON_V1, TEXT_HTML
from .oidc import DEFAULT_AUDIENCE, GITHUB_JWKS_URL, KeySet, TrustedPublishing
from .proxy import ProxyHeadersMiddleware
from .repository import Repositories, Repository
from .revocations import SessionRevocations
from .sessions import SessionSigner, is_browser
from .throttle import FailureThrottle, TooManyAttempts
from .upstream import UpstreamCollector

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
    runtime: Any = None,
    metrics_token: str | None = None,
    session_revocations: SessionRevocations | None = None,
    oidc_audience: str = DEFAULT_AUDIENCE,
    oidc_jwks: str = GITHUB_JWKS_URL,
) -> Starlette:
    """The pywharf ASGI application serving ``repositories``.

    ``extra_index_url``: where to redirect requests for projects a repository does not
    hold (off by default: redirecting unknown names invites dependency confusion).
    ``trusted_proxies``: peer addresses (or ``"*"``) whose ``X-Forwarded-Proto``,
    ``-Host`` and ``-Prefix`` headers are believed.
    ``session_key``: signs browser sessions; without it a random one (sessions then end
    with the process; ``pywharf server`` keeps one under ROOT).
    ``runtime``: the ``Runtime`` that takes ``POST /initialize/``; without it the
    configuration is fixed (404 there).
    ``metrics_token``: serves ``/metrics`` and ``/readyz``'s per-repository detail to
    its holder; without it ``/metrics`` is off and ``/readyz`` says only ready or not.
    ``session_revocations``: where logouts are kept (``pywharf server``: under ROOT);
    without it, in this process only.
    ``oidc_audience``: the audience trusted publishing's ID tokens must name.
    ``oidc_jwks``: where the ID tokens' signing keys come from (a JWKS URL or file).
    """
    simple_routes = [
        Route("/", views.list_or_upload, methods=["GET", "POST"]),
        Route("/{project}", views.project_without_slash, methods=["GET"]),
        Route("/{project}/", views.project_page, methods=["GET"]),
        Route("/{project}/{filename}", views.download, methods=["GET"]),
        Route("/{project}/{filename}", views.delete_file, methods=["DELETE"]),
        Route("/{project}/{filename}/yank", views.yank, methods=["POST"]),
        Route("/{project}/{filename}/unyank", views.unyank, methods=["POST"]),
        Route("/{project}/refresh", views.refresh_upstream, methods=["POST"]),
        Route("/{project}/status", views.set_status, methods=["POST"]),
        Route("/{project}/{version}/promote", views.promote, methods=["POST"]),
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
            Route("/r/{repo}/tokens/", tokenviews.tokens, methods=["GET", "POST"]),
            Route("/r/{repo}/tokens/{token_id}", tokenviews.revoke_token, methods=["DELETE"]),
            Route("/_/oidc/audience", tokenviews.audience, methods=["GET"]),
            Route("/_/oidc/mint-token", tokenviews.mint_token, methods=["POST"]),
            Route("/_/oidc/github/mint-token", tokenviews.mint_token, methods=["POST"]),
            Route("/audit/", views.audit_log, methods=["GET"]),
            Route("/r/{repo}/audit/", views.audit_log, methods=["GET"]),
            Route("/initialize/", views.initialize, methods=["POST"]),
            Route("/", web.root, methods=["GET"]),
            Route("/login/", web.login, methods=["GET", "POST"]),
            Route("/logout/", web.logout, methods=["GET", "POST"]),
            Route("/manage/{project}/", web.manage, methods=["POST"]),
            Route("/healthz", ops.healthz, methods=["GET"]),
            Route("/readyz", ops.readyz, methods=["GET"]),
            Route("/metrics", ops.metrics, methods=["GET"]),
            *hints.ROUTES,  # last: only what nothing above matched
        ],
        middleware=[
            Middleware(ProxyHeadersMiddleware, trusted=tuple(trusted_proxies)),
            Middleware(ops.ObservabilityMiddleware, metrics=metrics),
        ],
        exception_handlers=dict(ERROR_RESPONSES),
    )
    _relative_slash_redirects(app.router)
    app.state.repositories = state
    app.state.sessions = SessionSigner(
        session_key or secrets.token_hex(32), session_lifetime, session_revocations
    )
    app.state.metrics = metrics
    app.state.runtime = runtime
    app.state.metrics_token = metrics_token
    app.state.auth_throttle = FailureThrottle()
    app.state.trusted_publishing = TrustedPublishing(oidc_audience, KeySet(oidc_jwks))
    # Read at scrape time: the served repositories may be replaced while running.
    metrics.watch(lambda: app.state.repositories)
    metrics.registry.register(UpstreamCollector(lambda: app.state.repositories))
    app.state.extra_index_url = extra_index_url.rstrip("/") + "/" if extra_index_url else None
    return app


def _relative_slash_redirects(router: Router) -> None:
    """Starlette answers a path that a route would match with its trailing slash added
    or removed by a redirect that names the Host the client sent; this router (and the
    mounted ones) redirect with a relative reference instead (``web.path_reference``)."""
    router.redirect_slashes = False
    not_found = router.default

    async def slash_redirect(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        other = dict(scope, path=path.rstrip("/") if path.endswith("/") else path + "/")
        if scope["type"] == "http" and other["path"].strip("/"):
            if any(route.matches(other)[0] is not Match.NONE for route in router.routes):
                location = web.path_reference(other["path"])
                if scope.get("query_string"):
                    location += "?" + scope["query_string"].decode("latin-1")
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await not_found(scope, receive, send)

    router.default = slash_redirect
    for route in router.routes:
        if isinstance(route, Mount) and isinstance(route.app, Router):
            _relative_slash_redirects(route.app)


#: Characters a status line's reason phrase may not carry (controls), and what replaces them.
_NOT_IN_REASON = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)], "?")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    # Messages quote what the client sent: the reason phrase (a header line) gets it on
    # one line, in latin-1, without control characters.
    reason = " ".join(message.split())[:200].translate(_NOT_IN_REASON)
    reason = reason.encode("latin-1", "replace").decode("latin-1")
    return PlainTextResponse(
        message + "\n",
        status_code=status,
        headers={REASON_HEADER: reason, "X-Content-Type-Options": "nosniff", **(headers or {})},
    )


async def _auth_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthRequired)
    return error_response(
        401,
        "Authentication required: log in with the repository name as username and its "
        "read or write secret as password",
        {"WWW-Authenticate": f'Basic realm="{_realm(exc.realm)}"'},
    )


def _realm(name: str) -> str:
    """The realm as a quoted-string can carry it: the repository segment of the URL comes
    from the client (any character at all), so everything but printable ASCII, and the
    quote and backslash, is percent-encoded (``/r/€/`` → ``%E2%82%AC``)."""
    return quote(name, safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")


async def _login_required(request: Request, exc: Exception) -> Response:
    # Relative (RFC 9110 allows it): the Host header a client sent is never reflected.
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = f"{web.site_url(request, 'login/')}?next={quote(target, safe='/')}"
    return RedirectResponse(login, status_code=303)


async def _metrics_token_required(request: Request, exc: Exception) -> Response:
    return error_response(
        401,
        "Authentication required: send the server's metrics token (Authorization: Bearer <token>)",
        {"WWW-Authenticate": 'Bearer realm="pywharf metrics"'},
    )


async def _too_many_attempts(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TooManyAttempts)
    return error_response(429, str(exc), {"Retry-After": str(exc.retry_after)})


async def _not_acceptable(request: Request, exc: Exception) -> Response:
    return error_response(
        406,
        f"Not acceptable: this index serves {JSON_V1}, application/vnd.pypi.simple.v1+html "
        f"and {TEXT_HTML} (and the 'latest' aliases)",
    )


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    return error_response(400, "The client closed the connection before the body was complete")


async def _file_exists(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FileExists)
    return error_response(409, f"File already exists: {exc.filename} (with other content)")


async def _config_error(request: Request, exc: Exception) -> Response:
    # A posted configuration; the old one stays in force.
    return error_response(400, f"Configuration refused, nothing changed: {exc}")


async def _file_missing(request: Request, exc: Exception) -> Response:
    # The index names a file the storage no longer holds: worth an operator's look.
    log.error("%s", exc)
    return error_response(404, str(exc))


async def _backend_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendUnavailable)
    if isinstance(exc, UpstreamUnavailable):  # written for the client (pywharf_core.errors)
        log.warning("upstream unavailable: %s", exc)
        return error_response(503, str(exc), {"Retry-After": str(exc.retry_after)})
    log.warning("backend unavailable: %s", exc)
    return error_response(
        503,
        "The storage backend is unavailable; try again later",
        {"Retry-After": str(exc.retry_after)},
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal server error; the server log has the details")


async def _not_found(request: Request, exc: Exception) -> Response:
    """A person's browser gets a page in the site's style; tools get text."""
    message = getattr(exc, "message", None) or str(exc)
    if is_browser(request):
        return web.not_found_page(request, message)
    return error_response(404, message)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and is_browser(request):
        return web.not_found_page(request, "There is no page at this address.")
    # Starlette's own answer otherwise.
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


def _with_status(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A handler answering ``status`` with the exception's own message."""

    async def handler(request: Request, exc: Exception) -> Response:
        return error_response(status, getattr(exc, "message", None) or str(exc))

    return handler


#: Every error class pywharf raises on purpose, and its answer. Starlette picks the entry
#: of the nearest class in the exception's MRO, so a subclass inherits its base's answer.
ERROR_RESPONSES: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    PywharfError: _unexpected,
    ConfigError: _config_error,
    InitializeRefused: _with_status(403),
    UploadRejected: _with_status(400),
    FileTooLarge: _with_status(413),
    BadRequest: _with_status(400),
    NotFound: _not_found,
    HTTPException: _http_exception,
    PublishingRefused: tokenviews.publishing_refused,
    AuthRequired: _auth_required,
    LoginRequired: _login_required,
    ops.MetricsTokenRequired: _metrics_token_required,
    TooManyAttempts: _too_many_attempts,
    NotPermitted: _with_status(403),
    NotAcceptable: _not_acceptable,
    BackendError: _unexpected,
    FileExists: _file_exists,
    FilenameReused: _with_status(409),
    ProjectStatusRefusal: _with_status(409),
    FileMissing: _file_missing,
    AccessDenied: _unexpected,
    BackendUnavailable: _backend_unavailable,
    InsufficientStorage: _with_status(507),
    NotSupported: _with_status(405),
    ClientDisconnect: _client_disconnect,
}
