"""How pywharf's costs grow with the index: page throughput and start-up time at
100, 1,000, 10,000 and 100,000 files (4 files a project).

    python benchmarks/scale.py [--sizes 100,1000,10000,100000] [--server waitress|uvicorn]

For each size: builds small real wheels, runs update_index, starts the server on a fresh
ROOT (a first start parses the TOML index), restarts it (the parsed index is cached),
and measures one project page with wrk (16 connections). Prints a table. Needs wrk.
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # the same helpers as the side-by-side run
    free_port,
    rss_mb,
    wait_until_up,
    wheel_bytes,
)

PER_PROJECT = 4
TOKEN = base64.b64encode(b"scale:scale-read").decode()


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
    return process, url, wait_until_up(url + "scale-project-1/", header, started, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--server", choices=["waitress", "uvicorn"], default="waitress")
    args = parser.parse_args()
    rows = []
    for files in (int(n) for n in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            storage = work / "storage"
            for i in range(files):
                name, version = f"scale-project-{i // PER_PROJECT}", f"1.{i % PER_PROJECT}"
                target = storage / name
                target.mkdir(parents=True, exist_ok=True)
                data = wheel_bytes(name, version, [])
                (target / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(data)
            started = time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pywharf_core",
                    "update_index",
                    "file_system",
                    "scale",
                    "--storage_root",
                    str(storage),
                ],
                check=True,
                capture_output=True,
            )
            indexing = time.monotonic() - started
            (work / "config.toml").write_text(
                '[scale]\ntype = "file_system"\nread_secret = "scale-read"\n'
                f'write_secret = "scale-write"\nstorage_root = "{storage}"\n'
            )
            process, _, first = start(work, args.server)
            process.terminate()
            process.wait()
            process, url, restart = start(work, args.server)
            idle = rss_mb(process.pid)
            out = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    "-c16",
                    "-d6s",
                    "--latency",
                    "-H",
                    f"Authorization: Basic {TOKEN}",
                    url + "scale-project-7/",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            process.terminate()
            process.wait()
            rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
            p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
            index_mb = (storage / "index.toml").stat().st_size / 1e6
            rows.append((files, indexing, index_mb, first, restart, idle, rate, p50))
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.server}:\n")
    print(
        "| files | update_index s | index MB | first start s | restart s | idle RSS MB "
        "| project page req/s | p50 |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for files, indexing, mb, first, restart, idle, rate, p50 in rows:
        print(
            f"| {files:,} | {indexing:.1f} | {mb:.1f} | {first:.2f} | {restart:.2f} | {idle:.0f} "
            f"| {rate:,.0f} | {p50} |"
        )


if __name__ == "__main__":
    main()
