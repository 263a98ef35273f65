"""The ``github`` backend: one GitHub release per distribution file, in a repository.

A file ``foo-1.0-py3-none-any.whl`` is the release tagged ``foo-1.0-py3-none-any.whl``,
with the file and its ``.metadata`` as assets and the file's index record in the release
body. Storing is draft → assets → publish: publishing is the atomic step (GitHub refuses
a second published release with the same tag), and a failure at any step deletes the
draft. The remote index is a file on ``branch`` (contents API), its blob sha the version.

Access follows the token: its permission on the repository (admin, maintain, write →
write; triage, read → read). Downloads redirect to the asset's signed URL, asked for with
the admin token and cached until shortly before it expires.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests
import toml

from pywharf_core.backend import (
    Access,
    Backend,
    BackendContext,
    FileStream,
    OpenedFile,
    RedirectTo,
    StagedFile,
    StoredFile,
)
from pywharf_core.errors import (
    AccessDenied,
    BackendError,
    BackendUnavailable,
    ConfigError,
    FileExists,
    FileMissing,
    IndexConflict,
)
from pywharf_core.records import FileRecord

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
#: Signed download URLs are reused until this many seconds before they expire.
URL_MARGIN = 30
_RECORD_BLOCK = re.compile(r"```toml\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class GitHubConfig:
    owner: str
    repo: str
    branch: str = "master"
    index_filename: str = "index.toml"
    #: GitHub Enterprise Server: https://HOST/api/v3
    base_url: str = "https://api.github.com"
    #: Seconds to wait for GitHub on one request before answering 503.
    timeout: int = 30
    #: Seconds between two changing requests: GitHub asks for at least 1 (its secondary
    #: rate limits); 0 only for a stand-in.
    write_interval: float = 1.0

    def __post_init__(self) -> None:
        if not self.owner or not self.repo:
            raise ValueError("owner and repo must not be empty")


def create(context: BackendContext, config: GitHubConfig) -> GitHubBackend:
    if not context.admin_secret:
        raise ConfigError(
            "the github backend needs an admin secret: a token with write access to "
            f"{config.owner}/{config.repo}",
            table=context.repo_name,
        )
    return GitHubBackend(config, context.admin_secret)


def client(
    token: str, base_url: str, lazy: bool = False, timeout: int = 30, write_interval: float = 1.0
) -> Any:
    """A PyGithub client. ``retry=None``: no silent sleeping on 403/5xx (errors become
    ``BackendUnavailable``); ``lazy``: objects are made without fetching them first."""
    from github import Auth, Github

    return Github(
        auth=Auth.Token(token),
        base_url=base_url,
        timeout=timeout,
        retry=None,
        per_page=100,
        lazy=lazy,
        seconds_between_requests=min(write_interval, 0.25),
        seconds_between_writes=write_interval,
    )


@contextmanager
def github_errors(what: str) -> Iterator[None]:
    """Translate PyGithub's and requests' errors into pywharf's, in this one place. 409 and
    422 are left as they are: what they mean depends on the call (callers check them)."""
    from github import GithubException

    try:
        yield
    except GithubException as exc:
        status = exc.status
        if status in (409, 422):
            raise
        if status == 404:
            raise FileMissing(what) from exc
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        if status == 429 or (status == 403 and headers.get("x-ratelimit-remaining") == "0"):
            reset = int(headers.get("x-ratelimit-reset", "0") or 0)
            wait = max(1, reset - int(time.time())) if reset else 60
            raise BackendUnavailable(
                f"GitHub rate limit reached ({what})", retry_after=wait
            ) from exc
        if status in (401, 403):
            raise AccessDenied(f"GitHub refused the admin token ({status}) for {what}") from exc
        if status >= 500:
            raise BackendUnavailable(f"GitHub answered {status} for {what}") from exc
        raise BackendError(f"GitHub answered {status} for {what}: {exc.data}") from exc
    except requests.RequestException as exc:
        raise BackendUnavailable(f"GitHub cannot be reached for {what}: {exc}") from exc


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def record_body(record: FileRecord) -> str:
    """The release body: a line for people, then the file's index record."""
    data = {k: v for k, v in record.to_dict().items() if k != "backend_ref"}
    return (
        "Published by pywharf: this release holds one distribution file. Its index record:\n\n"
        f"```toml\n{toml.dumps(data).strip()}\n```\n"
    )


def parse_body(body: str | None) -> dict[str, Any] | None:
    match = _RECORD_BLOCK.search(body or "")
    if match is None:
        return None
    try:
        return dict(toml.loads(match.group(1)))
    except toml.TomlDecodeError:
        return None


class GitHubBackend(Backend):
    def __init__(self, config: GitHubConfig, token: str) -> None:
        self.config = config
        self._token = token
        self._github = self._client(token)
        # Objects made without fetching them first.
        self._lazy = self._client(token, lazy=True)
        self._full_name = f"{config.owner}/{config.repo}"
        self._repo: Any = None
        self._session = requests.Session()
        self._urls: dict[int, tuple[str, float]] = {}
        #: The index file's last answer: (ETag, (blob sha, content or None)).
        self._index: tuple[str, tuple[str, bytes | None]] | None = None
        self._index_url = (
            f"{config.base_url.rstrip('/')}/repos/{self._full_name}/contents/"
            f"{quote(config.index_filename)}"
        )
        self._urls_lock = threading.Lock()

    def _client(self, token: str, lazy: bool = False) -> Any:
        config = self.config
        return client(token, config.base_url, lazy, config.timeout, config.write_interval)

    @property
    def repo(self) -> Any:
        if self._repo is None:
            with github_errors(self._full_name):
                self._repo = self._lazy.get_repo(self._full_name)
        return self._repo

    # -- access ------------------------------------------------------------------------
    def check_access(self, secret: str) -> Access:
        from github import GithubException

        if not secret:
            return Access.NONE
        try:
            with github_errors(self._full_name):
                repo = self._client(secret).get_repo(self._full_name)
                permissions = repo.permissions
        except (FileMissing, AccessDenied):
            return Access.NONE  # a rejected token, or a repository it cannot see
        except GithubException:
            return Access.NONE
        if permissions is None:
            return Access.NONE
        if permissions.admin or permissions.maintain or permissions.push:
            return Access.WRITE
        if permissions.triage or permissions.pull:
            return Access.READ
        return Access.NONE

    # -- files ------------------------------------------------------------------------------
    def put_file(
        self, record: FileRecord, staged: StagedFile, metadata: bytes | None = None
    ) -> FileRecord:
        existing = self._published(record.filename)
        if existing is not None:
            raise FileExists(record.filename, self._sha_of(existing), self._ref_of(existing))
        with github_errors(record.filename):
            draft = self.repo.create_git_release(
                tag=record.filename,
                name=record.filename,
                message=record_body(record),
                draft=True,
                target_commitish=self.config.branch,
            )
        try:
            with github_errors(record.filename):
                asset = draft.upload_asset(
                    str(staged.path), content_type="application/octet-stream", name=record.filename
                )
                meta_asset = None
                if metadata is not None:
                    meta_asset = draft.upload_asset_from_memory(
                        io.BytesIO(metadata),
                        len(metadata),
                        name=record.filename + ".metadata",
                        content_type="text/plain",
                    )
                try:
                    draft.update_release(
                        name=record.filename, message=record_body(record), draft=False
                    )
                except Exception as exc:
                    if _status(exc) != 422:
                        raise
                    # Another server published this filename first.
                    winner = self._published(record.filename)
                    raise FileExists(
                        record.filename,
                        self._sha_of(winner) if winner else None,
                        self._ref_of(winner) if winner else None,
                    ) from None
        except BaseException:
            self._delete_draft(draft)
            raise
        ref = f"{draft.id}/{asset.id}/{meta_asset.id if meta_asset else ''}"
        return record.with_changes(backend_ref=ref)

    def _delete_draft(self, draft: Any) -> None:
        try:
            with github_errors(draft.tag_name):
                draft.delete_release()
        except Exception:  # the original error matters more
            log.error("could not delete the draft release %s; delete it by hand", draft.tag_name)

    def _published(self, tag: str) -> Any | None:
        try:
            with github_errors(tag):
                return self.repo.get_release(tag)
        except FileMissing:
            return None

    @staticmethod
    def _sha_of(release: Any) -> str | None:
        data = parse_body(release.body)
        return None if data is None else str(data.get("sha256") or "") or None

    @staticmethod
    def _ref_of(release: Any) -> str:
        assets = {a.name: a.id for a in release.assets}
        dist = assets.get(release.tag_name, "")
        metadata = assets.get(release.tag_name + ".metadata", "")
        return f"{release.id}/{dist}/{metadata}"

    def open_file(self, record: FileRecord, *, metadata: bool = False) -> OpenedFile:
        asset_id, meta_id = self._asset_ids(record.backend_ref, record.filename)
        if not metadata:
            return self._open_asset(asset_id, record.filename)
        if meta_id is None:
            raise FileMissing(record.filename + ".metadata")
        return self._open_asset(meta_id, record.filename + ".metadata")

    @staticmethod
    def _asset_ids(ref: str, filename: str) -> tuple[int, int | None]:
        try:
            _release, asset, meta = ref.split("/")
            return int(asset), int(meta) if meta else None
        except ValueError:
            raise FileMissing(filename) from None

    def _open_asset(self, asset_id: int, what: str) -> OpenedFile:
        now = time.monotonic()
        with self._urls_lock:
            cached = self._urls.get(asset_id)
        if cached is not None and cached[1] > now:
            return RedirectTo(cached[0])
        url = (
            f"{self.config.base_url.rstrip('/')}/repos/{self._full_name}/releases/assets/{asset_id}"
        )
        headers = {"Authorization": f"token {self._token}", "Accept": "application/octet-stream"}
        try:
            response = self._session.get(
                url,
                headers=headers,
                allow_redirects=False,
                timeout=self.config.timeout,
                stream=True,
            )
        except requests.RequestException as exc:
            raise BackendUnavailable(f"GitHub cannot be reached for {what}: {exc}") from exc
        if response.status_code in (301, 302, 303, 307, 308):
            response.close()
            location = response.headers["Location"]
            with self._urls_lock:
                self._urls[asset_id] = (location, now + _lifetime(location) - URL_MARGIN)
                if len(self._urls) > 50_000:
                    self._urls.clear()
            return RedirectTo(location)
        if response.status_code == 200:  # no redirect offered: stream it through
            size = response.headers.get("Content-Length")
            return FileStream(
                response.iter_content(CHUNK), int(size) if size else None, response.close
            )
        response.close()
        raise _raw_error(response, what)

    def set_yanked(self, record: FileRecord, reason: str | None) -> None:
        release = self._published(record.filename)
        if release is None:
            raise FileMissing(record.filename)
        data = parse_body(release.body) or {}
        current = FileRecord.from_dict({**record.to_dict(), **data}) if data else record
        with github_errors(record.filename):
            release.update_release(
                name=release.name, message=record_body(current.with_changes(yanked=reason))
            )

    def delete_file(self, record: FileRecord) -> None:
        """Delete the file's assets (the metadata first), then its release once no asset
        is left in it; the git tag stays (deleting it needs more than release rights)."""
        release = self._published(record.filename)
        if release is None:
            raise FileMissing(record.filename)
        with github_errors(record.filename):
            assets = {a.name: a for a in release.assets}
            for name in (record.filename + ".metadata", record.filename):
                if name in assets:
                    asset = assets.pop(name)
                    with self._urls_lock:  # a signed URL cached for it would outlive it
                        self._urls.pop(asset.id, None)
                    asset.delete_asset()
            if not assets:
                release.delete_release()

    def list_files(self) -> Iterator[StoredFile]:
        with github_errors("the releases"):
            releases = list(self.repo.get_releases())
        for release in releases:
            if release.draft:
                continue
            sizes = {a.name: a.size for a in release.assets}
            if release.tag_name not in sizes:
                continue  # no asset of that name: not a release of a distribution file
            stored = parse_body(release.body)
            published = release.published_at or release.created_at
            yanked = stored.get("yanked", False) if stored else False
            yield StoredFile(
                ref=self._ref_of(release),
                filename=release.tag_name,
                size=int(sizes[release.tag_name]),
                mtime=published.timestamp() if published else 0.0,
                yanked=None if yanked is False else ("" if yanked is True else str(yanked)),
                has_metadata=release.tag_name + ".metadata" in sizes,
                stored=stored,
            )

    def fetch_file(self, entry: StoredFile, into: Path) -> Path:
        self._download(self._asset_ids(entry.ref, entry.filename)[0], entry.filename, into)
        return into

    def adopt_file(
        self, entry: StoredFile, record: FileRecord, metadata: bytes | None
    ) -> FileRecord:
        """Upload the metadata asset if it is missing, and write the record into the
        release body, so that the next run need not read the file again."""
        release = self._published(entry.filename)
        if release is None:
            raise FileMissing(entry.filename)
        with github_errors(entry.filename):
            if metadata is not None and not entry.has_metadata:
                release.upload_asset_from_memory(
                    io.BytesIO(metadata),
                    len(metadata),
                    name=entry.filename + ".metadata",
                    content_type="text/plain",
                )
                release = self._published(entry.filename) or release
            adopted = record.with_changes(backend_ref=self._ref_of(release))
            if adopted.backend_ref.endswith("/"):  # no metadata asset after all
                adopted = adopted.with_changes(core_metadata_sha256=None)
            release.update_release(name=release.name, message=record_body(adopted))
        return adopted

    def _download(self, asset_id: int, what: str, target: Path) -> None:
        opened = self._open_asset(asset_id, what)
        if isinstance(opened, RedirectTo):
            try:
                response = requests.get(opened.url, stream=True, timeout=self.config.timeout)
                response.raise_for_status()
            except requests.RequestException as exc:
                raise BackendUnavailable(f"cannot download {what}: {exc}") from exc
            opened = FileStream(response.iter_content(CHUNK), None, response.close)
        assert isinstance(opened, FileStream)
        try:
            with target.open("wb") as handle:
                for chunk in opened.chunks:
                    handle.write(chunk)
        finally:
            opened.close()

    # -- remote index -------------------------------------------------------------------------
    def read_index(self) -> tuple[bytes, str] | None:
        state = self._index_state()
        if state is None:
            return None
        sha, content = state
        if content is None:  # over 1 MB: GitHub leaves it out of the JSON answer
            content = self._raw_index()
            self._index = (self._index[0], (sha, content)) if self._index else None
        return content, sha

    def index_version(self) -> str | None:
        state = self._index_state()
        return None if state is None else state[0]

    def _index_state(self) -> tuple[str, bytes | None] | None:
        """(blob sha, content) of the index file, asked with If-None-Match on the last
        answer's ETag: an unchanged index costs a 304 (no body, and GitHub does not count
        it against the rate limit), and read_index after index_version reads nothing twice."""
        headers = {"Authorization": f"token {self._token}", "Accept": "application/vnd.github+json"}
        if self._index is not None:
            headers["If-None-Match"] = self._index[0]
        try:
            response = self._session.get(
                self._index_url,
                params={"ref": self.config.branch},
                headers=headers,
                timeout=self.config.timeout,
            )
        except requests.RequestException as exc:
            raise BackendUnavailable(f"GitHub cannot be reached for the index: {exc}") from exc
        if response.status_code == 304 and self._index is not None:
            return self._index[1]
        if response.status_code == 404:
            self._index = None
            return None
        if response.status_code != 200:
            raise _raw_error(response, "the index")
        data = response.json()
        content = base64.b64decode(data["content"]) if data.get("encoding") == "base64" else None
        state = (str(data["sha"]), content)
        etag = response.headers.get("ETag")
        self._index = (etag, state) if etag else None
        return state

    def _raw_index(self) -> bytes:
        try:
            raw = self._session.get(
                self._index_url,
                params={"ref": self.config.branch},
                timeout=self.config.timeout,
                headers={
                    "Authorization": f"token {self._token}",
                    "Accept": "application/vnd.github.raw",
                },
            )
        except requests.RequestException as exc:
            raise BackendUnavailable(f"GitHub cannot be reached for the index: {exc}") from exc
        if raw.status_code != 200:
            raise _raw_error(raw, "the index")
        return bytes(raw.content)

    def write_index(self, data: bytes, expected_version: str | None) -> str:
        message = "pywharf update_index"
        try:
            with github_errors("the index"):
                if expected_version is None:
                    result = self.repo.create_file(
                        self.config.index_filename, message, data, branch=self.config.branch
                    )
                else:
                    result = self.repo.update_file(
                        self.config.index_filename,
                        message,
                        data,
                        expected_version,
                        branch=self.config.branch,
                    )
        except Exception as exc:
            if _status(exc) in (409, 422):
                raise IndexConflict("the index changed since it was read") from None
            raise
        return str(result["content"].sha)


def _raw_error(response: requests.Response, what: str) -> Exception:
    """The pywharf error for a failed answer to a request made without PyGithub."""
    status = response.status_code
    if status == 404:
        return FileMissing(what)
    if status == 429 or (status == 403 and response.headers.get("x-ratelimit-remaining") == "0"):
        return BackendUnavailable(f"GitHub rate limit reached ({what})")
    if status in (401, 403):
        return AccessDenied(f"GitHub refused the admin token ({status}) for {what}")
    return BackendUnavailable(f"GitHub answered {status} for {what}")


def _lifetime(url: str) -> float:
    """Seconds a signed download URL stays valid, read from its query (S3 or Azure style);
    60 when it does not say."""
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:
        try:
            return float(query["X-Amz-Expires"][0])
        except ValueError:
            return 60.0
    if "se" in query:
        try:
            ends = dt.datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
            return (ends - dt.datetime.now(dt.timezone.utc)).total_seconds()
        except ValueError:
            return 60.0
    return 60.0
