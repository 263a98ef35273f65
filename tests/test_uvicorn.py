"""``pywharf server --server uvicorn``: the same app on uvicorn, driven by real clients."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.distbuilder import build_wheel
from wharftest.server import get, upload_file


def test_clients_against_uvicorn(
    start_server, tmp_path: Path, client_env: dict[str, str], dists
) -> None:
    server = start_server("--server", "uvicorn")
    url = server.url + "simple/"
    clients.twine_upload(url, "local", server.write_secret, dists.base_wheel.path, env=client_env)
    clients.uv_publish(url, "local", server.write_secret, dists.app_sdist.path, env=client_env)
    target = tmp_path / "target"
    clients.pip_install(
        server.index_url("local", server.read_secret),
        target,
        "demo-app",
        "--no-binary",
        "demo-app",
        env=client_env,
    )
    assert (target / "demo_app" / "__init__.py").exists() and (target / "foo_bar_baz").exists()
    clients.uv_pip_install(
        server.index_url("local", server.read_secret),
        tmp_path / "uv",
        "foo-bar-baz",
        env=client_env,
    )

    read = ("local", server.read_secret)
    path = f"simple/foo-bar-baz/{dists.base_wheel.filename}"
    whole = get(server, path, auth=read)
    assert hashlib.sha256(whole.content).hexdigest() == dists.base_wheel.sha256
    assert whole.headers["Content-Type"] == "application/zip"
    assert (
        get(server, path, auth=read, headers={"Range": "bytes=0-9"}).content == whole.content[:10]
    )
    assert requests.head(server.url + path, auth=read, timeout=10).headers["Content-Length"] == str(
        len(whole.content)
    )
    other = build_wheel(tmp_path / "other", "Foo_Bar.baz", "1.0", summary="other bytes")
    conflict = upload_file(server, other.path, "Foo_Bar.baz", "1.0", ("local", server.write_secret))
    assert conflict.status_code == 409 and conflict.text.startswith("File already exists")
    for response in (whole, conflict, get(server, "simple/")):
        assert not [h for h in response.headers if h.lower().startswith("x-pywharf")]
    assert get(server, "simple/").status_code == 401


def test_unknown_server_is_refused(tmp_path: Path) -> None:
    result = pywharf("server", str(tmp_path), "--server", "gunicorn", "--port", "0", timeout=60)
    assert result.returncode == 2
    assert "--server must be waitress or uvicorn" in result.stderr
