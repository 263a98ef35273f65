"""Honouring ``X-Forwarded-Proto``, ``-Host``, ``-Prefix`` and ``-For`` from trusted
proxies only.

Behind a reverse proxy that serves pywharf under ``https://pkgs.example.com/pypi/``, the
proxy sends these headers and the URLs pywharf builds (redirects) use them. From any
other peer they are ignored, so nobody can make pywharf point clients elsewhere.
``X-Forwarded-For`` becomes the request's client address (the scope's ``client``), which
the failed-login throttle and ``/initialize/``'s open window judge.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

Scope = dict[str, Any]


class ProxyHeadersMiddleware:
    """ASGI middleware; ``trusted`` holds peer addresses, or ``"*"`` for every peer."""

    def __init__(self, app: Any, trusted: Iterable[str]) -> None:
        self.app = app
        self.trusted = frozenset(t.strip() for t in trusted if t.strip())

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.trusted and self._is_trusted(scope):
            scope = self._apply(scope)
            scope = self._forwarded_client(scope)
        await self.app(scope, receive, send)

    def _is_trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        return "*" in self.trusted or (client is not None and client[0] in self.trusted)

    @staticmethod
    def _apply(scope: Scope) -> Scope:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scope = dict(scope)
        proto = _first(headers.get("x-forwarded-proto"))
        if proto in ("http", "https"):
            scope["scheme"] = proto
        host = _first(headers.get("x-forwarded-host"))
        if host:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"host"] + [
                (b"host", host.encode("latin-1"))
            ]
            scope["server"] = None
        prefix = _first(headers.get("x-forwarded-prefix"))
        if prefix:
            prefix = "/" + prefix.strip("/")
            # Starlette routes on path minus root_path; URLs are built from path.
            scope["root_path"] = prefix + scope.get("root_path", "")
            if not scope["path"].startswith(prefix + "/"):
                raw = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
                scope["path"] = prefix + scope["path"]
                # raw_path is the path as sent: percent-encoded, so ASCII whatever it holds.
                scope["raw_path"] = quote(prefix).encode("ascii") + raw
        return scope

    def _forwarded_client(self, scope: Scope) -> Scope:
        """The client as the proxies saw it: the right-most ``X-Forwarded-For`` hop that is
        not itself a trusted proxy. Hops further left were written by the client (and by
        proxies nobody vouches for), so they could be anything; with ``*`` only the
        right-most hop, the one the proxy that connected to us wrote, is believed."""
        values = [
            v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"x-forwarded-for"
        ]
        hops = [hop.strip() for hop in ",".join(values).split(",") if hop.strip()]
        if not hops:
            return scope
        client = hops[-1]
        if "*" not in self.trusted:
            for hop in reversed(hops):
                client = hop
                if hop not in self.trusted:
                    break
        return {**scope, "client": (client, 0)}


def _first(value: str | None) -> str | None:
    return value.split(",")[0].strip() if value else None
