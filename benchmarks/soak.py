"""A mixed soak: does the server's memory reach a plateau?

    python benchmarks/soak.py [--seconds 600] [--clients 16] [--server waitress|uvicorn]

Starts pywharf on corpus S (2,000 wheels, as run.py builds it) and runs ``--clients``
keep-alive clients for ``--seconds``: 80% project pages (HTML or JSON), 10% downloads
(corpus wheels, and one in five a 4 MiB wheel), 5% uploads (fresh wheels of 64 KiB to
1.5 MiB), 5% ``/simple/``. Every ``--every`` seconds it prints the server's RSS, its peak,
open fds, threads, glibc heap arenas (64 MiB-aligned anonymous mappings), requests done
and the 5xx count. Then it stops the server, starts a fresh one on the same storage,
gives it the same data to hold (every project page in both media types, ``/simple/``)
and prints the soaked RSS against the fresh one. ``--python-malloc`` runs both servers
with ``PYTHONMALLOC=malloc``. Loopback only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from pywharf_core.memory import glibc_arenas

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # the same corpus and server start as the side-by-side run
    READ,
    USER,
    WRITE,
    Server,
    build_corpus,
    peak_rss_mb,
    rss_mb,
    start_pywharf,
    wheel_bytes,
)

PROJECTS = 500  # corpus S


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.errors_5xx = 0
        self.failed = 0  # no answer at all (connection dropped)
        self.statuses: dict[int, int] = {}

    def count(self, status: int) -> None:
        with self.lock:
            self.done += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status >= 500:
                self.errors_5xx += 1
            if status == 0:
                self.failed += 1


def client(
    server: Server,
    files: list[str],
    medium: list[str],
    until: float,
    seed: int,
    tally: Tally,
    work: Path,
) -> None:
    rng = random.Random(seed)  # noqa: S311 (a reproducible load, not a secret)
    session = requests.Session()
    session.auth = (USER, READ)
    uploads = 0
    while time.monotonic() < until:
        pick = rng.random()
        try:
            if pick < 0.80:
                project = f"bench-project-{rng.randrange(PROJECTS)}/"
                accept = rng.choice(["text/html", "application/vnd.pypi.simple.v1+json"])
                response = session.get(server.index + project, headers={"Accept": accept})
            elif pick < 0.90:
                path = rng.choice(medium) if rng.random() < 0.2 else rng.choice(files)
                response = session.get(server.index + path)
            elif pick < 0.95:
                uploads += 1
                name = f"soak-{seed}-{uploads}"
                size = rng.randrange(64 << 10, 3 << 19)
                data = wheel_bytes(name, "1.0", [], rng.randbytes(size))
                response = session.post(
                    server.index,
                    auth=(USER, WRITE),
                    files={"content": (f"{name.replace('-', '_')}-1.0-py3-none-any.whl", data)},
                    data={
                        ":action": "file_upload",
                        "name": name,
                        "version": "1.0",
                        "protocol_version": "1",
                        "filetype": "bdist_wheel",
                        "pyversion": "py3",
                        "sha256_digest": hashlib.sha256(data).hexdigest(),
                    },
                )
            else:
                response = session.get(server.index)
            response.content  # noqa: B018 (read the whole body)
            tally.count(response.status_code)
        except requests.RequestException:
            tally.count(0)
            session = requests.Session()
            session.auth = (USER, READ)


def corpus_files(corpus: Path) -> list[str]:
    """``<project>/<filename>`` of every corpus wheel."""
    paths = []
    for wheel in sorted(corpus.glob("bench_project_*.whl")):
        project = wheel.name.split("-")[0].replace("_", "-")
        paths.append(f"{project}/{wheel.name}")
    return paths


def hold_the_data(server: Server) -> None:
    """What a soak leaves in a server's caches: every project page in both media types."""
    session = requests.Session()
    session.auth = (USER, READ)
    listing = session.get(server.index, headers={"Accept": "text/html"}).text
    for project in sorted(set(re.findall(r'href="([^"/]+)/"', listing))):
        for accept in ("text/html", "application/vnd.pypi.simple.v1+json"):
            session.get(f"{server.index}{project}/", headers={"Accept": accept}).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    parser.add_argument("--server", default="waitress", choices=["waitress", "uvicorn"])
    parser.add_argument(
        "--python-malloc",
        action="store_true",
        help="run the servers with PYTHONMALLOC=malloc (glibc for Python's small objects)",
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pywharf-soak")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    if args.python_malloc:
        os.environ["PYTHONMALLOC"] = "malloc"  # the servers' environment, not ours
    corpus = build_corpus(args.work, "S", large=False)["corpus"]
    run = Path(tempfile.mkdtemp(prefix="run-", dir=args.work))
    server = start_pywharf(run, corpus, args.server)
    try:
        medium = []
        for i in range(4):
            name = f"soak-medium-{i}"
            data = wheel_bytes(name, "1.0", [], random.Random(i).randbytes(4 << 20))  # noqa: S311
            filename = f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
            requests.post(
                server.index,
                auth=(USER, WRITE),
                files={"content": (filename, data)},
                data={
                    ":action": "file_upload",
                    "name": name,
                    "version": "1.0",
                    "sha256_digest": hashlib.sha256(data).hexdigest(),
                },
                timeout=60,
            ).raise_for_status()
            medium.append(f"{name}/{filename}")
        files = corpus_files(corpus)
        start_rss = rss_mb(server.pid)
        print(
            f"pywharf on {args.server}, {args.clients} clients for {args.seconds:.0f} s; "
            f"RSS at start {start_rss:.1f} MB",
            flush=True,
        )
        print("     t s   RSS MB  peak MB  fds  threads  arenas  requests  5xx  dropped")
        tally = Tally()
        started = time.monotonic()
        until = started + args.seconds
        workers = [
            threading.Thread(
                target=client,
                args=(server, files, medium, until, seed, tally, run),
                daemon=True,
            )
            for seed in range(args.clients)
        ]
        for worker in workers:
            worker.start()
        next_sample = started
        while any(w.is_alive() for w in workers):
            if time.monotonic() >= next_sample:
                print(
                    f"{time.monotonic() - started:8.0f} {rss_mb(server.pid):8.1f} "
                    f"{peak_rss_mb(server.pid):8.1f} {fds(server.pid):4d} "
                    f"{threads(server.pid):8d} {glibc_arenas(server.pid):7d} "
                    f"{tally.done:9d} {tally.errors_5xx:4d} {tally.failed:8d}",
                    flush=True,
                )
                next_sample += args.every
            time.sleep(0.2)
        time.sleep(1)  # let the last responses' buffers go
        soaked = rss_mb(server.pid)
        print(
            f"end: RSS {soaked:.1f} MB, fds {fds(server.pid)}, arenas "
            f"{glibc_arenas(server.pid)}, {tally.done} requests "
            f"({tally.done / args.seconds:.0f}/s), 5xx {tally.errors_5xx}, "
            f"dropped {tally.failed}, statuses {dict(sorted(tally.statuses.items()))}",
            flush=True,
        )
    finally:
        server.stop()
    fresh_server = start_pywharf(run, corpus, args.server)
    try:
        hold_the_data(fresh_server)
        fresh = rss_mb(fresh_server.pid)
    finally:
        fresh_server.stop()
    print(
        f"fresh process holding the same data: RSS {fresh:.1f} MB; the soaked one "
        f"{soaked:.1f} MB ({(soaked / fresh - 1) * 100:+.0f}%)",
        flush=True,
    )


if __name__ == "__main__":
    main()
