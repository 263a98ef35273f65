"""The Docker image, without a Docker engine (none runs here): hadolint checks the
Dockerfile; the wheel is built and installed into a fresh venv as the Dockerfile does; the
image's entry command runs with the service-container example's environment; and the
example workflow's steps are replayed against it (curl to /initialize/, a build and twine
upload, a pip install)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from wharftest.distbuilder import build_sdist

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    result = hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["pywharf"]' in text and "USER 10001" in text and "HEALTHCHECK" in text
    assert 'VOLUME ["/pywharf-root"]' in text and "EXPOSE 8888" in text
    # The check is real: an unpinned base image and a root user are reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:latest\nRUN pip install pywharf\nENTRYPOINT ["pywharf"]\n')
    reported = hadolint(bad)
    assert reported.returncode != 0 and "DL3007" in reported.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def image_env() -> dict[str, str]:
    """The ENV lines of the Dockerfile's runtime stage."""
    text = (ROOT / "Dockerfile").read_text().split("FROM python:3.12-slim\n")[-1]
    block = re.search(r"^ENV (.*?)(?=^\S)", text, re.MULTILINE | re.DOTALL)
    assert block is not None
    return dict(re.findall(r"(\w+)=(\S+)", block.group(1).replace("\\\n", " ")))


def test_image_entry_command_and_the_service_container_workflow(tmp_path: Path) -> None:
    # 1. Build the wheel and install it as the image does, into a fresh venv.
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheels = list(dist.glob("pywharf-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "opt-pywharf"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheels[0])], check=True, timeout=600
    )

    # 2. Its entry command, with no arguments: environment mode, as in the example.
    workflow = yaml.safe_load((ROOT / "workflows" / "service-container.yml").read_text())
    job = workflow["jobs"]["build"]
    service = job["services"]["pywharf"]
    port = free_port()
    env = {**os.environ, **image_env(), **service["env"]}
    env.update(
        PATH=f"{venv / 'bin'}:{env['PATH']}",
        PYWHARF_COMMAND_ROOT=str(tmp_path / "root"),
        PYWHARF_COMMAND_PORT=str(port),
        PYWHARF_COMMAND_HOST="127.0.0.1",
    )
    assert env["PYWHARF_COMMAND"] == "server"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([str(venv / "bin" / "pywharf")], env=env, stdout=log, stderr=log)
    try:
        # The image's HEALTHCHECK command, pointed at this port.
        health = re.search(r'"-c", "(.*?)"\]', (ROOT / "Dockerfile").read_text()).group(1)  # type: ignore[union-attr]
        health = health.replace("8888", str(port))
        for _ in range(100):
            if subprocess.run([sys.executable, "-c", health], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail(
                "the server did not become healthy: " + (tmp_path / "server.log").read_text()
            )

        # The installed wheel carries its templates: the login page renders.
        login = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{port}/login/"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "<h1>Log in</h1>" in login.stdout

        # 3. Replay the example workflow's steps, with its secrets filled in.
        checkout = tmp_path / "checkout"
        sdist = build_sdist(tmp_path / "src", "wharf-ci-demo", "1.2")
        with tarfile.open(sdist.path) as archive:
            archive.extractall(tmp_path / "src", filter="data")
        shutil.move(tmp_path / "src" / "wharf_ci_demo-1.2", checkout)
        secrets = {
            "PYWHARF_READ_SECRET": "ci-read-secret",
            "PYWHARF_WRITE_SECRET": "ci-write-secret",
        }
        target = tmp_path / "installed"
        steps = {step.get("name"): step for step in job["steps"]}
        for name in ("Configure pywharf", "Build and upload", "Install from it"):
            step = steps[name]
            here = f"127.0.0.1:{port}"  # the service's port 8888, on this machine
            step_env = {
                key: re.sub(
                    r"\$\{\{ secrets\.(\w+) \}\}", lambda m: secrets[m.group(1)], str(value)
                ).replace("localhost:8888", here)
                for key, value in (step.get("env") or {}).items()
            }
            script = step["run"].replace("localhost:8888", here)
            run_env = {
                **os.environ,
                **step_env,
                "PATH": f"{BIN}:{os.environ['PATH']}",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            }
            if name == "Install from it":  # keep the test's own environment clean
                run_env["PIP_TARGET"] = str(target)
            done = subprocess.run(
                ["bash", "-eo", "pipefail", "-c", script],
                cwd=checkout,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, (name, done.stdout, done.stderr)
        assert (target / "wharf_ci_demo" / "__init__.py").exists()
        # /initialize/ worked once; the server is no longer on its untouched default.
        again = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-F",
                "config=[x]",
                f"http://127.0.0.1:{port}/initialize/",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert again.stdout == "403"
    finally:
        server.terminate()
        server.wait(10)
        log.close()
