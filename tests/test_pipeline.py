"""The upload pipeline (``pywharf_core.upload``) and the listing rules
(``pywharf_core.job``) driven in-process on a real file_system repository: no server is
started for what a function call can check."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pywharf_core.auth import AccessCache
from pywharf_core.config import parse_repo_configs, parse_toml
from pywharf_core.errors import DigestMismatch, FileExists, FileTooLarge, UploadRejected
from pywharf_core.files import remove_dead_leftovers
from pywharf_core.job import update_index
from pywharf_core.repository import Repository
from pywharf_core.testing import make_wheel
from pywharf_core.upload import UploadResult, accept_upload

CONFIG = """
[team]
type = "file_system"
read_secret = "team-read-secret-1"
write_secret = "team-write-secret-1"
max_file_bytes = 100000
"""
BOUNDARY = "p1pel1ne"


def open_repo(root: Path) -> Repository:
    config = parse_repo_configs(parse_toml(CONFIG, "<test>"))["team"]
    return Repository.open(config, root, None, AccessCache(60, 60))


def form(filename: str, data: bytes, **fields: str) -> bytes:
    name, version = filename.split("-")[:2]
    values = {
        ":action": "file_upload",
        "name": name,
        "version": version,
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        **fields,
    }
    body = b""
    for key, value in values.items():
        body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
        body += value.encode() + b"\r\n"
    body += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{filename}"\r\n\r\n'
    ).encode()
    return body + data + f"\r\n--{BOUNDARY}--\r\n".encode()


async def _chunks(body: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def upload(repo: Repository, body: bytes, length: str | None = None) -> UploadResult:
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    outcome = asyncio.run(accept_upload(repo, content_type, length, _chunks(body)))
    return outcome.result


def staging_leftovers(repo: Repository) -> list[str]:
    return [p.name for p in repo.backend.staging_dir().iterdir() if p.name.startswith(".upload-")]


def test_an_upload_is_stored_indexed_and_described(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    filename, data, metadata = make_wheel("pipe-line", "1.0", b"x = 1")
    assert upload(repo, form(filename, data)) is UploadResult.STORED
    record = repo.index.snapshot.find("pipe-line", filename)
    assert record is not None
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.core_metadata_sha256 == hashlib.sha256(metadata).hexdigest()
    assert upload(repo, form(filename, data)) is UploadResult.IDENTICAL
    other = make_wheel("pipe-line", "1.0", b"x = 2")[1]
    with pytest.raises(FileExists):
        upload(repo, form(filename, other))
    assert staging_leftovers(repo) == []


@pytest.mark.parametrize(
    "fields, error, words",
    [
        ({"sha256_digest": "0" * 64}, DigestMismatch, "sha256"),
        ({"sha256_digest": "", "md5_digest": "0" * 32}, UploadRejected, "sha256_digest"),
        ({"name": "other"}, UploadRejected, "does not belong"),
        ({"name": "bad name!"}, UploadRejected, "PEP 508"),
        ({"version": "2.0"}, UploadRejected, "does not match version"),
        ({":action": "submit"}, UploadRejected, "file_upload"),
    ],
)
def test_refusals_name_the_rule_and_leave_nothing(
    tmp_path: Path, fields: dict[str, str], error: type[Exception], words: str
) -> None:
    repo = open_repo(tmp_path)
    filename, data, _ = make_wheel("refused", "1.0")
    with pytest.raises(error) as info:
        upload(repo, form(filename, data, **fields))
    assert words in str(info.value)
    assert repo.index.snapshot.file_count == 0
    assert staging_leftovers(repo) == []


def test_one_size_cap_for_the_file_and_the_declared_length(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    filename, data, _ = make_wheel("big", "1.0", os.urandom(200_000))
    with pytest.raises(FileTooLarge) as info:
        upload(repo, form(filename, data))
    assert info.value.limit == 100_000 and "files of at most 100000 bytes" in str(info.value)
    with pytest.raises(FileTooLarge):
        upload(repo, b"", length=str(10**12))
    assert staging_leftovers(repo) == []


def test_a_reupload_after_a_crash_indexes_the_file_and_repairs_its_sidecar(
    tmp_path: Path,
) -> None:
    repo = open_repo(tmp_path)
    filename, data, metadata = make_wheel("crashy", "1.0")
    assert upload(repo, form(filename, data)) is UploadResult.STORED
    storage = tmp_path / "cache" / "team" / "storage"
    sidecar = storage / "crashy" / (filename + ".metadata")
    # The server died after linking the file, before the sidecar, journal and overlay.
    sidecar.unlink()
    (storage / ".pywharf-journal.jsonl").unlink()
    (tmp_path / "cache" / "team" / "overlay.jsonl").unlink()
    fresh = open_repo(tmp_path)
    assert fresh.index.snapshot.find("crashy", filename) is None
    assert upload(fresh, form(filename, data)) is UploadResult.IDENTICAL
    assert sidecar.read_bytes() == metadata
    assert fresh.index.snapshot.find("crashy", filename) is not None


def test_update_index_imports_files_copied_in_by_hand(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    storage = tmp_path / "cache" / "team" / "storage"
    filename, data, metadata = make_wheel("by-hand", "3.0")
    (storage / "anywhere").mkdir()
    (storage / "anywhere" / filename).write_bytes(data)
    (storage / "anywhere" / "notes.txt").write_text("not a distribution")
    summary = update_index(repo.backend)
    assert (summary.files, summary.changed) == (1, True)
    assert (storage / "anywhere" / (filename + ".metadata")).read_bytes() == metadata
    assert not update_index(repo.backend).changed


def test_leftovers_of_a_dead_process_are_removed_at_start(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    staging = repo.backend.staging_dir()
    from pywharf_core.files import leftover_prefix

    mine = staging / (leftover_prefix(".upload-") + "abc.part")
    dead = staging / (leftover_prefix(".upload-").replace(f"-{os.getpid()}-", "-999999999-") + "x")
    foreign = staging / ".upload-otherhost-1-y.part"
    for path in (mine, dead, foreign):
        path.write_bytes(b"partial")
    assert remove_dead_leftovers(staging, (".upload-",), 3600) == 1
    assert mine.exists() and foreign.exists() and not dead.exists()
    open_repo(tmp_path)  # a start sweeps too
    assert mine.exists()
