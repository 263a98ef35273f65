"""pywharf side by side with pypiserver, devpi-server, static nginx and peryx, in one run.

    python benchmarks/run.py [--corpus S|L] [--peers pypiserver,devpi,nginx,peryx]
                             [--work DIR] [--no-large] [--devpi-files N]
                             [--pywharf-server uvicorn]

Builds a deterministic corpus of real wheels (S: 500 projects / 2,000 wheels; L: 5,000 /
20,000), a dependency tree of 30 projects and one ~1,000 MiB wheel; installs pypiserver,
devpi-server and peryx (a Rust registry; its hosted mode) into throwaway venvs; loads the
same corpus into every server; then measures pywharf and each peer alternately with wrk
(16 connections), curl, pip and uv, and prints every figure for both with their ratio. A
peer that cannot be installed or started here is left out, and a figure that cannot be
taken is "—", each with a line saying why. It prints ``uptime`` before and after. A tool,
not a test: CI does not run it. It needs wrk, nginx and curl (Debian: apt-get install wrk
nginx-light curl). Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPORA = {"S": (500, 2_000), "L": (5_000, 20_000)}
TREE = 30
LARGE_MIB = 1000
USER, READ, WRITE = "bench", "bench-read", "bench-write"
CONNECTIONS = 16
#: What the clients send for a page (pip 26, uv 0.13): the bytes each gets for /simple/.
CLIENT_HEADERS = {
    "pip": (
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
        "text/html; q=0.01",
        "gzip, deflate",
    ),
    "uv": (
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
        "text/html;q=0.01",
        "gzip, deflate, zstd",
    ),
}
ROUNDS = 3  # tree installs and downloads: the median of this many
WHEEL_FILE = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
#: Written into a corpus's marker. 2: each wheel's RECORD lists its members' hashes (format 1
#: had empty RECORDs, which peryx refuses).
CORPUS_FORMAT = "2"
#: What the servers' start-up below makes from a corpus under ``--work``/<S|L|proxy>, each
#: once: removed when the corpus is built again.
DERIVED = (
    "pywharf-storage",
    "pypiserver-packages",
    "devpi-server",
    "devpi-client",
    "nginx-site",
    "peryx-data",
)


# -- the corpus ------------------------------------------------------------------------


def record_line(path: str, data: bytes) -> str:
    """A wheel's RECORD line for one member: path, urlsafe-base64 sha256, size."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def wheel_bytes(name: str, version: str, requires: list[str], payload: bytes = b"") -> bytes:
    """A small pure wheel whose RECORD names every member's hash (peryx checks them)."""
    module = name.replace("-", "_")
    base = f"{module}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    members = {
        f"{module}/__init__.py": f"VERSION = '{version}'\n".encode() + payload,
        f"{base}.dist-info/METADATA": (metadata + "\n").encode(),
        f"{base}.dist-info/WHEEL": WHEEL_FILE,
    }
    record = "".join(record_line(path, data) for path, data in members.items())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in members.items():
            archive.writestr(path, data)
        archive.writestr(f"{base}.dist-info/RECORD", record + f"{base}.dist-info/RECORD,,\n")
    return buffer.getvalue()


def build_corpus(folder: Path, size: str, large: bool) -> dict[str, Path]:
    projects, files = CORPORA[size]
    flat = folder / f"corpus-{size}"
    marker = flat / ".complete"
    if not marker.exists() or marker.read_text() != CORPUS_FORMAT:
        if flat.exists():  # an older format: what was made from it goes with it
            print(f"  {flat} is of an older format: building it again", flush=True)
            for made in folder.iterdir():
                for name in DERIVED:
                    shutil.rmtree(made / name, ignore_errors=True)
        shutil.rmtree(flat, ignore_errors=True)
        flat.mkdir(parents=True)
        for i in range(files):
            name = f"bench-project-{i % projects}"
            version = f"{i // projects}.{i % 3}"
            data = wheel_bytes(name, version, [], b"#" * 2000)
            (flat / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(data)
        for i in range(TREE):  # tree-i needs tree-(2i+1) and tree-(2i+2)
            requires = [f"tree-{j:02d}" for j in (2 * i + 1, 2 * i + 2) if j < TREE]
            data = wheel_bytes(f"tree-{i:02d}", "1.0", requires)
            (flat / f"tree_{i:02d}-1.0-py3-none-any.whl").write_bytes(data)
        marker.write_text(CORPUS_FORMAT)
    big = folder / "big_wheel-1.0-py3-none-any.whl"
    if large and not (big.exists() and big_wheel_has_record(big)):
        build_big_wheel(big)
    return {"corpus": flat, "big": big}


def build_big_wheel(path: Path) -> None:
    """A ``LARGE_MIB`` MiB wheel of incompressible bytes, stored, with its RECORD."""
    block = os.urandom(1 << 20)
    blob, sha256 = "big_wheel/blob.bin", hashlib.sha256()
    metadata = b"Metadata-Version: 2.1\nName: big-wheel\nVersion: 1.0\n\n"
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        with archive.open(blob, "w", force_zip64=True) as handle:
            for _ in range(LARGE_MIB):
                handle.write(block)
                sha256.update(block)
        archive.writestr("big_wheel-1.0.dist-info/METADATA", metadata)
        archive.writestr("big_wheel-1.0.dist-info/WHEEL", WHEEL_FILE)
        digest = base64.urlsafe_b64encode(sha256.digest()).rstrip(b"=").decode()
        record = f"{blob},sha256={digest},{LARGE_MIB << 20}\n"
        record += record_line("big_wheel-1.0.dist-info/METADATA", metadata)
        record += record_line("big_wheel-1.0.dist-info/WHEEL", WHEEL_FILE)
        record += "big_wheel-1.0.dist-info/RECORD,,\n"
        archive.writestr("big_wheel-1.0.dist-info/RECORD", record)
    partial.rename(path)


def big_wheel_has_record(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return bool(archive.read("big_wheel-1.0.dist-info/RECORD"))


# -- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def venv_with(folder: Path, *packages: str) -> Path:
    """A venv under ``folder`` holding ``packages``: its bin folder. Raises
    CalledProcessError if they cannot be installed (then tried again the next time)."""
    installed = folder / ".installed"
    if not installed.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run(
            [str(folder / "bin" / "pip"), "install", "-q", *packages],
            check=True,
            capture_output=True,
            text=True,
        )
        installed.touch()
    return folder / "bin"


def install_pypiserver(work: Path) -> Path:
    return venv_with(work / "venv-pypiserver", "pypiserver==2.4.2", "passlib==1.7.4", "setuptools")


def install_devpi(work: Path) -> Path:
    return venv_with(work / "venv-devpi", "devpi-server==6.20.3", "devpi-client")


def install_peryx(work: Path) -> Path:
    """peryx's executable, installed as proxy.py installs it."""
    import proxy  # here, not at the top: proxy imports this module

    return proxy.install_peryx(work)


def load() -> str:
    """``uptime``: how busy the machine was (other work shares it)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


@dataclass
class Server:
    name: str
    index: str  # the simple index URL, ending in /
    upload: str | None  # the legacy upload URL, or None (static)
    auth: tuple[str, str] | None
    pid: int
    cold_start: float
    process: subprocess.Popen[bytes] | None = None
    files: dict[str, str] = field(default_factory=dict)

    def header(self) -> list[str]:
        if self.auth is None:
            return []
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return ["-H", f"Authorization: Basic {token}"]

    def index_with_auth(self) -> str:
        if self.auth is None:
            return self.index
        return self.index.replace("http://", f"http://{self.auth[0]}:{self.auth[1]}@")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()


def wait_until_up(url: str, headers: list[str], started: float, timeout: float = 120) -> float:
    while time.monotonic() - started < timeout:
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *headers, url],
            capture_output=True,
            text=True,
        )
        if done.stdout in ("200", "301", "302", "303"):
            return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not come up")


def update_index(name: str, storage: Path, quiet: bool = False) -> None:
    """``pywharf update_index`` of a file_system storage folder."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pywharf_core",
            "update_index",
            "file_system",
            name,
            "--storage_root",
            str(storage),
        ],
        check=True,
        capture_output=quiet,
    )


def start_pywharf(
    work: Path, corpus: Path, server: str = "waitress", wrapper: tuple[str, ...] = ()
) -> Server:
    """pywharf on ``server`` (waitress, its default, or uvicorn); ``wrapper``: a command
    that runs it (``valgrind …``)."""
    storage = work / "pywharf-storage"
    if not storage.exists():
        shutil.copytree(corpus, storage, copy_function=os.link)
        update_index(USER, storage)
    config = work / "pywharf.toml"
    config.write_text(
        f'[{USER}]\ntype = "file_system"\nread_secret = "{READ}"\n'
        f'write_secret = "{WRITE}"\nstorage_root = "{storage}"\n'
    )
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "pywharf_core",
            "server",
            str(work / "pywharf-root"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--server",
            server,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "pywharf.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}/simple/"
    auth = (USER, READ)
    token = base64.b64encode(f"{USER}:{READ}".encode()).decode()
    cold = wait_until_up(url + "tree-00/", ["-H", f"Authorization: Basic {token}"], started)
    return Server("pywharf", url, url, auth, process.pid, cold, process)


def start_pypiserver(work: Path, corpus: Path) -> Server:
    bin_dir = install_pypiserver(work)
    packages = work / "pypiserver-packages"
    if not packages.exists():
        shutil.copytree(corpus, packages, copy_function=os.link)
    # Without --overwrite (which also skips its existence check) pypiserver refuses a file
    # it holds: remove the last run's 1000 MiB wheel so that each run uploads it afresh.
    for old in packages.glob("big_wheel-*"):
        old.unlink()
    htpasswd = work / "htpasswd"
    from_passlib = (
        f"from passlib.apache import HtpasswdFile; h = HtpasswdFile({str(htpasswd)!r}, new=True); "
        f"h.set_password({USER!r}, {READ!r}); h.set_password('writer', {WRITE!r}); h.save()"
    )
    subprocess.run([str(bin_dir / "python"), "-c", from_passlib], check=True)
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [
            str(bin_dir / "pypi-server"),
            "run",
            "-p",
            str(port),
            "-i",
            "127.0.0.1",
            "-P",
            str(htpasswd),
            "-a",
            "update,download,list",
            "--hash-algo",
            "sha256",
            str(packages),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "pypiserver.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}/simple/"
    token = base64.b64encode(f"{USER}:{READ}".encode()).decode()
    cold = wait_until_up(url + "tree-00/", ["-H", f"Authorization: Basic {token}"], started)
    return Server(
        "pypiserver", url, f"http://127.0.0.1:{port}/", (USER, READ), process.pid, cold, process
    )


def start_devpi(work: Path, corpus: Path, limit: int) -> Server:
    bin_dir = install_devpi(work)
    serverdir = work / "devpi-server"
    port = free_port()
    fresh = not serverdir.exists()
    if fresh:
        subprocess.run(
            [
                str(bin_dir / "devpi-init"),
                "--serverdir",
                str(serverdir),
                "--no-root-pypi",
                "--root-passwd",
                "root",
            ],
            check=True,
            capture_output=True,
        )
    started = time.monotonic()
    process = subprocess.Popen(
        [
            str(bin_dir / "devpi-server"),
            "--serverdir",
            str(serverdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "devpi.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    cold = wait_until_up(base + "/+api", [], started)
    url = f"{base}/{USER}/dev/+simple/"
    client = ["--clientdir", str(work / "devpi-client")]
    devpi = str(bin_dir / "devpi")
    if fresh:
        subprocess.run([devpi, "use", base, *client], check=True, capture_output=True)
        subprocess.run(
            [devpi, "user", "-c", USER, f"password={WRITE}", *client],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [devpi, "login", USER, "--password", WRITE, *client], check=True, capture_output=True
        )
        subprocess.run(
            [devpi, "index", "-c", "dev", "bases=", "volatile=False", *client],
            check=True,
            capture_output=True,
        )
    wheels = sorted(corpus.glob("*.whl"))
    tree = [w for w in wheels if w.name.startswith("tree_")]
    chosen = (
        tree + [w for w in wheels if not w.name.startswith("tree_")][: max(0, limit - len(tree))]
    )
    # Resumable: a later run with a larger --devpi-files uploads only what is missing.
    present = {path.name for path in (serverdir / "+files").rglob("*.whl")}
    missing = [w for w in chosen if w.name not in present]
    if missing:
        print(
            f"  loading {len(missing)} more of {len(wheels)} wheels into devpi (uploads; "
            f"{len(chosen) - len(missing)} there already)...",
            flush=True,
        )
        upload_many(base + f"/{USER}/dev/", (USER, WRITE), missing)
    return Server("devpi", url, base + f"/{USER}/dev/", (USER, WRITE), process.pid, cold, process)


def start_nginx(work: Path, corpus: Path) -> Server:
    site = work / "nginx-site"
    if not site.exists():
        simple = site / "simple"
        simple.mkdir(parents=True)
        projects: dict[str, list[str]] = {}
        for wheel in sorted(corpus.glob("*.whl")):
            projects.setdefault(
                re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower(), []
            ).append(wheel.name)
        (simple / "index.html").write_text(
            "".join(f'<a href="{p}/">{p}</a><br>\n' for p in projects)
        )
        for project, names in projects.items():
            (simple / project).mkdir()
            links = "".join(
                f'<a href="/files/{n}#sha256={_sha256(corpus / n)}">{n}</a><br>\n' for n in names
            )
            (simple / project / "index.html").write_text(links)
        os.symlink(corpus, site / "files")
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""worker_processes 2;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  types {{ application/zip whl; text/html html; }}
  server {{
    listen 127.0.0.1:{port};
    root {site};
    location /files/ {{ alias {site}/files/; }}
    location /big/ {{ alias {work}/big/; }}
  }}
}}
""")
    started = time.monotonic()
    process = subprocess.Popen(
        ["nginx", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/simple/"
    cold = wait_until_up(url + "tree-00/", [], started)
    return Server("nginx", url, None, None, process.pid, cold, process)


def start_peryx(work: Path, corpus: Path) -> Server:
    """peryx (a Rust registry, from the package registry) with one hosted pypi index,
    ``bench``: reads need its read token, uploads its write token, each as the password
    (any user name). The corpus goes in once, with ``peryx import-dir``, which runs while
    no server holds the data folder."""
    import proxy

    peryx = install_peryx(work)
    config = work / "peryx.toml"
    config.write_text(
        f'[[index]]\nname = "{USER}"\necosystem = "pypi"\nhosted = true\n'
        "anonymous_read = false\n\n"
        f'[[index.access_token]]\nname = "reader"\nsecret = "{READ}"\nactions = ["read"]\n\n'
        f'[[index.access_token]]\nname = "writer"\nsecret = "{WRITE}"\n'
        'actions = ["read", "write"]\n'
    )
    data = work / "peryx-data"
    if not data.exists():  # loaded into a folder of another name, renamed when complete
        loading = data.with_suffix(".partial")
        shutil.rmtree(loading, ignore_errors=True)
        options = proxy.peryx_options(config, loading)
        subprocess.run([str(peryx), "init", *options], check=True, capture_output=True)
        print("  loading the corpus into peryx (import-dir)...", flush=True)
        done = subprocess.run(
            [str(peryx), "import-dir", *options, USER, str(corpus)],
            capture_output=True,
            text=True,
        )
        refused = [line for line in done.stdout.splitlines() if line.startswith("rejected")]
        if done.returncode != 0 or refused:
            raise RuntimeError(
                f"peryx import-dir: exit {done.returncode}, {len(refused)} refused: "
                + " | ".join((refused or done.stderr.strip().splitlines())[-3:])
            )
        loading.rename(data)
    token = base64.b64encode(f"{USER}:{READ}".encode()).decode()
    ready = ["-H", f"Authorization: Basic {token}"]
    process, base, cold = proxy.serve_peryx(peryx, config, data, f"/{USER}/simple/tree-00/", ready)
    url = f"{base}/{USER}/simple/"
    return Server("peryx", url, f"{base}/{USER}/", (USER, READ), process.pid, cold, process)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload_many(
    url: str,
    auth: tuple[str, str],
    wheels: list[Path],
    workers: int = CONNECTIONS,
) -> tuple[float, int]:
    """Uploads with basic auth from ``workers`` concurrent clients: the seconds taken and
    how many failed (each failure printed, as a warning)."""
    import requests

    def one(wheel: Path) -> tuple[int, str]:
        try:
            return post(wheel)
        except requests.ConnectionError as exc:  # the server dropped the connection
            return 0, str(exc)

    def post(wheel: Path) -> tuple[int, str]:
        name, version = wheel.name.split("-")[:2]
        with wheel.open("rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        with wheel.open("rb") as handle:
            response = requests.post(
                url,
                auth=auth,
                timeout=600,
                files={"content": (wheel.name, handle)},
                data={
                    ":action": "file_upload",
                    "name": name.replace("_", "-"),
                    "version": version,
                    "protocol_version": "1",
                    "filetype": "bdist_wheel",
                    "pyversion": "py3",
                    "sha256_digest": sha256,
                },
            )
        return response.status_code, response.text[:200]

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(one, wheels))
    seconds = time.monotonic() - started
    bad = [(status, text) for status, text in answers if status >= 300 or status == 0]
    if bad:
        print(
            f"  warning: {len(bad)} of {len(wheels)} uploads failed (statuses "
            f"{sorted({status for status, _ in bad})}; 0: connection dropped), "
            f"the first: {bad[0][1]!r}",
            flush=True,
        )
    return seconds, len(bad)


# -- measurements -------------------------------------------------------------------------


def wrk(
    url: str, headers: list[str], seconds: int = 8, connections: int = CONNECTIONS
) -> tuple[float, float]:
    """(requests per second, p50 latency in ms) with ``connections`` connections."""
    threads = min(2, connections)
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "60s",  # wrk's default (2 s) would drop pypiserver's slow answers from the figures
            "--latency",
            *headers,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    if re.search(r"\b0 requests in", done.stdout):  # not one answer within the run
        return 0.0, float("nan")
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", done.stdout)
    assert p50 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return rate, float(p50.group(1)) * scale


def wire_bytes(url: str, headers: list[str]) -> int:
    """Bytes of one answer as sent (status line, headers and body, still compressed)."""
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{size_header} %{size_download}", *headers, url],
        capture_output=True,
        text=True,
        check=True,
    )
    return sum(int(n) for n in done.stdout.split())


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.monotonic() - started


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def reset_peak_rss(pid: int) -> float:
    """Resets the process's VmHWM to its current RSS (Linux: clear_refs 5); returns it."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_mb(pid)


def install_command(tool: str, server: Server, target: Path) -> list[str]:
    """pip or uv installing the tree from ``server`` into ``target``, with no cache."""
    if tool == "pip":
        command = [sys.executable, "-m", "pip", "install", "--no-cache-dir"]
    else:
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        command = [uv, "pip", "install", "--python", sys.executable, "--no-cache"]
    return [*command, "--index-url", server.index_with_auth(), "--target", str(target), "tree-00"]


def install_tree(tool: str, server: Server, work: Path, env: dict[str, str]) -> float:
    """Seconds for pip or uv to install the 30-project tree into an empty target, with
    no cache."""
    target = work / f"target-{server.name}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(work / "uv-cache", ignore_errors=True)
    seconds = timed(install_command(tool, server, target), env)
    shutil.rmtree(target, ignore_errors=True)
    return seconds


def measure(server: Server, work: Path, big: Path | None) -> dict[str, str]:
    figures: dict[str, str] = {}
    headers = server.header()
    figures["idle RSS, MB"] = f"{rss_mb(server.pid):.0f}"
    figures["cold start, s"] = f"{server.cold_start:.2f}"
    rate, _ = wrk(server.index + "bench-project-42/", headers)
    figures["GET /simple/<project>/ req/s"] = f"{rate:.0f}"
    _, p50 = wrk(server.index, headers, seconds=5, connections=1)
    figures["GET /simple/ p50 ms, 1 client"] = "—" if p50 != p50 else f"{p50:.2f}"
    _, p50 = wrk(server.index, headers)
    figures[f"GET /simple/ p50 ms, {CONNECTIONS} clients"] = f"{p50:.2f}"
    uv_accept, _ = CLIENT_HEADERS["uv"]
    figures["GET /simple/ bytes on the wire, uncompressed"] = str(
        wire_bytes(server.index, [*headers, "-H", f"Accept: {uv_accept}"])
    )
    for tool, (accept, encodings) in CLIENT_HEADERS.items():
        asked = ["-H", f"Accept: {accept}", "-H", f"Accept-Encoding: {encodings}"]
        figures[f"GET /simple/ bytes on the wire, as {tool} asks ({encodings})"] = str(
            wire_bytes(server.index, [*headers, *asked])
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1", UV_CACHE_DIR=str(work / "uv-cache"))
    for tool in ("pip", "uv"):
        with figure_or_why(server, figures, f"{tool} install, 30-project tree, s"):
            seconds = median([install_tree(tool, server, work, env) for _ in range(ROUNDS)])
            figures[f"{tool} install, 30-project tree, s"] = f"{seconds:.2f}"
    auth = (USER, WRITE) if server.name != "pypiserver" else ("writer", WRITE)
    if server.upload is None:
        print(f"  {server.name}: no upload figures: it takes no uploads", flush=True)
    else:
        with figure_or_why(server, figures, "small wheel uploads/s, basic auth"):
            figures["small wheel uploads/s, basic auth"] = small_uploads(server, work, auth)
    if big is None:
        return figures
    figure = "upload 1000 MiB, MB/s (peak RSS MB, growth)"
    if server.upload is not None:
        with figure_or_why(server, figures, figure):
            before = reset_peak_rss(server.pid)
            seconds, failed = upload_many(server.upload, auth, [big], workers=1)
            if failed:
                raise RuntimeError("the upload failed")
            peak = peak_rss_mb(server.pid)
            figures[figure] = (
                f"{big.stat().st_size / 1e6 / seconds:.0f} ({peak:.0f}, {peak - before:+.0f})"
            )
        url = None if figures[figure] == "—" else file_link(server, "big-wheel", big.name)
    else:
        served = work / "big" / big.name
        served.parent.mkdir(exist_ok=True)
        if served.exists() and not served.samefile(big):  # the wheel was built again
            served.unlink()
        with contextlib.suppress(FileExistsError):
            os.link(big, served)
        url = server.index.replace("/simple/", "/big/") + big.name
    figure = "download 1000 MiB, MB/s (peak RSS MB, growth)"
    if url is None:
        print(f"  {server.name}: {figure} not measured: it holds no such file", flush=True)
        figures[figure] = "—"
        return figures
    with figure_or_why(server, figures, figure):
        subprocess.run(["curl", "-sfL", "-o", "/dev/null", *headers, url], check=True)  # warm
        before = reset_peak_rss(server.pid)
        rates = []
        for _ in range(ROUNDS):
            started = time.monotonic()
            subprocess.run(["curl", "-sfL", "-o", "/dev/null", *headers, url], check=True)
            rates.append(big.stat().st_size / 1e6 / (time.monotonic() - started))
        peak = peak_rss_mb(server.pid)
        figures[figure] = f"{median(rates):.0f} ({peak:.0f}, {peak - before:+.0f})"
    return figures


@contextlib.contextmanager
def figure_or_why(server: Server, figures: dict[str, str], figure: str) -> Iterator[None]:
    """Runs the block that measures ``figure``; if it fails, the figure is "—" and a line
    says why, and the run goes on."""
    try:
        yield
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        detail = getattr(exc, "stderr", None)
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        why = " | ".join((detail or str(exc)).strip().splitlines()[-3:])
        print(f"  {server.name}: {figure} not measured: {why}", flush=True)
        figures[figure] = "—"


def small_uploads(server: Server, work: Path, auth: tuple[str, str]) -> str:
    """200 fresh small wheels from ``CONNECTIONS`` clients: stored uploads per second."""
    assert server.upload is not None
    small = work / f"small-{server.name}"
    shutil.rmtree(small, ignore_errors=True)
    small.mkdir()
    wheels = []
    run = int(time.time())  # fresh names each run: rebuilt wheels differ in zip times
    for i in range(200):
        path = small / f"fresh_{server.name}_{run}_{i}-1.0-py3-none-any.whl"
        path.write_bytes(wheel_bytes(f"fresh-{server.name}-{run}-{i}", "1.0", []))
        wheels.append(path)
    seconds, failed = upload_many(server.upload, auth, wheels)
    if failed == len(wheels):
        raise RuntimeError("every upload failed")
    return f"{(len(wheels) - failed) / seconds:.1f}"  # the failed ones do not count


def file_link(server: Server, project: str, filename: str) -> str:
    """The file's URL as the project page links it (every server lays files out its way)."""
    from urllib.parse import urljoin

    page_url = server.index + project + "/"
    html = ["-H", "Accept: text/html"]  # peryx answers JSON to a request that names no type
    page = subprocess.run(
        ["curl", "-sfL", *server.header(), *html, page_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    href = re.search(rf'href="([^"#]*{re.escape(filename)})[^"]*"', page)
    if href is None:
        raise RuntimeError(f"{server.name}: {filename} is not on {page_url}")
    return urljoin(page_url, href.group(1))


def ratio(ours: str, theirs: str) -> str:
    try:
        a, b = float(ours.split()[0]), float(theirs.split()[0])
        return f"{a / b:.2f}x" if b else "—"
    except ValueError:
        return "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="L")
    parser.add_argument("--peers", default="pypiserver,devpi,nginx,peryx")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pywharf-bench")
    parser.add_argument("--no-large", action="store_true", help="skip the 1000 MiB figures")
    parser.add_argument("--pywharf-server", choices=["waitress", "uvicorn"], default="waitress")
    parser.add_argument(
        "--devpi-files",
        type=int,
        default=2_000,
        help="wheels uploaded into devpi (it takes ~0.2 s each)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "curl", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(
                f"benchmarks: {tool} is missing (Debian: apt-get install wrk nginx-light curl)"
            )
    work = args.work / args.corpus
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"corpus {args.corpus}: {CORPORA[args.corpus][1]} wheels, "
        f"{CORPORA[args.corpus][0]} projects",
        flush=True,
    )
    paths = build_corpus(args.work, args.corpus, not args.no_large)
    big = None if args.no_large else paths["big"]
    starters = {
        "pypiserver": lambda: start_pypiserver(work, paths["corpus"]),
        "devpi": lambda: start_devpi(work, paths["corpus"], args.devpi_files),
        "nginx": lambda: start_nginx(work, paths["corpus"]),
        "peryx": lambda: start_peryx(work, paths["corpus"]),
    }
    installers = {
        "pypiserver": install_pypiserver,
        "devpi": install_devpi,
        "peryx": install_peryx,
    }
    print(f"load before: {load()}", flush=True)
    results: dict[str, dict[str, str]] = {}
    for peer in [p for p in args.peers.split(",") if p]:
        if peer not in starters:
            print(f"{peer}: left out, unknown (known: {', '.join(starters)})", flush=True)
            continue
        try:
            installers.get(peer, lambda _: None)(work)
        except (OSError, subprocess.CalledProcessError) as exc:
            why = getattr(exc, "stderr", None) or exc
            print(f"{peer}: left out, it cannot be installed here: {why}", flush=True)
            continue
        for name, starter in (
            ("pywharf", lambda: start_pywharf(work, paths["corpus"], args.pywharf_server)),
            (peer, starters[peer]),
        ):
            print(f"measuring {name}...", flush=True)
            try:
                server = starter()
            except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
                print(f"{name}: left out, it did not start here: {exc}", flush=True)
                results.pop(f"pywharf (vs {peer})", None)
                break
            try:
                results[f"{name} (vs {peer})" if name == "pywharf" else name] = measure(
                    server, work, big
                )
            finally:
                server.stop()
            shutil.rmtree(work / "pywharf-root", ignore_errors=True)
    print(f"load after: {load()}", flush=True)
    if results:
        print_table(results)


def print_table(results: dict[str, dict[str, str]]) -> None:
    figures = list(dict.fromkeys(f for r in results.values() for f in r))
    peers = [name for name in results if not name.startswith("pywharf")]
    print()
    print("| figure | " + " | ".join(f"pywharf | {p} | ratio" for p in peers) + " |")
    print("| --- |" + " ---: | ---: | ---: |" * len(peers))
    for figure in figures:
        cells = []
        for peer in peers:
            ours = results.get(f"pywharf (vs {peer})", {}).get(figure, "—")
            theirs = results[peer].get(figure, "—")
            cells += [ours, theirs, ratio(ours, theirs)]
        print(f"| {figure} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
