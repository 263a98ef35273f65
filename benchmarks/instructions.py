"""Instructions per request of the pywharf server, counted by callgrind: a CPU figure that
other work on a shared machine does not move.

    python benchmarks/instructions.py [--requests 300] [--uploads 100] [--work DIR]

Starts pywharf (waitress, this checkout's Python) on corpus S under ``valgrind
--tool=callgrind`` with counting off; after a warm-up turns counting on for: N requests
of a project page and N of ``/simple/`` on one keep-alive connection, then M small
uploads from 16 clients (as run.py sends them); prints instructions per request of the
whole process (every thread, user space only: system calls and page faults are not
counted). Repeat runs agree within about 1% for pages; uploads vary more (threads
interleave differently), up to ten percent. Needs valgrind (Debian: apt-get install
valgrind); about two minutes. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import READ, USER, WRITE, build_corpus, start_pywharf, upload_many, wheel_bytes


def counted_instructions(out: Path) -> int:
    """The instructions in every dump so far (each holds what was counted since the one
    before it): its ``totals:`` line, else its ``summary:`` line."""
    total = 0
    for dump in out.parent.glob(out.name + "*"):
        lines = dump.read_text().splitlines()
        for key in ("totals:", "summary:"):
            found = [int(line.split()[1]) for line in lines if line.startswith(key)]
            if found:
                total += found[-1]
                break
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pywharf-ir")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("benchmarks: valgrind is missing (Debian: apt-get install valgrind)")
    corpus = build_corpus(args.work, "S", large=False)["corpus"]
    run = Path(tempfile.mkdtemp(prefix="run-", dir=args.work))
    out = run / "callgrind.out"
    callgrind = ("valgrind", "--tool=callgrind", "--instr-atstart=no")
    server = start_pywharf(run, corpus, wrapper=(*callgrind, f"--callgrind-out-file={out}"))
    port = urlsplit(server.index).port
    auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{READ}".encode()).decode()}

    def get(connection: http.client.HTTPConnection, path: str) -> None:
        connection.request("GET", path, headers=auth)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)

    def counting(on: bool) -> int:
        subprocess.run(
            ["callgrind_control", "--instr=" + ("on" if on else "off"), str(server.pid)],
            check=True,
            capture_output=True,
        )
        subprocess.run(["callgrind_control", "--dump", str(server.pid)], capture_output=True)
        return counted_instructions(out)

    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        figures = {}
        for label, path in (
            ("GET /simple/<project>/", "/simple/bench-project-42/"),
            ("GET /simple/", "/simple/"),
        ):
            for _ in range(10):
                get(connection, path)
            before = counting(True)
            for _ in range(args.requests):
                get(connection, path)
            figures[label] = (counting(False) - before) / args.requests
        small = run / "small"
        small.mkdir()
        wheels = []
        for i in range(args.uploads + 32):
            wheel = small / f"ir_{i}-1.0-py3-none-any.whl"
            wheel.write_bytes(wheel_bytes(f"ir-{i}", "1.0", []))
            wheels.append(wheel)
        upload_many(server.index, (USER, WRITE), wheels[:32])  # warm: the secret is verified
        before = counting(True)
        upload_many(server.index, (USER, WRITE), wheels[32:])
        figures["small upload, 16 clients"] = (counting(False) - before) / args.uploads
    finally:
        server.stop()
    for label, value in figures.items():
        print(f"{label}: {value:,.0f} instructions per request")


if __name__ == "__main__":
    main()
