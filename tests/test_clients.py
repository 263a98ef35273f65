"""End to end with the real clients: twine and uv publish upload (see the ``populated``
fixture), pip, uv and poetry install or resolve."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import toml
from wharftest import clients
from wharftest.server import WharfServer


def test_pip_installs_dependency_tree_and_skips_incompatible_python(
    populated: WharfServer, client_env: dict[str, str], tmp_path: Path, dists
) -> None:
    index = populated.index_url("local", populated.read_secret)
    target = tmp_path / "target"
    clients.pip_install(index, target, "demo-app", "--only-binary", ":all:", env=client_env)
    out = clients.import_from(
        target,
        "import demo_app, foo_bar_baz; print(demo_app.VERSION, foo_bar_baz.VERSION)",
        client_env,
    )
    # 2.0 of the dependency needs Python >=3.99: pip must have read data-requires-python.
    assert out == "0.1 1.0"


def test_pip_builds_and_installs_sdists(
    populated: WharfServer, client_env: dict[str, str], tmp_path: Path
) -> None:
    index = populated.index_url("local", populated.read_secret)
    target = tmp_path / "target"
    clients.pip_install(index, target, "demo-app", "--no-binary", ":all:", env=client_env)
    out = clients.import_from(target, "import demo_app; print(demo_app.VERSION)", client_env)
    assert out == "0.1"
    assert not list(target.glob("demo_app-*.dist-info/direct_url.json"))


def test_uv_pip_installs(
    populated: WharfServer, client_env: dict[str, str], tmp_path: Path
) -> None:
    index = populated.index_url("local", populated.read_secret)
    target = tmp_path / "target"
    clients.uv_pip_install(index, target, "demo-app", env=client_env)
    out = clients.import_from(
        target,
        "import demo_app, foo_bar_baz; print(demo_app.VERSION, foo_bar_baz.VERSION)",
        client_env,
    )
    assert out == "0.1 1.0"


def test_uv_pip_installs_a_non_normalized_name_exactly_pinned(
    populated: WharfServer, client_env: dict[str, str], tmp_path: Path
) -> None:
    index = populated.index_url("local", populated.read_secret)
    target = tmp_path / "target"
    clients.uv_pip_install(index, target, "Foo_Bar.baz==1.0", env=client_env)
    out = clients.import_from(target, "import foo_bar_baz; print(foo_bar_baz.VERSION)", client_env)
    assert out == "1.0"


def test_install_with_wrong_secret_fails(
    populated: WharfServer, client_env: dict[str, str], tmp_path: Path
) -> None:
    index = populated.index_url("local", "not-the-secret")
    target = tmp_path / "t"
    # -vvv: with --no-input, pip 23 reports the 401 only in its debug log.
    result = clients.pip_install(index, target, "demo-app", "-vvv", env=client_env, check=False)
    assert result.returncode != 0
    assert '"GET /simple/demo-app/ HTTP/1.1" 401' in result.stdout + result.stderr
    assert not (target / "demo_app").exists()


def test_poetry_resolves_from_pywharf(
    populated: WharfServer, client_env: dict[str, str], tmp_path: Path, dists
) -> None:
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        "[project]\n"
        'name = "consumer"\nversion = "0.1.0"\n'
        f'requires-python = ">={sys.version_info.major}.{sys.version_info.minor}"\n'
        'dependencies = ["demo-app>=0.1"]\n\n'
        "[tool.poetry]\npackage-mode = false\n\n"
        "[[tool.poetry.source]]\n"
        f'name = "wharf"\nurl = "{populated.url}simple/"\npriority = "primary"\n'
    )
    env = {
        **client_env,
        "POETRY_HTTP_BASIC_WHARF_USERNAME": "local",
        "POETRY_HTTP_BASIC_WHARF_PASSWORD": populated.read_secret,
    }
    clients.run([str(clients.BIN / "poetry"), "lock", "--no-interaction"], env, cwd=project)
    lock = toml.loads((project / "poetry.lock").read_text())
    locked = {p["name"]: p for p in lock["package"]}
    assert locked["demo-app"]["version"] == "0.1"
    assert locked["foo-bar-baz"]["version"] == "1.0"
    hashes = {f["file"]: f["hash"] for f in locked["foo-bar-baz"]["files"]}
    assert hashes[dists.base_wheel.filename] == f"sha256:{dists.base_wheel.sha256}"


@pytest.mark.parametrize("tool", ["twine", "uv"])
def test_upload_then_install_at_once(
    tool: str, start_server, client_env: dict[str, str], tmp_path: Path, dists
) -> None:
    """Read-your-writes: an accepted upload is installable from the same server at once."""
    server = start_server()
    upload = clients.twine_upload if tool == "twine" else clients.uv_publish
    upload(
        server.url + "simple/", "local", server.write_secret, dists.base_wheel.path, env=client_env
    )
    target = tmp_path / "target"
    index = server.index_url("local", server.read_secret)
    clients.pip_install(index, target, "foo-bar-baz", env=client_env)
    assert (
        clients.import_from(target, "import foo_bar_baz; print(foo_bar_baz.VERSION)", client_env)
        == "1.0"
    )


def test_twine_sees_reason_and_body_of_a_conflict(
    start_server, client_env: dict[str, str], tmp_path: Path, dists
) -> None:
    from wharftest.distbuilder import build_wheel

    server = start_server()
    url = server.url + "simple/"
    clients.twine_upload(url, "local", server.write_secret, dists.base_wheel.path, env=client_env)
    other = build_wheel(tmp_path / "other", "Foo_Bar.baz", "1.0", summary="different bytes")
    assert other.filename == dists.base_wheel.filename and other.sha256 != dists.base_wheel.sha256
    result = clients.twine_upload(
        url, "local", server.write_secret, other.path, env=client_env, check=False
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "409 File already exists" in output
    # The identical file again is accepted without change (safe retries).
    clients.twine_upload(url, "local", server.write_secret, dists.base_wheel.path, env=client_env)


def test_token_username_on_the_per_repository_path(
    start_server, client_env: dict[str, str], tmp_path: Path, dists
) -> None:
    """/r/<repo>/simple/: the username is free (uv, hatch, pdm and poetry send
    ``__token__``); only the password counts."""
    server = start_server()
    url = server.url + "r/local/simple/"
    clients.twine_upload(
        url, "__token__", server.write_secret, dists.base_wheel.path, env=client_env
    )
    clients.uv_publish(url, "__token__", server.write_secret, dists.app_sdist.path, env=client_env)
    target = tmp_path / "target"
    index = server.index_url("__token__", server.read_secret, prefix="r/local/simple/")
    clients.uv_pip_install(index, target, "demo-app", env=client_env)
    assert (target / "demo_app" / "__init__.py").exists()
    # A read secret still cannot upload there, and another repo name is unknown.
    refused = clients.twine_upload(
        url, "__token__", server.read_secret, dists.app_wheel.path, env=client_env, check=False
    )
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr
    from wharftest.server import get

    unknown = get(server, "r/other/simple/", auth=("__token__", server.read_secret))
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"] == 'Basic realm="other"'
