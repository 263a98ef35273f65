"""How pywharf's costs grow with the index: start-up, memory and page throughput at
1,000, 100,000 and 1,000,000 files (4 files a project).

    python benchmarks/scale.py [--sizes 1000,100000,1000000] [--server waitress|uvicorn]
                               [--work DIR] [--touch 1000] [--index-format segments|toml]

For each size, a corpus in the file_system backend's layout: the first 1,000 files are
small real wheels (the projects that clients fetch), indexed by ``update_index``; the
rest are synthetic records (a sha256, a size, an upload time, no file) appended straight
to the remote index file, so a million records need no million wheels. Corpora are kept
under ``--work`` and reused: a before/after comparison reads the same index bytes. With
``--index-format segments`` (the default) the corpus's index is converted once into a
segmented index (a base database, ``remoteindex``) in a copy beside it, as
``update_index`` writes it from 20,000 files; ``toml`` measures the single file.

Then: a first start on a fresh ROOT (the remote index is read), the peak RSS of that
start (VmHWM) and its RSS a second later, a restart on that ROOT, the idle RSS, the RSS
after fetching the pages of ``--touch`` random projects (one client, keep-alive; their
median time too), one project page with wrk at 16 connections and at 1 (req/s and
p50), and pip and uv installing one of its projects (no cache, the median of 3).
Prints a table and ``uptime``. Needs wrk and curl. A tool, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rtoml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # the same helpers as the side-by-side run
    free_port,
    peak_rss_mb,
    rss_mb,
    update_index,
    wait_until_up,
    wheel_bytes,
)

PER_PROJECT = 4
#: Files of real wheels (the rest of a corpus is records only).
REAL_FILES = 1_000
#: Synthetic records are written to the index file this many at a time.
CHUNK = 20_000
TOKEN = base64.b64encode(b"scale:scale-read").decode()
PAGE = "scale-project-7"


def project_of(i: int) -> tuple[str, str]:
    return f"scale-project-{i // PER_PROJECT}", f"1.{i % PER_PROJECT}"


def synthetic_record(i: int, mtime: float) -> dict[str, object]:
    """The index record of file ``i`` as update_index would write it, with no file."""
    name, version = project_of(i)
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    digest = hashlib.sha256(filename.encode()).hexdigest()
    return {
        "project": name,
        "filename": filename,
        "version": version,
        "sha256": digest,
        "size": 1000 + i % 5000,
        "upload_time": mtime - 1_000_000 + i,
        "yanked": False,
        "requires_python": ">=3.8",
        "core_metadata_sha256": digest[::-1],
        "backend_ref": f"{name}/{filename}",
    }


def build_corpus(folder: Path, files: int) -> Path:
    """The storage folder of a corpus of ``files`` files (built once, then reused)."""
    storage = folder / f"corpus-{files}" / "storage"
    marker = storage.parent / ".complete"
    if marker.exists():
        return storage
    shutil.rmtree(storage.parent, ignore_errors=True)
    for i in range(min(files, REAL_FILES)):
        name, version = project_of(i)
        target = storage / name
        target.mkdir(parents=True, exist_ok=True)
        data = wheel_bytes(name, version, [])
        (target / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(data)
    update_index("scale", storage, quiet=True)
    if files > REAL_FILES:
        index = storage / "index.toml"
        real = rtoml.loads(index.read_text(encoding="utf-8"))
        temporary = index.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            out.write(rtoml.dumps({"format_version": 1, "mtime": real["mtime"]}))
            out.write(rtoml.dumps({"files": real["files"]}, none_value=None))
            for start in range(REAL_FILES, files, CHUNK):
                chunk = [
                    synthetic_record(i, real["mtime"])
                    for i in range(start, min(start + CHUNK, files))
                ]
                out.write(rtoml.dumps({"files": chunk}, none_value=None))
        temporary.replace(index)
    marker.touch()
    return storage


def segmented_copy(storage: Path) -> Path:
    """A copy of the corpus whose index is segmented (the wheels hard-linked), built once."""
    from pywharf_backends.file_system import FileSystemBackend

    from pywharf_core import remoteindex
    from pywharf_core.indexfile import load_index

    copy = storage.parent.with_name(storage.parent.name + "-segments") / "storage"
    marker = copy.parent / ".complete"
    if marker.exists():
        return copy
    shutil.rmtree(copy.parent, ignore_errors=True)
    for folder in storage.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            (copy / folder.name).mkdir(parents=True)
            for file in folder.iterdir():
                (copy / folder.name / file.name).hardlink_to(file)
    records = load_index((storage / "index.toml").read_bytes()).records
    backend = FileSystemBackend(copy)
    backend.write_index(remoteindex.write_base(backend, records, []).data, None)
    marker.touch()
    return copy


def index_bytes(storage: Path) -> int:
    """The remote index on storage: the TOML file, or the manifest and its segments."""
    segments = storage / ".pywharf-state" / "index"
    extra = sum(p.stat().st_size for p in segments.iterdir()) if segments.exists() else 0
    return (storage / "index.toml").stat().st_size + extra


def install(url: str, tool: str) -> float:
    """Seconds for pip or uv to install ``PAGE`` (no dependencies, no cache); median of 3."""
    index = url.replace("http://", "http://scale:scale-read@")
    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as target:
            if tool == "pip":
                command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "-q"]
            else:
                uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
                command = [uv, "pip", "install", "--python", sys.executable, "--no-cache", "-q"]
            command += ["--index-url", index, "--target", target, PAGE]
            began = time.monotonic()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.monotonic() - began)
    return statistics.median(times)


def start(work: Path, server: str) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pywharf_core",
            "server",
            str(work / "root"),
            "--config",
            str(work / "config.toml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--server",
            server,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/simple/"
    header = ["-H", f"Authorization: Basic {TOKEN}"]
    return process, url, wait_until_up(url + f"{PAGE}/", header, started, timeout=600)


def touch(url: str, projects: int, count: int) -> float:
    """Fetch ``count`` random projects' pages over one connection; the median ms."""
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chosen = random.Random(19).sample(range(projects), min(count, projects))  # noqa: S311
    times = []
    for number in chosen:
        began = time.perf_counter()
        connection.request(
            "GET", f"/simple/scale-project-{number}/", headers={"Authorization": f"Basic {TOKEN}"}
        )
        answer = connection.getresponse()
        answer.read()
        times.append(time.perf_counter() - began)
        if answer.status != 200:
            raise RuntimeError(f"scale-project-{number}: {answer.status}")
    connection.close()
    return statistics.median(times) * 1000


def wrk(url: str, connections: int) -> tuple[float, str]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            "-d6s",
            "--latency",
            "-H",
            f"Authorization: Basic {TOKEN}",
            url + f"{PAGE}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    return rate, p50


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait()


def measure(storage: Path, files: int, server: str, count: int) -> tuple[object, ...]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "config.toml").write_text(
            '[scale]\ntype = "file_system"\nread_secret = "scale-read"\n'
            f'write_secret = "scale-write"\nstorage_root = "{storage}"\n'
        )
        process, _, first = start(work, server)
        time.sleep(1)  # the sync thread's first round is over
        peak, after_first = peak_rss_mb(process.pid), rss_mb(process.pid)
        stop(process)
        process, url, restart = start(work, server)
        try:
            idle = rss_mb(process.pid)
            touched_ms = touch(url, files // PER_PROJECT, count)
            touched = rss_mb(process.pid)
            rate16, p50_16 = wrk(url, 16)
            rate1, p50_1 = wrk(url, 1)
            pip_s, uv_s = install(url, "pip"), install(url, "uv")
        finally:
            stop(process)
    index_mb = index_bytes(storage) / 1e6
    return (
        files,
        index_mb,
        first,
        peak,
        after_first,
        restart,
        idle,
        touched,
        touched_ms,
        rate16,
        p50_16,
        rate1,
        p50_1,
        pip_s,
        uv_s,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--server", choices=["waitress", "uvicorn"], default="waitress")
    parser.add_argument("--work", help="keep corpora here and reuse them (default: a temp dir)")
    parser.add_argument("--touch", type=int, default=1000, help="random projects to fetch")
    parser.add_argument("--index-format", choices=["segments", "toml"], default="segments")
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.work) if args.work else Path(scratch)
        for files in (int(n) for n in args.sizes.split(",")):
            storage = build_corpus(folder, files)
            if args.index_format == "segments":
                storage = segmented_copy(storage)
            rows.append(measure(storage, files, args.server, args.touch))
    print(f"\n{args.server}, {args.index_format} index; before: {uptime}")
    print("after: " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(
        "\n| files | index MB | first start s | its peak RSS MB | RSS after it MB | restart s "
        f"| idle RSS MB | RSS after {args.touch:,} projects MB | their page p50 ms "
        "| page req/s, 16 conn. | p50, 16 | req/s, 1 conn. | p50, 1 | pip install s "
        "| uv install s |"
    )
    print("| ---: " * 15 + "|")
    for row in rows:
        files, mb, first, peak, after, restart, idle, touched, touched_ms = row[:9]
        r16, p16, r1, p1, pip_s, uv_s = row[9:]
        print(
            f"| {files:,} | {mb:.1f} | {first:.2f} | {peak:.0f} | {after:.0f} | {restart:.2f} "
            f"| {idle:.0f} | {touched:.0f} | {touched_ms:.2f} | {r16:,.0f} | {p16} "
            f"| {r1:,.0f} | {p1} | {pip_s:.2f} | {uv_s:.2f} |"
        )


if __name__ == "__main__":
    main()
