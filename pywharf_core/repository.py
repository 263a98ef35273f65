"""One served repository: its policy, its backend, its index and its sync."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path

from . import remoteindex
from .auth import AccessCache
from .backend import Access, Backend, BackendContext, compare_secrets
from .config import RepoConfig
from .errors import FileMissing, PywharfError
from .index import RepoIndex
from .indexfile import load_index
from .manage import DELETED, Deletion, parse_deletions
from .memory import release_free_memory
from .pagecache import PageCache
from .records import FileRecord
from .state import StateStore
from .status import ACTIVE, STATUS, ProjectStatus, parse_statuses
from .summaries import Projects, SummaryCache, read_summary
from .synced import Prepared
from .tokens import TokenStore
from .upstream import Upstream

log = logging.getLogger(__name__)


class Repositories:
    """The served repositories by name; replaced as a whole when the configuration changes."""

    def __init__(self, repositories: Mapping[str, Repository]) -> None:
        self.by_name = dict(repositories)

    def get(self, name: str | None) -> Repository | None:
        return self.by_name.get(name) if name else None

    def __iter__(self) -> Iterator[Repository]:
        return iter(self.by_name.values())


class Repository:
    def __init__(
        self,
        config: RepoConfig,
        backend: Backend,
        cache: AccessCache,
        state_dir: Path,
    ):
        """``state_dir`` is this server's folder for the repository (ROOT/cache/<name>):
        caches and the overlay; what replicas share goes through ``state`` instead."""
        self.name = config.name
        self.config = config
        self.policy = config.policy
        self.backend = backend
        #: The index: the remote one in SQLite under ``state_dir``, plus this server's own.
        self.index = RepoIndex(state_dir / "overlay.jsonl", on_lost=self.sync)
        # The parsed remote index's cache before the database (JSON, up to 400 MB).
        (state_dir / "remote-index.json").unlink(missing_ok=True)
        self._cache = cache
        self.pages = PageCache()
        #: Wall-clock time of the last successful sync, or None.
        self.synced_at: float | None = None
        #: Consecutive failed syncs (0 after a success); reported by /metrics.
        self.sync_failures = 0
        self._sync_lock = threading.Lock()
        #: Documents every server of this repository must see alike (tokens, status …).
        self.state = StateStore(backend, state_dir / "state")
        #: The upstream index behind this repository, if it has one.
        self.upstream = (
            Upstream(self.policy, backend, state_dir, self.name)
            if self.policy.upstream_url
            else None
        )
        #: API tokens (kept in ``state``).
        self.tokens = TokenStore(self.state, self.policy.sync_index_interval)
        #: Each project's summary, for the home page's search (a cache under ROOT).
        self.summaries = SummaryCache(
            state_dir / "summaries.jsonl",
            partial(read_summary, backend),
            self._whole_index,
            self.name,
        )
        #: Whether this process has synced once (its first sync reads the change log whole).
        self._synced_once = False
        self._changes_cursor: str | None = None
        self._has_change_log = type(backend).changes_since is not Backend.changes_since
        self._deleted_version: str | None = None
        self._status_version: str | None = None
        #: Project statuses (PEP 792) by project; an active project has no entry.
        self.statuses: Mapping[str, ProjectStatus] = {}

    @classmethod
    def open(
        cls, config: RepoConfig, root: Path, admin_secret: str | None, cache: AccessCache
    ) -> Repository:
        backend = config.spec.create(
            BackendContext(config.name, root, admin_secret), config.settings
        )
        repo = cls(config, backend, cache, root / "cache" / config.name)
        repo.sync_logged()  # on failure: served from the overlay, /readyz says not synced
        return repo

    def sync(self) -> bool:
        """One sync round (blocking): a cheap check of the remote index's version, a
        full load only when the index database does not hold that version (a restart
        whose database holds it parses nothing), then the backend's changes since.
        Returns whether the index changed. Raises what the backend raises."""
        with self._sync_lock:
            started = time.monotonic()
            self._sync_deletions()
            version = self.backend.index_version()
            prepared = None if self.index.holds(version) else self._prepare_remote()
            try:
                if prepared is not None:
                    version = prepared.version
                    # The parse's peak, held otherwise for the process's life; freed
                    # before the index builds what it keeps (its names would pin it).
                    release_free_memory()
                reloaded = prepared is not None or not self._synced_once
                if reloaded:
                    # The new index may hold what the change log held: read it all again.
                    self._changes_cursor = None
                news, self._changes_cursor = self.backend.changes_since(self._changes_cursor)
                if reloaded:
                    # After a reload, a backend with a change log has told of every
                    # stored file, unless update_index wrote a new index (and shortened
                    # the log) meanwhile.
                    complete = self._has_change_log and self.backend.index_version() == version
                    self.index.set_remote(
                        prepared,
                        version=version,
                        changes=news,
                        complete_since=started if complete else None,
                    )
                    self._synced_once = True
                elif news:
                    self.index.add_changes(news)
            finally:
                if prepared is not None:
                    prepared.rollback()  # when it was not committed
            self.synced_at = time.time()
        return reloaded or bool(news)

    def _prepare_remote(self) -> Prepared:
        """Read and parse the remote index, and write it to the index's database (its
        records are freed when this returns)."""
        remote = self.backend.read_index()
        if remote is None:
            return self.index.prepare_remote(None, ())
        data, version = remote
        if not remoteindex.is_manifest(data):
            return self.index.prepare_remote(version, load_index(data).records)
        # A segmented index: the base database is opened, not parsed, and a server that
        # holds the base fetches only the deltas it lacks.
        manifest = remoteindex.parse_manifest(data)
        return self.index.prepare_chain(version, remoteindex.chain_of(self.backend, manifest))

    def _sync_deletions(self) -> None:
        """Read the shared documents of deleted files and project statuses again when
        they changed."""
        current = self.state.read(DELETED)
        version = None if current is None else current[1]
        if version != self._deleted_version:
            self.index.set_deleted(parse_deletions(None if current is None else current[0]))
            self._deleted_version = version
        current = self.state.read(STATUS)
        version = None if current is None else current[1]
        if version != self._status_version:
            self.statuses = parse_statuses(None if current is None else current[0])
            self._status_version = version

    def _whole_index(self) -> Projects | None:
        """The index's projects, once it has been synced at least once."""
        return self.index.snapshot.projects if self.synced_at is not None else None

    def status_of(self, project: str) -> ProjectStatus:
        """The project's status (PEP 792) as this server last read it."""
        return self.statuses.get(project, ACTIVE)

    def apply_statuses(self, statuses: Mapping[str, ProjectStatus]) -> None:
        """Serve these statuses at once on this server (``status.set_status``)."""
        self.statuses = dict(statuses)

    def apply_deletions(self, deletions: Mapping[str, Deletion]) -> None:
        """Hide the deleted files at once on this server (``manage.delete_file``)."""
        self.index.set_deleted(deletions)

    def sync_logged(self) -> None:
        """``sync``, keeping the last good index on failure and logging once per streak."""
        try:
            self.sync()
        except PywharfError as exc:
            self.sync_failures += 1
            if self.sync_failures == 1:
                log.error(
                    "%s: cannot read the remote index: %s (serving the last good "
                    "index; logged once until it recovers)",
                    self.name,
                    exc,
                )
            return
        except Exception:
            self.sync_failures += 1
            if self.sync_failures == 1:
                log.exception("%s: index sync failed", self.name)
            return
        if self.sync_failures:
            log.info("%s: index sync recovered after %d failures", self.name, self.sync_failures)
        self.sync_failures = 0

    def yank(self, project: str, filename: str, reason: str | None) -> FileRecord:
        """Mark a file yanked (``reason``, may be empty) or not (``None``); blocking."""
        record = self.index.snapshot.find(project, filename)
        if record is None:
            raise FileMissing(filename)
        self.backend.set_yanked(record, reason)
        updated = record.with_changes(yanked=reason)
        self.index.add(updated)
        log.info("%s: %s %s", self.name, "yanked" if reason is not None else "unyanked", filename)
        return updated

    def cached_access(self, secret: str) -> Access | None:
        """A remembered access decision, without calling the backend (may be ``None``)."""
        return self._cache.lookup(self.name, secret)

    def access(self, secret: str) -> Access:
        """What ``secret`` may do here; may call the backend (blocking)."""
        return self._cache.decide(self.name, secret, self._check_access)

    def _check_access(self, secret: str) -> Access:
        decided = self.backend.check_access(secret)
        if decided is not None:
            return decided
        return compare_secrets(secret, self.policy.read_secret, self.policy.write_secret)
