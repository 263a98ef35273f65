"""The running configuration of a server: its repositories, their sync threads, and the
replacement of both by ``POST /initialize/``.

State under ROOT::

    embedded_default.toml   the embedded default's generated secrets (0600)
    config.toml             the configuration posted to /initialize/ (0600)
    admin_secret.toml       the admin secrets posted with it (0600)
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .auth import AccessCache
from .config import RepoConfig, parse_admin_secrets, parse_repo_configs, parse_toml
from .errors import ConfigError, InitializeRefused
from .files import replace_file
from .repository import Repositories, Repository

log = logging.getLogger(__name__)

SAVED_CONFIG = "config.toml"
SAVED_ADMIN_SECRET = "admin_secret.toml"  # noqa: S105 (a file name)


@dataclass(frozen=True)
class LoadedConfig:
    repos: dict[str, RepoConfig]
    admin_secrets: dict[str, str]
    embedded_default: bool


class SyncThread(threading.Thread):
    """Syncs one repository's index every ``sync_index_interval`` seconds."""

    def __init__(self, repo: Repository) -> None:
        super().__init__(name=f"sync-{repo.name}", daemon=True)
        self.repo = repo
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.repo.policy.sync_index_interval):
            self.repo.sync_logged()

    def stop(self) -> None:
        self._stopped.set()


def open_repositories(
    root: Path, loaded: LoadedConfig, cache: AccessCache
) -> dict[str, Repository]:
    repositories = {}
    for name, repo in loaded.repos.items():
        try:
            repositories[name] = Repository.open(repo, root, loaded.admin_secrets.get(name), cache)
        except ConfigError as exc:
            # A backend's own check: name the file the table came from.
            raise ConfigError(
                exc.message, source=exc.source or repo.source, table=name, key=exc.key
            ) from None
    return repositories


#: Loopback, private (RFC 1918, RFC 4193) and link-local networks. Spelt out: Python's
#: ``is_private`` also counts documentation and benchmarking ranges.
LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


def is_local_address(address: str | None) -> bool:
    """Loopback, or a private or link-local network (also IPv4-mapped IPv6)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in LOCAL_NETWORKS)


def started_in_environment_mode() -> bool:
    """This process is ``pywharf`` with no arguments, configured by ``PYWHARF_COMMAND``
    (see ``pywharf_core.cli``): how the container image and service containers run."""
    return os.environ.get("PYWHARF_COMMAND") == "server" and not sys.argv[1:]


class Runtime:
    """Owns the served repositories; ``publish`` makes a new set visible to the app."""

    def __init__(
        self,
        root: Path,
        cache: AccessCache,
        publish: Callable[[Repositories], None],
        initialize_secret: str | None = None,
        open_window: bool | None = None,
    ) -> None:
        """``open_window``: without ``initialize_secret``, let local peers replace an
        untouched embedded default (the service-container flow; see ``_check_allowed``).
        By default open when this process was started in environment mode."""
        self.root = root
        self.cache = cache
        self._publish = publish
        self._initialize_secret = initialize_secret
        self._open_window = started_in_environment_mode() if open_window is None else open_window
        self._lock = threading.Lock()
        self._threads: list[SyncThread] = []
        self.repositories = Repositories({})
        self.embedded_default = False

    def start(self, loaded: LoadedConfig) -> None:
        self._switch(open_repositories(self.root, loaded, self.cache), loaded.embedded_default)

    def stop(self) -> None:
        for thread in self._threads:
            thread.stop()

    def initialize(
        self, config_text: str, admin_secret_text: str, proof: str | None, peer: str | None
    ) -> list[str]:
        """Replace the configuration (``POST /initialize/``); returns the repo names.

        Allowed with the server's ``--initialize_secret`` as proof or, when none is set,
        through the open window (see ``_check_allowed``). ``peer`` is the client's address.
        An invalid configuration raises ``ConfigError`` and changes nothing."""
        with self._lock:
            self._check_allowed(proof, peer)
            repos = parse_repo_configs(parse_toml(config_text, "<posted config>"))
            secrets = parse_admin_secrets(
                parse_toml(admin_secret_text, "<posted admin_secret>"), repos
            )
            # The new configuration's own access cache: a rotated-out secret is refused
            # at once, not when the old decision expires (up to --auth_read_expires).
            cache = self.cache.renewed()
            opened = open_repositories(self.root, LoadedConfig(repos, secrets, False), cache)
            replace_file(self.root / SAVED_ADMIN_SECRET, admin_secret_text.encode("utf-8"))
            replace_file(self.root / SAVED_CONFIG, config_text.encode("utf-8"))
            old_cache, self.cache = self.cache, cache
            self._switch(opened, embedded_default=False)
            old_cache.clear()
            log.info("configuration replaced by /initialize/: %s", ", ".join(opened))
            return list(opened)

    def _check_allowed(self, proof: str | None, peer: str | None) -> None:
        if self._initialize_secret:
            if proof is None or not hmac.compare_digest(
                proof.encode("utf-8"), self._initialize_secret.encode("utf-8")
            ):
                raise InitializeRefused(
                    "POST /initialize/ needs the server's initialize secret (form field "
                    "'initialize_secret', or as the basic-auth password)"
                )
            return
        untouched = self.embedded_default and all(
            repo.index.snapshot.file_count == 0 for repo in self.repositories
        )
        if not untouched:
            raise InitializeRefused(
                "POST /initialize/ is refused: this server has no --initialize_secret and "
                "is no longer on its untouched embedded default"
            )
        # The open window, for the service-container flow only: a server started in
        # environment mode (the container image), asked from loopback or a private network
        # (a service container sees the runner through the Docker bridge). Anyone else who
        # can reach the port could otherwise replace the configuration (issue 14, item 19).
        if not self._open_window:
            raise InitializeRefused(
                "POST /initialize/ is refused: start the server with --initialize_secret "
                "(without it, only a server started in environment mode takes its "
                "configuration over HTTP, from a local or private address)"
            )
        if not is_local_address(peer):
            raise InitializeRefused(
                "POST /initialize/ without --initialize_secret is taken only from loopback "
                "or private addresses"
            )
        log.warning(
            "POST /initialize/ from %s accepted without a secret (the untouched embedded "
            "default's open window); start with --initialize_secret to close it",
            peer,
        )

    def _switch(self, repositories: dict[str, Repository], embedded_default: bool) -> None:
        old_threads = self._threads
        self._threads = [SyncThread(repo) for repo in repositories.values()]
        self.repositories = Repositories(repositories)
        self.embedded_default = embedded_default
        # In-flight requests keep the Repository objects they already hold.
        self._publish(self.repositories)
        for thread in old_threads:
            thread.stop()
        for thread in self._threads:
            thread.start()
