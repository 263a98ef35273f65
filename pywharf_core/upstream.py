"""One index URL: an upstream index (PyPI, or any PEP 503/691 index) behind a repository.

Rules (``Upstream.serves``): a project with at least one private file is private and
upstream is never asked for it, unless it is listed in ``upstream_allow`` (then private
files win over upstream files of the same name); names matching ``upstream_deny`` are
never asked at all; every other project is served from upstream's page.

- **Pages** are asked as PEP 691 JSON (HTML accepted as a fallback, parsed by
  ``pypi_simple``), kept in memory and under ROOT with their ``ETag``/``Last-Modified``,
  fresh for ``upstream_ttl`` seconds, then revalidated with a conditional GET. Upstream
  down or failing: the last good page is served (stale-if-error, said in the
  ``X-Pywharf-Upstream`` header); nothing cached: ``BackendUnavailable`` (503). A 404 is
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

import datetime as dt
import fnmatch
import json
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from . import dists
from .backend import Backend, FileStream, LocalFile, OpenedFile
from .config import RepoPolicy
from .errors import (
    BackendUnavailable,
    FileExists,
    FileMissing,
    InvalidFilename,
    InvalidMetadata,
    NotSupported,
)
from .files import leftover_prefix, replace_file
from .pagecache import PageCache
from .records import FileRecord

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


@dataclass(frozen=True)
class UpstreamPage:
    """Upstream's answer for one project, PEP 691-shaped (``files`` carry absolute
    upstream URLs), with what revalidation needs."""

    project: str
    data: dict[str, Any]
    etag: str | None
    last_modified: str | None
    fetched_at: float
    missing: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "project": self.project,
                "data": self.data,
                "etag": self.etag,
                "last_modified": self.last_modified,
                "fetched_at": self.fetched_at,
                "missing": self.missing,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> UpstreamPage:
        raw = json.loads(text)
        return cls(
            str(raw["project"]),
            dict(raw["data"]),
            raw.get("etag"),
            raw.get("last_modified"),
            float(raw["fetched_at"]),
            bool(raw.get("missing", False)),
        )


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
        import requests

        self._session = requests.Session()
        self._session.headers["User-Agent"] = "pywharf (upstream proxy)"
        self._pages: OrderedDict[str, UpstreamPage] = OrderedDict()
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Event] = {}
        # Striped: one fetch per project at a time, in bounded memory whatever is asked.
        self._page_locks = [threading.Lock() for _ in range(64)]
        #: Rendered pages of upstream projects, valid while their UpstreamPage is.
        self.pages = PageCache()
        # pypi_simple (HTML pages) takes a second or more to import: not on a request.
        threading.Thread(target=_import_html_parser, name="import-pypi-simple", daemon=True).start()

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
    def page(self, project: str) -> Served:
        """Upstream's page for ``project``: fresh, revalidated, or stale when upstream
        fails. Raises ``FileMissing`` when upstream has no such project, and
        ``BackendUnavailable`` when upstream fails with nothing cached. Blocking."""
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
                raise BackendUnavailable(
                    f"The upstream index is unavailable for {project!r} and nothing is "
                    "cached; try again later",
                    retry_after=30,
                ) from None
            self._keep_page(page)
            return self._answer(page, stale=False)

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
            replace_file(self._page_path(page.project), page.to_json().encode("utf-8"))
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
                raise _UpstreamFailed(f"HTTP {response.status_code}")
            body = _read_capped(response)
            content_type = response.headers.get("Content-Type", "")
            final_url = _without_credentials(response.url)
        data = _parse_page(project, body, content_type, final_url)
        return UpstreamPage(
            project,
            data,
            response.headers.get("ETag"),
            response.headers.get("Last-Modified"),
            now,
        )

    def _auth_for(self, url: str) -> tuple[str, str] | None:
        # Credentials go to upstream's own scheme and host only, never to a file host.
        return self._auth if urlsplit(url)[:2] == self._origin else None

    # -- what is offered ---------------------------------------------------------------------
    def visible_files(self, page: UpstreamPage) -> list[dict[str, Any]]:
        """The page's files that may be offered: valid names, and past the cooldown."""
        files = [f for f in page.data.get("files", []) if isinstance(f, dict)]
        if self.cooldown <= 0:
            return files
        cutoff = time.time() - self.cooldown
        return [f for f in files if (moment := _upload_time(f)) is not None and moment <= cutoff]

    def find_file(self, project: str, filename: str) -> dict[str, Any] | None:
        served = self.page(project)
        for item in self.visible_files(served.page):
            if item.get("filename") == filename:
                return item
        return None

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
        for item in self.visible_files(page):
            if item["filename"] not in taken:
                files.append(_served_file(item))
        data = {k: v for k, v in page.data.items() if k not in ("meta", "name", "files")}
        meta = dict(page.data.get("meta") or {})
        meta["api-version"] = _newer_version(str(meta.get("api-version", "1.0")), api_version)
        data["meta"] = meta
        data["name"] = page.project
        data["files"] = files
        data["versions"] = _versions(page.data, files, self.visible_files(page))
        return data

    # -- files -----------------------------------------------------------------------------
    def open_file(
        self, project: str, item: dict[str, Any], *, metadata: bool = False
    ) -> OpenedFile:
        """The cached copy of an upstream file (or of its core metadata), fetching and
        caching it first if needed. Raises ``FileMissing``, ``BackendUnavailable``."""
        filename = str(item["filename"])
        key = f"{project}/{filename}" + (".metadata" if metadata else "")
        expected = upstream_sha256(item, metadata)
        url = str(item["url"]) + (".metadata" if metadata else "")
        if expected is None:  # nothing to check against: passed through, not cached
            self.stats.add("cache_misses")
            return self._pass_through(url, filename)
        while True:
            opened = self._open_cached(key)
            if opened is not None:
                self.stats.add("cache_hits")
                return opened
            with self._lock:
                event = self._fetching.get(key)
                if event is None:
                    event = self._fetching[key] = threading.Event()
                    break  # this request fetches
            if not event.wait(WAIT_FOR_FETCH):
                raise BackendUnavailable("The upstream file is still being fetched; try again")
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
        size = response.headers.get("Content-Length")
        chunks = self._tee(response, key, expected, event)
        return FileStream(chunks, int(size) if size and size.isdigit() else None, chunks.close)

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
        folder = self._backend.staging_dir() if self._backend_cache else self._files_dir
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _get_file(self, url: str, what: str) -> requests.Response:
        import requests

        self.stats.add("requests")
        try:
            response = self._session.get(
                url, auth=self._auth_for(url), timeout=TIMEOUT, stream=True
            )
        except requests.RequestException as exc:
            self.stats.add("errors")
            raise BackendUnavailable(
                f"The upstream index is unavailable for {what} ({type(exc).__name__})"
            ) from None
        if response.status_code == 404:
            response.close()
            raise FileMissing(what)
        if response.status_code != 200:
            response.close()
            self.stats.add("errors")
            raise BackendUnavailable(
                f"The upstream index answered {response.status_code} for {what}"
            )
        return response

    def _pass_through(self, url: str, what: str) -> FileStream:
        response = self._get_file(url, what)
        size = response.headers.get("Content-Length")

        def chunks() -> Iterator[bytes]:
            with response:
                for chunk in response.iter_content(CHUNK):
                    self.stats.add("bytes", len(chunk))
                    yield chunk

        return FileStream(chunks(), int(size) if size and size.isdigit() else None, response.close)

    def _tee(
        self, response: requests.Response, key: str, expected: str, event: threading.Event
    ) -> _Tee:
        fd, name = tempfile.mkstemp(
            dir=self._staging_dir(), prefix=leftover_prefix(".upload-"), suffix=".part"
        )
        return _Tee(self, response, key, expected, Path(name), os.fdopen(fd, "wb"), event)

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
        staged: Path,
        handle: Any,
        event: threading.Event,
    ) -> None:
        self._upstream = upstream
        self._response = response
        self._key = key
        self._expected = expected
        self._staged = staged
        self._handle = handle
        self._event = event
        self._chunks = self._run()
        self._closed = False

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
                self._handle.write(chunk)
                self._upstream.stats.add("bytes", len(chunk))
                if held is not None:
                    yield held
                held = chunk
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
                raise BackendUnavailable(f"upstream sent other bytes than declared for {self._key}")
            self._upstream._put_cached(self._key, self._staged)
            if held is not None:
                yield held
        except requests.RequestException as exc:
            self._upstream.stats.add("errors")
            raise BackendUnavailable(f"the upstream download of {self._key} broke off") from exc
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._handle.close()
        except OSError:
            pass
        self._staged.unlink(missing_ok=True)
        self._response.close()
        self._upstream._done(self._key, self._event)


class _UpstreamFailed(Exception):
    pass


def _valid_name(project: str) -> bool:
    if len(project) > MAX_NAME:  # it names a file here
        return False
    try:
        dists.check_project_name(project)
    except InvalidMetadata:
        return False
    return True


def _import_html_parser() -> None:
    import pypi_simple  # noqa: F401


def _read_capped(response: requests.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_content(CHUNK):
        body += chunk
        if len(body) > MAX_PAGE_BYTES:
            raise _UpstreamFailed(f"a page larger than {MAX_PAGE_BYTES} bytes")
    return bytes(body)


def _without_credentials(url: str) -> str:
    return split_credentials(url)[0]


def _parse_page(project: str, body: bytes, content_type: str, page_url: str) -> dict[str, Any]:
    """Upstream's project page as a PEP 691 dict whose file URLs are absolute; files whose
    names are not valid distribution filenames are dropped."""
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            raise _UpstreamFailed("a JSON page that does not parse") from None
        if not isinstance(data, dict) or not isinstance(data.get("files", []), list):
            raise _UpstreamFailed("a JSON page without a files list")
    else:
        data = _html_page(project, body, page_url)
    files = []
    for item in data.get("files", []):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        try:
            dists.parse_filename(str(item.get("filename", "")))
        except InvalidFilename:
            continue
        item = dict(item)
        item["url"] = urljoin(page_url, item["url"])
        # Known keys are rendered into HTML too: keep them only in the types PEP 691 says.
        hashes = item.get("hashes")
        item["hashes"] = {
            str(k): v
            for k, v in (hashes.items() if isinstance(hashes, dict) else ())
            if isinstance(v, str) and v.isalnum()
        }
        if not isinstance(item.get("requires-python", ""), str):
            del item["requires-python"]
        if not isinstance(item.get("yanked", False), (bool, str)):
            item["yanked"] = True
        files.append(item)
    data = dict(data)
    data["files"] = files
    return data


def _html_page(project: str, body: bytes, page_url: str) -> dict[str, Any]:
    from pypi_simple import ProjectPage

    try:
        page = ProjectPage.from_html(project, body.decode("utf-8", "replace"), base_url=page_url)
    except Exception as exc:
        raise _UpstreamFailed(f"an HTML page that does not parse ({type(exc).__name__})") from None
    files = []
    for package in page.packages:
        item: dict[str, Any] = {
            "filename": package.filename,
            "url": package.url.split("#", 1)[0],
            "hashes": dict(package.digests),
            "yanked": (package.yanked_reason or True) if package.is_yanked else False,
        }
        if package.requires_python:
            item["requires-python"] = package.requires_python
        if package.has_metadata:
            item["core-metadata"] = dict(package.metadata_digests or {}) or True
        files.append(item)
    return {"meta": {"api-version": "1.0"}, "name": project, "files": files}


def _served_file(item: dict[str, Any]) -> dict[str, Any]:
    """An upstream file dict as this server offers it: the URL points here."""
    served = {
        k: v
        for k, v in item.items()
        if k not in ("url", "dist-info-metadata", "data-dist-info-metadata")
    }
    served["url"] = quote(str(item["filename"]))
    metadata = item.get(
        "core-metadata", item.get("dist-info-metadata", item.get("data-dist-info-metadata", False))
    )
    served["core-metadata"] = metadata if metadata else False
    served.setdefault("yanked", False)
    return served


def upstream_sha256(item: dict[str, Any], metadata: bool) -> str | None:
    """The sha256 upstream declared for a file (or its core metadata), if any."""
    if metadata:
        declared = item.get("core-metadata", item.get("dist-info-metadata"))
        value = declared.get("sha256") if isinstance(declared, dict) else None
    else:
        value = item.get("hashes", {}).get("sha256")
    return str(value).lower() if isinstance(value, str) and len(value) == 64 else None


def _upload_time(item: dict[str, Any]) -> float | None:
    value = item.get("upload-time")
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _newer_version(a: str, b: str) -> str:
    def key(version: str) -> tuple[int, int]:
        major, _, minor = version.partition(".")
        try:
            return int(major), int(minor or 0)
        except ValueError:
            return (0, 0)

    return a if key(a) > key(b) else b


def _versions(
    upstream: dict[str, Any], offered: list[dict[str, Any]], visible: list[dict[str, Any]]
) -> list[str]:
    """PEP 700 versions: upstream's list less the versions whose every file is hidden by
    the cooldown, plus the versions of the files offered."""
    from .simple import sort_versions

    offered_versions = set()
    for item in offered:
        try:
            offered_versions.add(str(dists.parse_filename(str(item["filename"])).version))
        except InvalidFilename:
            continue
    hidden: set[str] = set()
    visible_names = {str(f.get("filename")) for f in visible}
    for item in upstream.get("files", []):
        if item.get("filename") not in visible_names:
            try:
                hidden.add(str(dists.parse_filename(str(item["filename"])).version))
            except InvalidFilename:
                continue
    listed = [str(v) for v in upstream.get("versions", []) if isinstance(v, str)]
    return sort_versions(
        {*(v for v in listed if v not in hidden or v in offered_versions), *offered_versions}
    )


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
