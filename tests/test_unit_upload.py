"""``pywharf_core.upload.MultipartUpload``: the streaming receive path of an upload, fed
by hand in chunks of every size (the validate/store steps are in test_pipeline.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pywharf_core import upload
from pywharf_core.errors import FileTooLarge, UploadRejected
from pywharf_core.files import leftover_prefix
from pywharf_core.upload import MAX_KEPT_FIELD_BYTES, MAX_PART_HEADER_BYTES, MultipartUpload

BOUNDARY = b"----b0undary"
FILE = bytes(range(256)) * 40 + b"\r\n--not the boundary\r\n"  # 10 KiB with boundary look-alikes


def field(name: str, value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
    return b"--" + BOUNDARY + b"\r\n" + head + data + b"\r\n"


def file_part(data: bytes, filename: bytes = b"foo-1.0.tar.gz", name: str = "content") -> bytes:
    head = (
        b'Content-Disposition: form-data; name="' + name.encode() + b'"; filename="' + filename
    ) + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
    return b"--" + BOUNDARY + b"\r\n" + head + data + b"\r\n"


END = b"--" + BOUNDARY + b"--\r\n"
#: Five headers of 4000 bytes: each within the parser's own line limit, together past ours.
MANY_HEADERS = b"".join(b"X-Pad-%d: " % n + b"p" * 4000 + b"\r\n" for n in range(5))
assert len(MANY_HEADERS) > MAX_PART_HEADER_BYTES


def staged_files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def feed(reader: MultipartUpload, body: bytes, chunk: int) -> int:
    """Feed ``body`` in chunks; how many chunks went in (the last one may have raised)."""
    count = 0
    for start in range(0, len(body), chunk):
        count += 1
        reader.feed(body[start : start + chunk])
    return count


@pytest.mark.parametrize("chunk", [1, 7, 4096, 10**9])
def test_fields_kept_and_dropped_and_the_file_staged_and_hashed(tmp_path: Path, chunk: int) -> None:
    body = (
        field(":action", "file_upload")
        + field("name", "foo")
        + field("version", "1.0")
        + field("md5_digest", "whatever")
        + field("description", "# A long README\n" * 100)
        + field("classifiers", "Programming Language :: Python")
        + field("classifiers", "License :: OSI Approved")
        + field("requires_python", ">=3.9")
        + file_part(b"signature bytes", b"foo-1.0.tar.gz.asc", name="gpg_signature")
        + file_part(FILE)
        + END
    )
    reader = MultipartUpload(BOUNDARY, tmp_path, max_file_bytes=len(FILE))
    feed(reader, body, chunk)
    received = reader.finish()
    assert received.fields == {
        ":action": "file_upload",
        "name": "foo",
        "version": "1.0",
        "md5_digest": "whatever",
        "requires_python": ">=3.9",
    }
    assert received.filename == "foo-1.0.tar.gz"
    staged = received.staged
    assert staged_files(tmp_path) == [staged.path]  # the signature is not staged
    assert staged.path.name.startswith(leftover_prefix(".upload-"))
    assert staged.path.read_bytes() == FILE
    assert staged.size == len(FILE)
    assert staged.sha256 == hashlib.sha256(FILE).hexdigest()
    # md5 was named before the file, so it was computed in the same pass
    assert received.digests == {
        "sha256_digest": hashlib.sha256(FILE).hexdigest(),
        "md5_digest": hashlib.md5(FILE).hexdigest(),
    }
    reader.discard()
    assert staged_files(tmp_path) == []


def test_digests_named_after_the_file_are_left_for_later(tmp_path: Path) -> None:
    body = (
        field("blake2_256_digest", "x")
        + file_part(FILE)
        + field("md5_digest", "y")
        + field("sha256_digest", "z")
        + END
    )
    reader = MultipartUpload(BOUNDARY, tmp_path, 10**6)
    reader.feed(body)
    received = reader.finish()
    assert received.digests == {
        "sha256_digest": hashlib.sha256(FILE).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(FILE, digest_size=32).hexdigest(),
    }
    assert received.fields == {"blake2_256_digest": "x", "md5_digest": "y", "sha256_digest": "z"}
    reader.discard()


def test_an_empty_file_is_received(tmp_path: Path) -> None:
    reader = MultipartUpload(BOUNDARY, tmp_path, 10)
    reader.feed(file_part(b"") + END)
    received = reader.finish()
    assert received.staged.size == 0 and received.staged.path.read_bytes() == b""
    assert received.staged.sha256 == hashlib.sha256(b"").hexdigest()
    reader.discard()


def test_a_file_of_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    reader = MultipartUpload(BOUNDARY, tmp_path, max_file_bytes=len(FILE))
    reader.feed(file_part(FILE) + END)
    assert reader.finish().staged.size == len(FILE)
    reader.discard()


def test_file_too_large_is_raised_mid_stream_and_discard_cleans_up(tmp_path: Path) -> None:
    limit = 1000
    body = field("name", "foo") + file_part(FILE * 10) + END
    reader = MultipartUpload(BOUNDARY, tmp_path, max_file_bytes=limit)
    fed = 0
    with pytest.raises(FileTooLarge) as info:
        for start in range(0, len(body), 512):
            fed += 1
            reader.feed(body[start : start + 512])
    assert info.value.limit == limit and info.value.what == "files"
    assert fed * 512 < len(body) // 10  # stopped soon after the limit, not at the end
    (partial,) = staged_files(tmp_path)
    assert partial.stat().st_size <= limit  # nothing past the limit was written
    reader.discard()
    assert staged_files(tmp_path) == []


def test_a_kept_field_has_a_size_cap_and_a_dropped_one_does_not(tmp_path: Path) -> None:
    reader = MultipartUpload(BOUNDARY, tmp_path, 10**6)
    reader.feed(field("description", "d" * (4 * MAX_KEPT_FIELD_BYTES)))
    reader.feed(field("name", "n" * MAX_KEPT_FIELD_BYTES))  # exactly the cap
    with pytest.raises(UploadRejected, match="Form field 'version' is too long"):
        reader.feed(field("version", "1" * (MAX_KEPT_FIELD_BYTES + 1)))
    assert reader.fields["name"] == "n" * MAX_KEPT_FIELD_BYTES
    assert "description" not in reader.fields


def test_all_form_fields_together_have_a_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real cap is 64 MiB; the rule is the same at 100 KiB and much faster to feed.
    monkeypatch.setattr(upload, "MAX_FORM_BYTES", 100_000)
    reader = MultipartUpload(BOUNDARY, tmp_path, 10**9)
    reader.feed(
        field("description", "d" * 60_000) + file_part(FILE * 20)
    )  # the file is not counted
    with pytest.raises(FileTooLarge) as info:
        reader.feed(field("summary", "s" * 50_000))
    assert info.value.limit == 100_000 and "form fields" in info.value.what
    reader.discard()
    assert staged_files(tmp_path) == []


@pytest.mark.parametrize(
    "body, words",
    [
        (b"", "ends before its closing boundary"),
        (field("name", "foo") + file_part(FILE), "ends before its closing boundary"),
        (field("name", "foo") + END, "no 'content' file part"),
        (field("content", "no filename") + END, "no 'content' file part"),
        (file_part(FILE, name="other") + END, "no 'content' file part"),
        (file_part(b"1") + file_part(b"2") + END, "more than one 'content'"),
        (b"this is not a multipart body", "Malformed multipart body"),
        (b"--" + BOUNDARY + b" junk", "Malformed multipart body"),
        (b"--" + BOUNDARY + b"\r\nNoColonHere\r\n\r\nx\r\n" + END, "Malformed multipart body"),
        (b"--" + BOUNDARY + b"\r\nX-Pad: " + b"p" * 5000 + b"\r\n\r\n", "Malformed multipart"),
        (b"--" + BOUNDARY + b"\r\n" + MANY_HEADERS + b"\r\n", "part headers too long"),
        (field("name", b"\xff\xfe") + END, "Form field 'name' is not UTF-8"),
        (file_part(b"x", filename=b"f\xffoo.whl") + END, "filename is not valid UTF-8"),
    ],
    ids=[
        "empty",
        "no-closing-boundary",
        "no-file",
        "content-without-filename",
        "file-under-another-name",
        "two-files",
        "not-multipart",
        "bad-boundary-line",
        "bad-header",
        "one-header-too-long",
        "headers-too-long",
        "field-not-utf8",
        "filename-not-utf8",
    ],
)
def test_malformed_bodies_are_rejected_and_leave_nothing(
    tmp_path: Path, body: bytes, words: str
) -> None:
    reader = MultipartUpload(BOUNDARY, tmp_path, 10**6)
    with pytest.raises(UploadRejected, match=words):
        reader.feed(body)
        reader.finish()
    reader.discard()
    assert staged_files(tmp_path) == []


def test_discard_is_safe_before_any_file_and_twice(tmp_path: Path) -> None:
    MultipartUpload(BOUNDARY, tmp_path, 10).discard()
    reader = MultipartUpload(BOUNDARY, tmp_path, 10**6)
    reader.feed(file_part(FILE)[:200])  # the file has begun
    assert len(staged_files(tmp_path)) == 1
    reader.discard()
    reader.discard()
    assert staged_files(tmp_path) == []
