"""How long `pywharf update_index file_system` takes on N wheels copied in by hand.

    python benchmarks/update_index.py [N] [--projects P]

Builds N small, real wheels (N/P versions of P projects) into a fresh storage folder,
then times three runs of the job: the first import (hashes every file, extracts and
stores every METADATA, writes the index), a run with nothing changed (reuses the last
index's records by size and mtime), and a run after 1% more files arrived. Also times a
server's cold load of the resulting index. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def write_wheel(folder: Path, project: str, version: str) -> None:
    base = f"{project.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{project.replace('-', '_')}/__init__.py", f"V = '{version}'\n" * 20)
        archive.writestr(f"{base}.dist-info/METADATA", metadata)
        archive.writestr(f"{base}.dist-info/RECORD", "")
    (folder / f"{base}-py3-none-any.whl").write_bytes(buffer.getvalue())


def timed_job(storage: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pywharf_core",
            "update_index",
            "file_system",
            "bench",
            "--storage_root",
            str(storage),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="?", type=int, default=20_000)
    parser.add_argument("--projects", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp) / "storage"
        per_project = max(1, args.files // args.projects)
        started = time.perf_counter()
        for i in range(args.files):
            project = f"bench-project-{i % args.projects}"
            folder = storage / project
            folder.mkdir(parents=True, exist_ok=True)
            write_wheel(folder, project, f"{i // args.projects}.{i % per_project}")
        print(f"built {args.files} wheels in {time.perf_counter() - started:.1f} s")

        for label in ("first import", "nothing changed"):
            seconds, line = timed_job(storage)
            print(f"{label:>16}: {seconds:6.1f} s   ({line})")
        extra = args.files // 100
        for i in range(extra):
            folder = storage / "bench-new"
            folder.mkdir(exist_ok=True)
            write_wheel(folder, "bench-new", f"1.{i}")
        seconds, line = timed_job(storage)
        print(f"{'1% new files':>16}: {seconds:6.1f} s   ({line})")

        from pywharf_core.indexfile import load_index

        data = (storage / "index.toml").read_bytes()
        started = time.perf_counter()
        records = load_index(data).records
        print(
            f"parse the index ({len(data) / 1e6:.1f} MB, {len(records)} records): "
            f"{time.perf_counter() - started:.2f} s"
        )


if __name__ == "__main__":
    main()
