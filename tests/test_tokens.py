"""Issue 16, API tokens: created, listed and revoked with the write secret (HTTP and the
CLI); used as passwords by real clients; scoped, expiring, revocable on every replica,
stored hashed, never logged; every bad request a clear 4xx."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from wharftest import clients
from wharftest.server import WharfServer, get, wait_for

READ, WRITE = "team-read-secret-0001", "team-write-secret-0001"
OTHER_WRITE = "other-write-secret-001"


def config_text(storage: Path, interval: int = 60) -> str:
    return (
        f'[team]\ntype = "file_system"\nread_secret = "{READ}"\nwrite_secret = "{WRITE}"\n'
        f'storage_root = "{storage}"\nsync_index_interval = {interval}\n'
        f'[other]\ntype = "file_system"\nread_secret = "other-read-secret-0001"\n'
        f'write_secret = "{OTHER_WRITE}"\nstorage_root = "{storage}-other"\n'
    )


@pytest.fixture
def team(start_server, tmp_path: Path) -> Callable[..., WharfServer]:
    """Replicas of repository ``team`` (and ``other``) on one storage folder."""
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path / "storage", interval=2))

    def start(**kwargs: object) -> WharfServer:
        server: WharfServer = start_server("--config", str(config), **kwargs)
        return server

    return start


def create(server: WharfServer, body: object, secret: str = WRITE) -> requests.Response:
    return requests.post(
        server.url + "r/team/tokens/", json=body, auth=("__token__", secret), timeout=30
    )


def test_create_list_revoke(team) -> None:
    server = team()
    made = create(server, {"permission": "read", "description": "laptop"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["token"].startswith("pywharf-")
    assert body["permission"] == "read" and body["projects"] is None
    assert body["expires"] is None and body["description"] == "laptop"
    scoped = create(server, {"permission": "upload", "projects": ["Foo_Bar.baz"], "expires_in": 60})
    assert scoped.json()["projects"] == ["foo-bar-baz"]
    assert scoped.json()["expires"].endswith("Z")
    listed = get(server, "r/team/tokens/", auth=("x", WRITE)).json()
    assert {row["id"] for row in listed} == {body["id"], scoped.json()["id"]}
    assert all("token" not in row and "sha256" not in row for row in listed)
    assert all({"created", "last_used"} <= set(row) for row in listed)
    gone = requests.delete(f"{server.url}r/team/tokens/{body['id']}", auth=("x", WRITE), timeout=30)
    assert gone.status_code == 204
    again = requests.delete(
        f"{server.url}r/team/tokens/{body['id']}", auth=("x", WRITE), timeout=30
    )
    assert again.status_code == 404
    assert [r["id"] for r in get(server, "r/team/tokens/", auth=("x", WRITE)).json()] == [
        scoped.json()["id"]
    ]


def test_tokens_are_managed_with_the_write_secret_only(team) -> None:
    server = team()
    assert create(server, {"permission": "read"}, secret=READ).status_code == 403
    assert create(server, {"permission": "read"}, secret="wrong-secret-000").status_code == 401
    upload_token = create(server, {"permission": "upload"}).json()["token"]
    assert create(server, {"permission": "read"}, secret=upload_token).status_code == 403
    assert get(server, "r/team/tokens/", auth=("x", upload_token)).status_code == 403


def test_bad_creation_requests_are_400(team) -> None:
    server = team()
    bad: list[object] = [
        {"permission": "admin"},
        {},
        {"permission": "read", "expires_in": -5},
        {"permission": "read", "expires_in": 0},
        {"permission": "read", "expires_in": 10**12},
        {"permission": "read", "expires_in": "60"},
        {"permission": "read", "projects": "a"},
        {"permission": "read", "projects": []},
        {"permission": "read", "colour": "red"},
        {"permission": "read", "description": "x" * 1000},
        ["read"],
    ]
    for body in bad:
        answer = create(server, body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.text.strip(), body
    raw = requests.post(server.url + "r/team/tokens/", data=b"{nope", auth=("x", WRITE), timeout=30)
    assert raw.status_code == 400
    assert get(server, "r/team/tokens/", auth=("x", WRITE)).json() == []


def test_tokens_as_passwords_with_real_clients(
    team, dists, client_env: dict[str, str], tmp_path: Path
) -> None:
    server = team()
    reader = create(server, {"permission": "read"}).json()["token"]
    uploader = create(server, {"permission": "upload", "projects": ["foo-bar-baz"]}).json()
    url = server.url + "r/team/simple/"
    # twine: an upload token scoped to one project.
    clients.twine_upload(url, "__token__", uploader["token"], dists.base_wheel.path, env=client_env)
    refused = clients.twine_upload(
        url, "__token__", uploader["token"], dists.app_wheel.path, env=client_env, check=False
    )
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr
    assert "demo-app" in refused.stdout + refused.stderr
    # uv publish with a read token: refused.
    denied = clients.uv_publish(
        url, "__token__", reader, dists.app_sdist.path, env=client_env, check=False
    )
    assert denied.returncode != 0 and "403" in denied.stdout + denied.stderr
    # pip with a read token, at /r/team/simple/ (any username) and /simple/ (username = repo).
    for index in (
        server.index_url("__token__", reader, "r/team/simple/"),
        server.index_url("team", reader),
    ):
        target = tmp_path / f"t{len(index)}"
        clients.pip_install(index, target, "foo-bar-baz", env=client_env)
        assert list(target.glob("foo_bar_baz*"))
    # Its last use is known.
    listed = get(server, "r/team/tokens/", auth=("x", WRITE)).json()
    assert all(row["last_used"] for row in listed)
    # Never logged, never stored in clear.
    log = server.log_text()
    assert reader not in log and uploader["token"] not in log
    stored = (tmp_path / "storage").rglob("tokens.json")
    text = "".join(p.read_text() for p in stored)
    assert uploader["id"] in text and uploader["token"] not in text


def test_refused_tokens_look_like_a_wrong_secret(team) -> None:
    server = team()
    wrong = get(server, "r/team/simple/", auth=("__token__", "pywharf-wrong"))
    assert wrong.status_code == 401
    revoked = create(server, {"permission": "read"}).json()
    requests.delete(f"{server.url}r/team/tokens/{revoked['id']}", auth=("x", WRITE), timeout=30)
    expiring = create(server, {"permission": "read", "expires_in": 1}).json()["token"]
    other_repo = requests.post(
        server.url + "r/other/tokens/",
        json={"permission": "read"},
        auth=("x", OTHER_WRITE),
        timeout=30,
    ).json()["token"]
    assert get(server, "r/other/simple/", auth=("__token__", other_repo)).status_code == 200
    time.sleep(1.5)
    refused = {
        "revoked": revoked["token"],
        "expired": expiring,
        "garbage after the prefix": "pywharf-" + "zz" * 40,
        "prefix only": "pywharf-",
        "of another repository": other_repo,
        "one character changed": revoked["token"][:-1] + "A",
    }
    for why, token in refused.items():
        answer = get(server, "r/team/simple/", auth=("__token__", token))
        assert answer.status_code == 401, why
        assert answer.text == wrong.text, why
        assert answer.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"], why
    assert get(server, "simple/", auth=("team", other_repo)).status_code == 401


def test_replicas_honour_creation_and_revocation_and_a_restart_keeps_tokens(team) -> None:
    first, second = team(), team()
    token = create(first, {"permission": "read"}).json()
    # Created on one replica: the other reads it on its first miss.
    assert get(second, "r/team/simple/", auth=("__token__", token["token"])).status_code == 200
    gone = requests.delete(f"{first.url}r/team/tokens/{token['id']}", auth=("x", WRITE), timeout=30)
    assert gone.status_code == 204
    # Revoked on one replica: the other refuses it within its sync interval (2 s here).
    wait_for(
        lambda: get(second, "r/team/simple/", auth=("x", token["token"])).status_code == 401,
        timeout=10,
    )
    kept = create(first, {"permission": "read"}).json()["token"]
    first.stop()
    restarted = team()
    assert get(restarted, "r/team/simple/", auth=("x", kept)).status_code == 200


def test_cli_creates_lists_and_revokes(team, tmp_path: Path) -> None:
    server = team()
    url = server.url + "r/team/simple/"

    def pywharf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pywharf_core", "token", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "TEAM_WRITE": WRITE},
        )

    made = pywharf(
        "create", url, "--projects", "foo-bar-baz,demo-app", "--expires_in", "3600",
        "--description", "ci job", "--secret_env", "TEAM_WRITE",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("pywharf-") and "shown this once" in made.stderr
    listed = pywharf("list", server.url + "simple/", "--repo", "team", "--secret", WRITE)
    assert listed.returncode == 0, listed.stderr
    assert "upload" in listed.stdout and "demo-app,foo-bar-baz" in listed.stdout
    assert token not in listed.stdout
    token_id = listed.stdout.split()[0]
    assert get(server, "r/team/simple/", auth=("x", token)).status_code == 200
    revoked = pywharf("revoke", url, "--token_id", token_id, "--secret", WRITE)
    assert revoked.returncode == 0, revoked.stderr
    assert get(server, "r/team/simple/", auth=("x", token)).status_code == 401
    bad = pywharf("create", url, "--permission", "admin", "--secret", WRITE)
    assert bad.returncode == 2 and "400" in bad.stderr and "permission" in bad.stderr


def test_wrong_tokens_count_as_failed_logins(team) -> None:
    server = team()
    good = create(server, {"permission": "read"}).json()["token"]
    assert get(server, "r/team/simple/", auth=("x", good)).status_code == 200
    statuses = [
        get(server, "r/team/simple/", auth=("x", f"pywharf-{i:016x}-" + "A" * 43)).status_code
        for i in range(12)
    ]
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429
    # A token verified before still passes from the throttled address.
    assert get(server, "r/team/simple/", auth=("x", good)).status_code == 200
