"""Uploads and downloads stream: the server's memory does not grow with file size."""

from __future__ import annotations

import hashlib
import http.client
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests
from wharftest.distbuilder import build_wheel, filler
from wharftest.server import basic_auth, upload_file

SIZE = 300 * 1024 * 1024
LIMIT_KB = 100 * 1024


def multipart_stream(path: Path, fields: dict[str, str]) -> tuple[str, int, Iterator[bytes]]:
    boundary = uuid.uuid4().hex
    head = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
    )
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk
        yield tail

    length = len(head) + path.stat().st_size + len(tail)
    return f"multipart/form-data; boundary={boundary}", length, chunks()


def test_300_mb_upload_and_download_keep_server_memory_flat(start_server, tmp_path: Path) -> None:
    server = start_server()
    wheel = build_wheel(tmp_path, "big-wheel", "1.0", extra={"big_wheel/blob.bin": filler(SIZE)})
    assert wheel.path.stat().st_size > SIZE
    small = build_wheel(tmp_path / "warm", "warm-up", "1.0")
    auth = ("local", server.write_secret)

    # Warm up: load every module an upload and a download touch, then measure from there.
    assert upload_file(server, small.path, "warm-up", "1.0", auth).ok
    assert requests.get(f"{server.url}simple/warm-up/{small.filename}", auth=auth, timeout=30).ok
    baseline = server.pid_status("VmHWM")

    content_type, length, body = multipart_stream(
        wheel.path,
        {
            ":action": "file_upload",
            "protocol_version": "1",
            "name": "big-wheel",
            "version": "1.0",
            "sha256_digest": wheel.sha256,
        },
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    try:
        connection.request(
            "POST",
            "/simple/",
            body=body,
            headers={
                "Content-Type": content_type,
                "Content-Length": str(length),
                **basic_auth(*auth),
            },
        )
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    assert response.status == 200, text
    after_upload = server.pid_status("VmHWM")
    print(f"server peak RSS: baseline {baseline} kB, after 300 MB upload {after_upload} kB")
    assert after_upload - baseline < LIMIT_KB

    hasher = hashlib.sha256()
    with requests.get(
        f"{server.url}simple/big-wheel/{wheel.filename}", auth=auth, stream=True, timeout=300
    ) as download:
        assert download.status_code == 200
        for chunk in download.iter_content(1 << 20):
            hasher.update(chunk)
    assert hasher.hexdigest() == wheel.sha256
    after_download = server.pid_status("VmHWM")
    print(f"server peak RSS after the download: {after_download} kB")
    assert after_download - baseline < LIMIT_KB

    # A range is streamed by the app chunk by chunk (not handed to waitress's file
    # wrapper): each chunk must wait for the client, or the file would pile up in memory.
    start = 1000
    hasher = hashlib.sha256()
    with requests.get(
        f"{server.url}simple/big-wheel/{wheel.filename}",
        auth=auth,
        stream=True,
        timeout=300,
        headers={"Range": f"bytes={start}-"},
    ) as partial:
        assert partial.status_code == 206
        for chunk in partial.iter_content(1 << 20):
            hasher.update(chunk)
    with wheel.path.open("rb") as handle:
        handle.seek(start)
        expected = hashlib.sha256()
        while block := handle.read(1 << 20):
            expected.update(block)
    assert hasher.hexdigest() == expected.hexdigest()
    after_range = server.pid_status("VmHWM")
    print(f"server peak RSS after a streamed range: {after_range} kB")
    assert after_range - baseline < LIMIT_KB
