"""A recording reverse proxy: passes each request to a server and its answer back byte for
byte (a compressed body stays compressed), and notes what the two said about codings."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .inprocess import ThreadedWaitress

#: Not passed on: they are about one connection, and waitress frames the answer itself.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    accept_encoding: str | None  # what the client sent
    status: int
    content_encoding: str | None  # what the server answered
    wire_bytes: int  # the body as sent


class Recorder:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self.server = ThreadedWaitress(self.app, threads=8)
        self.url = f"http://127.0.0.1:{self.server.port}/"

    def index_url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.server.port}/simple/"

    def app(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        path = environ["PATH_INFO"]
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_") and key[5:].lower().replace("_", "-") not in HOP_BY_HOP
        }
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        connection = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=60)
        try:
            connection.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()  # http.client never decodes a Content-Encoding
        finally:
            connection.close()
        with self._lock:
            self.exchanges.append(
                Exchange(
                    environ["REQUEST_METHOD"],
                    path,
                    environ.get("HTTP_ACCEPT_ENCODING"),
                    response.status,
                    response.getheader("Content-Encoding"),
                    len(data),
                )
            )
        passed = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        start_response(f"{response.status} {response.reason}", passed)
        return iter([data])

    def stop(self) -> None:
        self.server.stop()
