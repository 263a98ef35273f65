"""Uploads from a hostile or unlucky client, against a real server: bad metadata, names
that are not names, no digest, a zip bomb, a full disk. Each is a clear 4xx (or 507),
never a 5xx, and leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests
from wharftest.distbuilder import build_wheel
from wharftest.server import WharfServer, get


def post(
    server: WharfServer,
    path: Path,
    name: str,
    version: str,
    auth: tuple[str, str] | None = None,
    **extra: str | None,
) -> requests.Response:
    data = path.read_bytes()
    fields = {
        ":action": "file_upload",
        "name": name,
        "version": version,
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        **extra,
    }
    return requests.post(
        server.url + "simple/",
        data={k: v for k, v in fields.items() if v is not None},
        files={"content": (path.name, data)},
        auth=auth or ("local", server.write_secret),
        timeout=60,
    )


def raw_wheel(folder: Path, filename: str, metadata: bytes) -> Path:
    """A wheel holding exactly the METADATA given (bytes, any encoding)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = "-".join(filename.split("-")[:2])
    path = folder / filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}.dist-info/METADATA", metadata)
        archive.writestr(f"{stem}.dist-info/RECORD", b"")
    return path


def zip_bomb(folder: Path, inflated: int) -> Path:
    """A wheel whose METADATA inflates to ``inflated`` bytes while its headers declare
    100: a reader that trusts the declared size inflates it all."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bomb-1.0-py3-none-any.whl"
    header = b"Metadata-Version: 2.1\nName: bomb\nVersion: 1.0\n\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        info = zipfile.ZipInfo("bomb-1.0.dist-info/METADATA")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            member.write(header)
            zeros = bytes(1 << 20)
            for _ in range(inflated >> 20):
                member.write(zeros)
    data = bytearray(path.read_bytes())
    # Declare 100 bytes in the local header (offset 22) and the central directory (24).
    local = data.find(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, 100)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 100)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    server = WharfServer(tmp_path_factory.mktemp("hostile") / "root").start()
    yield server
    server.stop()


def storage(server: WharfServer) -> Path:
    return server.root / "cache" / "local" / "storage"


def assert_clean_refusal(
    server: WharfServer, response: requests.Response, status: int, *words: str
) -> None:
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.text, response.text
    assert not list((storage(server) / ".pywharf-staging").glob(".upload-*"))


@pytest.mark.parametrize(
    "metadata, words",
    [
        ("Metadata-Version: 2.1\nName: \uff4deta\nVersion: 1.0\n\n", ["PEP 508"]),
        (
            "Metadata-Version: 2.1\nName: meta\nVersion: 1.0\nRequires-Python: >=3€\n\n",
            ["Requires-Python"],
        ),
        ("Metadata-Version: 2.1\nName: meta\nVersion: one\n\n", ["Version"]),
        ("Metadata-Version: 2.1\nName: méta\nVersion: 1.0\n\n", ["PEP 508"]),
    ],
)
def test_non_ascii_and_invalid_metadata_is_400(
    server: WharfServer, tmp_path: Path, metadata: str, words: list[str]
) -> None:
    wheel = raw_wheel(tmp_path, "meta-1.0-py3-none-any.whl", metadata.encode("utf-8"))
    assert_clean_refusal(server, post(server, wheel, "meta", "1.0"), 400, *words)
    latin = raw_wheel(
        tmp_path / "latin", "meta-1.0-py3-none-any.whl", metadata.encode("latin-1", "replace")
    )
    assert post(server, latin, "meta", "1.0").status_code == 400


@pytest.mark.parametrize(
    "name",
    [
        "foo bar",
        "x;y=z",
        "<img src=x onerror=alert(1)>",
        "-lead",
        "\uff46\uff4f\uff4f",
        "f\u043e\u043e",
        "fo\u200bo",
    ],
)
def test_names_that_are_not_project_names_are_refused(
    server: WharfServer, tmp_path: Path, name: str
) -> None:
    wheel = build_wheel(tmp_path, "plain", "1.0")
    response = post(server, wheel.path, name, "1.0")
    assert response.status_code == 400, response.text
    assert "PEP 508" in response.text or "does not belong" in response.text
    listed = get(server, "simple/", auth=("local", server.read_secret)).text
    assert "onerror" not in listed and "plain" not in listed


def test_a_strong_digest_is_required(server: WharfServer, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "digest-less", "1.0")
    md5 = hashlib.md5(wheel.path.read_bytes()).hexdigest()
    response = post(server, wheel.path, "digest-less", "1.0", sha256_digest=None, md5_digest=md5)
    assert_clean_refusal(server, response, 400, "sha256_digest", "blake2_256_digest")
    blake = hashlib.blake2b(wheel.path.read_bytes(), digest_size=32).hexdigest()
    response = post(
        server, wheel.path, "digest-less", "1.0", sha256_digest=None, blake2_256_digest=blake
    )
    assert response.status_code == 200, response.text


def test_a_zip_bomb_is_refused_with_flat_memory(server: WharfServer, tmp_path: Path) -> None:
    bomb = zip_bomb(tmp_path, 512 << 20)  # 512 MiB of zeros, about 500 KiB on the wire
    assert bomb.stat().st_size < 1 << 20
    warm = build_wheel(tmp_path / "warm", "warm-up", "1.0")
    assert post(server, warm.path, "warm-up", "1.0").ok
    before = server.pid_status("VmHWM")
    response = post(server, bomb, "bomb", "1.0")
    after = server.pid_status("VmHWM")
    print(
        f"zip bomb (512 MiB inflated, {bomb.stat().st_size} bytes): peak RSS "
        f"{before // 1024} -> {after // 1024} MiB"
    )
    assert response.status_code == 400, response.text
    assert after - before < 64 * 1024, (before, after)  # kB: far below 512 MiB
    assert "bomb" not in get(server, "simple/", auth=("local", server.read_secret)).text


def _can_mount_tmpfs() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    if shutil.which("mount") is None:
        return "no mount command"
    return None


def test_a_full_disk_answers_507_and_keeps_nothing(start_server, tmp_path: Path) -> None:
    reason = _can_mount_tmpfs()
    if reason:
        pytest.skip(f"full-disk test skipped: {reason}")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        why = mounted.stderr.strip()
        pytest.skip(f"full-disk test skipped: mounting a tmpfs is not allowed here ({why})")
    try:
        config = tmp_path / "config.toml"
        config.write_text(
            '[local]\ntype = "file_system"\nread_secret = "full-disk-read-1"\n'
            f'write_secret = "full-disk-write-1"\nstorage_root = "{small}"\n'
        )
        server = start_server("--config", str(config))
        big = build_wheel(
            tmp_path / "big", "too-big", "1.0", extra={"too_big/x.bin": os.urandom(3 << 20)}
        )
        auth = ("local", "full-disk-write-1")
        response = post(server, big.path, "too-big", "1.0", auth)
        assert response.status_code == 507, response.text
        assert "full" in response.text
        assert not [
            p
            for p in (small / ".pywharf-staging").iterdir()
            if p.name.startswith((".upload-", ".tmp-"))
        ]
        ok = build_wheel(tmp_path / "ok", "fits", "1.0")
        response = post(server, ok.path, "fits", "1.0", auth)
        assert response.status_code == 200, response.text
        assert "Traceback" not in server.log_text()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
