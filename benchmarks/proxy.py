"""pywharf's upstream proxy side by side with devpi's mirror, proxpi and peryx, in one run.

    python benchmarks/proxy.py [--peers devpi,proxpi,peryx] [--work DIR] [--rounds 3]
                               [--budget SECONDS] [--pywharf-server uvicorn]

Builds run.py's S corpus (its 30-project tree ``tree-00`` … ``tree-29`` among 2,000
wheels) and serves it from nginx as a static PEP 503 index (HTML, sha256 fragments): the
one upstream every proxy here is pointed at. Then, for each of ``ROUNDS`` rounds and each
server in turn (a peer that cannot be installed or run here is left out, with a
line saying why), starts that server afresh with an empty cache and installs the tree with
pip (then, on another fresh start, with uv) twice: cold (the proxy fetches every page and
file from upstream) and warm (the same server again, its cache filled). Clients never
cache (``--no-cache-dir`` / ``--no-cache``, fresh targets). The baseline is pywharf
serving the same tree as private files. Last, a warm project page (``/simple/tree-00/``)
is measured with wrk on every server. pywharf, devpi-server, proxpi and peryx are
installed into throwaway venvs under ``--work`` (pywharf itself runs from this checkout).
A tool, not a test; loopback only; it stops by itself within ``--budget`` seconds and
stops every process it started. Each server's state and log of the last round stay under
``--work``/proxy/rounds/.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the benchmarks folder is not a package: found by the path above
from run import ROUNDS, Server

TREE_DISTS = run.TREE
Starter = Callable[[Path], Server]  # a fresh server whose state lives under the folder


class OutOfTime(Exception):
    pass


# -- the servers ---------------------------------------------------------------------------


def popen(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env, cwd=log.parent
    )


def wait_until_up(process: subprocess.Popen, url: str, headers: list[str], started: float) -> float:
    """run.wait_until_up, and a server that does not come up is stopped, not left over."""
    try:
        return run.wait_until_up(url, headers, started, timeout=60)
    except BaseException:
        process.kill()
        process.wait()
        raise


def listen(port: int) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port)]


def start_pywharf_proxy(folder: Path, upstream: str, server: str) -> Server:
    """pywharf whose one repository holds no file and has ``upstream`` behind it."""
    storage = folder / "storage"
    storage.mkdir(parents=True)
    config = folder / "pywharf.toml"
    config.write_text(
        f'[{run.USER}]\ntype = "file_system"\nread_secret = "{run.READ}"\n'
        f'write_secret = "{run.WRITE}"\nstorage_root = "{storage}"\n'
        f'upstream_url = "{upstream}"\n'
    )
    port = run.free_port()
    started = time.monotonic()
    command = [sys.executable, "-m", "pywharf_core", "server", str(folder / "root")]
    command += ["--config", str(config), *listen(port), "--server", server]
    process = popen(command, folder / "pywharf.log")
    url = f"http://127.0.0.1:{port}/simple/"
    token = base64.b64encode(f"{run.USER}:{run.READ}".encode()).decode()
    # /simple/ lists private projects only: waiting on it asks upstream nothing.
    cold = wait_until_up(process, url, ["-H", f"Authorization: Basic {token}"], started)
    return Server("pywharf proxy", url, None, (run.USER, run.READ), process.pid, cold, process)


def devpi_template(work: Path, upstream: str) -> Path:
    """A devpi server folder with one empty mirror index ``root/pypi`` of ``upstream``:
    each round starts from a copy of it (devpi-init and the index set-up take ~10 s)."""
    bin_dir = run.install_devpi(work)
    template = work / "devpi-template"
    shutil.rmtree(template, ignore_errors=True)
    init = [str(bin_dir / "devpi-init"), "--serverdir", str(template), "--no-root-pypi"]
    subprocess.run([*init, "--root-passwd", "root"], check=True, capture_output=True)
    server = start_devpi_mirror(template, work, copy=False)
    try:
        devpi = [str(bin_dir / "devpi")]
        client = ["--clientdir", str(work / "devpi-client")]
        base = server.index.removesuffix("/root/pypi/+simple/")
        for args in (
            ["use", base],
            ["login", "root", "--password", "root"],
            ["index", "-c", "root/pypi", "type=mirror", f"mirror_url={upstream}"],
        ):
            subprocess.run([*devpi, *args, *client], check=True, capture_output=True)
    finally:
        server.stop()
    return template


def start_devpi_mirror(folder: Path, work: Path, copy: bool = True) -> Server:
    serverdir = folder / "devpi-server" if copy else folder
    if copy:
        shutil.copytree(work / "devpi-template", serverdir)
    port = run.free_port()
    started = time.monotonic()
    command = [str(work / "venv-devpi" / "bin" / "devpi-server"), "--serverdir", str(serverdir)]
    process = popen([*command, *listen(port)], serverdir.parent / "devpi.log")
    base = f"http://127.0.0.1:{port}"
    cold = wait_until_up(process, base + "/+api", [], started)
    return Server("devpi", base + "/root/pypi/+simple/", None, None, process.pid, cold, process)


def start_proxpi(folder: Path, work: Path, upstream: str) -> Server:
    """proxpi (a Flask app) under gunicorn, as its Docker image runs it: one process (its
    cache is per process), here 4 threads, waitress's default for pywharf."""
    bin_dir = run.venv_with(work / "venv-proxpi", "proxpi==1.3.1", "gunicorn")
    folder.mkdir(parents=True)
    env = {
        **os.environ,
        "PROXPI_INDEX_URL": upstream,
        "PROXPI_CACHE_DIR": str(folder / "cache"),
        "PROXPI_LOGGING_LEVEL": "WARNING",
    }
    port = run.free_port()
    started = time.monotonic()
    command = [str(bin_dir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    process = popen([*command, "--threads", "4", "proxpi.server:app"], folder / "proxpi.log", env)
    base = f"http://127.0.0.1:{port}"
    cold = wait_until_up(process, base + "/health", [], started)
    return Server("proxpi", base + "/index/", None, None, process.pid, cold, process)


def install_peryx(work: Path) -> Path:
    """peryx's executable (a Rust binary in a wheel), installed from the package registry
    into a throwaway venv under ``work``."""
    return run.venv_with(work / "venv-peryx", "peryx") / "peryx"


def peryx_options(config: Path, data: Path) -> list[str]:
    return ["-c", str(config), "--data-dir", str(data)]


def serve_peryx(
    peryx: Path, config: Path, data: Path, ready: str, headers: list[str]
) -> tuple[subprocess.Popen, str, float]:
    """``peryx serve`` on a free port, its log beside ``config``: the process, its base URL
    and the seconds until ``ready`` (a path) answered."""
    port = run.free_port()
    started = time.monotonic()
    command = [str(peryx), "serve", *peryx_options(config, data), *listen(port)]
    process = popen([*command, "--log-level", "warn"], config.with_suffix(".log"))
    base = f"http://127.0.0.1:{port}"
    return process, base, wait_until_up(process, base + ready, headers, started)


def start_peryx(folder: Path, work: Path, upstream: str) -> Server:
    """peryx with one cached (proxy) pypi index, ``up``, of ``upstream``; anonymous reads
    are its default."""
    peryx = install_peryx(work)
    folder.mkdir(parents=True)
    config = folder / "peryx.toml"
    config.write_text(
        '[[index]]\nname = "up"\necosystem = "pypi"\n'
        f'upstream = [{{ name = "nginx", url = "{upstream}" }}]\n'
    )
    data = folder / "data"
    init = [str(peryx), "init", *peryx_options(config, data)]
    subprocess.run(init, check=True, capture_output=True)
    process, base, cold = serve_peryx(peryx, config, data, "/+health", [])
    return Server("peryx", base + "/up/simple/", None, None, process.pid, cold, process)


# -- the measurements --------------------------------------------------------------------


def install(tool: str, server: Server, folder: Path, env: dict[str, str]) -> float:
    """Seconds for ``tool`` to install the tree into an empty target, with no client
    cache; checks that all 30 projects landed."""
    target = folder / "target"
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(folder / "uv-cache", ignore_errors=True)
    command = run.install_command(tool, server, target)
    started = time.monotonic()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env=env | {"UV_CACHE_DIR": str(folder / "uv-cache")},
    )
    seconds = time.monotonic() - started
    landed = len(list(target.glob("tree_*.dist-info")))
    if done.returncode != 0 or landed != TREE_DISTS:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(
            f"{tool} via {server.name}: exit {done.returncode}, {landed} of {TREE_DISTS} "
            "installed: " + " | ".join(tail)
        )
    shutil.rmtree(target, ignore_errors=True)
    return seconds


def client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", UV_NO_CONFIG="1")
    return env


def page_figures(server: Server) -> dict[str, float]:
    """The warm project page: p50 at 1 client, requests/s at 16 (wrk, 5 s each)."""
    url = server.index + "tree-00/"
    # The page as the peer serves it is warm once pip has been through; ask once more
    # in case a peer only fills its cache on a second request.
    subprocess.run(["curl", "-sf", "-o", "/dev/null", *server.header(), url], check=True)
    _, p50 = run.wrk(url, server.header(), seconds=5, connections=1)
    rate, _ = run.wrk(url, server.header(), seconds=5)
    return {"page p50 ms, 1 client": p50, f"page req/s, {run.CONNECTIONS} clients": rate}


def fresh_folder(work: Path, name: str, what: str) -> Path:
    """Where one server keeps its state and log; the last round's stays for a look."""
    folder = work / "rounds" / f"{name.replace(' ', '-')}-{what}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def measure(starters: dict[str, Starter], work: Path, rounds: int) -> dict[str, dict[str, float]]:
    env = client_env()
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in starters}
    for round_ in range(rounds):
        # Servers in turn within each round, so that the machine's load falls on all alike.
        for name, start in starters.items():
            for tool in ("pip", "uv"):
                folder = fresh_folder(work, name, tool)
                server = start(folder / "server")
                try:
                    cold = install(tool, server, folder, env)
                    warm = install(tool, server, folder, env)
                finally:
                    server.stop()
                samples[name].setdefault(f"{tool} cold, s", []).append(cold)
                samples[name].setdefault(f"{tool} warm, s", []).append(warm)
                print(
                    f"  round {round_ + 1}: {name:<16} {tool:<3} cold {cold:6.2f} s  "
                    f"warm {warm:6.2f} s",
                    flush=True,
                )
    results = {
        name: {k: run.median(v) for k, v in figures.items()} for name, figures in samples.items()
    }
    print("  warm project pages...", flush=True)
    for name, start in starters.items():
        folder = fresh_folder(work, name, "page")
        server = start(folder / "server")
        try:
            install("pip", server, folder, env)  # fills the cache as a client would
            results[name].update(page_figures(server))
        finally:
            server.stop()
    return results


def print_goals(results: dict[str, dict[str, float]]) -> None:
    """Issue 15's goals, each with its figures."""
    ours, private = results["pywharf proxy"], results["pywharf private"]
    peers = [name for name in results if not name.startswith("pywharf")]
    for tool in ("pip", "uv"):
        times = ours[f"{tool} warm, s"] / private[f"{tool} warm, s"]
        verdict = "met" if times <= 1.2 else "NOT met"
        print(f"goal: {tool} warm ≤ 1.2x private: {times:.2f}x, {verdict}")
        for kind in ("cold", "warm"):
            figure = f"{tool} {kind}, s"
            slower = [p for p in peers if results[p][figure] <= ours[figure]]
            verdict = (
                "met" if not slower else "NOT met (" + ", ".join(slower) + " as fast or faster)"
            )
            print(f"goal: {tool} {kind} faster than every peer: {verdict}")
    p50 = "page p50 ms, 1 client"
    times = ours[p50] / private[p50]
    print(f"goal: warm page as fast as private: p50 {times:.2f}x private's")


def print_table(results: dict[str, dict[str, float]]) -> None:
    """One column per server: the figure, and pywharf proxy ÷ it (as run.py: for
    seconds and p50 below 1 is pywharf faster, for req/s above 1)."""
    ours = results.get("pywharf proxy", {})
    names = list(results)
    figures = list(dict.fromkeys(f for r in results.values() for f in r))
    print()
    print("| figure | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for figure in figures:
        cells = []
        for name in names:
            value = results[name].get(figure)
            if value is None or value != value:
                cells.append("—")
                continue
            text = f"{value:.0f}" if "req/s" in figure else f"{value:.2f}"
            mine = ours.get(figure)
            if name != "pywharf proxy" and mine is not None and value:
                text += f" ({mine / value:.2f}x)"
            cells.append(text)
        print(f"| {figure} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="devpi,proxpi,peryx")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pywharf-bench")
    parser.add_argument("--budget", type=int, default=2400, help="seconds before it gives up")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="installs: the median of")
    parser.add_argument("--pywharf-server", choices=["waitress", "uvicorn"], default="waitress")
    args = parser.parse_args()
    for tool in ("wrk", "curl", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(
                f"benchmarks: {tool} is missing (Debian: apt-get install wrk nginx-light curl)"
            )

    def out_of_time(*_: object) -> None:
        raise OutOfTime(f"the run took longer than --budget {args.budget} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.budget)
    work = args.work / "proxy"
    shutil.rmtree(work / "nginx-site", ignore_errors=True)  # its links name this run's corpus
    work.mkdir(parents=True, exist_ok=True)
    print(f"load before: {run.load()}", flush=True)
    corpus = run.build_corpus(args.work, "S", large=False)["corpus"]
    nginx = run.start_nginx(work, corpus)
    try:
        upstream = nginx.index
        print(f"upstream: nginx, static PEP 503 HTML at {upstream}", flush=True)
        starters: dict[str, Starter] = {
            # The baseline: the same corpus as the repository's own files.
            "pywharf private": lambda folder: private_pywharf(work, corpus, folder, args),
            "pywharf proxy": lambda folder: start_pywharf_proxy(
                folder, upstream, args.pywharf_server
            ),
        }
        peers: dict[str, Callable[[], Starter]] = {
            "devpi": lambda: devpi_starter(work, upstream),
            "proxpi": lambda: lambda folder: start_proxpi(folder, work, upstream),
            "peryx": lambda: lambda folder: start_peryx(folder, work, upstream),
        }
        for peer in [p for p in args.peers.split(",") if p]:
            if peer not in peers:
                print(f"{peer}: not measured, unknown (known: {', '.join(peers)})")
                continue
            try:
                starter = peers[peer]()
                check = starter(work / "probe")  # installs and starts once: does it run here?
                check.stop()
                shutil.rmtree(work / "probe", ignore_errors=True)
                starters[peer] = starter
            except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
                print(f"{peer}: not measured, it cannot be installed or run here: {exc}")
        results = measure(starters, work, args.rounds)
        print_table(results)
        print_goals(results)
    finally:
        nginx.stop()
        print(f"load after: {run.load()}", flush=True)


def private_pywharf(work: Path, corpus: Path, folder: Path, args: argparse.Namespace) -> Server:
    # run.start_pywharf keeps its storage (hard links of the corpus, indexed once) under
    # ``work`` and its ROOT at work/pywharf-root: a fresh ROOT each time.
    shutil.rmtree(work / "pywharf-root", ignore_errors=True)
    server = run.start_pywharf(work, corpus, args.pywharf_server)
    server.name = "pywharf private"
    return server


def devpi_starter(work: Path, upstream: str) -> Starter:
    devpi_template(work, upstream)
    return lambda folder: start_devpi_mirror(folder, work)


if __name__ == "__main__":
    try:
        with contextlib.suppress(KeyboardInterrupt):
            main()
    except OutOfTime as exc:
        sys.exit(f"benchmarks: {exc}; every server it started is stopped")
