"""Off the happy path, as a newcomer walks it (issue 18): every ordinary mistake is one
line on stderr and exit status 2, help never runs a command, a typo is not a success,
the banner says what is bound, SIGTERM loses no log line, wrong URLs get a hint."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.server import WharfServer, get, wait_for

from pywharf_core.cli_usage import config_key_rows, format_key_rows


def one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit status 2 and exactly one line, ``pywharf: error: …``, holding ``words``."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pywharf: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# -- 1. mistakes on the command line ---------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["server", "ROOT", "--prot", "9000"], ["--prot", "did you mean --port?"]),
        (["server", "ROOT", "--conifg", "x.toml"], ["--conifg", "did you mean --config?"]),
        (["server", "ROOT", "--port", "abc"], ["--port takes a whole number, not 'abc'"]),
        (["server", "ROOT", "--port", "70000"], ["--port must be between 0 and 65535"]),
        (["server", "ROOT", "--auth_read_expires", "soon"], ["--auth_read_expires", "'soon'"]),
        (["server", "ROOT", "--threads", "many"], ["--threads", "'many'", "not a valid value"]),
        (["server", "ROOT", "--server", "gunicorn"], ["--server must be waitress or uvicorn"]),
        (["server", "ROOT", "--debug", "maybe"], ["--debug takes true or false"]),
        (["server"], ["'server' needs ROOT"]),
        (["server", "ROOT", "extra"], ["unexpected 'extra'"]),
        (["serve", "ROOT"], ["unknown command 'serve'", "did you mean 'server'?"]),
        ([], ["give a command", "pywharf --help"]),
        (["update_index", "file_system"], ["'update_index' needs NAME"]),
        (
            ["update_index", "file_system", "team", "--storage_rot", "x"],
            ["[team] key 'storage_rot'", "did you mean --storage_root?"],
        ),
        (["update_index", "nosuch_type", "team"], ["unknown backend type 'nosuch_type'"]),
        (
            ["yank", "http://127.0.0.1:9/simple/", "a-1.0.tar.gz", "--secrt", "x"],
            ["--secrt", "did you mean --secret?"],
        ),
    ],
)
def test_command_line_mistakes_are_one_line(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    args = [str(tmp_path / "root") if a == "ROOT" else a for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "pywharf_core", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYWHARF_COMMAND")},
    )
    one_error_line(result, *words)
    assert not (tmp_path / "root").exists()  # refused before anything was created


def test_environment_mode_mistakes_are_one_line(tmp_path: Path) -> None:
    base = {"PYWHARF_COMMAND": "server", "PYWHARF_COMMAND_ROOT": str(tmp_path / "root")}
    misspelt = pywharf(env={**base, "PYWHARF_COMMAND_PROT": "9000"})
    one_error_line(misspelt, "PYWHARF_COMMAND_PROT", "did you mean PYWHARF_COMMAND_PORT?")
    wrong_type = pywharf(env={**base, "PYWHARF_COMMAND_PORT": "abc"})
    one_error_line(wrong_type, "--port takes a whole number, not 'abc'")
    assert not (tmp_path / "root").exists()


def test_root_that_is_a_file_or_inside_one(tmp_path: Path) -> None:
    regular = tmp_path / "afile"
    regular.write_text("not a folder")
    one_error_line(pywharf("server", str(regular)), f"ROOT {regular} is a file, not a folder")
    inside = regular / "root"
    one_error_line(pywharf("server", str(inside)), f"ROOT {inside}: {regular} is a file")


def test_invalid_config_names_line_and_column_and_leaves_no_root(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[team]\ntype = "file_system"\n[broken\n')
    root = tmp_path / "new" / "root"
    line = one_error_line(
        pywharf("server", str(root), "--config", str(config)),
        f"{config}: invalid TOML at line 3, column 8",
    )
    assert "Expected ']'" in line
    assert not (tmp_path / "new").exists()
    # Not only syntax: a config refused for its content leaves no ROOT behind either.
    config.write_text('[team]\ntype = "file_system"\ncolour = "red"\n')
    one_error_line(pywharf("server", str(root), "--config", str(config)), "'colour'")
    assert not (tmp_path / "new").exists()


def as_other_user() -> list[str]:
    """A prefix that runs a command as an unprivileged user: root may write anywhere,
    so permission errors need another user (when the tests run as root)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot test a permission error")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def run_as_other_user(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*as_other_user(), sys.executable, "-m", "pywharf_core", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "HOME": str(cwd)},
    )


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary folder that other users may enter (pytest's own are private)."""
    path = Path(tempfile.mkdtemp(prefix="pywharf-test-"))
    path.chmod(0o755)
    yield path
    for folder, _, _ in os.walk(path):
        Path(folder).chmod(0o755)
    shutil.rmtree(path)


def test_read_only_root_and_read_only_storage_root(open_tmp: Path) -> None:
    tmp_path = open_tmp
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    read_only.chmod(0o555)
    result = run_as_other_user(["server", str(read_only), "--port", "0"], tmp_path)
    one_error_line(result, f"ROOT {read_only} is not writable", "Permission denied")

    writable = tmp_path / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    config = tmp_path / "config.toml"
    config.write_text(
        '[team]\ntype = "file_system"\nread_secret = "r-secret-long-enough"\n'
        'write_secret = "w-secret-long-enough"\n'
        f'storage_root = "{read_only / "storage"}"\n'
    )
    result = run_as_other_user(
        ["server", str(writable), "--config", str(config), "--port", "0"], tmp_path
    )
    one_error_line(result, f"{read_only / 'storage'}: Permission denied", "storage_root")
    # ROOT below a folder this user may not enter
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    result = run_as_other_user(["server", str(private / "root"), "--port", "0"], tmp_path)
    one_error_line(result, f"ROOT {private / 'root'} is not writable (Permission denied)")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("server", ["waitress", "uvicorn"])
def test_port_in_use(tmp_path: Path, busy_port: int, server: str) -> None:
    result = pywharf(
        "server",
        str(tmp_path / "root"),
        "--host",
        "127.0.0.1",
        "--port",
        str(busy_port),
        "--server",
        server,
    )
    one_error_line(result, f"port {busy_port} on 127.0.0.1 is already in use", "--port")


def test_host_that_is_not_an_address_here(tmp_path: Path) -> None:
    result = pywharf("server", str(tmp_path / "root"), "--host", "192.0.2.1", "--port", "0")
    one_error_line(result, "--host 192.0.2.1: not an address of this machine")


# -- 2. help runs nothing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["server", "--help"],
        ["server", "-h"],
        ["server", "./root", "--port", "0", "-h"],
        ["update_index", "--help"],
        ["update_index", "file_system", "local", "--help"],
        ["update_index", "s3", "team", "--help"],
        ["update_index", "github", "team", "-h"],
        ["yank", "--help"],
        ["unyank", "-h"],
        ["github.init_pkg_repo", "--help"],
        ["github.gen_gh_pages", "--help"],
        ["--help"],
        ["-h"],
    ],
)
def test_help_runs_nothing_and_exits_0(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pywharf_core", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: pywharf ")
    assert list(tmp_path.iterdir()) == []  # no ./cache, no ./root: nothing ran


def test_help_lists_each_backends_keys_with_types_and_defaults() -> None:
    shown = pywharf("update_index", "s3", "team", "--help").stdout
    assert re.search(r"--bucket\s+str \(default: required\)", shown)
    assert re.search(r"--presign_expires\s+int \(default: 300\)", shown)
    assert re.search(r"--proxy_downloads\s+bool \(default: false\)", shown)
    assert "--create" in shown and "--storage_root" not in shown  # s3's keys only
    every = pywharf("update_index", "--help").stdout
    for backend in ("file_system", "s3", "github"):
        assert f"config keys of the {backend} backend" in every
    server = pywharf("server", "-h").stdout
    assert "--port int (default: 8888)" in server
    assert "--host str (default: '0.0.0.0')" in server
    assert "--config str | None (default: none)" in server
    assert re.search(r"storage_root\s+str \| None \(default: none\)", server)
    assert "threads" in server  # waitress's own flags are named


def test_help_rows_come_from_any_config_class() -> None:
    @dataclasses.dataclass(frozen=True)
    class PluginConfig:  # a third party's backend
        endpoint: str
        retries: int = 3
        verify: bool = True
        tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)

    lines = format_key_rows(config_key_rows(PluginConfig))
    assert [line.split()[0] for line in lines] == ["--endpoint", "--retries", "--verify", "--tags"]
    assert "str (default: required)" in lines[0]
    assert "int (default: 3)" in lines[1] and "bool (default: true)" in lines[2]


# -- 3. a typo is not a success -------------------------------------------------------------


def test_update_index_on_a_missing_storage_fails_unless_create(tmp_path: Path) -> None:
    root = tmp_path / "x" / "none"
    result = pywharf("update_index", "file_system", "nosuch", "--root", str(root))
    one_error_line(result, "repository 'nosuch' has no storage at", "--create")
    assert not (tmp_path / "x").exists()
    storage = tmp_path / "typo"
    result = pywharf("update_index", "file_system", "team", "--storage_root", str(storage))
    one_error_line(result, f"no storage at {storage}")
    assert not storage.exists()
    created = pywharf("update_index", "file_system", "nosuch", "--root", str(root), "--create")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("update_index nosuch: 0 files, 0 projects, index written")
    assert (root / "cache" / "nosuch" / "storage" / "index.toml").is_file()
    again = pywharf("update_index", "file_system", "nosuch", "--root", str(root))
    assert again.returncode == 0 and "index unchanged" in again.stdout


def test_update_index_on_a_storage_it_cannot_create(tmp_path: Path) -> None:
    regular = tmp_path / "afile"
    regular.write_text("not a folder")
    result = pywharf(
        "update_index", "file_system", "team", "--storage_root", str(regular / "s"), "--create"
    )
    one_error_line(result, f"{regular / 's'}", "Not a directory", "check that this user")


# -- 5. the banner -------------------------------------------------------------------------


def start_on(root: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pywharf_core", "server", str(root), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    while "listening on" not in (line := proc.stdout.readline()):
        assert line, "the server ended before listening"
        lines.append(line)
    return proc, [*lines, line]


def test_banner_says_every_interface_and_the_address_to_use_here(tmp_path: Path) -> None:
    proc, lines = start_on(tmp_path / "root")  # the seed's default host, 0.0.0.0
    try:
        match = re.search(
            r"listening on every IPv4 interface \(0\.0\.0\.0\) port (\d+); "
            r"from this machine: (http://127\.0\.0\.1:(\d+)/)$",
            lines[-1].strip(),
        )
        assert match, lines[-1]
        assert match.group(1) == match.group(3)
        assert "@127.0.0.1:" in "".join(lines)  # the pasteable commands use that address
        assert requests.get(match.group(2) + "healthz", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0  # SIGTERM is a normal stop
        assert proc.stdout is not None
        proc.stdout.close()


def test_banner_on_one_address(tmp_path: Path) -> None:
    proc, lines = start_on(tmp_path / "root", "--host", "127.0.0.1")
    try:
        assert re.fullmatch(
            r"pywharf \S+: listening on http://127\.0\.0\.1:\d+/", lines[-1].strip()
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        assert proc.stdout is not None
        proc.stdout.close()


# -- 6. SIGTERM loses no log line -------------------------------------------------------------


def answers(url: str) -> bool:
    try:
        return requests.get(url + "healthz", timeout=10).ok
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize("server", ["waitress", "uvicorn"])
def test_sigterm_right_after_a_request_keeps_its_log_line(tmp_path: Path, server: str) -> None:
    for attempt in range(3):
        wharf = WharfServer(tmp_path / f"root{attempt}", "--server", server).start()
        # uvicorn may print the banner a moment before it accepts connections
        wait_for(lambda url=wharf.url: answers(url), timeout=10)
        marker = f"/healthz?attempt-{attempt}"
        assert requests.get(wharf.url.rstrip("/") + marker, timeout=10).status_code == 200
        time.sleep(0.005)
        assert wharf.proc is not None
        wharf.proc.send_signal(signal.SIGTERM)
        assert wharf.proc.wait(20) == 0
        wharf.stop()
        log = wharf.log_path.read_text()
        assert "GET /healthz" in log, log
        assert "SIGTERM received: stopping" in log


# -- 7. wrong URLs get a hint ---------------------------------------------------------------


def test_wrong_upload_urls_name_the_right_one(populated: WharfServer) -> None:
    for path in ("", "legacy/"):
        answer = requests.post(populated.url + path, data={":action": "file_upload"}, timeout=10)
        assert answer.status_code == 404
        assert f"upload to {populated.url}simple/" in answer.text
        assert f"upload to {populated.url}simple/" in answer.reason
    answer = requests.post(populated.url + "r/local/legacy/", timeout=10)
    assert answer.status_code == 404 and f"{populated.url}r/local/simple/" in answer.text


def test_twine_upload_to_pypiservers_url_is_told_the_right_one(
    populated: WharfServer, dists, client_env: dict[str, str]
) -> None:
    result = clients.run(
        [
            str(clients.BIN / "twine"),
            "upload",
            "--repository-url",
            populated.url,  # pypiserver's upload URL: the root
            "-u",
            "local",
            "-p",
            populated.write_secret,
            "--disable-progress-bar",
            str(dists.base_wheel.path),
        ],
        client_env,
        check=False,
    )
    assert result.returncode != 0
    assert f"upload to {populated.url}simple/" in result.stdout + result.stderr


def test_index_url_without_simple_names_the_index(
    populated: WharfServer, tmp_path: Path, client_env: dict[str, str]
) -> None:
    answer = get(populated, "foo-bar-baz/", auth=("local", populated.read_secret))
    assert answer.status_code == 404
    assert f"the index is {populated.url}simple/" in answer.text
    answer = get(populated, "r/local/foo-bar-baz/")
    assert f"the index is {populated.url}r/local/simple/" in answer.text


def test_hatch_and_flit_printed_urls_lead_to_the_project_page(populated: WharfServer) -> None:
    auth = ("local", populated.read_secret)
    for path in ("simple/foo-bar-baz/1.0/", "simple//foo-bar-baz", "r/local/simple//foo-bar-baz"):
        answer = get(populated, path, auth=auth)
        assert answer.status_code == 303, path
        prefix = "r/local/" if path.startswith("r/") else ""
        assert answer.headers["location"] == f"/{prefix}simple/foo-bar-baz/"
        followed = get(populated, path, auth=auth, allow_redirects=True)
        assert followed.status_code == 200 and "foo_bar_baz-1.0" in followed.text
