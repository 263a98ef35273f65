"""``pywharf server``: load the configuration, open the repositories, serve with waitress.

Configuration, in order of precedence: ``--config`` (with ``--admin_secret``); else the
configuration last posted to ``/initialize/`` (saved under ROOT); else the embedded
default, one ``file_system`` repository named ``local`` whose read and write secrets are
generated once and kept in ``ROOT/embedded_default.toml`` (mode 0600).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import signal
import socket
import string
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import waitress
from waitress.adjustments import Adjustments

from . import __version__, logs
from .app import REASON_HEADER, create_app
from .auth import AccessCache
from .config import (
    TomlSource,
    check_upstream_url,
    parse_admin_secrets,
    parse_repo_configs,
    read_toml,
)
from .early import HeaderGate, limit_body
from .errors import ConfigError
from .files import create_once
from .flags import bool_flag, text_flag
from .memory import trim_periodically, tune_allocator
from .oidc import DEFAULT_AUDIENCE, GITHUB_JWKS_URL
from .repository import Repositories, Repository
from .revocations import RootSessionRevocations, StateSessionRevocations
from .runtime import SAVED_ADMIN_SECRET, SAVED_CONFIG, LoadedConfig, Runtime
from .sessions import load_or_create_key
from .upload import FORM_OVERHEAD_BYTES
from .waitress_channel import Limits, harden
from .wsgi import ThreadLoopAdapter

log = logging.getLogger("pywharf")

WAITRESS_DEFAULTS: dict[str, Any] = {
    "threads": 16,
    # waitress reads request bodies 8 KiB per recv() by default; a 1000 MiB upload then
    # took 147-189 MB/s, and 206-213 MB/s with 256 KiB reads.
    "recv_bytes": 256 * 1024,
    # Whom to believe about X-Forwarded-* is decided in one place, the app's
    # ProxyHeadersMiddleware (--trusted_proxy), which ignores them from anyone else;
    # waitress would otherwise drop them before the app sees them.
    "clear_untrusted_proxy_headers": False,
    # Slow clients cost waitress a socket, not a thread: let many wait (the header and
    # body timeouts bound how long), polled with poll() as select() stops at fd 1024.
    "connection_limit": 1000,
    "asyncore_use_poll": True,
}

EMBEDDED_DEFAULT_FILE = "embedded_default.toml"
EMBEDDED_REPO = "local"


def load_config(
    root: Path,
    config: str | None,
    admin_secret: str | None,
    can_be_text: bool,
) -> LoadedConfig:
    """``--config`` (with ``--admin_secret``); else the configuration last posted to
    ``/initialize/`` and saved under ROOT; else the embedded default."""
    if config is None and admin_secret is not None:
        raise ConfigError("--admin_secret needs --config")
    if config is None and (root / SAVED_CONFIG).is_file():
        config = str(root / SAVED_CONFIG)
        saved_secret = root / SAVED_ADMIN_SECRET
        admin_secret = str(saved_secret) if saved_secret.is_file() else None
        can_be_text = False
    if config is None:
        return LoadedConfig(parse_repo_configs(_embedded_default_source(root)), {}, True)
    source = read_toml(config, can_be_text=can_be_text, what="config")
    repos = parse_repo_configs(source)
    secrets_source = (
        read_toml(admin_secret, can_be_text=can_be_text, what="admin secret")
        if admin_secret is not None
        else TomlSource("<no --admin_secret given>", {})
    )
    return LoadedConfig(repos, parse_admin_secrets(secrets_source, repos), False)


def with_upstream(loaded: LoadedConfig, upstream_url: str | None) -> LoadedConfig:
    """``--upstream_url``: the embedded default repository gets that upstream index."""
    if not upstream_url:
        return loaded
    if not loaded.embedded_default:
        raise ConfigError(
            "--upstream_url applies to the embedded default only; with a configuration, "
            'set upstream_url = "…" in the repository\'s table'
        )
    try:
        check_upstream_url(upstream_url)
    except ValueError as exc:
        raise ConfigError(str(exc), key="upstream_url") from None
    repo = loaded.repos[EMBEDDED_REPO]
    policy = dataclasses.replace(repo.policy, upstream_url=upstream_url)
    repos = {**loaded.repos, EMBEDDED_REPO: dataclasses.replace(repo, policy=policy)}
    return dataclasses.replace(loaded, repos=repos)


def _embedded_default_source(root: Path) -> TomlSource:
    path = root / EMBEDDED_DEFAULT_FILE
    if not path.exists():
        text = (
            "# pywharf's embedded default: generated once; keep this file private.\n"
            f"[{EMBEDDED_REPO}]\n"
            'type = "file_system"\n'
            f'read_secret = "{new_secret()}"\n'
            f'write_secret = "{new_secret()}"\n'
        )
        # Two servers started at once on one ROOT agree on one set of secrets.
        create_once(path, text.encode("utf-8"))
    return read_toml(path, can_be_text=False, what="embedded default")


def new_secret(length: int = 32) -> str:
    """A random secret of letters and digits (~190 bits): safe to paste into a URL or a
    command line (a leading "-" would read as an option) and selected by a double-click."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def run_server(
    root: str,
    config: str | None = None,
    admin_secret: str | None = None,
    config_or_admin_secret_can_be_text: bool = False,
    auth_read_expires: int = 3600,
    auth_write_expires: int = 300,
    extra_index_url: str | None = None,
    upstream_url: str | None = None,
    trusted_proxy: str | None = None,
    initialize_secret: str | None = None,
    session_key: str | None = None,
    session_expires: int = 12 * 3600,
    metrics_token: str | None = None,
    oidc_audience: str = DEFAULT_AUDIENCE,
    oidc_jwks: str = GITHUB_JWKS_URL,
    server: str = "waitress",
    debug: bool = False,
    header_timeout: float = 20.0,
    body_timeout: float = 30.0,
    host: str = "0.0.0.0",  # noqa: S104 (the seed default; containers need it)
    port: int = 8888,
    **waitress_options: Any,
) -> None:
    """Run the pywharf server.

    Args:
        root: folder for the server's state (cache, overlay, embedded default secrets).
        config: repositories config TOML (a path, or text with
            --config_or_admin_secret_can_be_text). Without it, the embedded default
            is served, one file_system repository named 'local' with generated secrets.
        admin_secret: admin secrets TOML (path or text), for backends that need one.
        config_or_admin_secret_can_be_text: take --config/--admin_secret as TOML text
            when they do not name a file.
        auth_read_expires: seconds a verified read secret is remembered.
        auth_write_expires: seconds a verified write secret is remembered.
        extra_index_url: redirect requests for projects this server does not hold to
            this index. Off by default, for safety against dependency confusion; prefer
            --upstream_url.
        upstream_url: an index (e.g. https://pypi.org/simple/) behind the embedded default
            repository: one index URL for private and public packages, cached, private
            names never asked of upstream. With --config, set upstream_url in a
            repository's table instead.
        trusted_proxy: comma-separated addresses of reverse proxies (or *) whose
            X-Forwarded-Proto, -Host, -Prefix and -For (the client's address) headers
            are believed. Other peers' forwarded headers are ignored.
        initialize_secret: the proof POST /initialize/ needs to replace the configuration.
            Without it, /initialize/ works only on an untouched embedded default, in
            environment mode (the container image), from loopback or private addresses.
        session_key: the key that signs browser sessions; give replicas the same one.
            Without it, a random key generated once and kept in ROOT/session_key.
        session_expires: seconds a browser login lasts.
        metrics_token: serves GET /metrics, and /readyz per repository, to requests
            with "Authorization: Bearer <token>" (or the token as basic-auth password).
            Without it /metrics is off and /readyz answers only ready or not.
        oidc_audience: the audience GitHub Actions ID tokens must name for trusted
            publishing (GET /_/oidc/audience tells clients).
        oidc_jwks: where the ID tokens' signing keys come from: GitHub's published JWKS
            URL by default; a file path or another URL (tests, air-gapped installs).
        server: waitress (the default), or uvicorn (the uvicorn extra: pip install
            '.[uvicorn]' in a pywharf checkout): faster pages, measured in the README's
            Performance section; no custom reason phrases.
        debug: debug logging and tracebacks in the log.
        header_timeout: seconds a request's line and headers may take to arrive, however
            slowly they drip (waitress; the connection is closed).
        body_timeout: seconds a request body may go without receiving a byte (waitress;
            the connection is closed).
        host: address to listen on.
        port: port to listen on; 0 picks a free port and prints it.
        waitress_options: any other flag is passed on to waitress.serve
            (e.g. --threads 32).
    """
    config = text_flag(config)
    admin_secret = text_flag(admin_secret)
    can_be_text = bool_flag(
        "config_or_admin_secret_can_be_text", config_or_admin_secret_can_be_text
    )
    extra_index_url = text_flag(extra_index_url)
    trusted_proxy = text_flag(trusted_proxy)
    initialize_secret = text_flag(initialize_secret)
    debug = bool_flag("debug", debug)
    if str(server) not in ("waitress", "uvicorn"):  # before any repository is opened
        raise ConfigError(f"--server must be waitress or uvicorn, not {server!r}")
    host, port = str(host), int(port)
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {port}")
    if str(server) == "waitress":
        _check_waitress_options(host, port, waitress_options)
    logs.configure(debug)
    # docker stop and systemd send SIGTERM: end like Ctrl-C, through the finally clauses
    # that stop the sync threads and write the last log lines.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    root_path = Path(str(root)).resolve()
    new_folders = _missing_folders(root_path)
    try:
        with _translate_os_errors(root_path):
            prepare_root(root_path)
            loaded = with_upstream(
                load_config(root_path, config, admin_secret, can_be_text),
                text_flag(upstream_url),
            )
            cache = AccessCache(int(auth_read_expires), int(auth_write_expires))

            def publish(repositories: Repositories) -> None:
                app.state.repositories = repositories

            runtime = Runtime(root_path, cache, publish, initialize_secret=initialize_secret)
            app = create_app(
                {},
                debug=debug,
                extra_index_url=extra_index_url,
                trusted_proxies=(trusted_proxy or "").split(","),
                session_key=load_or_create_key(root_path, text_flag(session_key)),
                session_lifetime=int(session_expires),
                runtime=runtime,
                metrics_token=text_flag(metrics_token),
                session_revocations=StateSessionRevocations(
                    lambda name: runtime.repositories.get(name),
                    fallback=RootSessionRevocations(root_path),
                ),
                oidc_audience=str(oidc_audience),
                oidc_jwks=str(oidc_jwks),
            )
            runtime.start(loaded)  # publishes the repositories to the app
    except BaseException:
        _remove_if_empty(new_folders)  # a refused start leaves no empty ROOT behind
        raise
    try:
        repositories = runtime.repositories.by_name
        # /initialize/ may add repositories with larger files later: allow the largest default.
        largest = max([*(r.policy.max_file_bytes for r in repositories.values()), 5368709119])
        waitress_options.setdefault("max_request_body_size", largest + FORM_OVERHEAD_BYTES)
        for name, value in WAITRESS_DEFAULTS.items():
            waitress_options.setdefault(name, value)
        tune_allocator()  # before the server's threads allocate: see pywharf_core.memory
        trim_periodically()
        if str(server) == "uvicorn":
            _serve_uvicorn(app, host, port, repositories, loaded, waitress_options)
        else:
            wsgi = ThreadLoopAdapter(app, reason_header=REASON_HEADER)
            with _translate_bind_errors(host, port):
                waitress_server = waitress.create_server(
                    wsgi, host=host, port=port, **waitress_options
                )
            limits = Limits(header_timeout=float(header_timeout), body_timeout=float(body_timeout))
            harden(waitress_server, HeaderGate(app), limits)
            bound = getattr(waitress_server, "effective_host", host)
            bound_port = getattr(waitress_server, "effective_port", port)
            _announce(repositories, host, str(bound), int(bound_port), loaded.embedded_default)
            waitress_server.run()
    finally:
        runtime.stop()
        logs.flush()


class Terminated(SystemExit):
    """SIGTERM arrived: a normal stop (exit status 0), as docker stop and systemd expect."""


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    log.info("SIGTERM received: stopping")
    raise Terminated(0)


def _check_waitress_options(host: str, port: int, options: Mapping[str, Any]) -> None:
    # One at a time, so that the message names the flag (waitress's does not).
    for name, value in options.items():
        try:
            Adjustments(**{name: value})
        except ValueError as exc:
            raise ConfigError(f"--{name}: {value!r} is not a valid value ({exc})") from None
        except TypeError:  # waitress's own keys only (the CLI refused any other)
            raise ConfigError(f"unknown flag --{name} for 'server'") from None


def prepare_root(root: Path) -> None:
    """Create ROOT and check that this process can write in it: one clear line now rather
    than a traceback at the first upload."""
    for parent in [root, *root.parents]:
        if os.path.lexists(parent):  # False too where a folder above may not be entered
            if not os.path.isdir(parent):
                where = f"ROOT {root}" if parent == root else f"ROOT {root}: {parent}"
                raise ConfigError(f"{where} is a file, not a folder; give a folder path as ROOT")
            break
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise ConfigError(
            f"ROOT {root} is not writable ({exc.strerror}): pywharf keeps its state there; "
            "fix the permissions or give another folder"
        ) from None


def _missing_folders(path: Path) -> list[Path]:
    missing = []
    for folder in [path, *path.parents]:
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing  # deepest first


def _remove_if_empty(created: list[Path]) -> None:
    # Only folders this process created, and only while empty, deepest first.
    for top in reversed(created):
        if not os.path.isdir(top):
            continue
        for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        return


@contextlib.contextmanager
def _translate_os_errors(root: Path) -> Iterator[None]:
    """A file system refusal during start-up (a read-only storage_root, a full disk)
    becomes one line naming the place, not a traceback."""
    try:
        yield
    except OSError as exc:
        place = exc.filename or root
        raise ConfigError(
            f"cannot start: {place}: {exc.strerror or exc}; check that the user running "
            "pywharf can write there (ROOT and every storage_root)"
        ) from None


@contextlib.contextmanager
def _translate_bind_errors(host: str, port: int) -> Iterator[None]:
    try:
        yield
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} is not an address here ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (another pywharf?): stop it, or "
                "give another --port (0 picks a free one)"
            ) from None
        if exc.errno == errno.EACCES:
            raise ConfigError(
                f"no permission to listen on port {port} (ports below 1024 need privileges): "
                "give --port 1024 or higher, e.g. 8888"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"--host {host}: not an address of this machine (0.0.0.0 listens on all)"
            ) from None
        raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror}") from None


WILDCARDS = {"0.0.0.0": "every IPv4 interface", "::": "every interface", "": "every interface"}  # noqa: S104


def _announce(
    repositories: Mapping[str, Repository],
    host: str,
    bound: str,
    port: int,
    embedded_default: bool,
) -> None:
    url = _client_url(host, port)
    print(banner(repositories, url, embedded_default), flush=True)
    print(f"pywharf {__version__}: {listening_line(host, bound, port)}", flush=True)


def listening_line(host: str, bound: str, port: int) -> str:
    """What is bound, in words; for a wildcard, also the address to use from here."""
    if host in WILDCARDS:
        return (
            f"listening on {WILDCARDS[host]} ({host or '::'}) port {port}; "
            f"from this machine: {_client_url(host, port)}"
        )
    return f"listening on {_client_url(bound if host == 'localhost' else host, port)}"


def _serve_uvicorn(
    app: Any,
    host: str,
    port: int,
    repositories: Mapping[str, Repository],
    loaded: LoadedConfig,
    options: dict[str, Any],
) -> None:
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "--server uvicorn needs uvicorn: pip install '.[uvicorn]' in a pywharf checkout "
            "(pywharf[uvicorn] from PyPI is the older pywharf 0.2.3)"
        ) from None
    unknown = set(options) - set(WAITRESS_DEFAULTS) - {"max_request_body_size"}
    if unknown:
        raise ConfigError(f"unknown flag for --server uvicorn: --{sorted(unknown)[0]}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with _translate_bind_errors(host, port):
        sock.bind((host, port))
    sock.listen(2048)  # before the URL is announced: a quick first client is not refused
    bound, bound_port = sock.getsockname()[:2]
    _announce(repositories, host, bound, bound_port, loaded.embedded_default)
    config = uvicorn.Config(
        without_internal_headers(limit_body(app)),
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",  # no WebSocket endpoints: do not load a WebSocket library
        proxy_headers=False,
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def without_internal_headers(app: Any) -> Any:
    """ASGI wrapper for servers without pywharf's WSGI adapter: the internal
    ``x-pywharf-*`` headers never reach clients (the message stays in the body)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def filtered(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [
                    (k, v) for k, v in message["headers"] if not k.lower().startswith(b"x-pywharf-")
                ]
            await send(message)

        await app(scope, receive, filtered)

    return wrapped


def _client_url(host: str, port: int) -> str:
    shown = {"::": "::1", "": "::1", "0.0.0.0": "127.0.0.1", "localhost": "127.0.0.1"}.get(  # noqa: S104
        host, host
    )
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def banner(repositories: Mapping[str, Repository], url: str, embedded_default: bool) -> str:
    lines = [
        f"pywharf {__version__}: serving {len(repositories)} repository(ies): "
        + ", ".join(f"{n} ({r.config.spec.type})" for n, r in repositories.items())
    ]
    for name, repo in repositories.items():
        if repo.upstream is not None:  # the URL without its credentials
            lines.append(
                f"Repository {name!r}: projects without private files come from {repo.upstream.url}"
            )
    if embedded_default:
        repo = repositories[EMBEDDED_REPO]
        read, write = repo.policy.read_secret, repo.policy.write_secret
        host = url.split("//", 1)[1].rstrip("/")
        index = f"http://{EMBEDDED_REPO}:{read}@{host}/simple/"
        upload = f"{url}simple/"
        lines += [
            f"Embedded default repository {EMBEDDED_REPO!r}, files in "
            f"{getattr(repo.backend, 'root', '?')}",
            f"  read secret:  {read}",
            f"  write secret: {write}",
            "Install:",
            f"  pip install --index-url {index} <package>",
            f"  uv pip install --index-url {index} <package>",
            "Upload:",
            f"  twine upload --repository-url {upload} -u {EMBEDDED_REPO} -p {write} dist/*",
            f"  uv publish --publish-url {upload} --username {EMBEDDED_REPO} "
            f"--password {write} dist/*",
        ]
    return "\n".join(lines)


def print_error(message: str) -> None:
    print(f"pywharf: error: {message}", file=sys.stderr)
