"""The segmented remote index: a small manifest naming a base database and deltas.

The single-file index (``indexfile``) is rewritten whole by every ``update_index`` and read
whole by every server: at a million files that is 444 MB of TOML, a 24 s parse and a 6 GB
peak. A segmented index keeps the manifest where the single file was (``index.toml``,
replaced by the backend's compare-and-swap, so its version is the index's version) and
the records in immutable segments beside it, kept as the backend's shared documents
(``read_state``/``write_state``, create-only, named by their sha256)::

    format_version = 2
    mtime = 1700000000.0
    files = 1000000                 # records in the whole index

    [base]                          # a SQLite database of synced.SCHEMA, zstd-compressed
    name = "index/base-<sha256>.sqlite3.zst"
    sha256 = "<sha256 of the stored bytes>"
    files = 990000

    [[deltas]]                      # applied in order: {"upsert": [...], "remove": [...]}
    name = "index/delta-<sha256>.json.zst"
    sha256 = "…"
    files = 10000                   # its records and removals

    [[retired]]                     # segments no manifest names any more, deleted later
    name = "index/delta-….json.zst"
    since = 1700000000.0

A server that holds the base and a first part of the deltas fetches only the deltas it
lacks; a new server downloads the base and opens it as its own index database (no parse).
``update_index`` writes a delta of what changed, and a new base once the deltas hold a
quarter of the base's records (or 64 deltas). Readers refuse a ``format_version`` above
theirs with a message saying to upgrade; the single-file format stays readable and
``update_index`` converts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import rtoml

from .backend import Backend
from .errors import IndexConflict, IndexFileError, IndexTooNew, NotSupported, PywharfError
from .indexfile import load_index
from .records import FileRecord
from .state import check_state_name
from .synced import (
    SELECT_ALL,
    Chain,
    Delta,
    apply_deltas,
    apply_to_base,
    build_database,
    check_layout,
    decode,
    set_meta,
)

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
#: A new base is written once the deltas hold this share of the base's records …
CONSOLIDATE_SHARE = 0.25
#: … or there are this many deltas.
MAX_DELTAS = 64
#: Segments a manifest stopped naming are deleted this long after (a server that read
#: the previous manifest may still be fetching them).
RETIRE_SECONDS = 3600
ZSTD_LEVEL = 3
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Segment:
    name: str
    sha256: str
    files: int


@dataclass(frozen=True)
class Written:
    """A new manifest to write, and the retired segments to delete once it is written."""

    data: bytes
    manifest: Manifest
    doomed: list[tuple[str, float]]


@dataclass(frozen=True)
class Manifest:
    mtime: float
    files: int
    base: Segment
    deltas: tuple[Segment, ...] = ()
    retired: tuple[tuple[str, float], ...] = ()

    def segments(self) -> set[str]:
        return {self.base.name, *(delta.name for delta in self.deltas)}


def is_manifest(data: bytes) -> bool:
    """Whether ``data`` is a segmented index's manifest (not a single-file index). A
    manifest is small and begins with its format version, so only its head is read."""
    head = data[:64].lstrip()
    return head.startswith(b"format_version = 2") or head.startswith(b"format_version=2")


def parse_manifest(data: bytes) -> Manifest:
    try:
        parsed = rtoml.loads(data.decode("utf-8"))
        version = int(parsed["format_version"])
        if version > FORMAT_VERSION:
            raise IndexTooNew(
                f"index format version {version} is newer than this pywharf reads "
                f"({FORMAT_VERSION}); upgrade pywharf"
            )
        return Manifest(
            mtime=float(parsed.get("mtime", 0)),
            files=int(parsed.get("files", 0)),
            base=_segment(parsed["base"]),
            deltas=tuple(_segment(item) for item in parsed.get("deltas", [])),
            retired=tuple(
                (_segment_name(item["name"]), float(item["since"]))
                for item in parsed.get("retired", [])
            ),
        )
    except IndexFileError:
        raise
    except (UnicodeDecodeError, rtoml.TomlParsingError) as exc:
        raise IndexFileError(f"invalid index manifest: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise IndexFileError(f"invalid index manifest: {exc!r}") from exc


def dump_manifest(manifest: Manifest) -> bytes:
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "mtime": manifest.mtime,
        "files": manifest.files,
        "base": _segment_dict(manifest.base),
        "deltas": [_segment_dict(delta) for delta in manifest.deltas],
        "retired": [{"name": name, "since": since} for name, since in manifest.retired],
    }
    text: str = rtoml.dumps(data)
    return text.encode("utf-8")


def _segment(item: Any) -> Segment:
    name, sha256 = _segment_name(item["name"]), str(item["sha256"])
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"segment {name}: sha256 is not 64 lowercase hex digits")
    return Segment(name, sha256, int(item.get("files", 0)))


def _segment_name(value: Any) -> str:
    name = str(value)
    kind, _, rest = name.partition("/")
    if kind != "index" or not rest or not all(c.isalnum() or c in "._-" for c in rest):
        raise ValueError(f"segment name {name!r} is not index/<name>")
    if rest.startswith(".") or not rest.isascii() or rest.lower() != rest:
        raise ValueError(f"segment name {name!r} is not index/<name>")
    return check_state_name(name)  # stored as a shared document: its rules too


def _segment_dict(segment: Segment) -> dict[str, Any]:
    return {"name": segment.name, "sha256": segment.sha256, "files": segment.files}


# -- reading -------------------------------------------------------------------------------


def fetch_segment(backend: Backend, segment: Segment) -> bytes:
    """The segment's stored bytes, checked against the manifest's sha256."""
    stored = backend.read_state(segment.name)
    if stored is None:
        raise IndexFileError(f"the index names {segment.name}, which the storage lacks")
    data = stored[0]
    if hashlib.sha256(data).hexdigest() != segment.sha256:
        raise IndexFileError(f"{segment.name} does not match the sha256 its manifest gives")
    return data


def write_base_to(backend: Backend, segment: Segment, path: Path) -> None:
    """Fetch the base database into ``path`` (decompressed)."""
    data = fetch_segment(backend, segment)
    decompressor = zstd.ZstdDecompressor()
    try:
        with path.open("wb") as out:
            for start in range(0, len(data), CHUNK):
                out.write(decompressor.decompress(data[start : start + CHUNK]))
    except zstd.ZstdError as exc:
        raise IndexFileError(f"{segment.name} is not zstd-compressed: {exc}") from exc
    if not decompressor.eof:
        raise IndexFileError(f"{segment.name} is cut short")


def read_delta(backend: Backend, segment: Segment) -> Delta:
    data = fetch_segment(backend, segment)
    try:
        parsed = json.loads(zstd.decompress(data))
        upserts = [FileRecord.from_dict(item) for item in parsed["upsert"]]
        removals = [(str(project), str(filename)) for project, filename in parsed["remove"]]
    except (
        zstd.ZstdError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        ArithmeticError,
    ) as exc:
        raise IndexFileError(f"{segment.name} cannot be read: {exc!r}") from exc
    return Delta(upserts, removals)


def chain_of(backend: Backend, manifest: Manifest) -> Chain:
    """What a server's store needs to load the index ``manifest`` names."""
    deltas = {segment.name: segment for segment in manifest.deltas}
    return Chain(
        manifest.base.name,
        tuple(segment.name for segment in manifest.deltas),
        partial(write_base_to, backend, manifest.base),
        lambda name: read_delta(backend, deltas[name]),
    )


def read_records(backend: Backend, data: bytes) -> tuple[tuple[FileRecord, ...], Manifest | None]:
    """Every record of the remote index ``data`` (either format) and its manifest (``None``
    for a single-file index)."""
    if not is_manifest(data):
        return load_index(data).records, None
    manifest = parse_manifest(data)
    with tempfile.TemporaryDirectory(prefix="pywharf-index-") as folder:
        path = Path(folder) / "base.sqlite3"
        write_base_to(backend, manifest.base, path)
        records = {(r.project, r.filename): r for r in _database_records(path, manifest.base)}
    for segment in manifest.deltas:
        delta = read_delta(backend, segment)
        for key in delta.removals:
            records.pop(key, None)
        records.update(((r.project, r.filename), r) for r in delta.upserts)
    return tuple(records.values()), manifest


def _database_records(path: Path, segment: Segment) -> list[FileRecord]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        connection.execute("PRAGMA trusted_schema=OFF")
        check_layout(connection)
        return [decode(row[0], row[1:]) for row in connection.execute(SELECT_ALL)]
    except sqlite3.DatabaseError as exc:
        raise IndexFileError(f"{segment.name} is not a pywharf index database: {exc}") from exc
    finally:
        connection.close()


def open_chain(backend: Backend, manifest: Manifest, path: Path) -> sqlite3.Connection:
    """The index ``manifest`` names as a database at ``path`` (the base with every delta
    applied), opened; for ``update_index``, which reads it without building a record per
    file."""
    write_base_to(backend, manifest.base, path)
    fetched = [read_delta(backend, segment) for segment in manifest.deltas]
    names = tuple(segment.name for segment in manifest.deltas)
    try:
        apply_to_base(path, None, manifest.base.name, names, fetched)
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA trusted_schema=OFF")
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        return connection
    except sqlite3.DatabaseError as exc:
        name = manifest.base.name
        raise IndexFileError(f"{name} is not a pywharf index database: {exc}") from exc


def write_next(
    backend: Backend,
    manifest: Manifest,
    connection: sqlite3.Connection,
    path: Path,
    delta: Delta,
    written: list[str],
) -> tuple[Written, int, int]:
    """Apply ``delta`` to the database ``open_chain`` opened and store what the next index
    needs: ``delta`` as a segment, or the database as a new base when the deltas have grown
    (``_room_for``). Returns the new manifest, and the number of files and projects."""
    connection.execute("BEGIN")
    apply_deltas(connection, [delta])
    (files,) = connection.execute("SELECT coalesce(sum(files), 0) FROM projects").fetchone()
    (projects,) = connection.execute("SELECT count(*) FROM projects").fetchone()
    set_meta(connection, None, files, None, ())
    connection.execute("COMMIT")
    now = time.time()
    retired = list(manifest.retired)
    if _room_for(manifest, delta):
        count = len(delta.upserts) + len(delta.removals)
        segment = _store(backend, "delta", _delta_bytes(delta), count, written)
        new = Manifest(now, files, manifest.base, (*manifest.deltas, segment))
    else:
        connection.execute("VACUUM")  # the rows removed leave no pages behind
        segment = _store(backend, "base", _compress_file(path), files, written)
        new = Manifest(now, files, segment)
        retired += [(name, now) for name in sorted(manifest.segments() - new.segments())]
    return _finish_manifest(new, retired, written, now), int(files), int(projects)


# -- writing (update_index) -----------------------------------------------------------------


def keeps_segments(backend: Backend) -> bool:
    """Whether the backend keeps shared documents, where segments are stored."""
    return type(backend).write_state is not Backend.write_state


def write_base(backend: Backend, records: Sequence[FileRecord], written: list[str]) -> Written:
    """Store a base of ``records`` and return the manifest of a segmented index of it
    alone (a first segmented index; later ones are written by ``write_next``).
    ``written`` gathers the names stored, so that a caller whose compare-and-swap lost can
    retire them."""
    now = time.time()
    segment = _store(backend, "base", _base_bytes(records), len(records), written)
    return _finish_manifest(Manifest(now, len(records), segment), [], written, now)


def _finish_manifest(
    new: Manifest, retired: list[tuple[str, float]], written: list[str], now: float
) -> Written:
    """``new`` with its retired segments: those an earlier attempt stored before its
    compare-and-swap lost join them, and those retired long enough ago are to be deleted
    once the manifest is written (``delete_segments``): deleted before, a concurrent run
    that reused one of those names and won its swap would name a missing segment."""
    named = {name for name, _ in retired}
    retired += [(name, now) for name in written if name not in new.segments() | named]
    kept: list[tuple[str, float]] = []
    doomed: list[tuple[str, float]] = []
    for name, since in retired:
        if name in new.segments():
            continue
        (kept if now - since < RETIRE_SECONDS else doomed).append((name, since))
    manifest = Manifest(new.mtime, new.files, new.base, new.deltas, tuple(kept))
    return Written(dump_manifest(manifest), manifest, doomed)


def retire_written(manifest: Manifest, written: list[str]) -> Written | None:
    """``manifest`` again with the segments an attempt that lost its compare-and-swap
    stored (``written``) retired; ``None`` when there are none."""
    if not set(written) - manifest.segments():
        return None
    new = Manifest(time.time(), manifest.files, manifest.base, manifest.deltas)
    return _finish_manifest(new, list(manifest.retired), written, new.mtime)


def forget_segments(backend: Backend, manifest: Manifest, written: list[str]) -> None:
    """After a segmented index was replaced by a single file: delete its segments (a
    server still fetching one fails its round and reads the file at the next)."""
    names = manifest.segments() | {name for name, _ in manifest.retired} | set(written)
    delete_segments(backend, Written(b"", manifest, [(name, 0.0) for name in sorted(names)]))


def delete_segments(backend: Backend, written: Written) -> list[str]:
    """Delete the segments ``written`` retired long enough ago, after its manifest was
    written; returns the names deleted. One that cannot be deleted stays on storage (a
    backend without ``delete_state``, an error: logged)."""
    deleted = []
    for name, _ in written.doomed:
        try:
            backend.delete_state(name)
            deleted.append(name)
        except NotSupported:
            return deleted
        except PywharfError as exc:
            log.warning("could not delete %s, no longer in the index: %s", name, exc)
    return deleted


def _room_for(manifest: Manifest, delta: Delta) -> bool:
    pending = sum(d.files for d in manifest.deltas) + len(delta.upserts) + len(delta.removals)
    return len(manifest.deltas) < MAX_DELTAS and pending <= CONSOLIDATE_SHARE * max(
        manifest.base.files, 1
    )


def _delta_bytes(delta: Delta) -> bytes:
    document = {"upsert": [r.to_dict() for r in delta.upserts], "remove": delta.removals}
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    return zstd.compress(text.encode("utf-8"), level=ZSTD_LEVEL)


def _base_bytes(records: Sequence[FileRecord]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="pywharf-index-") as folder:
        path = Path(folder) / "base.sqlite3"
        build_database(path, sorted(records, key=lambda r: (r.project, r.filename)), None)
        return _compress_file(path)


def _compress_file(path: Path) -> bytes:
    compressor = zstd.ZstdCompressor(level=ZSTD_LEVEL)
    parts = []
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    return b"".join(parts)


def _store(backend: Backend, kind: str, data: bytes, files: int, written: list[str]) -> Segment:
    sha256 = hashlib.sha256(data).hexdigest()
    suffix = "sqlite3.zst" if kind == "base" else "json.zst"
    name = f"index/{kind}-{sha256}.{suffix}"
    try:
        backend.write_state(name, data, None)
        written.append(name)
    except IndexConflict:
        pass  # stored already: the name is its content
    return Segment(name, sha256, files)
