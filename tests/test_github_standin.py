"""The stand-in GitHub is held to GitHub: the recorded real exchanges replay against it
with the same statuses and the same response keys, and every response it gives is
valid against GitHub's OpenAPI description (checked after each test, see conftest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from githubstub import FIXTURES, GitHubStandIn

ORG = "octokit-fixture-org"


def seed(standin: GitHubStandIn, scenario: str) -> str:
    """The state the recorded scenario started from; returns a token for its user."""
    token = standin.add_token("octokit-fixture-user")
    roles = {"octokit-fixture-user": "admin"}
    if scenario in ("release-assets", "release-assets-conflict"):
        repo = standin.add_repo(ORG, scenario, private=False, roles=roles)
        from githubstub import Asset, Release

        release = Release(
            1000, "v1.0.0", "v1.0.0", "", False, "master", published_at="2026-01-01T00:00:00Z"
        )
        repo.releases[1000] = release
        if scenario == "release-assets-conflict":
            data = standin.storage / "seed-asset"
            data.write_bytes(b"Hello, world!\n")
            release.assets[1000] = Asset(1000, "test-upload.txt", "", "text/plain", data, 14)
    elif scenario == "get-content":
        repo = standin.add_repo(ORG, "hello-world", private=False, roles=roles)
        repo.files[("master", "README.md")] = b"# hello-world"
    elif scenario == "create-file":
        standin.add_repo(ORG, "create-file", private=False, branch="main", roles=roles)
    elif scenario == "errors":
        standin.add_repo(ORG, "errors", private=False, roles=roles)
    return token


def top_keys(body: object) -> set[str]:
    item = body[0] if isinstance(body, list) and body else body
    return set(item) if isinstance(item, dict) else set()


def declared(schema: dict | None) -> set[str]:
    if schema is None:
        return set()
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    return set(schema.get("properties", {}))


@pytest.mark.parametrize(
    "scenario",
    ["release-assets", "release-assets-conflict", "get-content", "create-file", "errors"],
)
def test_recorded_exchanges_replay(scenario: str, tmp_path: Path) -> None:
    standin = GitHubStandIn(tmp_path / "gh").start()
    try:
        token = seed(standin, scenario)
        for exchange in FIXTURES[scenario]:
            host = exchange["scope"].split("//", 1)[1].split(":")[0]
            prefix = "/uploads" if host == "uploads.github.com" else ""
            headers = {
                "Authorization": f"token {token}",
                "Accept": exchange["reqheaders"].get("accept", "application/json"),
            }
            body = exchange.get("body")
            data = None
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            elif body:
                data = str(body).encode()
                headers["Content-Type"] = exchange["reqheaders"].get("content-type", "text/plain")
            response = requests.request(
                exchange["method"].upper(),
                standin.url + prefix + exchange["path"],
                headers=headers,
                data=data,
                timeout=10,
                allow_redirects=False,
            )
            where = f"{scenario}: {exchange['method']} {exchange['path']}"
            assert response.status_code == exchange["status"], (where, response.text)
            recorded = exchange["response"]
            if isinstance(recorded, (dict, list)) and recorded:
                ours, theirs = top_keys(response.json()), top_keys(recorded)
                # Every key GitHub sent; extra keys only where GitHub's current description
                # declares them (it added e.g. an asset's `digest` after the recording).
                assert theirs <= ours, (where, theirs - ours)
                schema = standin.schema_for(
                    exchange["method"], exchange["path"], response.status_code
                )
                assert ours - theirs <= declared(schema), (where, ours - theirs)
            elif isinstance(recorded, str) and recorded:
                assert response.text == recorded, where
        assert standin.violations == []
    finally:
        standin.stop()


def test_the_schema_check_catches_a_wrong_response(tmp_path: Path) -> None:
    """The validation is real: a response missing a required key is reported."""
    standin = GitHubStandIn(tmp_path / "gh")
    standin.url = "http://127.0.0.1:1"
    repo = standin.add_repo("acme", "pkgs", roles={"alice": "admin"})
    good = standin._repo_json(repo, "alice")
    standin._validate("GET", "/repos/acme/pkgs", 200, json.dumps(good).encode())
    assert standin.violations == []
    broken = {k: v for k, v in good.items() if k != "full_name"}
    standin._validate("GET", "/repos/acme/pkgs", 200, json.dumps(broken).encode())
    assert standin.violations and "full_name" in standin.violations[0]
    standin._validate("GET", "/repos/acme/pkgs", 418, b"{}")
    assert "status 418 not in the description" in standin.violations[-1]
