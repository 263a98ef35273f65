"""``pywharf server`` as a user runs it: flags, config errors, the embedded default."""

from __future__ import annotations

import shlex
import stat
import sys
from pathlib import Path

import pytest
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.server import WharfServer, get

SEED_FLAGS = [
    "--config",
    "--admin_secret",
    "--config_or_admin_secret_can_be_text",
    "--auth_read_expires",
    "--auth_write_expires",
    "--extra_index_url",
    "--debug",
    "--host",
    "--port",
]


def test_help_lists_every_seed_flag() -> None:
    result = pywharf("server", "--help")
    assert result.returncode == 0
    shown = result.stdout + result.stderr  # fire prints help to stderr
    for flag in SEED_FLAGS:
        assert flag in shown, flag
    assert "waitress" in shown


GOOD = '[r]\ntype = "file_system"\nread_secret = "a"\nwrite_secret = "b"\n'


@pytest.mark.parametrize(
    "config, words",
    [
        ('[r]\ntype = "nope"\n', ["[r]", "'type'", "unknown backend type 'nope'", "file_system"]),
        (GOOD + 'colour = "red"\n', ["[r]", "'colour'", "unknown key"]),
        ('[r]\ntype = "file_system"\nwrite_secret = "b"\n', ["[r]", "'read_secret'", "required"]),
        (GOOD + 'max_file_bytes = "lots"\n', ["[r]", "'max_file_bytes'", "expected int"]),
        ("[r\ntype=", ["invalid TOML"]),
        ('[r]\nread_secret = "a"\n', ["[r]", "'type'", "missing"]),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, config: str, words: list[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config)
    result = pywharf("server", str(tmp_path / "root"), "--config", str(path), "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"pywharf: error: {path}")
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_unreadable_config_and_missing_admin_secret_env(tmp_path: Path) -> None:
    result = pywharf("server", str(tmp_path / "root"), "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"pywharf: error: {tmp_path / 'absent.toml'}: cannot read")
    config = tmp_path / "config.toml"
    config.write_text(GOOD)
    secrets = tmp_path / "admin.toml"
    secrets.write_text('[r]\ntype = "file_system"\nenv = "PYWHARF_TEST_UNSET_VARIABLE"\n')
    result = pywharf(
        "server", str(tmp_path / "root"), "--config", str(config), "--admin_secret", str(secrets)
    )
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]  # after the short secrets' warnings
    assert line.startswith(f"pywharf: error: {secrets} [r] key 'env'")
    assert "PYWHARF_TEST_UNSET_VARIABLE" in line and "Traceback" not in line


def test_config_as_text(start_server) -> None:
    server = start_server("--config", GOOD, "--config_or_admin_secret_can_be_text")
    assert get(server, "simple/", auth=("r", "a")).status_code == 200
    assert get(server, "simple/", auth=("r", "wrong")).status_code == 401
    assert "r (file_system)" in server.banner
    assert "read secret" not in server.banner  # only the embedded default prints secrets


def test_embedded_default_secrets_are_generated_once_and_private(
    start_server, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    first = start_server(root=root)
    read, write = first.read_secret, first.write_secret
    assert read != write and len(read) >= 32
    # Letters and digits only: a leading "-" would break the pasted commands.
    assert read.isalnum() and write.isalnum()
    first.stop()
    secrets_file = root / "embedded_default.toml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    second = start_server(root=root)
    assert (second.read_secret, second.write_secret) == (read, write)
    other = start_server()
    assert other.read_secret != read


def test_banner_commands_work_when_pasted(
    start_server, tmp_path: Path, dists, client_env: dict[str, str]
) -> None:
    server = start_server()
    lines = {
        line.split()[0] + " " + line.split()[1]: line.strip()
        for line in server.banner.splitlines()
        if line.startswith("  ") and ":" not in line[:6]
    }
    twine = shlex.split(lines["twine upload"])
    twine[-1] = str(dists.base_wheel.path)  # dist/*
    clients.run([str(clients.BIN / "twine"), *twine[1:], "--disable-progress-bar"], client_env)
    publish = shlex.split(lines["uv publish"])
    publish[-1] = str(dists.base_sdist.path.with_name("demo_app-0.1.tar.gz"))
    clients.run([str(clients.BIN / "uv"), *publish[1:]], client_env)

    pip = shlex.split(lines["pip install"])
    pip[-1] = "foo-bar-baz"  # <package>
    target = tmp_path / "pip-target"
    clients.run([sys.executable, "-m", *pip, "--target", str(target)], client_env)
    assert (
        clients.import_from(target, "import foo_bar_baz; print(foo_bar_baz.VERSION)", client_env)
        == "1.0"
    )
    uv = shlex.split(lines["uv pip"])
    uv[-1] = "demo-app"
    uv_target = tmp_path / "uv-target"
    clients.run(
        [str(clients.BIN / "uv"), *uv[1:], "--python", sys.executable, "--target", str(uv_target)],
        client_env,
    )
    assert (uv_target / "demo_app" / "__init__.py").exists()


def test_server_log_holds_no_secrets(populated: WharfServer) -> None:
    get(populated, "simple/", auth=("local", populated.read_secret))
    get(populated, "simple/", auth=("local", "a-wrong-secret-value"))
    log = populated.log_text()
    for secret in (populated.read_secret, populated.write_secret, "a-wrong-secret-value"):
        assert secret not in log
