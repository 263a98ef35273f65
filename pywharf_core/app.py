"""The HTTP layer: a plain ASGI (Starlette) application over the served repositories.

Routes (each also under ``/r/<repo>/simple/``, where the basic-auth username is free and
only the password counts)::

    GET  /simple/                        project list of the authenticated repository
    POST /simple/                        legacy upload (twine, uv publish, poetry)
    GET  /simple/<project>/              PEP 503 project page
    GET  /simple/<project>/<filename>    the file (HEAD and Range too)

This module is the one place where pywharf errors become HTTP statuses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route

from .auth import parse_basic_auth
from .backend import Access, FileStream, LocalFile, RedirectTo
from .errors import (
    BackendUnavailable,
    FileExists,
    FileMissing,
    FileTooLarge,
    PywharfError,
    UploadRejected,
)
from .names import normalize
from .repository import Repository, UploadResult
from .simple import (
    project_list_data,
    project_page_data,
    render_project_list_html,
    render_project_page_html,
)
from .upload import FORM_OVERHEAD_BYTES, MultipartUpload, multipart_boundary

log = logging.getLogger(__name__)

#: Response header carrying a custom HTTP reason phrase. ASGI has no reason phrase, so
#: the WSGI adapter of ``pywharf_core.server`` moves it into the status line (PyPI puts
#: its upload errors there, and twine prints it).
REASON_HEADER = "x-pywharf-reason"

#: Upload body batches handed to the worker thread (fewer thread hops than 64 KiB chunks).
UPLOAD_BATCH_BYTES = 1024 * 1024

PAGE_CACHE_CONTROL = "max-age=0, must-revalidate, private"
FILE_CACHE_CONTROL = "max-age=31536000, immutable, private"


class AuthRequired(Exception):
    def __init__(self, realm: str) -> None:
        self.realm = realm


class NotPermitted(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


class Repositories:
    """The served repositories; swapped as a whole when the configuration changes."""

    def __init__(self, repositories: Mapping[str, Repository]) -> None:
        self.by_name = dict(repositories)

    def get(self, name: str | None) -> Repository | None:
        return self.by_name.get(name) if name else None


def create_app(
    repositories: Mapping[str, Repository],
    *,
    debug: bool = False,
    extra_index_url: str | None = None,
) -> Starlette:
    """The pywharf ASGI application serving ``repositories``.

    ``extra_index_url``: where to redirect requests for projects a repository does not
    hold (off by default: redirecting unknown names invites dependency confusion).
    """
    simple_routes = [
        Route("/", list_or_upload, methods=["GET", "POST"]),
        Route("/{project}", project_without_slash, methods=["GET"]),
        Route("/{project}/", project_page, methods=["GET"]),
        Route("/{project}/{filename}", download, methods=["GET"]),
    ]
    app = Starlette(
        debug=debug,
        routes=[
            Mount("/simple", routes=simple_routes),
            Mount("/r/{repo}/simple", routes=simple_routes),
        ],
        exception_handlers={
            AuthRequired: _auth_required,
            NotPermitted: _not_permitted,
            PywharfError: _pywharf_error,
            ClientDisconnect: _client_disconnect,
        },
    )
    app.state.repositories = Repositories(repositories)
    app.state.extra_index_url = extra_index_url.rstrip("/") + "/" if extra_index_url else None
    return app


# -- authentication -------------------------------------------------------------------


async def authorize(request: Request, need: Access) -> Repository:
    """The repository this request may use with at least ``need``, or raise."""
    path_repo = request.path_params.get("repo")
    credentials = parse_basic_auth(request.headers.get("authorization"))
    realm = path_repo or "pywharf"
    if credentials is None:
        raise AuthRequired(realm)
    repo_name = path_repo or credentials.username
    repositories: Repositories = request.app.state.repositories
    repo = repositories.get(repo_name)
    if repo is None:  # looks exactly like a wrong secret
        raise AuthRequired(realm)
    access = repo.cached_access(credentials.password)
    if access is None:
        access = await run_in_threadpool(repo.access, credentials.password)
    if access is Access.NONE:
        raise AuthRequired(realm)
    if access < need:
        raise NotPermitted(f"This secret may only read repository {repo.name!r}, not upload")
    return repo


# -- handlers -----------------------------------------------------------------------------


async def list_or_upload(request: Request) -> Response:
    if request.method == "POST":
        return await upload(request)
    repo = await authorize(request, Access.READ)
    html = render_project_list_html(project_list_data(repo.index.snapshot))
    return HTMLResponse(html, headers={"Cache-Control": PAGE_CACHE_CONTROL})


async def project_without_slash(request: Request) -> Response:
    await authorize(request, Access.READ)
    # Relative, so that it holds under any mount point or proxy prefix.
    return RedirectResponse(f"{normalize(request.path_params['project'])}/", status_code=301)


async def project_page(request: Request) -> Response:
    repo = await authorize(request, Access.READ)
    asked = request.path_params["project"]
    project = normalize(asked)
    if project != asked:
        return RedirectResponse(f"../{project}/", status_code=301)
    records = repo.index.snapshot.files_of(project)
    if not records:
        upstream = request.app.state.extra_index_url
        if upstream:
            return RedirectResponse(f"{upstream}{project}/", status_code=302)
        raise HTTPException(404, f"Project {project!r} is not in this repository")
    html = render_project_page_html(project_page_data(project, records))
    return HTMLResponse(html, headers={"Cache-Control": PAGE_CACHE_CONTROL})


async def download(request: Request) -> Response:
    repo = await authorize(request, Access.READ)
    asked, filename = request.path_params["project"], request.path_params["filename"]
    project = normalize(asked)
    if project != asked:
        return RedirectResponse(f"../{project}/{filename}", status_code=301)
    # Only names in the index are served: a URL never becomes a storage path.
    record = repo.index.snapshot.find(project, filename)
    if record is None:
        raise HTTPException(404, f"File {filename!r} is not in this repository")
    opened = await run_in_threadpool(repo.backend.open_file, record)
    headers = {"Cache-Control": FILE_CACHE_CONTROL, "ETag": f'"{record.sha256}"'}
    media_type = media_type_for(filename)
    if isinstance(opened, LocalFile):
        return FileResponse(opened.path, media_type=media_type, headers=headers)
    if isinstance(opened, RedirectTo):
        return RedirectResponse(opened.url, status_code=302)
    return _stream(opened, media_type, headers)


def _stream(opened: FileStream, media_type: str, headers: dict[str, str]) -> Response:
    if opened.size is not None:
        headers["Content-Length"] = str(opened.size)

    async def chunks() -> Any:
        try:
            async for chunk in iterate_in_threadpool(opened.chunks):
                yield chunk
        finally:
            opened.close()

    return StreamingResponse(chunks(), media_type=media_type, headers=headers)


def media_type_for(filename: str) -> str:
    # Never a Content-Encoding for .tar.gz: clients would unpack it and fail the hash.
    if filename.endswith((".whl", ".zip")):
        return "application/zip"
    if filename.endswith(".tar.gz"):
        return "application/x-tar+gzip"
    return "application/octet-stream"


async def upload(request: Request) -> Response:
    _refuse_cross_site(request)
    repo = await authorize(request, Access.WRITE)
    boundary = multipart_boundary(request.headers.get("content-type"))
    limit = repo.backend.max_file_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD_BYTES:
        raise FileTooLarge(limit)
    reader = MultipartUpload(boundary, repo.backend.staging_dir(), limit)
    try:
        batch = bytearray()
        async for chunk in request.stream():
            batch += chunk
            if len(batch) >= UPLOAD_BATCH_BYTES:
                data, batch = batch, bytearray()
                await run_in_threadpool(reader.feed, data)
        await run_in_threadpool(reader.feed, batch)
        received = await run_in_threadpool(reader.finish)
        outcome = await run_in_threadpool(repo.accept_upload, received)
    finally:
        await run_in_threadpool(reader.discard)
    if outcome.result is UploadResult.IDENTICAL:
        text = f"OK: {outcome.record.filename} was already stored with identical content"
    else:
        text = f"OK: stored {outcome.record.filename}"
    return PlainTextResponse(text + "\n")


def _refuse_cross_site(request: Request) -> None:
    # A browser holding basic-auth credentials for this server must not be made to post
    # an upload from another site; packaging tools send no Origin header.
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise NotPermitted("Cross-site uploads are refused")


# -- errors → HTTP (the one place) ---------------------------------------------------------


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    reason = " ".join(message.split())[:200].encode("latin-1", "replace").decode("latin-1")
    return PlainTextResponse(
        message + "\n", status_code=status, headers={REASON_HEADER: reason, **(headers or {})}
    )


async def _auth_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthRequired)
    realm = exc.realm.replace('"', "")
    return error_response(
        401,
        "Authentication required: log in with the repository name as username and its "
        "read or write secret as password",
        {"WWW-Authenticate": f'Basic realm="{realm}"'},
    )


async def _not_permitted(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotPermitted)
    return error_response(403, exc.message)


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    return error_response(400, "The client closed the connection before the body was complete")


async def _pywharf_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, FileExists):
        return error_response(409, f"File already exists: {exc.filename} (with other content)")
    if isinstance(exc, UploadRejected):
        return error_response(exc.status, exc.message)
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
