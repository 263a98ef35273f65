"""Receiving after the cheaper staging name and the cached part-header parse: each
upload still gets a fresh private staging file and its own filename and fields."""

from __future__ import annotations

import itertools
import stat
from pathlib import Path

import pytest

from pywharf_core import files, upload
from pywharf_core.files import leftover_prefix
from pywharf_core.upload import MultipartUpload

BOUNDARY = b"----b0undary"


def body(fields: dict[str, str], filename: str, data: bytes) -> bytes:
    parts = [
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        + value.encode() + b"\r\n"
        for name, value in fields.items()
    ]  # fmt: skip
    parts.append(
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="content"; filename="' + filename.encode()
        + b'"\r\n\r\n' + data + b"\r\n"
    )  # fmt: skip
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


def receive(
    folder: Path, fields: dict[str, str], filename: str, data: bytes
) -> upload.ReceivedUpload:
    reader = MultipartUpload(BOUNDARY, folder, 10**6)
    reader.feed(body(fields, filename, data))
    return reader.finish()


def test_uploads_in_a_row_each_get_their_own_file_name_and_fields(tmp_path: Path) -> None:
    seen = set()
    for n in range(3):
        fields = {":action": "file_upload", "name": f"p{n}", "version": f"{n}.0"}
        got = receive(tmp_path, fields, f"p{n}-{n}.0.tar.gz", b"x" * (n + 1))
        assert got.filename == f"p{n}-{n}.0.tar.gz"
        assert got.fields == fields
        assert got.staged.path.read_bytes() == b"x" * (n + 1)
        assert got.staged.path.name.startswith(leftover_prefix(".upload-"))
        assert stat.S_IMODE(got.staged.path.stat().st_mode) == 0o600
        seen.add(got.staged.path)
    assert len(seen) == 3


def test_a_staging_name_left_by_an_earlier_process_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_serial", itertools.count(3))
    left = tmp_path / f"{leftover_prefix('.upload-')}3.part"
    left.write_bytes(b"left")
    got = receive(tmp_path, {":action": "file_upload"}, "a-1.0.tar.gz", b"new")
    assert got.staged.path != left
    assert got.staged.path.read_bytes() == b"new"
    assert left.read_bytes() == b"left"
