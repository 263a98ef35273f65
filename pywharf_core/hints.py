"""Wrong URLs that newcomers and tools use, answered with the right one.

pypiserver takes uploads at ``/``, PyPI at ``/legacy/``; an index URL given without
``/simple/`` makes installers ask for ``/<project>/``; hatch prints
``/simple/<project>/<version>/`` after an upload and flit ``/simple//<project>``. Each
gets a message (or a redirect) naming the URL that works, instead of a bare 404 or 405.
These routes come after the real ones, so they only ever see what nothing else matched;
none of them reveals anything about a repository, so none asks for credentials.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Route

from .dists import is_distribution


def _hint(status: int, message: str) -> Response:
    from .app import error_response  # app imports this module: import when answering

    return error_response(status, message)


def _index_urls(request: Request) -> tuple[str, str]:
    """The index URL for this request, and where its uploads go."""
    base = str(request.base_url)
    repo = request.path_params.get("repo")
    if repo:
        index = f"{base}r/{repo}/simple/"
        return index, f"{index} (any username, the write secret as password)"
    return f"{base}simple/", (
        f"{base}simple/ (username: the repository name, password: its write secret), "
        f"or {base}r/<repo>/simple/ (any username)"
    )


async def upload_elsewhere(request: Request) -> Response:
    """POST ``/`` (pypiserver's upload URL) or ``/legacy/`` (PyPI's)."""
    _, upload = _index_urls(request)
    return _hint(404, f"Not an upload URL: upload to {upload}")


async def not_an_index(request: Request) -> Response:
    """GET ``/<project>/``: an index URL given without ``/simple/`` (or a real route
    asked with a trailing slash, such as ``/healthz/``: redirected without it)."""
    path = _app_path(request).removesuffix("/")
    scope = {"type": "http", "path": path, "root_path": "", "method": "GET"}
    if any(route.matches(scope)[0] is Match.FULL for route in request.app.routes):
        return RedirectResponse(_relative(request, path), status_code=307)
    index, _ = _index_urls(request)
    return _hint(
        404,
        f"Not found. If this server was given as an index URL, the index is {index} "
        f"(e.g. pip install --index-url {index} <package>)",
    )


async def version_page(request: Request) -> Response:
    """``/simple/<project>/<version>/``, as hatch prints it: the project's page."""
    path = _app_path(request).removesuffix("/")
    if is_distribution(request.path_params["version"]):  # a file asked with a "/"
        return RedirectResponse(_relative(request, path), status_code=307)
    return RedirectResponse(_relative(request, path.rsplit("/", 1)[0] + "/"), status_code=303)


async def double_slash(request: Request) -> Response:
    """``/simple//<project>``, as flit prints it: the project's page."""
    path = "/".join(part for part in _app_path(request).split("/") if part)
    return RedirectResponse(_relative(request, f"/{path}/"), status_code=303)


def _app_path(request: Request) -> str:
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    return str(request.scope["path"]).removeprefix(root)


def _relative(request: Request, path: str) -> str:
    """A relative redirect target keeping a trusted proxy's prefix (``web.site_url``):
    the Host header never appears in it."""
    from .web import site_url

    return site_url(request, path) + (f"?{request.url.query}" if request.url.query else "")


#: Under each ``/simple`` mount, after the real routes.
SIMPLE_ROUTES = [
    Route("/{project}/{version}/", version_page, methods=["GET"]),
    Route("//{project}", double_slash, methods=["GET"]),
    Route("//{project}/", double_slash, methods=["GET"]),
]

#: At the top level, after the real routes.
ROUTES = [
    Route("/", upload_elsewhere, methods=["POST"]),
    Route("/legacy/", upload_elsewhere, methods=["POST"]),
    Route("/r/{repo}/", upload_elsewhere, methods=["POST"]),
    Route("/r/{repo}/legacy/", upload_elsewhere, methods=["POST"]),
    Route("/{project}/", not_an_index, methods=["GET"]),
    Route("/r/{repo}/{project}/", not_an_index, methods=["GET"]),
]
