"""Operations endpoints: liveness, readiness and Prometheus metrics.

    GET /healthz   200 while the process serves requests
    GET /readyz    200 when every repository's index has been synced, else 503; JSON
    GET /metrics   Prometheus text format; only with --metrics_token, and only to it

Repository names stay with those who hold a secret (an unknown repository looks exactly
like a wrong secret): anyone gets readiness as one yes or no, the holder of the metrics
token (``Authorization: Bearer <token>``, or as the basic-auth password, as Prometheus's
``authorization`` and ``basic_auth`` send it) gets it per repository, and the metrics.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .auth import parse_basic_auth
from .errors import NotFound, RequestRefused
from .repository import Repositories
from .upload import UploadResult

access_log = logging.getLogger("pywharf.access")


class Metrics:
    """The app's metrics, in a registry of its own (several apps may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pywharf_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pywharf_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.upload_files = Counter(
            "pywharf_upload_files",
            "Accepted uploads (stored or identical) by repository",
            ["repo", "result"],
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "pywharf_upload_bytes",
            "Bytes of newly stored uploads by repository",
            ["repo"],
            registry=self.registry,
        )

    def watch(self, repositories: Callable[[], Repositories]) -> None:
        """Report index metrics of the repositories this returns at each scrape."""
        self.registry.register(_IndexCollector(repositories))

    def uploaded(self, repo: str, size: int, result: UploadResult) -> None:
        self.upload_files.labels(repo, result.value).inc()
        if result is UploadResult.STORED:
            self.upload_bytes.labels(repo).inc(size)


class _IndexCollector(Collector):
    """Index age and sync failures, read from the repositories at scrape time."""

    def __init__(self, repositories: Callable[[], Repositories]) -> None:
        self._repositories = repositories

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "pywharf_index_age_seconds",
            "Seconds since the last successful index sync",
            labels=["repo"],
        )
        failures = GaugeMetricFamily(
            "pywharf_index_sync_failures", "Consecutive failed index syncs", labels=["repo"]
        )
        files = GaugeMetricFamily("pywharf_index_files", "Files in the index", labels=["repo"])
        now = time.time()
        for repo in self._repositories():
            if repo.synced_at is not None:
                age.add_metric([repo.name], now - repo.synced_at)
            failures.add_metric([repo.name], repo.sync_failures)
            files.add_metric([repo.name], repo.index.snapshot.file_count)
        yield age
        yield failures
        yield files


class ObservabilityMiddleware:
    """Counts, times and logs every HTTP request. Metrics are labelled by the name of the
    endpoint that served it; the access log (logger ``pywharf.access``) has the method,
    path, status and duration — never headers, so never credentials."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            # The router fills in the endpoint it matched; unmatched paths share one label.
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            access_log.info("%s %s %d %.4fs", scope["method"], scope["path"], status, elapsed)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


class MetricsTokenRequired(RequestRefused):
    """``/metrics`` (or ``/readyz``'s detail) without the right metrics token."""


def has_metrics_token(request: Request) -> bool:
    """The request carries the server's ``--metrics_token`` (compared in constant time)."""
    token: str | None = getattr(request.app.state, "metrics_token", None)
    if not token:
        return False
    header = request.headers.get("authorization") or ""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        credentials = parse_basic_auth(header)
        given = credentials.password if credentials is not None else ""
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


async def readyz(request: Request) -> Response:
    repositories: Repositories = request.app.state.repositories
    ready = all(repo.synced_at is not None for repo in repositories)
    status = 200 if ready else 503
    if not has_metrics_token(request):  # a load balancer needs no more than this
        return JSONResponse({"ready": ready}, status_code=status)
    now = time.time()
    report = {
        repo.name: {
            "synced": repo.synced_at is not None,
            "index_age_seconds": None if repo.synced_at is None else round(now - repo.synced_at, 3),
            "sync_failures": repo.sync_failures,
            "files": repo.index.snapshot.file_count,
        }
        for repo in repositories
    }
    return JSONResponse({"ready": ready, "repositories": report}, status_code=status)


async def metrics(request: Request) -> Response:
    if not getattr(request.app.state, "metrics_token", None):
        raise NotFound("/metrics is served when the server is started with --metrics_token")
    if not has_metrics_token(request):
        raise MetricsTokenRequired("/metrics needs the metrics token")
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
