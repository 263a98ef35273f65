"""The Simple API endpoints. Each is mounted under ``/simple/`` (username = repository
name) and ``/r/<repo>/simple/`` (username free, the password decides)::

    GET  /                            project list (PEP 503 HTML or PEP 691 JSON)
    POST /                            legacy upload (twine, uv publish, poetry)
    GET  /<project>/                  project page (HTML or JSON)
    GET  /<project>/<filename>        the file (HEAD and Range too)
    GET  /<project>/<filename>.metadata   its core metadata (PEP 658)
    POST /<project>/<filename>/yank   PEP 592 (form field ``reason``, optional)
    POST /<project>/<filename>/unyank
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from . import web
from .auth import parse_basic_auth
from .backend import Access, FileStream, LocalFile, OpenedFile, RedirectTo
from .blocking import run_blocking
from .errors import (
    AuthRequired,
    FileMissing,
    FileTooLarge,
    LoginRequired,
    NotFound,
    NotPermitted,
    UploadRejected,
)
from .names import normalize
from .negotiation import content_type_header, negotiate
from .pagecache import RenderedPage, etag_matches
from .records import FileRecord
from .repository import Repositories, Repository, UploadResult
from .sessions import is_browser
from .simple import project_list_data, project_page_data, render
from .upload import FORM_OVERHEAD_BYTES, MultipartUpload, multipart_boundary

#: Upload body batches handed to the worker thread (fewer thread hops than 64 KiB chunks).
UPLOAD_BATCH_BYTES = 1024 * 1024
PAGE_CACHE_CONTROL = "max-age=0, must-revalidate, private"
FILE_CACHE_CONTROL = "max-age=31536000, immutable, private"
METADATA_SUFFIX = ".metadata"
SMALL_FILE = 256 * 1024  # whole GETs of local files up to this size are read in one go


async def authorize(request: Request, need: Access) -> Repository:
    """The repository this request may use with at least ``need``, or raise."""
    path_repo = request.path_params.get("repo")
    credentials = parse_basic_auth(request.headers.get("authorization"))
    realm = path_repo or "pywharf"
    repositories: Repositories = request.app.state.repositories
    if credentials is None:
        session = request.app.state.sessions.read(request)
        if session is not None and path_repo in (None, session.repo):
            repo = repositories.get(session.repo)
            if repo is not None:
                if session.access < need:
                    raise NotPermitted(f"This session may only read repository {repo.name!r}")
                request.state.session = session
                return repo
        if is_browser(request):
            raise LoginRequired()
        raise AuthRequired(realm)
    repo = repositories.get(path_repo or credentials.username)
    if repo is None:  # looks exactly like a wrong secret
        raise AuthRequired(realm)
    access = repo.cached_access(credentials.password)
    if access is None:
        access = await run_blocking(repo.access, credentials.password)
    if access is Access.NONE:
        raise AuthRequired(realm)
    if access < need:
        raise NotPermitted(f"This secret may only read repository {repo.name!r}, not change it")
    return repo


# -- pages ---------------------------------------------------------------------------------


async def list_or_upload(request: Request) -> Response:
    if request.method == "POST":
        return await upload(request)
    repo = await authorize(request, Access.READ)
    if _browser_session(request):
        return web.repository_home(request, repo, request.state.session.access)
    media_type = _media_type(request)
    snapshot = repo.index.snapshot
    page = repo.pages.get(
        None, media_type, snapshot.projects, lambda: render(project_list_data(snapshot), media_type)
    )
    return _page_response(request, page, media_type)


async def project_without_slash(request: Request) -> Response:
    await authorize(request, Access.READ)
    return canonical_redirect(request, 1, normalize(request.path_params["project"]) + "/")


async def project_page(request: Request) -> Response:
    repo = await authorize(request, Access.READ)
    asked = request.path_params["project"]
    project = normalize(asked)
    if project != asked:
        return canonical_redirect(request, 1, project + "/")
    media_type = _media_type(request)
    records = repo.index.snapshot.files_of(project)
    if not records:
        upstream = request.app.state.extra_index_url
        if upstream:
            return RedirectResponse(f"{upstream}{project}/", status_code=302)
        raise NotFound(f"Project {project!r} is not in this repository")
    if _browser_session(request):
        return await web.project_page(request, repo, project, request.state.session.access)
    page = repo.pages.get(
        project,
        media_type,
        records,
        lambda: render(project_page_data(project, records), media_type),
    )
    return _page_response(request, page, media_type)


def _browser_session(request: Request) -> bool:
    """A person's browser, logged in: it gets the pages for people."""
    return getattr(request.state, "session", None) is not None and is_browser(request)


def _media_type(request: Request) -> str:
    return negotiate(request.headers.get("accept"), request.query_params.get("format"))


def _page_response(request: Request, page: RenderedPage, media_type: str) -> Response:
    headers = {"ETag": page.etag, "Cache-Control": PAGE_CACHE_CONTROL, "Vary": "Accept"}
    if etag_matches(request.headers.get("if-none-match"), page.etag):
        return Response(status_code=304, headers=headers)
    return Response(page.body, headers=headers, media_type=content_type_header(media_type))


def canonical_redirect(request: Request, segments: int, replacement: str) -> Response:
    """301 to this URL with its last ``segments`` path segments (a trailing slash aside)
    replaced. Absolute, built from the request's external URL: scheme, host and prefix
    as trusted proxies give them."""
    kept = request.url.path.removesuffix("/").split("/")[:-segments]
    new_path = "/".join(kept) + "/" + replacement
    return RedirectResponse(str(request.url.replace(path=new_path, query="")), status_code=301)


# -- files --------------------------------------------------------------------------------


async def download(request: Request) -> Response:
    repo = await authorize(request, Access.READ)
    asked, filename = request.path_params["project"], request.path_params["filename"]
    project = normalize(asked)
    if project != asked:
        return canonical_redirect(request, 2, f"{project}/{filename}")
    snapshot = repo.index.snapshot
    # Only names in the index are served: a URL never becomes a storage path.
    record = snapshot.find(project, filename)
    if record is not None:
        etag = f'"{record.sha256}"'
        return await _serve(request, repo.backend.open_file, record, media_type_for(filename), etag)
    if filename.endswith(METADATA_SUFFIX):
        record = snapshot.find(project, filename.removesuffix(METADATA_SUFFIX))
        if record is not None and record.core_metadata_sha256:
            etag = f'"{record.core_metadata_sha256}"'
            return await _serve(
                request, repo.backend.open_metadata, record, "text/plain; charset=utf-8", etag
            )
    raise NotFound(f"File {filename!r} is not in this repository")


async def _serve(
    request: Request,
    opener: Callable[[FileRecord], OpenedFile],
    record: FileRecord,
    media_type: str,
    etag: str,
) -> Response:
    headers = {"Cache-Control": FILE_CACHE_CONTROL, "ETag": etag}
    if etag_matches(request.headers.get("if-none-match"), etag):  # the backend is not asked
        return Response(status_code=304, headers=headers)
    whole_get = request.method == "GET" and "range" not in request.headers
    return await run_blocking(_answer, opener, record, media_type, headers, whole_get)


def _answer(
    opener: Callable[[FileRecord], OpenedFile],
    record: FileRecord,
    media_type: str,
    headers: dict[str, str],
    whole_get: bool,
) -> Response:
    """The backend's answer made a response, in one worker-thread hop (or in place): a
    local file's stat is taken here (FileResponse would hop for it), and a whole small
    file is read here too (FileResponse would hop to open, read and close it)."""
    opened = opener(record)
    if isinstance(opened, LocalFile):
        stat = opened.path.stat()
        if whole_get and stat.st_size <= SMALL_FILE:
            return Response(opened.path.read_bytes(), headers=headers, media_type=media_type)
        # Where the server offers http.response.pathsend (pywharf's waitress adapter),
        # FileResponse hands the whole file over to it instead of reading it in chunks.
        return _FileResponse(opened.path, media_type=media_type, headers=headers, stat_result=stat)
    if isinstance(opened, RedirectTo):
        return RedirectResponse(opened.url, status_code=302)
    return _stream(opened, media_type, headers)


class _FileResponse(FileResponse):
    """Larger reads where the server has no pathsend (uvicorn): each chunk is a worker-
    thread hop and a trip round the event loop."""

    chunk_size = 1024 * 1024


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


# -- changes --------------------------------------------------------------------------------


async def upload(request: Request) -> Response:
    refuse_cross_site(request)
    repo = await authorize(request, Access.WRITE)
    boundary = multipart_boundary(request.headers.get("content-type"))
    limit = repo.backend.max_file_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD_BYTES:
        raise FileTooLarge(limit)
    reader = MultipartUpload(boundary, repo.backend.staging_dir(), limit)
    try:
        # Chunks are kept as they come and fed in one worker hop per MiB: growing one
        # buffer by appends copied every byte again (26% of an upload's CPU, profiled).
        batch: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            batch.append(chunk)
            size += len(chunk)
            if size >= UPLOAD_BATCH_BYTES:
                data, batch, size = batch, [], 0
                await run_blocking(_feed_all, reader, data)
        await run_blocking(_feed_all, reader, batch)
        received = await run_blocking(reader.finish)
        outcome = await run_blocking(repo.accept_upload, received)
    finally:
        await run_blocking(reader.discard)
    request.app.state.metrics.uploaded(repo.name, outcome.record.size, outcome.result)
    if outcome.result is UploadResult.IDENTICAL:
        text = f"OK: {outcome.record.filename} was already stored with identical content"
    else:
        text = f"OK: stored {outcome.record.filename}"
    return PlainTextResponse(text + "\n")


def _feed_all(reader: MultipartUpload, chunks: list[bytes]) -> None:
    for chunk in chunks:
        reader.feed(chunk)


async def yank(request: Request) -> Response:
    return await _set_yanked(request, yanked=True)


async def unyank(request: Request) -> Response:
    return await _set_yanked(request, yanked=False)


async def _set_yanked(request: Request, *, yanked: bool) -> Response:
    refuse_cross_site(request)
    repo = await authorize(request, Access.WRITE)
    project = normalize(request.path_params["project"])
    filename = request.path_params["filename"]
    reason: str | None = None
    if yanked:
        async with request.form(max_files=0, max_fields=10) as form:
            value = form.get("reason", "")
        reason = value if isinstance(value, str) else ""
    try:
        record: FileRecord = await run_blocking(repo.yank, project, filename, reason)
    except FileMissing:
        raise NotFound(f"File {filename!r} is not in this repository") from None
    state = f"yanked ({record.yanked or 'no reason given'})" if yanked else "no longer yanked"
    return PlainTextResponse(f"OK: {filename} is {state}\n")


async def index_mtime(request: Request) -> Response:
    """When the repository's index was last synced (seconds since the epoch, integer)."""
    repo = await authorize(request, Access.READ)
    return PlainTextResponse(f"{int(repo.synced_at or 0)}\n")


#: A posted configuration is a few KiB; this bounds what /initialize/ reads.
MAX_INITIALIZE_BYTES = 1024 * 1024


async def initialize(request: Request) -> Response:
    """Replace the configuration: form fields or files ``config`` and ``admin_secret``."""
    refuse_cross_site(request)
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise NotFound("This server does not take its configuration over HTTP")
    async with request.form(max_files=2, max_fields=4, max_part_size=MAX_INITIALIZE_BYTES) as form:
        fields = {}
        for key in ("config", "admin_secret", "initialize_secret"):
            value = form.get(key)
            if value is None or isinstance(value, str):
                fields[key] = value
            else:  # an uploaded file
                fields[key] = (await value.read(MAX_INITIALIZE_BYTES + 1)).decode(
                    "utf-8", "replace"
                )
    if not fields["config"]:
        raise UploadRejected("POST /initialize/ needs a 'config' field or file (TOML)")
    proof = fields["initialize_secret"]
    credentials = parse_basic_auth(request.headers.get("authorization"))
    if proof is None and credentials is not None:
        proof = credentials.password
    names = await run_blocking(
        runtime.initialize, fields["config"], fields["admin_secret"] or "", proof
    )
    return PlainTextResponse(f"OK: now serving {', '.join(names)}\n")


def refuse_cross_site(request: Request) -> None:
    # A browser holding basic-auth credentials for this server must not be made to post
    # from another site; packaging tools send no Origin header.
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise NotPermitted("Cross-site requests that change a repository are refused")
