"""Pages for people: log in, the repository home, a project page; log out.

Server-rendered (Jinja2, autoescaped), no JavaScript at all: the pages carry a
Content-Security-Policy with ``script-src 'none'``, so even a description that slipped
through the sanitiser could not run a script. Descriptions are rendered from the stored
core metadata by readme-renderer (PyPI's renderer, sanitised with nh3).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from . import audit
from . import manage as manage_files
from .backend import Access
from .blocking import run_blocking
from .dists import normalize
from .errors import BackendError, BadRequest, FileMissing, NotFound, NotPermitted
from .metadata import read_stored_metadata
from .records import FileRecord
from .repository import Repositories, Repository
from .sessions import SessionSigner
from .status import STATUSES, checked_status, set_status
from .summaries import MAX_QUERY_CHARS, Search, latest_described
from .throttle import FailureThrottle

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src https: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _signer(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.sessions
    return signer


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("home", None)
    context.setdefault("logout", None)
    html = TEMPLATES.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def safe_next(target: str | None, default: str) -> str:
    """Only a local path: never another site (``//evil``, ``https://…``, ``\\\\evil``)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def site_url(request: Request, path: str = "") -> str:
    """``path`` (unencoded, relative to the app's root) as an absolute-path reference:
    no scheme, no host. Redirects and forms use these (RFC 9110 allows a relative
    ``Location``; pip, uv and poetry follow one), so the ``Host`` header a client sent is
    never reflected. The root is the one a trusted proxy gave (``X-Forwarded-Prefix``)."""
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    return path_reference(f"{root}/{path.lstrip('/')}")


def path_reference(path: str) -> str:
    """An unencoded absolute path as a URI reference: percent-encoded, and never
    ``//…``, which would name another host."""
    return "/" + quote(path.lstrip("/"), safe="/")


def home_url(request: Request) -> str:
    return site_url(request, "simple/")


# -- login / logout ----------------------------------------------------------------------


async def login(request: Request) -> Response:
    signer = _signer(request)
    next_url = safe_next(request.query_params.get("next"), home_url(request))
    if request.method != "POST":  # GET, or HEAD
        return _login_form(request, signer, next_url)
    async with request.form(max_files=0, max_fields=10) as form:
        fields = {k: str(v) for k, v in form.items()}
    next_url = safe_next(fields.get("next"), home_url(request))
    if not signer.csrf_valid(request, fields.get("csrf", "")):
        return _login_form(request, signer, next_url, 400, "The form expired; please log in again.")
    repositories: Repositories = request.app.state.repositories
    repo = repositories.get(fields.get("repo", "").strip())
    secret = fields.get("secret", "")
    access = repo.cached_access(secret) if repo is not None else None
    if access is None:  # the same throttle as basic auth (views.authorize)
        throttle: FailureThrottle = request.app.state.auth_throttle
        client = request.client.host if request.client else None
        throttle.check(client)
        access = Access.NONE
        if repo is not None:
            access = await run_blocking(repo.access, secret)
        if access is Access.NONE:
            throttle.failed(client)
    if access is Access.NONE:
        return _login_form(
            request,
            signer,
            next_url,
            401,
            "Wrong repository name or secret.",
            repo=fields.get("repo", ""),
        )
    assert repo is not None
    response = RedirectResponse(next_url, status_code=303)
    signer.issue(response, request, repo.name, access)
    return response


def _login_form(
    request: Request,
    signer: SessionSigner,
    next_url: str,
    status: int = 200,
    error: str | None = None,
    repo: str = "",
) -> Response:
    nonce, token = signer.csrf_token(request)
    response = _page(
        "login.html",
        status,
        title="Log in",
        csrf=token,
        next=next_url,
        error=error,
        repo=repo,
        action=site_url(request, "login/"),
    )
    signer.set_csrf_cookie(response, request, nonce)
    return response


async def logout(request: Request) -> Response:
    """GET: a page with one button, changing nothing (so a link or an image on another
    site cannot log anyone out); its POST ends the session on the server too, so a copy
    of the cookie stops working, and clears the cookie. A cross-site POST carries no
    session cookie (it is ``SameSite=Lax``), so it has nothing to end."""
    signer = _signer(request)
    session = signer.read(request)
    if request.method == "GET":
        return _page("logout.html", title="Log out", session_repo=session and session.repo)
    if session is not None:
        await run_blocking(signer.end, session)
    response = RedirectResponse(site_url(request, "login/"), status_code=303)
    SessionSigner.clear(response)
    return response


def not_found_page(request: Request, message: str) -> Response:
    """The 404 page for people: the message, and the way home."""
    return _page("not_found.html", 404, title="Not found", message=message, home=home_url(request))


async def root(request: Request) -> Response:
    return RedirectResponse(home_url(request), status_code=303)


# -- pages -------------------------------------------------------------------------------


#: Projects on one page of a repository's home page.
PAGE_ROWS = 100


def repository_home(request: Request, repo: Repository, access: Access) -> Response:
    """The projects, or those whose name or summary holds every word of ``q``, a page of
    ``PAGE_ROWS`` at a time (``page``). Summaries come from the repository's summary cache
    (never a backend call); projects it has not described yet are described in the
    background (``SummaryCache.fill_soon``). Only the page's projects are read from the
    index: at a million files the whole list took seconds to read and megabytes to send."""
    query = request.query_params.get("q", "")
    projects = repo.index.snapshot.projects
    error = None
    too_long = len(query) > MAX_QUERY_CHARS
    if too_long:  # no name or summary is that long: a mistake, said so
        error = f"The search is longer than {MAX_QUERY_CHARS} characters; shorten it."
        query = query[:MAX_QUERY_CHARS]
    page = _page_number(request.query_params.get("page", "1"))
    if page is None and error is None:
        error = "The page number must be a whole number from 1; the first page is shown."
    query = query.strip()
    search = Search.parse(query)
    matching = [] if too_long else _matching(repo, projects, search)
    pages = max(1, -(-len(matching) // PAGE_ROWS))
    page = min(page or 1, pages)
    rows = []
    for name in matching[(page - 1) * PAGE_ROWS : page * PAGE_ROWS]:
        records = projects.get(name) or ()
        if not records:
            continue  # gone since the list was read
        latest = max(records, key=lambda r: r.upload_time)
        rows.append(
            {
                "name": name,
                "version": latest.version,
                "uploaded": _when(latest),
                "summary": _summary(repo, name),
            }
        )
    repo.summaries.fill_soon()
    return _page(
        "home.html",
        400 if error else 200,
        title=repo.name,
        repo=repo.name,
        rows=rows,
        query=query,
        max_query=MAX_QUERY_CHARS,
        error=error,
        total=len(projects),
        matched=len(matching),
        first=(page - 1) * PAGE_ROWS + 1,
        previous=_page_link(query, page - 1) if page > 1 else None,
        next=_page_link(query, page + 1) if page < pages else None,
        access=access.name.lower(),
        home=home_url(request),
        logout=site_url(request, "logout/"),
    )


def _page_number(text: str) -> int | None:
    """``page`` as a number from 1, or ``None`` when it is not one."""
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1:
        return None
    return int(text)


def _summary(repo: Repository, name: str) -> str:
    # A quarantined project shows nothing from its files (as its page does).
    return "" if repo.status_of(name).hides_files else repo.summaries.summary(name)


def _matching(repo: Repository, projects: Mapping[str, Any], search: Search) -> list[str]:
    """The names of the projects ``search`` matches, in order (names and summaries are in
    memory: no project is read from the index)."""
    if not search.words:
        return list(projects)
    return [name for name in projects if search.matches(name, _summary(repo, name))]


def _page_link(query: str, page: int) -> str:
    parameters = {"q": query, "page": str(page)} if query else {"page": str(page)}
    return "?" + urlencode(parameters)


async def project_page(
    request: Request, repo: Repository, project: str, access: Access
) -> Response:
    status = repo.status_of(project)
    records = () if status.hides_files else repo.index.snapshot.files_of(project) or ()
    versions: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for record in reversed(records):  # newest first
        versions.setdefault(record.version, []).append(
            {
                "filename": record.filename,
                "url": quote(record.filename),
                "size": _size(record.size),
                "uploaded": _when(record),
                "sha256": record.sha256,
                "requires_python": record.requires_python,
                "yanked": record.yanked,
            }
        )
    latest = latest_described(records)
    described = Described()
    if latest is not None:
        described = await run_blocking(_description, repo, latest)
    index_url = str(request.base_url) + (
        f"r/{quote(repo.name)}/simple/" if request.path_params.get("repo") else "simple/"
    )
    scheme, separator, rest = index_url.partition("://")
    # No "://" where the Host (a trusted proxy's X-Forwarded-Host) was no host name.
    auth_url = f"{scheme}://{quote(repo.name)}:READ_SECRET@{rest}" if separator else index_url
    nonce, csrf = _signer(request).csrf_token(request)
    response = _page(
        "project.html",
        title=project,
        csrf=csrf,
        manage_url=site_url(request, f"manage/{quote(project)}/"),
        statuses=STATUSES,
        repo=repo.name,
        project=project,
        versions=versions,
        summary=described.summary,
        description=described.description,
        requires_dist=described.requires_dist,
        project_urls=described.project_urls,
        index_url=index_url,
        auth_url=auth_url,
        home=home_url(request),
        access=access.name.lower(),
        logout=site_url(request, "logout/"),
        latest_version=records[-1].version if records else "",
        project_status=status,
    )
    _signer(request).set_csrf_cookie(response, request, nonce)
    return response


async def manage(request: Request) -> Response:
    """``POST /manage/<project>/`` from the project page's forms (a write session and the
    page's CSRF token): ``action`` yank, unyank, delete (first answered by a confirmation
    page; done with ``confirm=yes``) or status. Then back to the project page."""
    signer = _signer(request)
    session = signer.read(request)
    if session is None or session.access < Access.WRITE:
        raise NotPermitted("Log in with the write secret to change a repository")
    repositories: Repositories = request.app.state.repositories
    repo = repositories.get(session.repo)
    if repo is None:
        raise NotPermitted("Log in with the write secret to change a repository")
    async with request.form(max_files=0, max_fields=10, max_part_size=16 * 1024) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not signer.csrf_valid(request, fields.get("csrf", "")):
        raise BadRequest("The form expired; reload the page and try again")
    project = normalize(request.path_params["project"])
    action, filename = fields.get("action", ""), fields.get("filename", "")
    who = audit.Actor("session", request.client.host if request.client else None)
    back = site_url(request, f"simple/{quote(project)}/")
    if action in ("yank", "unyank"):
        reason = fields.get("reason", "") if action == "yank" else None
        try:
            record = await run_blocking(repo.yank, project, filename, reason)
        except FileMissing:
            raise NotFound(f"File {filename!r} is not in project {project!r}") from None
        await run_blocking(
            audit.append, repo, action, who, project, filename, record.sha256, reason
        )
    elif action == "delete":
        if repo.index.snapshot.find(project, filename) is None:
            raise NotFound(f"File {filename!r} is not in project {project!r}")
        if fields.get("confirm") != "yes":
            return _page(
                "confirm_delete.html",
                title=f"Delete {filename}?",
                project=project,
                filename=filename,
                csrf=fields["csrf"],
                manage_url=site_url(request, f"manage/{quote(project)}/"),
                back=back,
                home=home_url(request),
                logout=site_url(request, "logout/"),
            )
        try:
            record = await run_blocking(manage_files.delete_file, repo, project, filename)
        except FileMissing:
            raise NotFound(f"File {filename!r} is not in project {project!r}") from None
        await run_blocking(audit.append, repo, "delete", who, project, filename, record.sha256)
        if repo.index.snapshot.files_of(project) is None:  # its last file: no page left
            back = home_url(request)
    elif action == "status":
        wanted = checked_status(fields.get("status", "").strip(), fields.get("reason"))
        await run_blocking(set_status, repo, project, wanted)
        detail = wanted.status + (f": {wanted.reason}" if wanted.reason else "")
        await run_blocking(audit.append, repo, "status", who, project, None, None, detail)
    else:
        raise BadRequest("Unknown action: one of yank, unyank, delete, status")
    return RedirectResponse(back, status_code=303)


@dataclass(frozen=True)
class Described:
    """What a project page shows from the latest file's core metadata."""

    summary: str | None = None
    description: Markup | None = None
    requires_dist: tuple[str, ...] = ()
    #: (label, URL) from Project-URL and Home-page; http(s) URLs only.
    project_urls: tuple[tuple[str, str], ...] = ()


_DESCRIPTIONS: OrderedDict[str, Described] = OrderedDict()
_DESCRIPTIONS_LOCK = threading.Lock()


def _description(repo: Repository, record: FileRecord) -> Described:
    """Summary, sanitised description, dependencies and links from the file's stored
    core metadata; cached by its hash."""
    key = record.core_metadata_sha256 or ""
    with _DESCRIPTIONS_LOCK:  # worker threads share the cache
        if key in _DESCRIPTIONS:
            return _DESCRIPTIONS[key]
    try:
        message = read_stored_metadata(repo.backend, record)
    except BackendError:
        return Described()
    summary = message.get("Summary")
    body = message.get_payload()
    text = body if isinstance(body, str) and body.strip() else message.get("Description", "")
    kind = (message.get("Description-Content-Type") or "text/x-rst").split(";")[0].strip()
    links = [("Homepage", str(message["Home-page"]))] if message.get("Home-page") else []
    for entry in message.get_all("Project-URL") or ():
        label, _, url = str(entry).partition(",")
        links.append((label.strip() or "Link", url.strip()))
    result = Described(
        summary,
        _render_description(str(text), kind) if str(text).strip() else None,
        tuple(str(r) for r in message.get_all("Requires-Dist") or ()),
        tuple((k, u) for k, u in links if urlsplit(u).scheme in ("http", "https")),
    )
    with _DESCRIPTIONS_LOCK:
        _DESCRIPTIONS[key] = result
        while len(_DESCRIPTIONS) > 1000:
            _DESCRIPTIONS.popitem(last=False)
    return result


def _render_description(text: str, kind: str) -> Markup:
    import readme_renderer.markdown
    import readme_renderer.rst
    import readme_renderer.txt

    rendered: str | None = None
    if kind == "text/markdown":
        rendered = readme_renderer.markdown.render(text)
    elif kind != "text/plain":
        rendered = readme_renderer.rst.render(text)
    if rendered is None:  # plain text, or reStructuredText that did not render
        rendered = readme_renderer.txt.render(text)
    return Markup(rendered)  # noqa: S704 (sanitised by readme-renderer's nh3 cleaner)


def _when(record: FileRecord) -> str:
    if not record.upload_time:
        return ""
    moment = dt.datetime.fromtimestamp(record.upload_time, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
