"""The legacy upload API: what is accepted, what is refused (status and message), and
that a refused upload leaves nothing behind."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
from pathlib import Path

import pytest
import requests
from wharftest.configs import MAIN_AND_SMALL
from wharftest.distbuilder import build_sdist, build_wheel, sha256_of
from wharftest.server import WharfServer, get

CONFIG = MAIN_AND_SMALL
WRITE = ("main", "main-write")
READ = ("main", "main-read")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("upload")
    config = base / "config.toml"
    config.write_text(CONFIG)
    server = WharfServer(base / "root", "--config", str(config)).start()
    yield server
    server.stop()


def form_for(path: Path, name: str, version: str, **extra: str) -> dict[str, str]:
    data = path.read_bytes()
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version,
        "filetype": "bdist_wheel" if path.name.endswith(".whl") else "sdist",
        "pyversion": "py3" if path.name.endswith(".whl") else "source",
        "metadata_version": "2.1",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "md5_digest": hashlib.md5(data).hexdigest(),
    }
    fields.update(extra)
    return fields


def upload(
    server: WharfServer,
    path: Path,
    name: str,
    version: str,
    *,
    auth: tuple[str, str] | None = WRITE,
    filename: str | None = None,
    prefix: str = "simple/",
    headers: dict[str, str] | None = None,
    **extra: str,
) -> requests.Response:
    fields = form_for(path, name, version, **extra)
    files = {"content": (filename or path.name, path.read_bytes(), "application/octet-stream")}
    return requests.post(
        server.url + prefix, data=fields, files=files, auth=auth, headers=headers, timeout=60
    )


def assert_refused(response: requests.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.text, response.text
        assert word.lower() in response.reason.lower(), response.reason


def storage(server: WharfServer, repo: str = "main") -> Path:
    return server.root / "cache" / repo / "storage"


def stored_files(server: WharfServer, repo: str = "main") -> set[str]:
    return {p.name for p in storage(server, repo).rglob("*") if p.is_file()}


def test_accepts_and_lists_at_once(server: WharfServer, tmp_path: Path) -> None:
    dist = build_wheel(tmp_path, "accept-me", "1.0")
    response = upload(server, dist.path, "accept-me", "1.0")
    assert response.status_code == 200, response.text
    page = get(server, "simple/accept-me/", auth=READ)
    assert page.status_code == 200
    assert f"{dist.filename}#sha256={dist.sha256}" in page.text
    # The wheel's METADATA is stored beside the file, for PEP 658.
    assert (
        (storage(server) / "accept-me" / f"{dist.filename}.metadata")
        .read_bytes()
        .startswith(b"Metadata-Version")
    )


def test_duplicate_same_bytes_is_ok_different_bytes_conflict(
    server: WharfServer, tmp_path: Path
) -> None:
    dist = build_wheel(tmp_path / "a", "dup-proj", "1.0")
    assert upload(server, dist.path, "dup-proj", "1.0").status_code == 200
    again = upload(server, dist.path, "dup-proj", "1.0")
    assert again.status_code == 200, again.text
    assert "already stored with identical content" in again.text
    other = build_wheel(tmp_path / "b", "dup-proj", "1.0", summary="other bytes")
    conflict = upload(server, other.path, "dup-proj", "1.0")
    assert conflict.status_code == 409
    assert conflict.reason.startswith("File already exists")
    assert not [h for h in conflict.headers if h.lower().startswith("x-pywharf")]
    assert conflict.text.startswith("File already exists")
    downloaded = get(server, f"simple/dup-proj/{dist.filename}", auth=READ).content
    assert hashlib.sha256(downloaded).hexdigest() == dist.sha256


def test_credentials_are_checked(server: WharfServer, tmp_path: Path) -> None:
    dist = build_wheel(tmp_path, "auth-proj", "1.0")
    no_auth = upload(server, dist.path, "auth-proj", "1.0", auth=None)
    wrong = upload(server, dist.path, "auth-proj", "1.0", auth=("main", "nope"))
    unknown_repo = upload(server, dist.path, "auth-proj", "1.0", auth=("nosuchrepo", "main-write"))
    for response in (no_auth, wrong, unknown_repo):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pywharf"'
    # An unknown repository looks exactly like a wrong secret.
    assert wrong.text == unknown_repo.text and wrong.reason == unknown_repo.reason
    read_only = upload(server, dist.path, "auth-proj", "1.0", auth=READ)
    assert_refused(read_only, 403, "only read")
    # The other repository's write secret is no good here.
    assert (
        upload(server, dist.path, "auth-proj", "1.0", auth=("main", "small-write")).status_code
        == 401
    )
    assert "auth-proj" not in stored_files(server)


@pytest.mark.parametrize(
    "filename, words",
    [
        ("../../escape-1.0.tar.gz", ["Invalid filename", "path separators"]),
        ("..\\escape-1.0.tar.gz", ["Invalid filename"]),
        ("sub/dir-1.0.tar.gz", ["Invalid filename"]),
        (".hidden-1.0.tar.gz", ["Invalid filename"]),
        ("evil\x07-1.0.tar.gz", ["Invalid filename"]),
        ("fine-1.0.exe", ["only wheels"]),
        ("fine-1.0-py3.whl", ["Invalid filename"]),
        ("fine.tar.gz", ["Invalid filename"]),
    ],
)
def test_bad_filenames_are_refused(
    server: WharfServer, tmp_path: Path, filename: str, words: list[str]
) -> None:
    dist = build_sdist(tmp_path, "fine", "1.0")
    before = stored_files(server)
    response = upload(server, dist.path, "fine", "1.0", filename=filename)
    assert response.status_code == 400, response.text
    for word in words:
        assert word in response.text
    assert stored_files(server) == before
    assert not (server.root / "escape-1.0.tar.gz").exists()


def test_name_and_version_must_match_the_filename(server: WharfServer, tmp_path: Path) -> None:
    dist = build_wheel(tmp_path, "match-me", "1.0")
    assert_refused(upload(server, dist.path, "other-name", "1.0"), 400, "does not belong")
    assert_refused(upload(server, dist.path, "match-me", "2.0"), 400, "does not match version")
    # Normalization and version equivalence are fine.
    assert upload(server, dist.path, "Match_Me", "1.0.0").status_code == 200


def test_metadata_inside_must_match_and_archive_must_be_valid(
    server: WharfServer, tmp_path: Path
) -> None:
    liar = build_wheel(tmp_path / "liar", "inner-name", "1.0")
    renamed = liar.path.with_name("outer_name-1.0-py3-none-any.whl")
    liar.path.rename(renamed)
    assert_refused(upload(server, renamed, "outer-name", "1.0"), 400, "does not match the filename")
    broken = tmp_path / "broken_wheel-1.0-py3-none-any.whl"
    broken.write_bytes(b"this is not a zip file at all")
    assert_refused(upload(server, broken, "broken-wheel", "1.0"), 400, "not a valid wheel")
    empty = tmp_path / "empty_file-1.0.tar.gz"
    empty.write_bytes(b"")
    assert_refused(upload(server, empty, "empty-file", "1.0"), 400, "empty")


@pytest.mark.parametrize(
    "field, algorithm",
    [("sha256_digest", "sha256"), ("md5_digest", "md5"), ("blake2_256_digest", "blake2_256")],
)
def test_client_digests_are_verified(
    server: WharfServer, tmp_path: Path, field: str, algorithm: str
) -> None:
    dist = build_wheel(tmp_path, f"digest-{algorithm.replace('_', '-')}", "1.0")
    name = dist.name
    response = upload(server, dist.path, name, "1.0", **{field: "0" * 64})
    assert_refused(response, 400, algorithm)
    assert get(server, f"simple/{name}/", auth=READ).status_code == 404
    good = hashlib.blake2b(dist.path.read_bytes(), digest_size=32).hexdigest()
    assert upload(server, dist.path, name, "1.0", blake2_256_digest=good).status_code == 200


def test_too_large_is_413_and_nothing_stored(server: WharfServer, tmp_path: Path) -> None:
    from wharftest.distbuilder import filler

    big = build_wheel(tmp_path, "too-big", "1.0", extra={"too_big/blob.bin": filler(10_000)})
    response = upload(server, big.path, "too-big", "1.0", auth=("small", "small-write"))
    assert_refused(response, 413, "at most 4096 bytes")
    assert stored_files(server, "small") == set()
    small = build_wheel(tmp_path / "s", "small-enough", "1.0")
    assert upload(server, small.path, "small-enough", "1.0", auth=("small", "small-write")).ok


def raw_post(server: WharfServer, body: bytes, content_type: str) -> tuple[int, str]:
    import base64

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        token = base64.b64encode(b"main:main-write").decode()
        connection.request(
            "POST",
            "/simple/",
            body=body,
            headers={"Content-Type": content_type, "Authorization": f"Basic {token}"},
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "body, content_type, words",
    [
        (b"not multipart at all", "text/plain", "multipart/form-data"),
        (b"garbage without boundaries", "multipart/form-data; boundary=XyZ", "Malformed"),
        (
            b'--XyZ\r\nContent-Disposition: form-data; name=":action"\r\n\r\n'
            b"file_upload\r\n--XyZ--\r\n",
            "multipart/form-data; boundary=XyZ",
            "no 'content' file part",
        ),
        (  # cut off inside the file: no closing boundary
            b'--XyZ\r\nContent-Disposition: form-data; name="content"; '
            b'filename="a-1.0.tar.gz"\r\n\r\nabc',
            "multipart/form-data; boundary=XyZ",
            "Malformed",
        ),
        (  # a boundary longer than RFC 2046 allows
            b"--" + b"b" * 300 + b"--\r\n",
            "multipart/form-data; boundary=" + "b" * 300,
            "RFC 2046",
        ),
        (  # multipart without a boundary parameter
            b'--XyZ\r\nContent-Disposition: form-data; name="content"; '
            b'filename="a-1.0.tar.gz"\r\n\r\nx\r\n--XyZ--\r\n',
            "multipart/form-data",
            "boundary",
        ),
    ],
)
def test_malformed_bodies_are_400(
    server: WharfServer, body: bytes, content_type: str, words: str
) -> None:
    status, text = raw_post(server, body, content_type)
    assert status == 400, text
    assert words in text
    assert not list((storage(server) / ".pywharf-staging").glob(".upload-*"))


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_digests_sent_after_the_file_are_verified_too(server: WharfServer, tmp_path: Path) -> None:
    dist = build_wheel(tmp_path, "late-digest", "1.0")
    data = dist.path.read_bytes()
    for digest, status in (("0" * 64, 400), (hashlib.sha256(data).hexdigest(), 200)):
        body = multipart(
            [
                (":action", None, b"file_upload"),
                ("name", None, b"late-digest"),
                ("version", None, b"1.0"),
                ("content", dist.filename, data),
                ("sha256_digest", None, digest.encode()),
            ]
        )
        code, text = raw_post(server, body, "multipart/form-data; boundary=b0undary")
        assert code == status, text


def test_other_actions_are_refused(server: WharfServer, tmp_path: Path) -> None:
    dist = build_wheel(tmp_path, "action-proj", "1.0")
    assert_refused(
        upload(server, dist.path, "action-proj", "1.0", **{":action": "submit"}), 400, "file_upload"
    )


def test_cross_site_browser_posts_are_refused(server: WharfServer, tmp_path: Path) -> None:
    dist = build_wheel(tmp_path, "csrf-proj", "1.0")
    response = upload(
        server, dist.path, "csrf-proj", "1.0", headers={"Origin": "https://evil.example"}
    )
    assert_refused(response, 403, "Cross-site")


def test_concurrent_uploads_of_one_filename_exactly_one_wins(
    server: WharfServer, tmp_path: Path
) -> None:
    variants = [
        build_wheel(tmp_path / str(i), "race-proj", "1.0", summary=f"variant {i}") for i in range(8)
    ]
    assert len({v.sha256 for v in variants}) == 8
    barrier = threading.Barrier(8)
    results: dict[int, requests.Response] = {}

    def go(i: int) -> None:
        barrier.wait()
        results[i] = upload(server, variants[i].path, "race-proj", "1.0")

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200] + [409] * 7, [r.text for r in results.values()]
    winner = next(i for i, r in results.items() if r.status_code == 200)
    downloaded = get(server, f"simple/race-proj/{variants[0].filename}", auth=READ).content
    assert hashlib.sha256(downloaded).hexdigest() == variants[winner].sha256
    assert (
        sha256_of(storage(server) / "race-proj" / variants[0].filename) == variants[winner].sha256
    )


def test_rejected_uploads_leave_no_staging_files(server: WharfServer, tmp_path: Path) -> None:
    # Refusals at every step of the pipeline, made here (under xdist other tests of this
    # module may run on another worker's server).
    dist = build_wheel(tmp_path, "left-over", "1.0")
    big = build_wheel(
        tmp_path / "big", "left-over", "2.0", extra={"left_over/x.bin": os.urandom(9000)}
    )
    assert_refused(upload(server, dist.path, "left-over", "1.0", sha256_digest="0" * 64), 400)
    assert_refused(upload(server, dist.path, "other", "1.0"), 400)
    assert_refused(upload(server, big.path, "left-over", "2.0", auth=("small", "small-write")), 413)
    status, _ = raw_post(
        server,
        b'--XyZ\r\nContent-Disposition: form-data; name="content"; filename="a-1.0.tar.gz"'
        b"\r\n\r\nabc",
        "multipart/form-data; boundary=XyZ",
    )
    assert status == 400
    leftovers = list((storage(server) / ".pywharf-staging").glob(".upload-*"))
    assert leftovers == []
    assert not list(storage(server).rglob(".tmp-*"))
