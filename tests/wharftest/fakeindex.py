"""A hand-made package index for the upstream tests: honest or not, slow on purpose."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from .inprocess import ThreadedWaitress


class FakeIndex:
    """A hand-made upstream (a WSGI app): one project whose page declares ``declared``
    and whose file serves ``served``, slowly; it counts the file's downloads."""

    def __init__(
        self, served: bytes, declared: bytes, declare_size: bool = True, answer_head: bool = True
    ) -> None:
        self.served = served
        self.declared = declared
        self.declare_size = declare_size
        self.answer_head = answer_head
        self.file_gets = 0
        self.file_heads = 0
        self.file_status = "200 OK"  # another status: what the file's URL answers
        self.file_encodings: list[str] = []  # the Accept-Encoding of each file request
        self.file_ports: list[str] = []  # the client port of each: a new one, a new connection
        self._lock = threading.Lock()
        self.filename = "fake-1.0-py3-none-any.whl"
        self.server = ThreadedWaitress(self.app, threads=16)
        self.url = f"http://127.0.0.1:{self.server.port}/simple/"

    def app(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        path = environ["PATH_INFO"]
        if path == "/simple/fake/":
            item: dict[str, Any] = {
                "filename": self.filename,
                "url": f"/files/{self.filename}",
                "hashes": {"sha256": hashlib.sha256(self.declared).hexdigest()},
                "upload-time": "2020-01-01T00:00:00Z",
                "x-unknown": {"kept": True},
            }
            if self.declare_size:
                item["size"] = len(self.declared)
            page = {"meta": {"api-version": "1.1"}, "name": "fake", "versions": ["1.0"]}
            body = json.dumps({**page, "files": [item]}).encode()
            start_response("200 OK", [("Content-Type", "application/vnd.pypi.simple.v1+json")])
            return iter([body])
        if path == f"/files/{self.filename}":
            head = environ["REQUEST_METHOD"] == "HEAD"
            with self._lock:
                if head:
                    self.file_heads += 1
                else:
                    self.file_gets += 1
                self.file_encodings.append(environ.get("HTTP_ACCEPT_ENCODING", ""))
                self.file_ports.append(environ.get("REMOTE_PORT", ""))
            if self.file_status != "200 OK":
                start_response(self.file_status, [("Content-Type", "text/plain")])
                return iter([] if head else [b"no"])
            if head and not self.answer_head:
                start_response("405 Method Not Allowed", [("Allow", "GET")])
                return iter([])
            start_response("200 OK", [("Content-Length", str(len(self.served)))])
            return iter([]) if head else self._slowly()
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return iter([b"not here"])

    def _slowly(self) -> Iterator[bytes]:
        for start in range(0, len(self.served), 64 * 1024):
            yield self.served[start : start + 64 * 1024]
            time.sleep(0.01)
