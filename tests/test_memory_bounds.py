"""Memory stays bounded under load (issue 14, items 12 and 13): clients that stop reading
a large download do not make the server hold buffers for them, and concurrent requests
do not make glibc open an arena per thread."""

from __future__ import annotations

import base64
import os
import re
import socket
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from wharftest.server import WharfServer, upload_file

from pywharf_core.memory import glibc_arenas

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc and glibc's allocator"
)


def rss_mb(server: WharfServer) -> float:
    return server.pid_status("VmRSS") / 1024


def wheel(folder: Path, name: str, size: int) -> Path:
    path = folder / f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name.replace('-', '_')}/blob.bin", os.urandom(size))
        archive.writestr(
            f"{name.replace('-', '_')}-1.0.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n",
        )
    return path


def test_clients_that_stop_reading_a_download_hold_no_buffers(start_server, tmp_path: Path) -> None:
    server: WharfServer = start_server()
    big = wheel(tmp_path, "stalled-big", 64 << 20)
    write, read = ("local", server.write_secret), ("local", server.read_secret)
    assert upload_file(server, big, "stalled-big", "1.0", write).status_code == 200
    page = requests.get(server.url + "simple/stalled-big/", auth=read, timeout=10).text
    href = re.search(r'href="([^"#]+\.whl)', page)
    assert href is not None
    token = base64.b64encode(f"{read[0]}:{read[1]}".encode()).decode()
    request = (
        f"GET /simple/stalled-big/{href.group(1)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Basic {token}\r\n\r\n"
    ).encode()
    time.sleep(0.5)
    before = rss_mb(server)
    stalled = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(request)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")  # then it stops reading
            stalled.append(sock)
        time.sleep(2)
        during = rss_mb(server)
    finally:
        for sock in stalled:
            sock.close()
    time.sleep(1)
    after = rss_mb(server)
    # Before: +27-31 MB while they hung, and as much after they left.
    assert during - before < 12, (before, during)
    assert after - before < 12, (before, after)


def test_concurrent_requests_share_a_few_arenas(start_server, tmp_path: Path) -> None:
    server: WharfServer = start_server()
    assert server.proc is not None
    write, read = ("local", server.write_secret), ("local", server.read_secret)
    wheels = [wheel(tmp_path, f"arena-{i}", (1 << 20) + i * 4096) for i in range(32)]

    def upload(path: Path) -> int:
        name = path.name.split("-")[0].replace("_", "-")
        return upload_file(server, path, name, "1.0", write).status_code

    def pages(i: int) -> int:
        return requests.get(server.url + "simple/", auth=read, timeout=30).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(upload, wheels)) + list(pool.map(pages, range(64)))
    assert set(statuses) == {200}
    # Before: one arena per busy thread (15 under the soak, 16 threads).
    assert glibc_arenas(server.proc.pid) <= 2
