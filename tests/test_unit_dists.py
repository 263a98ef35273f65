"""``pywharf_core.dists``: filenames, project names, versions, core metadata from wheels
and sdists (hostile archives included), ``describe`` and the hashes, by function call."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.version import Version

from pywharf_core import dists
from pywharf_core.dists import (
    MAX_METADATA_BYTES,
    Hashes,
    check_project_name,
    describe,
    hash_file,
    is_distribution,
    parse_filename,
    read_core_metadata,
    same_version,
)
from pywharf_core.errors import InvalidFilename, InvalidMetadata

WHEEL = "foo_bar-1.0-py3-none-any.whl"
WHEEL_METADATA = "foo_bar-1.0.dist-info/METADATA"
MiB = 1024 * 1024


def metadata(name: str = "foo-bar", version: str = "1.0", *extra: str) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *extra]
    return ("\n".join(lines) + "\n\n").encode()


def write_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def wheel_with(tmp_path: Path, meta: bytes, filename: str = WHEEL) -> Path:
    return write_wheel(tmp_path / filename, {"foo_bar-1.0.dist-info/METADATA": meta})


def write_targz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def zeros_deflated(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zeros, made without deflating them all:
    one fully flushed block does not depend on what came before, so it repeats."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mib + b"\x03\x00"  # an empty final block ends the stream


def zeros_crc32(mib: int) -> int:
    crc, chunk = 0, bytes(MiB)
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return crc


def raw_zip(
    name: str, payload: bytes, crc: int, size: int, method: int = 8, flags: int = 0
) -> bytes:
    """A one-member zip written by hand, so the member's compressed bytes, method and flags
    are whatever the test says (zipfile would deflate a bomb at a few MB/s)."""
    encoded = name.encode()
    local = struct.pack(
        "<4s5H3I2H", b"PK\x03\x04", 20, flags, method, 0, 33, crc, len(payload), size,
        len(encoded), 0,
    )  # fmt: skip
    central = struct.pack(
        "<4s6H3I5H2I", b"PK\x01\x02", 20, 20, flags, method, 0, 33, crc, len(payload), size,
        len(encoded), 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    directory_at = len(local) + len(encoded) + len(payload)
    end = struct.pack(
        "<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(encoded), directory_at, 0
    )
    return local + encoded + payload + central + encoded + end


def gzip_member_of_zeros(mib: int) -> bytes:
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    size = (mib * MiB) & 0xFFFFFFFF
    return header + zeros_deflated(mib) + struct.pack("<2I", zeros_crc32(mib), size)


def sdist_with_zeros_first(path: Path, zeros_mib: int, pkg_info: bytes) -> Path:
    """foo-bar-1.0.tar.gz whose first member is ``zeros_mib`` MiB of zeros and whose
    PKG-INFO comes after it: gzip members concatenated (gzip readers join them)."""
    big = tarfile.TarInfo("foo-bar-1.0/zeros.bin")
    big.size = zeros_mib * MiB
    rest = io.BytesIO()
    with tarfile.open(fileobj=rest, mode="w") as archive:
        info = tarfile.TarInfo("foo-bar-1.0/PKG-INFO")
        info.size = len(pkg_info)
        archive.addfile(info, io.BytesIO(pkg_info))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        gzip.compress(big.tobuf())
        + gzip_member_of_zeros(zeros_mib)
        + gzip.compress(rest.getvalue())
    )
    return path


def peak_memory_of(call: Callable[..., object], *args: object) -> tuple[Exception | None, int]:
    """What ``call(*args)`` raised, and the most memory Python held meanwhile."""
    tracemalloc.start()
    error: Exception | None = None
    try:
        call(*args)
    except Exception as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


# -- filenames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename, project, version, kind",
    [
        ("Foo_Bar-1.0-py3-none-any.whl", "foo-bar", "1.0", "bdist_wheel"),
        ("foo_bar-2.0.post1-1-cp311-cp311-linux_x86_64.whl", "foo-bar", "2.0.post1", "bdist_wheel"),
        ("foo-bar-1.0.tar.gz", "foo-bar", "1.0", "sdist"),
        ("Foo.Bar-1.0rc1.zip", "foo-bar", "1.0rc1", "sdist"),
    ],
)
def test_filenames_parse_to_normalized_project_and_version(
    filename: str, project: str, version: str, kind: str
) -> None:
    dist = parse_filename(filename)
    assert (dist.filename, dist.project, dist.version, dist.kind) == (
        filename,
        project,
        Version(version),
        kind,
    )
    assert dist.is_wheel is (kind == "bdist_wheel")
    assert is_distribution(filename)


@pytest.mark.parametrize(
    "filename, words",
    [
        ("", "1 to 255"),
        ("a" * 252 + ".whl", "1 to 255"),
        ("../foo-1.0.tar.gz", "path separators"),
        ("sub/foo-1.0.tar.gz", "path separators"),
        ("sub\\foo-1.0.tar.gz", "path separators"),
        ("c:foo-1.0.tar.gz", "path separators"),
        ("foo-1.0.tar.gz\x00", "control characters"),
        ("foo-1.0.tar.gz\n", "control characters"),
        ("foo\x7f-1.0.tar.gz", "control characters"),
        (".foo-1.0.tar.gz", "leading dot"),
        ("föo-1.0.tar.gz", "non-ASCII"),
        ("ｆｏｏ-1.0-py3-none-any.whl", "non-ASCII"),  # fullwidth letters  # noqa: RUF001
        ("foo-1.0-py3-none-any.whl\u200b", "non-ASCII"),  # a zero-width space
        ("foo-1.0.tar.bz2", "only wheels"),
        ("foo-1.0.egg", "only wheels"),
        ("foo-1.0-py3-none-any.WHL", "only wheels"),
        ("foo.tar.gz", "Invalid sdist filename"),
        ("foo-1.0.whl", "wrong number of parts"),
        ("foo-x.y-py3-none-any.whl", "invalid version"),
        ("foo_-1.0.tar.gz", "PEP 508"),
        ("-foo-1.0.tar.gz", "PEP 508"),
        ("foo bar-1.0.tar.gz", "PEP 508"),
        ("foo@x-1.0.zip", "PEP 508"),
    ],
)
def test_filenames_refused_say_why(filename: str, words: str) -> None:
    with pytest.raises(InvalidFilename) as info:
        parse_filename(filename)
    assert words in info.value.message
    assert not is_distribution(filename)


def test_sidecars_are_not_distributions() -> None:
    assert is_distribution(WHEEL)
    assert not is_distribution(WHEEL + ".metadata")
    assert not is_distribution(WHEEL + ".yanked")
    assert not is_distribution("index.toml")


@pytest.mark.parametrize(
    "name, normalized",
    [("Foo_Bar.baz", "foo-bar-baz"), ("A", "a"), ("x--y__z", "x-y-z"), ("1password", "1password")],
)
def test_check_project_name_normalizes(name: str, normalized: str) -> None:
    assert check_project_name(name) == normalized


@pytest.mark.parametrize(
    "name",
    ["", "-foo", "foo-", "foo.", "fo o", "föo", "ｆｏｏ", "foo/bar", "foo!"],  # noqa: RUF001
)
def test_check_project_name_refuses_what_pep_508_does(name: str) -> None:
    with pytest.raises(InvalidMetadata) as info:
        check_project_name(name, what="upload name")
    assert info.value.message.startswith(f"Invalid upload name {name!r}")
    assert "PEP 508" in info.value.message


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("1.0", "1.0.0", True),
        ("1", Version("1.0.0.0"), True),
        ("1.0", "v1.0", True),
        ("1.0.0", "1.0.post0", False),
        ("1.0", "1.0a1", False),
        ("1.0", "1.0.1", False),
        ("1.0", "1.0+local", False),
    ],
)
def test_same_version(a: str | Version, b: str | Version, same: bool) -> None:
    assert same_version(a, b) is same
    assert same_version(b, a) is same


# -- core metadata from wheels ------------------------------------------------------------------


def test_wheel_metadata_is_read_verbatim(tmp_path: Path) -> None:
    meta = metadata("Foo_Bar", "1.0.0", "Requires-Python: >=3.8", "Summary: ünïcode")
    wheel = write_wheel(
        tmp_path / WHEEL,
        {
            "foo_bar/__init__.py": b"",
            "foo_bar-1.0.dist-info/METADATA": meta,
            "foo_bar/sub.dist-info/METADATA": b"not the one: two slashes deep",
        },
    )
    found = read_core_metadata(wheel, parse_filename(WHEEL))
    assert (found.name, found.version, found.requires_python) == ("Foo_Bar", "1.0.0", ">=3.8")
    assert found.raw == meta


@pytest.mark.parametrize(
    "members, words",
    [
        ({"foo_bar/__init__.py": b""}, "exactly one"),
        ({"deep/foo_bar-1.0.dist-info/METADATA": metadata()}, "exactly one"),
        ({WHEEL_METADATA: metadata(), "other-1.0.dist-info/METADATA": metadata()}, "exactly one"),
    ],
)
def test_a_wheel_needs_exactly_one_top_level_metadata(
    tmp_path: Path, members: dict[str, bytes], words: str
) -> None:
    wheel = write_wheel(tmp_path / WHEEL, members)
    with pytest.raises(InvalidMetadata, match=words):
        read_core_metadata(wheel, parse_filename(WHEEL))


@pytest.mark.parametrize(
    "meta, words",
    [
        (b"", "no Name or Version"),
        (b"\x00\xff\xfe garbage", "no Name or Version"),
        (metadata("foo-bar", "1.0", "Name: foo-bar"), "name appears more than once"),
        (
            metadata("foo-bar", "1.0", "Requires-Python: >=3\nRequires-Python: >=2"),
            "more than once",
        ),
        (metadata("föo-bar"), "PEP 508"),
        (metadata("ｆｏｏ-bar"), "PEP 508"),  # noqa: RUF001
        (metadata("foo-bar", "one"), "not a valid version"),
        (metadata("other"), "does not match the filename"),
        (metadata("foo-bar", "1.1"), "does not match the filename"),
        (metadata("foo-bar", "1.0", "Requires-Python: >=3.x"), "Requires-Python '>=3.x'"),
        (metadata("foo-bar", "1.0", "Requires-Python: 3.8"), "not a valid version specifier"),
    ],
)
def test_wheel_metadata_refusals(tmp_path: Path, meta: bytes, words: str) -> None:
    wheel = wheel_with(tmp_path, meta)
    with pytest.raises(InvalidMetadata) as info:
        read_core_metadata(wheel, parse_filename(WHEEL))
    assert words in info.value.message


def test_blank_requires_python_reads_as_none(tmp_path: Path) -> None:
    wheel = wheel_with(tmp_path, metadata("foo-bar", "1.0", "Requires-Python:   "))
    assert read_core_metadata(wheel, parse_filename(WHEEL)).requires_python is None


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04truncated"])
def test_not_a_zip_is_invalid_metadata(tmp_path: Path, content: bytes) -> None:
    (tmp_path / WHEEL).write_bytes(content)
    with pytest.raises(InvalidMetadata, match="not a valid wheel"):
        read_core_metadata(tmp_path / WHEEL, parse_filename(WHEEL))


def test_a_corrupt_deflate_stream_is_invalid_metadata(tmp_path: Path) -> None:
    meta = metadata()
    (tmp_path / WHEEL).write_bytes(
        raw_zip("foo_bar-1.0.dist-info/METADATA", b"\xff" * 40, zlib.crc32(meta), len(meta))
    )
    with pytest.raises(InvalidMetadata, match="not a valid wheel"):
        read_core_metadata(tmp_path / WHEEL, parse_filename(WHEEL))


#: The metadata member of a wheel, and of a .zip sdist: read through the same cap.
ZIP_ARCHIVES = pytest.mark.parametrize(
    "filename, member",
    [(WHEEL, WHEEL_METADATA), ("foo_bar-1.0.zip", "foo_bar-1.0/PKG-INFO")],
    ids=["wheel", "zip-sdist"],
)


@ZIP_ARCHIVES
@pytest.mark.parametrize(
    "declared_mib",
    [64, 1],  # the size the zip declares: honest, or a lie (a declared size means nothing)
)
def test_zip_bomb_metadata_is_refused_without_inflating_it(
    tmp_path: Path, filename: str, member: str, declared_mib: int
) -> None:
    bomb_mib = 64  # 16 times MAX_METADATA_BYTES
    path = tmp_path / filename
    path.write_bytes(
        raw_zip(member, zeros_deflated(bomb_mib), zeros_crc32(declared_mib), declared_mib * MiB)
    )
    assert path.stat().st_size < 100_000
    error, peak = peak_memory_of(read_core_metadata, path, parse_filename(filename))
    assert isinstance(error, InvalidMetadata), error
    if declared_mib == bomb_mib:
        assert f"larger than {MAX_METADATA_BYTES} bytes" in error.message
    assert peak < 3 * MAX_METADATA_BYTES, f"peak {peak} bytes"


@ZIP_ARCHIVES
@pytest.mark.parametrize("method, flags", [(8, 0x1), (99, 0)], ids=["encrypted", "method-99"])
def test_unreadable_zip_members_are_invalid_metadata(
    tmp_path: Path, filename: str, member: str, method: int, flags: int
) -> None:
    meta = metadata()
    dist = parse_filename(filename)
    # The same member stored plainly reads fine: only the method or the flag differs.
    plain = tmp_path / "plain" / filename
    plain.parent.mkdir()
    plain.write_bytes(raw_zip(member, meta, zlib.crc32(meta), len(meta), method=0))
    assert read_core_metadata(plain, dist).name == "foo-bar"
    (tmp_path / filename).write_bytes(
        raw_zip(member, meta, zlib.crc32(meta), len(meta), method, flags)
    )
    with pytest.raises(InvalidMetadata):
        read_core_metadata(tmp_path / filename, dist)


# -- core metadata from sdists -------------------------------------------------------------------


def test_targz_sdist_pkg_info(tmp_path: Path) -> None:
    sdist = write_targz(
        tmp_path / "foo-bar-1.0.tar.gz",
        {
            "foo-bar-1.0/setup.py": b"",
            "foo-bar-1.0/src/PKG-INFO": b"not the one",
            "foo-bar-1.0/PKG-INFO": metadata("foo_bar", "1.0", "Requires-Python: >=3.9"),
        },
    )
    found = read_core_metadata(sdist, parse_filename(sdist.name))
    assert (found.name, found.version, found.requires_python) == ("foo_bar", "1.0", ">=3.9")
    assert found.raw is None  # served per PEP 658 for wheels only


def test_zip_sdist_pkg_info(tmp_path: Path) -> None:
    sdist = write_wheel(tmp_path / "foo-bar-1.0.zip", {"foo-bar-1.0/PKG-INFO": metadata()})
    found = read_core_metadata(sdist, parse_filename(sdist.name))
    assert (found.name, found.version, found.raw) == ("foo-bar", "1.0", None)


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_an_sdist_without_pkg_info_is_refused(tmp_path: Path, suffix: str) -> None:
    members = {"foo-bar-1.0/setup.py": b"", "foo-bar-1.0/sub/PKG-INFO": metadata()}
    path = tmp_path / f"foo-bar-1.0{suffix}"
    (write_targz if suffix == ".tar.gz" else write_wheel)(path, members)
    with pytest.raises(InvalidMetadata, match="must hold <name>-<version>/PKG-INFO"):
        read_core_metadata(path, parse_filename(path.name))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not gzip",
        gzip.compress(b"not a tar archive" * 100),
        gzip.compress(b"\x00" * 1024)[:-12],  # truncated
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * 64,  # a corrupt deflate stream
    ],
    ids=["empty", "not-gzip", "not-tar", "truncated", "corrupt-deflate"],
)
def test_a_broken_targz_is_invalid_metadata(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foo-bar-1.0.tar.gz"
    path.write_bytes(content)
    with pytest.raises(InvalidMetadata):
        read_core_metadata(path, parse_filename(path.name))


def test_gzip_bomb_sdist_is_refused_once_past_the_inflation_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real floor is 64 MiB; inflating that much costs a second or more here, and the
    # rule is the same at 1 MiB.
    monkeypatch.setattr(dists, "MIN_SDIST_SCAN_BYTES", MiB)
    pkg_info = metadata()
    near = sdist_with_zeros_first(tmp_path / "near" / "foo-bar-1.0.tar.gz", 0, pkg_info)
    assert read_core_metadata(near, parse_filename(near.name)).name == "foo-bar"
    bomb = sdist_with_zeros_first(tmp_path / "foo-bar-1.0.tar.gz", 8, pkg_info)
    assert bomb.stat().st_size < 20_000  # 8 MiB of tar inflated from a few KiB
    error, peak = peak_memory_of(read_core_metadata, bomb, parse_filename(bomb.name))
    assert isinstance(error, InvalidMetadata), error
    assert "no PKG-INFO within the first" in error.message
    assert peak < MiB, f"peak {peak} bytes"


def test_the_sdist_budget_grows_with_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large sdist of incompressible content is no bomb: its PKG-INFO may come late."""
    monkeypatch.setattr(dists, "MIN_SDIST_SCAN_BYTES", 64 * 1024)
    payload = hashlib.shake_256(b"noise").digest(512 * 1024)  # does not compress
    sdist = write_targz(
        tmp_path / "foo-bar-1.0.tar.gz",
        {"foo-bar-1.0/data.bin": payload, "foo-bar-1.0/PKG-INFO": metadata()},
    )
    assert read_core_metadata(sdist, parse_filename(sdist.name)).version == "1.0"


def test_an_oversized_pkg_info_is_refused(tmp_path: Path) -> None:
    sdist = write_targz(
        tmp_path / "foo-bar-1.0.tar.gz",
        {"foo-bar-1.0/PKG-INFO": metadata() + b"x" * MAX_METADATA_BYTES},
    )
    with pytest.raises(InvalidMetadata, match=f"larger than {MAX_METADATA_BYTES} bytes"):
        read_core_metadata(sdist, parse_filename(sdist.name))


# -- describe and hashes ------------------------------------------------------------------------


def test_describe_a_wheel_computes_what_it_is_not_given(tmp_path: Path) -> None:
    meta = metadata("foo-bar", "1.0", "Requires-Python: >=3.10")
    wheel = wheel_with(tmp_path, meta)
    described = describe(wheel, parse_filename(WHEEL), upload_time=1.5, backend_ref="ref/1")
    record, raw = described.record, described.metadata
    assert raw == meta
    assert record.project == "foo-bar" and record.filename == WHEEL and record.version == "1.0"
    assert record.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert record.size == wheel.stat().st_size
    assert record.core_metadata_sha256 == hashlib.sha256(meta).hexdigest()
    assert (record.upload_time, record.requires_python, record.yanked, record.backend_ref) == (
        1.5,
        ">=3.10",
        None,
        "ref/1",
    )


def test_describe_trusts_given_hash_and_size_and_keeps_the_yank(tmp_path: Path) -> None:
    pkg_info = metadata("foo-bar", "1.0", "Summary: Forecasts for café owners")
    sdist = write_targz(tmp_path / "foo-bar-1.0.tar.gz", {"foo-bar-1.0/PKG-INFO": pkg_info})
    described = describe(
        sdist, parse_filename(sdist.name), upload_time=0.0, sha256="f" * 64, size=7, yanked=""
    )
    record, raw = described.record, described.metadata
    assert raw is None and record.core_metadata_sha256 is None
    assert described.summary == "Forecasts for café owners"  # for the summary cache
    assert (record.sha256, record.size, record.yanked) == ("f" * 64, 7, "")


def test_describe_refuses_what_read_core_metadata_refuses(tmp_path: Path) -> None:
    wheel = wheel_with(tmp_path, metadata("other"))
    with pytest.raises(InvalidMetadata, match="does not match"):
        describe(wheel, parse_filename(WHEEL), upload_time=0.0)


def test_hashes_in_one_pass_match_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    hashes = Hashes(("md5_digest", "blake2_256_digest"))
    hashes.update(data[:1000])
    hashes.update(memoryview(data)[1000:])
    assert hashes.hexdigests() == {
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "md5_digest": hashlib.md5(data).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }
    assert list(Hashes().hexdigests()) == ["sha256_digest"]
    path = tmp_path / "data"
    path.write_bytes(data)
    assert hash_file(path) == hashlib.sha256(data).hexdigest()
    assert hash_file(path, "md5_digest") == hashlib.md5(data).hexdigest()
    assert hash_file(path, "blake2_256_digest") == hashlib.blake2b(data, digest_size=32).hexdigest()
