"""The edges of issue 14, measured: a large upload, clients that stop reading, slowloris.

    python benchmarks/edges.py upload     # 1 GiB wheel with curl: MB/s and server CPU s
    python benchmarks/edges.py stalled    # 20 clients stop reading a 64 MB download: RSS
    python benchmarks/edges.py slowloris  # /healthz latency while 200 slow clients drip headers
    python benchmarks/edges.py refused    # a 3 GB upload without credentials: answer, spool

Each starts pywharf (``--server waitress`` by default) on a small corpus under
``--work`` and prints its figures. Loopback only; needs curl.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import READ, USER, WRITE, Server, file_link, rss_mb, start_pywharf, wheel_bytes

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def big_wheel(folder: Path, name: str, mib: int) -> Path:
    path = folder / f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
    if not path.exists():
        block = os.urandom(1 << 20)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            with archive.open(f"{name.replace('-', '_')}/blob.bin", "w", force_zip64=True) as f:
                for _ in range(mib):
                    f.write(block)
            archive.writestr(
                f"{name.replace('-', '_')}-1.0.dist-info/METADATA",
                f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n",
            )
    return path


def curl_upload(server: Server, wheel: Path, name: str) -> None:
    subprocess.run(
        [
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "-u",
            f"{USER}:{WRITE}",
            "-F",
            ":action=file_upload",
            "-F",
            f"name={name}",
            "-F",
            "version=1.0",
            "-F",
            f"content=@{wheel}",
            server.index,
        ],
        check=True,
    )


def measure_upload(server: Server, work: Path, rounds: int) -> None:
    for i in range(rounds):
        name = f"edge-big-{int(time.time())}-{i}"
        wheel = big_wheel(work, name, 1024)
        cpu, started = cpu_seconds(server.pid), time.monotonic()
        curl_upload(server, wheel, name)
        seconds, used = time.monotonic() - started, cpu_seconds(server.pid) - cpu
        print(
            f"upload 1 GiB with curl: {wheel.stat().st_size / 1e6 / seconds:.0f} MB/s, "
            f"{seconds:.2f} s, server CPU {used:.2f} s",
            flush=True,
        )
        wheel.unlink()


def measure_stalled(server: Server, work: Path, clients: int) -> None:
    name = "edge-download"
    wheel = big_wheel(work, name, 64)
    curl_upload(server, wheel, name)
    url = file_link(server, name, wheel.name)
    path = url.split("//", 1)[1].split("/", 1)[1]
    token = base64.b64encode(f"{USER}:{READ}".encode()).decode()
    request = (f"GET /{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n").encode()
    time.sleep(1)
    before = rss_mb(server.pid)
    port = int(server.index.split(":")[2].split("/")[0])
    sockets = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(request)
        sock.recv(1024)  # the response has started; then this client stops reading
        sockets.append(sock)
    time.sleep(3)
    during = rss_mb(server.pid)
    for sock in sockets:
        sock.close()
    time.sleep(3)
    after = rss_mb(server.pid)
    print(
        f"{clients} clients stop reading a 64 MiB download: RSS {before:.0f} MB before, "
        f"{during:.0f} MB while they hang, {after:.0f} MB after they close",
        flush=True,
    )


def measure_slowloris(server: Server, slow: int, seconds: float) -> None:
    port = int(server.index.split(":")[2].split("/")[0])
    sockets = []
    for _ in range(slow):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    worst, answered, tries = 0.0, 0, 0
    deadline = time.monotonic() + seconds
    next_drip = time.monotonic() + 5
    while time.monotonic() < deadline:
        if time.monotonic() >= next_drip:  # one header line every 5 s from each
            for sock in sockets:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            next_drip += 5
        tries += 1
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    answered += 1
        except OSError:
            pass
        worst = max(worst, time.monotonic() - started)
        time.sleep(0.5)
    for sock in sockets:
        sock.close()
    print(
        f"/healthz with {slow} slow clients dripping headers: {answered}/{tries} answered, "
        f"slowest {worst:.2f} s (10 s = no answer)",
        flush=True,
    )


def measure_refused(server: Server) -> None:
    port = int(server.index.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /simple/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=b\r\nContent-Length: 3000000000\r\n\r\n"
        )
        started = time.monotonic()
        sent = 0
        sock.settimeout(0.05)
        answer = b""
        while time.monotonic() - started < 15 and not answer:
            try:
                sent += sock.send(b"\0" * (1 << 20))
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                break
            try:
                answer = sock.recv(200)
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                break
    status = answer.split(b"\r\n", 1)[0].decode("latin-1") or "no answer"
    print(
        f"POST of 3 GB without credentials: {status!r} after {sent / 1e6:.0f} MB sent "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["upload", "stalled", "slowloris", "refused"])
    parser.add_argument("--server", default="waitress", choices=["waitress", "uvicorn"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pywharf-edges")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.work / "corpus"
    if not corpus.exists():
        corpus.mkdir()
        for i in range(20):
            data = wheel_bytes(f"edge-{i}", "1.0", [])
            (corpus / f"edge_{i}-1.0-py3-none-any.whl").write_bytes(data)
        # start_pywharf waits for this project's page
        (corpus / "tree_00-1.0-py3-none-any.whl").write_bytes(wheel_bytes("tree-00", "1.0", []))
    run = Path(tempfile.mkdtemp(prefix="run-", dir=args.work))
    server = start_pywharf(run, corpus, args.server)
    try:
        if args.what == "upload":
            measure_upload(server, run, args.rounds)
        elif args.what == "stalled":
            measure_stalled(server, run, 20)
        elif args.what == "slowloris":
            measure_slowloris(server, 200, 12)
        else:
            measure_refused(server)
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(run)], check=False)


if __name__ == "__main__":
    main()
