"""The Simple API endpoints. Each is mounted under ``/simple/`` (username = repository
name) and ``/r/<repo>/simple/`` (username free, the password decides)::

    GET  /                            project list (PEP 503 HTML or PEP 691 JSON)
    POST /                            legacy upload (twine, uv publish, poetry)
    GET  /<project>/                  project page (HTML or JSON)
    GET  /<project>/<filename>        the file (HEAD and Range too)
    GET  /<project>/<filename>.metadata   its core metadata (PEP 658)
    POST /<project>/<filename>/yank   PEP 592 (form field ``reason``, optional)
    POST /<project>/<filename>/unyank
    DELETE /<project>/<filename>      delete the file (write secret; 204)
    POST /<project>/status            PEP 792 status (form fields ``status``, ``reason``)
    POST /<project>/<version>/promote copy a release to another repository (``to``,
                                      ``to_secret``)

and beside them, ``GET /audit/`` and ``GET /r/<repo>/audit/``: the audit log (JSON lines).
    POST /<project>/refresh           drop the cached upstream page (upstream_url)
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.types import Receive, Scope, Send

from . import audit, manage, status, web
from .auth import Credentials, parse_basic_auth
from .backend import Access, FileStream, LocalFile, OpenedFile, RedirectTo, compare_secrets
from .blocking import iterate_blocking, run_blocking
from .codings import IDENTITY, choose_coding
from .dists import normalize
from .errors import (
    AuthRequired,
    BadRequest,
    FileMissing,
    InitializeRefused,
    LoginRequired,
    NotFound,
    NotPermitted,
)
from .negotiation import content_type_header, negotiate
from .pagecache import RenderedPage, etag_matches, rendered
from .promote import promote as promote_release
from .records import FileRecord
from .repository import Repositories, Repository
from .sessions import is_browser
from .simple import API_VERSION, project_list_data, project_page_data, render
from .throttle import FailureThrottle
from .tokens import TokenGrant, looks_like_token
from .upload import UploadResult, accept_upload
from .upstream import UPSTREAM_STATE_HEADER, Served, Upstream

PAGE_CACHE_CONTROL = "max-age=0, must-revalidate, private"
FILE_CACHE_CONTROL = "max-age=31536000, immutable, private"
METADATA_SUFFIX = ".metadata"
METADATA_MEDIA_TYPE = "text/plain; charset=utf-8"
SMALL_FILE = 256 * 1024  # whole GETs of local files up to this size are read in one go
#: PEP 503/691 pages hold links and nothing to run: no script, style, frame or form, and
#: no other site may frame them (the browser pages have a policy of their own, in web.py).
SIMPLE_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


_PAGE_HEADERS = [
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in {
        "Cache-Control": PAGE_CACHE_CONTROL,
        "Vary": "Accept, Accept-Encoding",
        **SIMPLE_PAGE_HEADERS,
    }.items()
]

#: Set in the scope of the header gate's own check of a request (``early.HeaderGate``).
GATE_SCOPE_KEY = "pywharf.header_gate"


async def authorize(
    request: Request, need: Access, *, token_may_upload: bool = False
) -> Repository:
    """The repository this request may use with at least ``need``, or raise.

    An API token (``tokens.py``) is a password too. Its grant is put on
    ``request.state.token``; an upload token passes ``Access.WRITE`` only where the caller
    says ``token_may_upload`` (the upload): a token never yanks, creates tokens or
    changes anything else."""
    path_repo = request.path_params.get("repo")
    credentials = parse_basic_auth(request.headers.get("authorization"))
    realm = path_repo or "pywharf"
    request.state.token = None
    if credentials is None:
        session = request.app.state.sessions.read(request)
        if session is not None and path_repo in (None, session.repo):
            repositories: Repositories = request.app.state.repositories
            repo = repositories.get(session.repo)
            if repo is not None:
                if session.access < need:
                    raise NotPermitted(f"This session may only read repository {repo.name!r}")
                request.state.session = session
                request.state.credential = "session"
                return repo
        if is_browser(request):
            raise LoginRequired()
        raise AuthRequired(realm)
    repo, access, grant = _remembered_access(request, credentials, path_repo)
    if access is None:
        password = credentials.password
        throttle: FailureThrottle = request.app.state.auth_throttle
        client = request.client.host if request.client else None  # trusted X-Forwarded-For
        throttle.check(client)
        access = Access.NONE
        if repo is not None and looks_like_token(password):
            grant = await run_blocking(repo.tokens.check, password)
            access = grant.access if grant is not None else Access.NONE
        elif repo is not None:
            access = await run_blocking(repo.access, password)
        # The header gate (early.py) asks before the body; the view asks again for the
        # same request: a failure is counted once, by the view.
        if access is Access.NONE and not request.scope.get(GATE_SCOPE_KEY):
            throttle.failed(client)
    return _granted(request, repo, access, grant, need, token_may_upload, realm)


def authorize_remembered(
    request: Request, need: Access, *, token_may_upload: bool = False
) -> Repository | None:
    """``authorize`` when a decision remembered for its basic-auth secret or token
    settles it, without blocking (the repository, or the refusal raised); ``None`` when
    only ``authorize`` can tell (no basic auth, or a secret not verified lately)."""
    credentials = parse_basic_auth(request.headers.get("authorization"))
    if credentials is None:
        return None
    path_repo = request.path_params.get("repo")
    request.state.token = None
    repo, access, grant = _remembered_access(request, credentials, path_repo)
    if access is None:
        return None
    return _granted(request, repo, access, grant, need, token_may_upload, path_repo or "pywharf")


def _remembered_access(
    request: Request, credentials: Credentials, path_repo: str | None
) -> tuple[Repository | None, Access | None, TokenGrant | None]:
    """The repository the credentials name, and what they may do there as remembered
    from an earlier check (``None``: not remembered), with a token's grant."""
    repositories: Repositories = request.app.state.repositories
    repo = repositories.get(path_repo or credentials.username)
    # A secret (or token) verified before passes even while its address is throttled: a
    # flood of failures cannot lock it out, and it tells a guesser nothing new.
    if repo is None:
        return None, None, None
    if looks_like_token(credentials.password):
        grant = repo.tokens.cached(credentials.password)
        return repo, (grant.access if grant is not None else None), grant
    return repo, repo.cached_access(credentials.password), None


def _granted(
    request: Request,
    repo: Repository | None,
    access: Access,
    grant: TokenGrant | None,
    need: Access,
    token_may_upload: bool,
    realm: str,
) -> Repository:
    if repo is None or access is Access.NONE:  # an unknown repository looks the same
        raise AuthRequired(realm)
    if grant is not None:
        request.state.token = grant
        request.state.credential = f"token:{grant.id}"
        if need is Access.WRITE and not (token_may_upload and grant.access is Access.WRITE):
            what = "upload" if grant.access is Access.WRITE else "read"
            raise NotPermitted(
                f"This token may only {what} in repository {repo.name!r}; use the "
                "repository's write secret for this"
            )
    if access < need:
        raise NotPermitted(f"This secret may only read repository {repo.name!r}, not change it")
    if grant is None:
        request.state.credential = "write_secret" if access is Access.WRITE else "read_secret"
    return repo


def actor(request: Request) -> audit.Actor:
    """Who makes this (authorized) request, for the audit log: the kind of credential
    ``authorize`` accepted, never the secret, and the client's address (trusted
    proxies' ``X-Forwarded-For`` applied)."""
    kind = getattr(request.state, "credential", "unknown")
    return audit.Actor(kind, request.client.host if request.client else None)


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
        None,
        media_type,
        snapshot.projects,
        lambda: render(project_list_data(snapshot), media_type),
        coding=_coding(request),
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
    upstream = repo.upstream
    if upstream is not None and upstream.serves(project, bool(records)):
        answer = await _upstream_page(request, upstream, project, records or (), media_type)
        if answer is not None:
            return answer
    if not records:
        upstream_url = request.app.state.extra_index_url
        if upstream_url:
            return RedirectResponse(f"{upstream_url}{project}/", status_code=302)
        raise NotFound(f"Project {project!r} is not in this repository")
    if _browser_session(request):
        return await web.project_page(request, repo, project, request.state.session.access)
    status = repo.status_of(project)
    page = repo.pages.get(
        project,
        media_type,
        records,
        lambda: render(project_page_data(project, records, status), media_type),
        variant=status,
        coding=_coding(request),
    )
    return _page_response(request, page, media_type)


async def _upstream_page(
    request: Request,
    upstream: Upstream,
    project: str,
    records: tuple[FileRecord, ...],
    media_type: str,
) -> Response | None:
    """The page of a project served from the upstream index (with its private files when
    it may mix); ``None`` when upstream has no such project but private files exist."""
    try:
        served = await _upstream_served(upstream, project)
    except FileMissing:
        if records:
            return None
        raise NotFound(
            f"Project {project!r} is not in this repository or its upstream index"
        ) from None

    def render_page() -> bytes:
        return render(upstream.page_data(served, records, API_VERSION), media_type)

    if records:  # mixed: rendered each time (both halves change), so never compressed
        page = rendered(render_page())
    else:
        page = upstream.pages.get(
            project, media_type, served.page, render_page, coding=_coding(request)
        )
    response = _page_response(request, page, media_type)
    response.headers[UPSTREAM_STATE_HEADER] = served.state
    return response


async def _upstream_served(upstream: Upstream, project: str) -> Served:
    """Upstream's page: from memory when fresh (no worker-thread hop), else asked."""
    served = upstream.fresh_page(project)
    if served is None:
        served = await run_blocking(upstream.page, project)
    return served


def _browser_session(request: Request) -> bool:
    """A person's browser, logged in: it gets the pages for people."""
    # ``authorize`` names the credential it accepted; a missing ``state.session`` would
    # cost an AttributeError (raised and caught) on every request made with a secret.
    return request.state.credential == "session" and is_browser(request)


def _media_type(request: Request) -> str:
    return negotiate(request.headers.get("accept"), request.query_params.get("format"))


def _coding(request: Request) -> str:
    return choose_coding(request.headers.get("accept-encoding"))


def _page_response(request: Request, page: RenderedPage, media_type: str) -> Response:
    """``page`` (in the coding the client asked for, if any) or a 304. The form sent
    varies with Accept-Encoding even where it is the same for every coding (a small page):
    the same page may grow past ``codings.MIN_SIZE``."""
    # The ASGI headers as Starlette would make them, from parts encoded once: making
    # them from a dict (eight headers, each lower-cased and encoded) was ~2% of a
    # cached page's whole cost (instructions counted under callgrind).
    headers = [*_PAGE_HEADERS, (b"etag", page.etag.encode("latin-1"))]
    if etag_matches(request.headers.get("if-none-match"), page.etag):
        return PreparedResponse(b"", headers, 304)
    if page.coding != IDENTITY:
        headers.append((b"content-encoding", page.coding.encode("latin-1")))
    headers.append((b"content-length", str(len(page.body)).encode("latin-1")))
    headers.append(_content_type(media_type))
    return PreparedResponse(page.body, headers)


class PreparedResponse(Response):
    """A response given its body and its ASGI headers as they are to be sent."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]], status: int = 200):
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


@functools.cache  # a few media types
def _content_type(media_type: str) -> tuple[bytes, bytes]:
    return (b"content-type", content_type_header(media_type).encode("latin-1"))


def canonical_redirect(request: Request, segments: int, replacement: str) -> Response:
    """301 to this URL with its last ``segments`` path segments (a trailing slash aside)
    replaced, and no query. A relative reference (see ``web.site_url``): the path (with
    the prefix a trusted proxy gave) percent-encoded, never the client's Host."""
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    kept = request.scope["path"].removeprefix(root).removesuffix("/").split("/")[:-segments]
    new_path = "/".join(kept) + "/" + replacement
    return RedirectResponse(web.site_url(request, new_path), status_code=301)


# -- files --------------------------------------------------------------------------------


async def download(request: Request) -> Response:
    repo = await authorize(request, Access.READ)
    asked, filename = request.path_params["project"], request.path_params["filename"]
    project = normalize(asked)
    if project != asked:
        return canonical_redirect(request, 2, f"{project}/{filename}")
    snapshot = repo.index.snapshot
    if repo.status_of(project).hides_files:  # quarantined (PEP 792): nothing is offered
        raise NotFound(f"Project {project!r} is quarantined: its files are not served")
    # Only names in the index are served: a URL never becomes a storage path.
    record = snapshot.find(project, filename)
    if record is not None:
        etag = f'"{record.sha256}"'
        opener = partial(repo.backend.open_file, record)
        return await _serve(request, opener, media_type_for(filename), etag)
    metadata = filename.endswith(METADATA_SUFFIX)
    name = filename.removesuffix(METADATA_SUFFIX)
    if metadata:
        record = snapshot.find(project, name)
        if record is not None and record.core_metadata_sha256:
            etag = f'"{record.core_metadata_sha256}"'
            opener = partial(repo.backend.open_file, record, metadata=True)
            return await _serve(request, opener, METADATA_MEDIA_TYPE, etag)
    upstream = repo.upstream
    if upstream is not None and upstream.serves(project, snapshot.files_of(project) is not None):
        try:
            served = await _upstream_served(upstream, project)
            head = request.method == "HEAD"  # a file not cached is not fetched for it
            offered = upstream.file_opener(served.page, name, metadata=metadata, head=head)
        except FileMissing:
            offered = None
        if offered is not None:
            media_type = METADATA_MEDIA_TYPE if metadata else media_type_for(filename)
            sha256 = offered[1]
            return await _serve(request, offered[0], media_type, f'"{sha256}"' if sha256 else None)
    raise NotFound(f"File {filename!r} is not in this repository")


async def _serve(
    request: Request,
    opener: Callable[[], OpenedFile],
    media_type: str,
    etag: str | None,
) -> Response:
    headers = {"Cache-Control": FILE_CACHE_CONTROL}
    if etag is not None:
        headers["ETag"] = etag
        if etag_matches(request.headers.get("if-none-match"), etag):  # nothing is opened
            return Response(status_code=304, headers=headers)
    whole_get = request.method == "GET" and "range" not in request.headers
    head = request.method == "HEAD"
    return await run_blocking(_answer, opener, media_type, headers, whole_get, head)


def _answer(
    opener: Callable[[], OpenedFile],
    media_type: str,
    headers: dict[str, str],
    whole_get: bool,
    head: bool = False,
) -> Response:
    """The backend's answer made a response, in one worker-thread hop (or in place): a
    local file's stat is taken here (FileResponse would hop for it), and a whole small
    file is read here too (FileResponse would hop to open, read and close it)."""
    opened = opener()
    if isinstance(opened, LocalFile):
        try:
            stat = opened.path.stat()
            if whole_get and stat.st_size <= SMALL_FILE:
                return Response(opened.path.read_bytes(), headers=headers, media_type=media_type)
            # Opened now: a file deleted from here on is still read whole (its inode
            # lives while open), rather than failing after the status is sent.
            handle = opened.path.open("rb")
        except FileNotFoundError:  # deleted since the index was read
            raise FileMissing(opened.path.name) from None
        # Where the server offers http.response.pathsend (pywharf's waitress adapter),
        # FileResponse hands the whole file over to it instead of reading it in chunks.
        return _FileResponse(handle, opened.path, media_type=media_type, headers=headers)
    if isinstance(opened, RedirectTo):
        return RedirectResponse(opened.url, status_code=302)
    if head:  # a stream is not read only to be thrown away
        opened.close()
        if opened.size is not None:
            headers["Content-Length"] = str(opened.size)
            return Response(headers=headers, media_type=media_type)
        answer = Response(headers=headers, media_type=media_type)
        # A size nobody knows is not said: not the "0" of the empty body a HEAD has.
        answer.raw_headers = [(k, v) for k, v in answer.raw_headers if k != b"content-length"]
        return answer
    return _stream(opened, media_type, headers)


class _FileResponse(FileResponse):
    """A file response read from a file already open. Larger reads where the server has
    no pathsend (uvicorn): each chunk is a worker-thread hop and a trip round the event
    loop."""

    chunk_size = 1024 * 1024

    def __init__(self, handle: BinaryIO, path: Path, **kwargs: Any) -> None:
        super().__init__(path, stat_result=os.fstat(handle.fileno()), **kwargs)
        self._handle = handle

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        yield anyio.wrap_file(self._handle)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._handle.close()


def _stream(opened: FileStream, media_type: str, headers: dict[str, str]) -> Response:
    if opened.size is not None:
        headers["Content-Length"] = str(opened.size)

    async def chunks() -> Any:
        try:
            async for chunk in iterate_blocking(opened.chunks):
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
    repo = await authorize(request, Access.WRITE, token_may_upload=True)
    headers = request.headers
    grant: TokenGrant | None = request.state.token
    outcome = await accept_upload(
        repo,
        headers.get("content-type"),
        headers.get("content-length"),
        request.stream(),
        allowed_projects=grant.projects if grant is not None else None,
    )
    request.app.state.metrics.uploaded(repo.name, outcome.record.size, outcome.result)
    if outcome.result is UploadResult.STORED:  # an identical re-upload changes nothing
        record = outcome.record
        await run_blocking(
            audit.append, repo, "upload", actor(request), record.project, record.filename,
            record.sha256,
        )  # fmt: skip
    return PlainTextResponse(outcome.message + "\n")


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
    await run_blocking(
        audit.append, repo, "yank" if yanked else "unyank", actor(request), project, filename,
        record.sha256, reason,
    )  # fmt: skip
    state = f"yanked ({record.yanked or 'no reason given'})" if yanked else "no longer yanked"
    return PlainTextResponse(f"OK: {filename} is {state}\n")


async def delete_file(request: Request) -> Response:
    """``DELETE /<project>/<filename>`` (write secret): the file leaves the storage and
    every page; 204, or 404 when the project lists no such file."""
    refuse_cross_site(request)
    repo = await authorize(request, Access.WRITE)
    project = normalize(request.path_params["project"])
    filename = request.path_params["filename"]
    try:
        record = await run_blocking(manage.delete_file, repo, project, filename)
    except FileMissing:
        raise NotFound(f"File {filename!r} is not in project {project!r}") from None
    await run_blocking(
        audit.append, repo, "delete", actor(request), project, filename, record.sha256
    )
    return Response(status_code=204)


#: A status form is two short fields; a reason is at most status.MAX_REASON characters.
MAX_STATUS_FORM_BYTES = 16 * 1024


async def set_status(request: Request) -> Response:
    """``POST /<project>/status`` (write secret), form fields ``status`` (PEP 792: active,
    archived, quarantined, deprecated) and ``reason`` (optional)."""
    refuse_cross_site(request)
    repo = await authorize(request, Access.WRITE)
    project = normalize(request.path_params["project"])
    async with request.form(
        max_files=0, max_fields=10, max_part_size=MAX_STATUS_FORM_BYTES
    ) as form:
        value, reason = form.get("status", ""), form.get("reason", "")
    if not isinstance(value, str) or not isinstance(reason, str):
        raise BadRequest("The form fields 'status' and 'reason' must be text")
    wanted = status.checked_status(value.strip(), reason)
    await run_blocking(status.set_status, repo, project, wanted)
    detail = wanted.status + (f": {wanted.reason}" if wanted.reason else "")
    await run_blocking(audit.append, repo, "status", actor(request), project, None, None, detail)
    why = f" ({wanted.reason})" if wanted.reason else ""
    return PlainTextResponse(f"OK: {project} is {wanted.status}{why}\n")


#: The promote form: two short fields.
MAX_PROMOTE_FORM_BYTES = 8 * 1024


async def promote(request: Request) -> Response:
    """``POST /<project>/<version>/promote`` (the source's read or write secret), form
    fields ``to`` (the target repository) and ``to_secret`` (its write secret): copy the
    release there. ``200`` with JSON naming the files copied and those already there."""
    refuse_cross_site(request)
    source = await authorize(request, Access.READ)
    project = normalize(request.path_params["project"])
    version = request.path_params["version"]
    async with request.form(
        max_files=0, max_fields=10, max_part_size=MAX_PROMOTE_FORM_BYTES
    ) as form:
        to, to_secret = form.get("to", ""), form.get("to_secret", "")
    if not isinstance(to, str) or not isinstance(to_secret, str) or not to:
        raise BadRequest("Promote needs the form fields 'to' and 'to_secret'")
    target = await _authorize_target(request, to, to_secret)
    if target is source:
        raise BadRequest("The target repository is the source repository")
    done = await run_blocking(promote_release, source, target, project, version)
    who = actor(request)
    for record in done.copied:
        await run_blocking(
            audit.append, source, "promote_out", who, project, record.filename, record.sha256,
            f"to {target.name}",
        )  # fmt: skip
        await run_blocking(
            audit.append, target, "promote_in", audit.Actor("promote", who.address), project,
            record.filename, record.sha256, f"from {source.name}",
        )  # fmt: skip
    body = {
        "project": project,
        "version": version,
        "copied": [r.filename for r in done.copied],
        "unchanged": [r.filename for r in done.unchanged],
    }
    return JSONResponse(body)


async def _authorize_target(request: Request, name: str, secret: str) -> Repository:
    """The promotion's target when ``secret`` may write to it. An unknown repository and
    a wrong secret get the same answer, after the same work: neither tells whether the
    repository exists."""
    repositories: Repositories = request.app.state.repositories
    target = repositories.get(name)
    throttle: FailureThrottle = request.app.state.auth_throttle
    client = request.client.host if request.client else None
    access = target.cached_access(secret) if target is not None else None
    if access is None:
        throttle.check(client)
        if target is not None:
            access = await run_blocking(target.access, secret)
        else:
            compare_secrets(secret, None, UNKNOWN_TARGET_SECRET)
            access = Access.NONE
        if access is Access.NONE:
            throttle.failed(client)
    if target is None or access is not Access.WRITE:
        raise NotPermitted("The target repository does not exist or 'to_secret' cannot write to it")
    return target


#: Compared against for an unknown target, so that it costs what a known one does.
UNKNOWN_TARGET_SECRET = "x" * 64


async def refresh_upstream(request: Request) -> Response:
    """Drop the cached upstream page of a project (write secret): the next request asks
    upstream again. Cached files stay: they are checked against upstream's hashes."""
    refuse_cross_site(request)
    repo = await authorize(request, Access.WRITE)
    project = normalize(request.path_params["project"])
    if repo.upstream is None:
        raise BadRequest(f"Repository {repo.name!r} has no upstream index (upstream_url)")
    dropped = await run_blocking(repo.upstream.forget, project)
    state = "dropped" if dropped else "was not cached"
    return PlainTextResponse(f"OK: the upstream page of {project} {state}\n")


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
        raise BadRequest("POST /initialize/ needs a 'config' field or file (TOML)")
    proof = fields["initialize_secret"]
    credentials = parse_basic_auth(request.headers.get("authorization"))
    if proof is None and credentials is not None:
        proof = credentials.password
    peer = request.client.host if request.client else None  # trusted proxies' X-Forwarded-For
    throttle: FailureThrottle = request.app.state.auth_throttle
    throttle.check(peer)  # guessing --initialize_secret counts as guessing any secret
    try:
        names = await run_blocking(
            runtime.initialize, fields["config"], fields["admin_secret"] or "", proof, peer
        )
    except InitializeRefused:
        throttle.failed(peer)
        raise
    repositories: Repositories = request.app.state.repositories
    for name in names:
        repo = repositories.get(name)
        if repo is not None:
            await run_blocking(audit.append, repo, "initialize", audit.Actor("initialize", peer))
    return PlainTextResponse(f"OK: now serving {', '.join(names)}\n")


async def audit_log(request: Request) -> Response:
    """``GET /audit/?since=…`` (write secret): the repository's audit records as JSON
    lines, oldest first; ``since`` an ISO 8601 date or time, or epoch seconds (default:
    the last week)."""
    repo = await authorize(request, Access.WRITE)
    since = audit.parse_since(request.query_params.get("since"), time.time())
    lines = await run_blocking(lambda: b"".join(audit.read_since(repo, since)))
    return Response(
        lines,
        media_type="application/jsonl",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def refuse_cross_site(request: Request) -> None:
    # A browser holding basic-auth credentials for this server must not be made to post
    # from another site; packaging tools send no Origin header.
    origin = request.headers.get("origin")
    if not origin:
        return
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # e.g. "http://[": no URL at all
        raise BadRequest(
            f"The Origin header is not a URL: {origin[:100]!r} (send none, or this site's)"
        ) from None
    if netloc != request.headers.get("host"):
        raise NotPermitted("Cross-site requests that change a repository are refused")
