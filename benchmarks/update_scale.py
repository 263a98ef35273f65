"""How long ``update_index`` takes when 1% of 100,000 or 1,000,000 files changed, and what a
replica then fetches.

    python benchmarks/update_scale.py [--sizes 100000,1000000] [--formats segments,toml]
                                      [--work DIR] [--change 0.01]

For each size, a corpus of real files in the file_system backend's layout
(``<storage>/<project>/<filename>``, 4 files a project, named as in ``scale.py``): 1,000
small real wheels, and the rest EMPTY files (a million of them cost inodes, not blocks).
``update_index`` describes the real wheels; the records of the empty files are written
here as the job would keep them (size 0, the file's mtime, its reference), in one index
with the real wheels' (one base, no delta), so the job treats them as known and unchanged
and reads none of them. One corpus per index format (``segments``: a manifest, a base
database and deltas; ``toml``: the single index.toml). Corpora are kept under ``--work``,
marked complete, and reused: each round ends by putting the settled index back (a round
that died is undone by the next run). A million empty files take about two minutes.

Then, per size and format:

- ``update_index`` with nothing changed (the settled corpus), twice: the second is given;
- a server (a ``Repository`` in this process, on a fresh ROOT) opens the index;
- ``--change`` times N new small real wheels (new versions of random projects, a fixed
  seed) arrive; ``update_index`` is timed as a subprocess (wall clock, CPU time, peak
  RSS), then the bytes a replica holding the previous index must fetch (segments: the
  manifest and the segments it did not name before; toml: the whole index.toml), then
  the server's ``sync()``;
- the new wheels (and the sidecars update_index stored) are deleted: ``update_index`` and
  the server's ``sync()`` again ("1% removed");
- with the settled index back, one new wheel: what a replica fetches for it.

Prints a markdown table, and ``uptime`` before and after (the machine may be shared).
By default ``toml`` runs only up to 100,000 files: at a million, its parse alone takes
~25 s and ~6 GB at its peak, in update_index and in the server (``--formats toml`` runs
it at every size). A tool, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pywharf_backends.file_system import FileSystemBackend
from run import wheel_bytes  # the same small wheels as the other benchmarks
from scale import PER_PROJECT, REAL_FILES, project_of

from pywharf_core import dists, remoteindex
from pywharf_core.auth import AccessCache
from pywharf_core.backend import StagedFile
from pywharf_core.config import parse_repo_configs, parse_toml
from pywharf_core.indexfile import IndexFile, dump_index
from pywharf_core.records import FileRecord
from pywharf_core.repository import Repository

NAME = "scale"
FORMATS = ("segments", "toml")
#: Without ``--formats``, the single TOML file is measured up to this many files.
TOML_UP_TO = 100_000
SEED = 20
#: The settled index, put back after each round (the corpus is then as it was built).
SETTLED = "settled-index.toml"
#: The files of a round in progress, deleted by the next run if this one died.
PENDING = "pending-files.txt"
CONFIG = """
[{name}]
type = "file_system"
read_secret = "scale-read-secret-1"
write_secret = "scale-write-secret-1"
storage_root = "{storage}"
"""


def filename_of(project: str, version: str) -> str:
    return f"{project.replace('-', '_')}-{version}-py3-none-any.whl"


# -- the corpus ----------------------------------------------------------------------------


def build_corpus(folder: Path, files: int, index_format: str) -> Path:
    """The storage folder of a corpus of ``files`` files (built once, then reused)."""
    corpus = folder / f"corpus-{files}-{index_format}"
    storage = corpus / "storage"
    if (corpus / ".complete").exists():
        return storage
    shutil.rmtree(corpus, ignore_errors=True)
    for i in range(min(files, REAL_FILES)):
        project, version = project_of(i)
        (storage / project).mkdir(parents=True, exist_ok=True)
        path = storage / project / filename_of(project, version)
        path.write_bytes(wheel_bytes(project, version, []))
    # The real wheels described by update_index, then their records in one base (or one
    # file) with the empty files': the settled index has no deltas yet.
    described = update_index(storage, index_format)
    backend = FileSystemBackend(storage)
    current = backend.read_index()
    assert current is not None
    records, manifest = remoteindex.read_records(backend, current[0])
    started = time.perf_counter()
    empty = list(records)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i in range(REAL_FILES, files):
        project, version = project_of(i)
        if i % PER_PROJECT == 0:
            os.mkdir(storage / project)
        filename = filename_of(project, version)
        reference = f"{project}/{filename}"
        descriptor = os.open(storage / reference, flags, 0o644)
        mtime = os.fstat(descriptor).st_mtime  # the float list_files will see
        os.close(descriptor)
        empty.append(
            FileRecord(
                project=project,
                filename=filename,
                version=version,
                sha256=hashlib.sha256(filename.encode()).hexdigest(),
                size=0,
                upload_time=mtime,
                # No core-metadata digest: a record with one is kept only while the
                # file's .metadata sidecar is there.
                backend_ref=reference,
            )
        )
    print(f"corpus {files:,} {index_format}: files in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    if index_format == "segments":
        data = remoteindex.write_base(backend, empty, []).data
    else:
        data = dump_index(IndexFile(time.time(), tuple(empty)))
    backend.write_index(data, current[1])
    if manifest is not None:  # the real wheels' own base, named by no manifest now
        backend.delete_state(manifest.base.name)
    del records, empty, data
    print(f"corpus {files:,} {index_format}: index in {time.perf_counter() - started:.1f} s")
    settled = update_index(storage, index_format)
    print(f"corpus {files:,} {index_format}: {described.line}; then {settled.line}")
    if "index unchanged" not in settled.line:
        raise RuntimeError(f"the index did not settle: {settled.line}")
    (corpus / SETTLED).write_bytes((storage / "index.toml").read_bytes())
    (corpus / ".complete").touch()
    return storage


def new_wheels(
    storage: Path, files: int, count: int, label: str, through_server: bool = False
) -> list[Path]:
    """Add ``count`` small real wheels, new versions of random projects; their paths.
    ``through_server``: stored as a server stores an upload (described, then the
    backend's ``put_file``, which notes each in the journal), else copied in by hand."""
    chooser = random.Random(f"{SEED}-{label}")  # noqa: S311
    projects = files // PER_PROJECT
    paths = [
        storage / project / filename_of(project, f"2.{number}")
        for number, project in enumerate(
            f"scale-project-{chooser.randrange(projects)}" for _ in range(count)
        )
    ]
    # Listed before they are written: a run that dies leaves the next one a way back.
    (storage.parent / PENDING).write_text("".join(f"{path}\n" for path in paths))
    backend = FileSystemBackend(storage) if through_server else None
    for path in paths:
        project, version = path.parent.name, path.name.split("-")[1]
        if backend is None:
            path.write_bytes(wheel_bytes(project, version, []))
            continue
        staged = backend.staging_dir() / f"bench-{path.name}"
        staged.write_bytes(wheel_bytes(project, version, []))
        described = dists.describe(staged, dists.parse_filename(path.name), upload_time=time.time())
        record = described.record
        backend.put_file(record, StagedFile(staged, record.size, record.sha256), described.metadata)
        staged.unlink()
    return paths


def delete_files(paths: list[Path]) -> None:
    """Delete the wheels and the sidecars update_index stored beside them."""
    for path in paths:
        for victim in (path, path.with_name(path.name + ".metadata")):
            victim.unlink(missing_ok=True)


def restore_settled(storage: Path) -> None:
    """Put the settled index back and delete the segments written since (and the files of
    a round that died): the corpus is then as it was built."""
    corpus = storage.parent
    pending = corpus / PENDING
    if pending.exists():
        delete_files([Path(line) for line in pending.read_text().splitlines() if line])
        pending.unlink()
    backend = FileSystemBackend(storage)
    (storage / ".pywharf-journal.jsonl").unlink(missing_ok=True)  # of --through-server
    settled = (corpus / SETTLED).read_bytes()
    if (storage / "index.toml").read_bytes() != settled:
        backend.write_index(settled, backend.index_version())
    if remoteindex.is_manifest(settled):
        keep = remoteindex.parse_manifest(settled).segments()
        folder = storage / ".pywharf-state" / "index"
        for entry in os.listdir(folder):
            if f"index/{entry}" not in keep:
                backend.delete_state(f"index/{entry}")


# -- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    seconds: float
    cpu_seconds: float  # user + system: steadier than the wall clock on a shared machine
    peak_rss_mb: float
    line: str

    def times(self) -> str:
        return f"{self.seconds:.1f} ({self.cpu_seconds:.1f})"


def update_index(storage: Path, index_format: str) -> Job:
    """``pywharf update_index`` as a subprocess: its wall clock, CPU time, peak RSS and
    summary."""
    command = [
        sys.executable,
        "-m",
        "pywharf_core",
        "update_index",
        "file_system",
        NAME,
        "--storage_root",
        str(storage),
        "--index_format",
        index_format,
    ]
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        # wait4: this child's own rusage (RUSAGE_CHILDREN is the peak of all children).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode("utf-8", "replace").strip()
    if process.returncode != 0:
        raise RuntimeError(f"update_index failed ({process.returncode}):\n{text}")
    cpu = usage.ru_utime + usage.ru_stime
    return Job(seconds, cpu, usage.ru_maxrss / 1024, text.splitlines()[-1])


def fetched_bytes(storage: Path, before: bytes, after: bytes) -> int:
    """What a replica that held the ``before`` index reads to hold ``after``: the
    manifest and the segments it did not name before, or the whole single file."""
    if not remoteindex.is_manifest(after):
        return len(after)
    old = (
        remoteindex.parse_manifest(before).segments() if remoteindex.is_manifest(before) else set()
    )
    new = remoteindex.parse_manifest(after).segments() - old
    state = storage / ".pywharf-state"
    return len(after) + sum((state / name).stat().st_size for name in new)


def index_mb(storage: Path) -> str:
    """The index's size on storage: the base (and deltas) of a segmented one, or the
    single file."""
    data = (storage / "index.toml").read_bytes()
    if not remoteindex.is_manifest(data):
        return f"{len(data) / 1e6:.1f} (TOML)"
    manifest = remoteindex.parse_manifest(data)
    state = storage / ".pywharf-state"
    deltas = sum((state / d.name).stat().st_size for d in manifest.deltas)
    base = (state / manifest.base.name).stat().st_size
    return f"{base / 1e6:.1f} base" + (f" + {deltas / 1e6:.2f} deltas" if deltas else "")


def timed_sync(repo: Repository, expected_files: int) -> float:
    started = time.perf_counter()
    repo.sync()
    seconds = time.perf_counter() - started
    if repo.index.snapshot.file_count != expected_files:
        raise RuntimeError(
            f"the server holds {repo.index.snapshot.file_count} files, not {expected_files}"
        )
    return seconds


@dataclass(frozen=True)
class Row:
    files: int
    index_format: str
    index_mb: str
    unchanged: Job
    server_open: float
    added: Job
    added_fetch: int
    added_sync: float
    removed: Job
    removed_fetch: int
    removed_sync: float
    one_fetch: int


def measure(
    storage: Path, files: int, index_format: str, change: float, through_server: bool
) -> Row:
    restore_settled(storage)
    # The first run reads the directories as the page cache holds them (another corpus
    # may have pushed them out); the table gives the second.
    first = update_index(storage, index_format)
    unchanged = update_index(storage, index_format)
    print(
        f"{files:,} {index_format}: nothing changed, {first.times()} s then "
        f"{unchanged.times()} s ({unchanged.line})",
        flush=True,
    )
    if "index unchanged" not in unchanged.line:
        raise RuntimeError(f"the settled corpus changed: {unchanged.line}")
    size_mb = index_mb(storage)
    count = max(1, round(change * files))
    with tempfile.TemporaryDirectory(prefix="update-scale-root-") as root:
        config = parse_repo_configs(
            parse_toml(CONFIG.format(name=NAME, storage=storage), "<update_scale>")
        )[NAME]
        started = time.perf_counter()
        repo = Repository.open(config, Path(root), None, AccessCache(60, 60))
        server_open = time.perf_counter() - started
        if repo.index.snapshot.file_count != files:
            raise RuntimeError(f"the server holds {repo.index.snapshot.file_count} files")

        before = (storage / "index.toml").read_bytes()
        paths = new_wheels(storage, files, count, "change", through_server)
        added = update_index(storage, index_format)
        after = (storage / "index.toml").read_bytes()
        added_fetch = fetched_bytes(storage, before, after)
        added_sync = timed_sync(repo, files + count)

        delete_files(paths)
        removed = update_index(storage, index_format)
        final = (storage / "index.toml").read_bytes()
        removed_fetch = fetched_bytes(storage, after, final)
        removed_sync = timed_sync(repo, files)
        del repo

    restore_settled(storage)
    before = (storage / "index.toml").read_bytes()
    new_wheels(storage, files, 1, "one")  # deleted by restore_settled, as listed
    update_index(storage, index_format)
    one_fetch = fetched_bytes(storage, before, (storage / "index.toml").read_bytes())
    restore_settled(storage)
    return Row(
        files,
        index_format,
        size_mb,
        unchanged,
        server_open,
        added,
        added_fetch,
        added_sync,
        removed,
        removed_fetch,
        removed_sync,
        one_fetch,
    )


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument(
        "--formats",
        help="index formats to measure at every size (default: segments, and toml up to "
        f"{TOML_UP_TO:,} files)",
    )
    parser.add_argument("--work", help="keep corpora here and reuse them (default: a temp dir)")
    parser.add_argument("--change", type=float, default=0.01, help="share of files added")
    parser.add_argument(
        "--through-server",
        action="store_true",
        help="store the new files as a server stores uploads (put_file, journal) rather "
        "than copying them in by hand",
    )
    args = parser.parse_args()
    chosen = args.formats.split(",") if args.formats else None
    if chosen and not set(chosen) <= set(FORMATS):
        parser.error(f"--formats: {', '.join(FORMATS)}")
    before = uptime()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.work) if args.work else Path(scratch)
        for files in (int(n) for n in args.sizes.split(",")):
            if files <= REAL_FILES:
                parser.error(f"--sizes: more than {REAL_FILES:,} files")
            for index_format in chosen or [
                f for f in FORMATS if f != "toml" or files <= TOML_UP_TO
            ]:
                storage = build_corpus(folder, files, index_format)
                rows.append(measure(storage, files, index_format, args.change, args.through_server))
                print(f"measured {files:,} {index_format}", flush=True)
    print(f"\nbefore: {before}\nafter: {uptime()}")
    share = f"{args.change:.0%}"
    print(
        f"\n| files | format | index on storage MB | update_index, nothing changed s (CPU s) "
        f"| server first open s | update_index, {share} new s (CPU s) | its peak RSS MB "
        f"| replica fetches after it | server sync s | update_index, {share} removed s (CPU s) "
        "| its peak RSS MB | replica fetches | server sync s | replica fetches for 1 new file |"
    )
    print("| ---: | --- | ---: " + "| ---: " * 11 + "|")
    for row in rows:
        print(
            f"| {row.files:,} | {row.index_format} | {row.index_mb} "
            f"| {row.unchanged.times()} | {row.server_open:.1f} "
            f"| {row.added.times()} | {row.added.peak_rss_mb:.0f} "
            f"| {size(row.added_fetch)} | {row.added_sync:.2f} "
            f"| {row.removed.times()} | {row.removed.peak_rss_mb:.0f} "
            f"| {size(row.removed_fetch)} | {row.removed_sync:.2f} | {size(row.one_fetch)} |"
        )


def size(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


if __name__ == "__main__":
    main()
