"""One index URL: an upstream index (PyPI, or any PEP 503/691 index) behind a repository.

Rules (``Upstream.serves``): a project with at least one private file is private and
upstream is never asked for it, unless it is listed in ``upstream_allow`` (then private
files win over upstream files of the same name); names matching ``upstream_deny`` are
never asked at all; every other project is served from upstream's page.

- **Pages** are asked as PEP 691 JSON (HTML accepted as a fallback, parsed by
  ``upstream_page``), kept in memory and under ROOT with their ``ETag``/``Last-Modified``,
  fresh for ``upstream_ttl`` seconds, then revalidated with a conditional GET. Upstream
  down or failing: the last good page is served (stale-if-error, said in the
  ``X-Pywharf-Upstream`` header); nothing cached: ``UpstreamUnavailable`` (503). A 404 is
  remembered for a minute at most (negative cache).
- **Files** are served from this server (URLs relative to the page, like private files).
  The first download streams from upstream to the client while it is written to a
  staging file; its sha256 is checked against the hash upstream declared before the file
  is committed to the cache, and the last chunk is held back until then: a mismatch or a
  broken stream commits nothing and the client's download breaks. Concurrent first
  downloads of one file wait for the first (fetched once); across servers the cache's
  create-only write keeps one copy. A file with no declared sha256 is passed through and
  not cached.
- **The cache** lives in the backend when it offers one (``put_cached``/``open_cached``:
  file_system and S3, shared by replicas), else under ROOT. Cached files never become the
  repository's own files.
- **Cooldown**: with ``upstream_cooldown`` > 0, files younger than that, or without an
  upload time, are not offered (a server-side "exclude newer" for every client).
Upstream credentials (in ``upstream_url``) are sent only to upstream's own host and never
appear in logs, pages or errors.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from . import dists
from .backend import Backend, FileStream, LocalFile, OpenedFile
from .config import RepoPolicy
from .errors import (
    BackendError,
    FileExists,
    FileMissing,
    InvalidFilename,
    InvalidMetadata,
    NotSupported,
    UpstreamUnavailable,
)
from .files import create_private, remove_dead_leftovers, replace_file, write_temp
from .pagecache import PageCache
from .records import FileRecord
from .upstream_page import (
    PageUnreadable,
    UpstreamPage,
    newer_api_version,
    offered_versions,
    parse_page,
    served_file,
    upload_time,
    upstream_metadata,
    upstream_sha256,
)

if TYPE_CHECKING:  # requests (7 MB) is imported only by a repository that has an upstream
    import requests

log = logging.getLogger(__name__)

ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
)
#: A project page larger than this from upstream is refused (memory stays bounded).
MAX_PAGE_BYTES = 64 * 1024 * 1024
#: How long "upstream has no such project" is believed.
NEGATIVE_TTL = 60
#: How long a download waits for a concurrent first download of the same file.
WAIT_FOR_FETCH = 600
CHUNK = 1024 * 1024
TIMEOUT = (5, 60)  # connect, read
MAX_PAGES_IN_MEMORY = 5_000
#: Longer project names are never asked of upstream (a page is kept in a file so named).
MAX_NAME = 200
UPSTREAM_STATE_HEADER = "X-Pywharf-Upstream"
#: Upstream connections kept open for reuse (waitress runs 16 worker threads by default).
POOL_SIZE = 32
#: A file request asks for the stored bytes, not a compressed form of them.
IDENTITY = {"Accept-Encoding": "identity"}
#: Seconds a client is told to wait after upstream refused this server's credentials.
REFUSED_RETRY_AFTER = 300
#: Temporary files here older than this are removed at start whoever wrote them.
LEFTOVER_SECONDS = 24 * 3600
#: The cache key suffix of core metadata derived here from a cached wheel.
DERIVED_SUFFIX = ".wharf-metadata"


@dataclass(frozen=True)
class Served:
    """A page as served: the upstream page, and whether it is stale (upstream failed)."""

    page: UpstreamPage
    stale: bool

    @property
    def state(self) -> str:
        return "stale" if self.stale else "fresh"


class Stats:
    """Counters reported by /metrics (``pywharf_upstream_*``)."""

    NAMES = (
        "requests",
        "errors",
        "revalidations",
        "stale_serves",
        "cache_hits",
        "cache_misses",
        "bytes",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(self.NAMES, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its user information, and that as (user, password)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    from urllib.parse import unquote

    return bare, (unquote(parts.username or ""), unquote(parts.password or ""))


class Upstream:
    """The upstream index of one repository, its page cache and its file cache."""

    def __init__(
        self, policy: RepoPolicy, backend: Backend, state_dir: Path, repo_name: str
    ) -> None:
        assert policy.upstream_url is not None
        base, self._auth = split_credentials(policy.upstream_url)
        self.url = base.rstrip("/") + "/"  # no credentials: safe to show
        self._origin = urlsplit(self.url)[:2]
        self.repo_name = repo_name
        self.ttl = policy.upstream_ttl
        self.cooldown = policy.upstream_cooldown
        self.allow = tuple(policy.upstream_allow)
        self.deny = tuple(policy.upstream_deny)
        self.stats = Stats()
        self._backend = backend
        self._pages_dir = state_dir / "upstream-pages"
        self._files_dir = state_dir / "upstream-files"  # when the backend keeps no cache
        self._backend_cache = type(backend).put_cached is not Backend.put_cached
        # What a killed server was writing here (a page, a download) is of no use.
        for folder in (self._pages_dir, self._files_dir):
            remove_dead_leftovers(folder, (".tmp-", ".upload-"), LEFTOVER_SECONDS)
        import requests

        self._session = _session()
        self._session.headers["User-Agent"] = "pywharf (upstream proxy)"
        # One pooled connection per worker thread that may ask upstream at once: with
        # requests' default of 10, a cold install's burst opens (and drops) connections.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._pages: OrderedDict[str, UpstreamPage] = OrderedDict()
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Event] = {}
        # Striped: one fetch per project at a time, in bounded memory whatever is asked.
        self._page_locks = [threading.Lock() for _ in range(64)]
        #: Rendered pages of upstream projects, valid while their UpstreamPage is.
        self.pages = PageCache()

    # -- which projects ------------------------------------------------------------------
    def denied(self, project: str) -> bool:
        return any(fnmatch.fnmatchcase(project, pattern) for pattern in self.deny)

    def allowed_to_mix(self, project: str) -> bool:
        return any(fnmatch.fnmatchcase(project, pattern) for pattern in self.allow)

    def serves(self, project: str, has_private: bool) -> bool:
        """Whether upstream is asked for ``project`` (normalized). A name that is no valid
        project name is never asked (nor used as a file name here)."""
        if not _valid_name(project) or self.denied(project):
            return False
        return not has_private or self.allowed_to_mix(project)

    # -- pages -----------------------------------------------------------------------------
    def fresh_page(self, project: str) -> Served | None:
        """The page of ``project`` when it is in memory and fresh, without blocking (the
        warm path: no worker-thread hop); ``None`` when ``page`` must be asked. Raises
        ``FileMissing`` for a fresh negative answer."""
        with self._lock:
            cached = self._pages.get(project)
        if cached is None:
            return None
        ttl = min(self.ttl, NEGATIVE_TTL) if cached.missing else self.ttl
        if time.time() - cached.fetched_at >= ttl:
            return None
        return self._answer(cached, stale=False)

    def page(self, project: str) -> Served:
        """Upstream's page for ``project``: fresh, revalidated, or stale when upstream
        fails. Raises ``FileMissing`` when upstream has no such project, and
        ``UpstreamUnavailable`` when upstream fails with nothing cached. Blocking."""
        lock = self._page_locks[hash(project) % len(self._page_locks)]
        with lock:  # one fetch per project at a time; the others get its result
            cached = self._cached_page(project)
            now = time.time()
            if cached is not None:
                ttl = min(self.ttl, NEGATIVE_TTL) if cached.missing else self.ttl
                if now - cached.fetched_at < ttl:
                    return self._answer(cached, stale=False)
            try:
                page = self._fetch_page(project, cached)
            except _UpstreamFailed as exc:
                self.stats.add("errors")
                if cached is not None and not cached.missing:
                    self.stats.add("stale_serves")
                    log.warning(
                        "%s: upstream failed for %s (%s); serving the page of %s",
                        self.repo_name,
                        project,
                        exc,
                        dt.datetime.fromtimestamp(cached.fetched_at, dt.timezone.utc).isoformat(),
                    )
                    return Served(cached, stale=True)
                if exc.refused:  # waiting will not mend it: the operator must
                    raise UpstreamUnavailable(
                        f"The upstream index refused this server's request for {project!r} "
                        f"({exc}): {self._refusal_hint()}",
                        status=exc.status,
                        retry_after=REFUSED_RETRY_AFTER,
                    ) from None
                raise UpstreamUnavailable(
                    f"The upstream index is unavailable for {project!r} ({exc}) and "
                    "nothing is cached; try again later",
                    status=exc.status,
                ) from None
            with self._lock:  # derived metadata noted meanwhile is kept too
                latest = self._pages.get(project) or cached
            if latest is not None and latest.derived and page is not latest:
                page = _carry_derived(page, latest)
            self._keep_page(page)
            return self._answer(page, stale=False)

    def _refusal_hint(self) -> str:
        """What to mend when upstream answers 401 or 403 (a 403 may also be a firewall's)."""
        if self._auth is None:
            return "if it needs credentials, give them in upstream_url"
        return "the credentials in upstream_url are wrong or lack access"

    def _answer(self, page: UpstreamPage, *, stale: bool) -> Served:
        if page.missing:
            raise FileMissing(page.project)
        return Served(page, stale)

    def forget(self, project: str) -> bool:
        """Drop the cached page of ``project``; the next request asks upstream."""
        if not _valid_name(project):
            return False
        with self._lock:
            known = self._pages.pop(project, None) is not None
        try:
            self._page_path(project).unlink()
        except FileNotFoundError:
            return known
        return True

    def _cached_page(self, project: str) -> UpstreamPage | None:
        with self._lock:
            page = self._pages.get(project)
            if page is not None:
                self._pages.move_to_end(project)
                return page
        try:
            page = UpstreamPage.from_json(self._page_path(project).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self._remember(page)
        return page

    def _keep_page(self, page: UpstreamPage) -> None:
        self._remember(page)
        if page.missing:
            return  # a negative answer lives in memory only: unknown names fill no disk
        try:
            # Not fsynced: a page cut short by a crash does not parse and is asked again.
            replace_file(self._page_path(page.project), page.to_json().encode("utf-8"), False)
        except OSError as exc:  # the in-memory copy serves; a restart asks again
            log.warning(
                "%s: cannot keep the upstream page of %s: %s", self.repo_name, page.project, exc
            )

    def _remember(self, page: UpstreamPage) -> None:
        with self._lock:
            self._pages[page.project] = page
            self._pages.move_to_end(page.project)
            while len(self._pages) > MAX_PAGES_IN_MEMORY:
                self._pages.popitem(last=False)

    def _page_path(self, project: str) -> Path:
        return self._pages_dir / f"{project}.json"  # project is a normalized name

    def _fetch_page(self, project: str, cached: UpstreamPage | None) -> UpstreamPage:
        import requests

        url = f"{self.url}{quote(project)}/"
        headers = {"Accept": ACCEPT}
        if cached is not None and not cached.missing:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
            self.stats.add("revalidations")
        self.stats.add("requests")
        try:
            response = self._session.get(
                url, headers=headers, auth=self._auth_for(url), timeout=TIMEOUT, stream=True
            )
        except requests.RequestException as exc:
            raise _UpstreamFailed(type(exc).__name__) from None
        with response:
            now = time.time()
            if response.status_code == 304 and cached is not None and not cached.missing:
                return replace(cached, fetched_at=now)
            if response.status_code == 404:
                return UpstreamPage(project, {}, None, None, now, missing=True)
            if response.status_code != 200:
                raise _UpstreamFailed(f"HTTP {response.status_code}", response.status_code)
            body = _read_capped(response)
            content_type = response.headers.get("Content-Type", "")
            final_url = _without_credentials(response.url)
        try:
            data = parse_page(project, body, content_type, final_url)
        except PageUnreadable as exc:
            raise _UpstreamFailed(str(exc)) from None
        return UpstreamPage(
            project,
            data,
            response.headers.get("ETag"),
            response.headers.get("Last-Modified"),
            now,
        )

    def _auth_for(self, url: str) -> tuple[str, str] | None:
        # Credentials go to upstream's own scheme and host only, never to a file host.
        return self._auth if self._at_origin(url) else None

    def _at_origin(self, url: str) -> bool:
        """Whether ``url`` is on upstream's own scheme and host (not a file host)."""
        return urlsplit(url)[:2] == self._origin

    # -- what is offered ---------------------------------------------------------------------
    def visible_files(self, page: UpstreamPage) -> list[dict[str, Any]]:
        """The page's files that may be offered: valid names, and past the cooldown."""
        files = [f for f in page.data.get("files", []) if isinstance(f, dict)]
        return [f for f in files if self._visible(f)] if self.cooldown > 0 else files

    def _visible(self, item: dict[str, Any]) -> bool:
        if self.cooldown <= 0:
            return True
        moment = upload_time(item)
        return moment is not None and moment <= time.time() - self.cooldown

    def page_data(
        self, served: Served, private: tuple[FileRecord, ...], api_version: str
    ) -> dict[str, Any]:
        """Our PEP 691 page for a project served from upstream (and its private files,
        for projects allowed to mix): every key upstream gave is kept, file URLs point
        at this server."""
        from .simple import file_data

        page = served.page
        taken = {record.filename for record in private}
        files = [file_data(record) for record in private]
        visible = self.visible_files(page)
        for item in visible:
            if item["filename"] not in taken:
                files.append(served_file(item, page.derived.get(item["filename"])))
        data = {k: v for k, v in page.data.items() if k not in ("meta", "name", "files")}
        meta = dict(page.data.get("meta") or {})
        meta["api-version"] = newer_api_version(str(meta.get("api-version", "1.0")), api_version)
        data["meta"] = meta
        data["name"] = page.project
        data["files"] = files
        data["versions"] = offered_versions(page.data, files, visible)
        return data

    def file_opener(
        self, page: UpstreamPage, filename: str, *, metadata: bool = False, head: bool = False
    ) -> tuple[Callable[[], OpenedFile], str | None] | None:
        """How to open a file the page offers (or its core metadata: upstream's, or the
        one derived here), with its sha256 when known; ``None`` when not offered. With
        ``head`` (a HEAD request) a file not cached yet is not fetched for it."""
        item = page.by_filename.get(filename)
        if item is None or not self._visible(item):
            return None
        if not metadata or upstream_metadata(item):
            opener = partial(self.open_file, page.project, item, metadata=metadata, head=head)
            return opener, upstream_sha256(item, metadata)
        derived = page.derived.get(filename)
        if derived is None:
            return None
        return partial(self._open_derived, f"{page.project}/{filename}{DERIVED_SUFFIX}"), derived

    # -- files -----------------------------------------------------------------------------
    def open_file(
        self, project: str, item: dict[str, Any], *, metadata: bool = False, head: bool = False
    ) -> OpenedFile:
        """The cached copy of an upstream file (or of its core metadata), fetching and
        caching it first if needed. Raises ``FileMissing``, ``UpstreamUnavailable``.
        With ``head``, a file not cached is not fetched: an empty stream, with the size
        the page declares (PEP 700) if it declares one."""
        filename = str(item["filename"])
        key = f"{project}/{filename}" + (".metadata" if metadata else "")
        expected = upstream_sha256(item, metadata)
        url = str(item["url"]) + (".metadata" if metadata else "")
        if head:  # not counted as a hit or a miss: its GET will be
            opened = self._open_cached(key) if expected is not None else None
            if opened is not None:
                return opened
            declared = _declared_size(item, metadata)
            if declared is None:  # an HTML page: upstream's HEAD says it, with no body sent
                declared = self._head_size(url, filename)
            return FileStream(iter(()), declared)
        if expected is None:  # nothing to check against: passed through, not cached
            self.stats.add("cache_misses")
            return self._pass_through(url, filename)
        derive = not metadata and filename.endswith(".whl") and not upstream_metadata(item)
        while True:
            opened = self._open_cached(key)
            if opened is not None:
                self.stats.add("cache_hits")
                if (
                    derive
                    and isinstance(opened, LocalFile)
                    and not self._derived(project, filename)
                ):
                    self._derive_metadata(key, opened.path)  # cached by another server
                return opened
            with self._lock:
                event = self._fetching.get(key)
                if event is None:
                    event = self._fetching[key] = threading.Event()
                    break  # this request fetches
            if not event.wait(WAIT_FOR_FETCH):
                raise UpstreamUnavailable("The upstream file is still being fetched; try again")
            if self._open_cached(key) is not None:
                continue
            # The first fetch failed: this request tries on its own.
            with self._lock:
                if key not in self._fetching:
                    self._fetching[key] = event = threading.Event()
                    break
        self.stats.add("cache_misses")
        try:
            response = self._get_file(url, filename)
        except BaseException:
            self._done(key, event)
            raise
        length = _stored_length(response)
        try:
            chunks = self._tee(response, key, expected, event, derive)
        except BaseException:
            response.close()
            self._done(key, event)
            raise
        return FileStream(chunks, length, chunks.close)

    def _open_derived(self, key: str) -> OpenedFile:
        opened = self._open_cached(key)
        if opened is None:
            raise FileMissing(key.rsplit("/", 1)[-1].removesuffix(DERIVED_SUFFIX) + ".metadata")
        return opened

    def _derived(self, project: str, filename: str) -> bool:
        with self._lock:
            page = self._pages.get(project)
        return page is None or filename in page.derived

    def _derive_metadata(self, key: str, wheel: Path) -> None:
        """Extract the core metadata of a verified cached wheel upstream gave none for,
        cache it, and offer it on the project's page (PEP 658): clients then resolve
        from it as from a private file's, instead of HEAD and range requests."""
        project, filename = key.split("/", 1)
        try:
            raw = dists.read_core_metadata(wheel, dists.parse_filename(filename)).raw
        except (InvalidFilename, InvalidMetadata, OSError):
            return  # offered without metadata, as upstream offers it
        if raw is None:
            return
        staged: Path | None = None
        try:
            # Not fsynced here: put_cached makes it durable before it is visible.
            staged = write_temp(self._staging_dir(), raw, durable=False)
            self._put_cached(key + DERIVED_SUFFIX, staged)
        except (OSError, BackendError) as exc:
            log.warning("%s: cannot cache the core metadata of %s: %s", self.repo_name, key, exc)
            return
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        self._note_derived(project, filename, dists.sha256_bytes(raw))

    def _note_derived(self, project: str, filename: str, sha256: str) -> None:
        with self._lock:
            page = self._pages.get(project)
            if page is None or page.missing or filename not in page.by_filename:
                return
            if page.derived.get(filename) == sha256:
                return
            page = replace(page, derived={**page.derived, filename: sha256})
            self._pages[project] = page
            try:  # under the lock: a newer page kept meanwhile is never overwritten
                replace_file(self._page_path(project), page.to_json().encode("utf-8"), False)
            except OSError:
                pass  # the in-memory page offers it; a restart derives it again

    def _open_cached(self, key: str) -> OpenedFile | None:
        try:
            if self._backend_cache:
                return self._backend.open_cached(key)
            path = self._files_dir / key
            return LocalFile(path) if path.is_file() else None
        except (FileMissing, NotSupported):
            return None

    def _put_cached(self, key: str, staged: Path) -> None:
        try:
            if self._backend_cache:
                self._backend.put_cached(key, staged)
                return
            target = self._files_dir / key
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(staged, target)
        except (FileExists, FileExistsError):
            pass  # another server (or request) stored the same verified bytes first

    def _staging_dir(self) -> Path:
        return self._backend.staging_dir() if self._backend_cache else self._files_dir

    def _get_file(self, url: str, what: str) -> requests.Response:
        """Upstream's answer to a GET of a file, streamed. Raises ``FileMissing``,
        ``UpstreamUnavailable``."""
        response = self._ask("GET", url, what)
        self._check(response, what)
        return response

    def _head_size(self, url: str, what: str) -> int | None:
        """The size of an upstream file as upstream's answer to a HEAD gives it; ``None``
        when it gives none or answers no HEAD (the download will tell). Raises as a GET
        would: ``FileMissing``, ``UpstreamUnavailable``."""
        with self._ask("HEAD", url, what) as response:
            status = response.status_code
            # 405 or 501, or 400/403 from a file host (a link presigned for GET alone):
            # only "no HEAD here"; it answers GETs all the same.
            if status in (405, 501) or (status in (400, 403) and not self._at_origin(response.url)):
                return None
            self._check(response, what)
            length = _stored_length(response)
        return length or None  # a HEAD that says 0 says nothing of the file

    def _ask(self, method: str, url: str, what: str) -> requests.Response:
        """Upstream's answer, whatever its status. Raises ``UpstreamUnavailable`` when
        upstream cannot be reached."""
        import requests

        self.stats.add("requests")
        try:
            # Redirects are followed (for HEAD too); credentials never leave upstream's host.
            # The bytes as stored: a Content-Encoding would make the length forwarded to
            # the client that of other bytes than the ones relayed. A HEAD's empty body is
            # read at once, so that its connection goes back to the pool.
            return self._session.request(
                method,
                url,
                auth=self._auth_for(url),
                headers=IDENTITY,
                timeout=TIMEOUT,
                stream=method != "HEAD",
            )
        except requests.RequestException as exc:
            self.stats.add("errors")
            raise UpstreamUnavailable(
                f"The upstream index is unavailable for {what} ({type(exc).__name__})"
            ) from None

    def _check(self, response: requests.Response, what: str) -> None:
        """Raise ``FileMissing`` (404) or ``UpstreamUnavailable`` (any other status but
        200) for an upstream answer, closing it."""
        status = response.status_code
        if status == 200:
            return
        response.close()
        if status == 404:
            raise FileMissing(what)
        self.stats.add("errors")
        hint, retry_after = "", 30
        if status in (401, 403) and self._at_origin(response.url):
            hint, retry_after = f": {self._refusal_hint()}", REFUSED_RETRY_AFTER
        raise UpstreamUnavailable(
            f"The upstream index answered {status} for {what}{hint}",
            status=status,
            retry_after=retry_after,
        )

    def _pass_through(self, url: str, what: str) -> FileStream:
        response = self._get_file(url, what)

        def chunks() -> Iterator[bytes]:
            with response:
                for chunk in response.iter_content(CHUNK):
                    self.stats.add("bytes", len(chunk))
                    yield chunk

        return FileStream(chunks(), _stored_length(response), response.close)

    def _tee(
        self,
        response: requests.Response,
        key: str,
        expected: str,
        event: threading.Event,
        derive: bool,
    ) -> _Tee:
        """The download as it passes to the client, written to a staging file; with no
        staging file to be had (a full disk, the folder gone) relayed uncached, its
        sha256 checked all the same."""
        try:
            fd, name = create_private(self._staging_dir(), ".upload-", ".part")
        except OSError as exc:
            log.warning("%s: cannot stage %s for the cache: %s", self.repo_name, key, exc)
            return _Tee(self, response, key, expected, None, None, event)
        tee = _Tee(self, response, key, expected, Path(name), os.fdopen(fd, "wb"), event)
        tee.derive = derive
        return tee

    def _done(self, key: str, event: threading.Event) -> None:
        with self._lock:
            if self._fetching.get(key) is event:
                del self._fetching[key]
        event.set()


class _Tee:
    """The chunks of an upstream download, written to staging as they pass; the last is
    held back until the sha256 is checked and the file committed."""

    def __init__(
        self,
        upstream: Upstream,
        response: requests.Response,
        key: str,
        expected: str,
        staged: Path | None,
        handle: Any,
        event: threading.Event,
    ) -> None:
        """``staged`` and ``handle`` are ``None`` for a download relayed uncached."""
        self._upstream = upstream
        self._response = response
        self._key = key
        self._expected = expected
        self._staged = staged
        self._handle = handle
        self._event = event
        self._chunks = self._run()
        self._closed = False
        self.derive = False

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def __next__(self) -> bytes:
        return next(self._chunks)

    def _run(self) -> Iterator[bytes]:
        import requests

        hashes = dists.Hashes()
        held: bytes | None = None
        try:
            for chunk in self._response.iter_content(CHUNK):
                if not chunk:
                    continue
                hashes.update(chunk)
                if self._handle is not None:
                    self._handle.write(chunk)
                self._upstream.stats.add("bytes", len(chunk))
                if held is not None:
                    yield held
                held = chunk
            if self._handle is not None:
                self._handle.close()
            actual = hashes.hexdigests()["sha256_digest"]
            if actual != self._expected:
                log.error(
                    "%s: upstream sent %s with sha256 %s, its page declares %s: not cached, "
                    "download broken off",
                    self._upstream.repo_name,
                    self._key,
                    actual,
                    self._expected,
                )
                self._upstream.stats.add("errors")
                raise UpstreamUnavailable(
                    f"upstream sent other bytes than declared for {self._key}"
                )
            # Committed before the last chunk: a download that starts (here or on another
            # replica) after this one ended finds the file in the cache.
            committed = self._staged is not None and self._commit(self._staged)
            if held is not None:
                yield held
            if committed and self.derive and self._staged is not None:
                # The client has every byte: it waits for nothing.
                self._upstream._derive_metadata(self._key, self._staged)
        except requests.RequestException as exc:
            self._upstream.stats.add("errors")
            raise UpstreamUnavailable(f"the upstream download of {self._key} broke off") from exc
        finally:
            self.close()

    def _commit(self, staged: Path) -> bool:
        try:
            self._upstream._put_cached(self._key, staged)
        except (OSError, BackendError) as exc:  # served, not kept: the next download asks again
            log.warning("%s: cannot cache %s: %s", self._upstream.repo_name, self._key, exc)
            return False
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        if self._staged is not None:
            self._staged.unlink(missing_ok=True)
        self._response.close()
        self._upstream._done(self._key, self._event)


class _UpstreamFailed(Exception):
    """Upstream gave no usable page; ``status`` is its HTTP status when it answered."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status

    @property
    def refused(self) -> bool:
        """Upstream refused the credentials (or their absence): 401 or 403."""
        return self.status in (401, 403)


def _carry_derived(page: UpstreamPage, earlier: UpstreamPage) -> UpstreamPage:
    """A new page keeps the metadata derived for files upstream still offers with the
    same sha256 and still gives no metadata for."""
    kept = {}
    for filename, digest in earlier.derived.items():
        before, now = earlier.by_filename.get(filename), page.by_filename.get(filename)
        if before is None or now is None or upstream_metadata(now):
            continue
        if upstream_sha256(before, False) == upstream_sha256(now, False) is not None:
            kept[filename] = digest
    return replace(page, derived=kept) if kept else page


def _session() -> requests.Session:
    """A requests session that reads the environment's settings for a host (proxies and
    no_proxy, the CA bundle) once, not on every request: requests scans every
    environment variable twice a request for them (~150 us of the ~900 us of a request
    to a loopback upstream here, ~60 requests a cold install of 30 projects). The
    server's environment does not change while it runs. What a call passes itself, and
    redirects, are left to requests."""
    import requests

    class Session(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self._by_host: dict[tuple[str, str], dict[str, Any]] = {}

        def merge_environment_settings(
            self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
        ) -> dict[str, Any]:
            if proxies or verify is not None or cert is not None or not self.trust_env:
                return super().merge_environment_settings(url, proxies, stream, verify, cert)
            host = tuple(urlsplit(url)[:2])
            settings = self._by_host.get(host)
            if settings is None:
                settings = super().merge_environment_settings(url, {}, None, None, None)
                if len(self._by_host) < 1024:  # file hosts are few; never unbounded
                    self._by_host[host] = settings
            return {**settings, "proxies": dict(settings["proxies"]), "stream": stream}

    return Session()


def _stored_length(response: requests.Response) -> int | None:
    """The length of the stored bytes an upstream answer gives, if it gives it: not when
    they come encoded (asked for ``identity``, some servers send ``.tar.gz`` gzipped)."""
    if response.headers.get("Content-Encoding", "identity").strip().lower() not in (
        "",
        "identity",
    ):
        return None
    size = response.headers.get("Content-Length", "")
    return int(size) if size.isdigit() else None


def _declared_size(item: dict[str, Any], metadata: bool) -> int | None:
    """The size of a file as its upstream page declares it (PEP 700), if it does."""
    size = item.get("size")
    if metadata or isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return None
    return size


def _valid_name(project: str) -> bool:
    if len(project) > MAX_NAME:  # it names a file here
        return False
    try:
        dists.check_project_name(project)
    except InvalidMetadata:
        return False
    return True


def _read_capped(response: requests.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_content(CHUNK):
        body += chunk
        if len(body) > MAX_PAGE_BYTES:
            raise _UpstreamFailed(f"a page larger than {MAX_PAGE_BYTES} bytes")
    return bytes(body)


def _without_credentials(url: str) -> str:
    return split_credentials(url)[0]


class UpstreamCollector:
    """Prometheus collector: the upstream counters of every repository with an upstream,
    read at scrape time (``pywharf_upstream_<counter>_total{repo=…}``)."""

    def __init__(self, repositories: Callable[[], Iterable[Any]]) -> None:
        self._repositories = repositories

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        families = {
            name: CounterMetricFamily(
                f"pywharf_upstream_{name}",
                f"Upstream index: {name.replace('_', ' ')}",
                labels=["repo"],
            )
            for name in Stats.NAMES
        }
        for repo in self._repositories():
            upstream = getattr(repo, "upstream", None)
            if upstream is None:
                continue
            for name, value in upstream.stats.counts.items():
                families[name].add_metric([repo.name], value)
        yield from families.values()

    def describe(self) -> Iterator[Any]:
        return iter(())
