"""Issue 16, the parts of trusted publishing and tokens that need no server: the
``trusted_publishers`` policy key, the key set's refresh rules, publisher matching, the
jti record and the token store's rules."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from wharftest.oidcstub import GitHubOidc

from pywharf_core import oidc
from pywharf_core.backend import Access
from pywharf_core.config import TrustedPublisher, parse_repo_configs, parse_toml
from pywharf_core.errors import ConfigError, PublishingRefused
from pywharf_core.state import LocalState
from pywharf_core.tokens import TokenStore

SECRETS = 'read_secret = "read-secret-long-enough"\nwrite_secret = "write-secret-long-enough"\n'


def table(publishers: str) -> str:
    return f'[team]\ntype = "file_system"\n{SECRETS}trusted_publishers = [{publishers}]\n'


def test_trusted_publishers_are_typed_and_refusals_name_the_key() -> None:
    repos = parse_repo_configs(
        parse_toml(
            table(
                '{ provider = "github", repository = "acme/app", workflow = "release.yml", '
                'environment = "pypi", projects = ["acme-app"] }'
            ),
            "repos.toml",
        )
    )
    assert repos["team"].policy.trusted_publishers == (
        TrustedPublisher("github", "acme/app", "release.yml", "pypi", ("acme-app",)),
    )
    cases = {
        '{ provider = "gitlab", repository = "a/b", workflow = "r.yml" }': "trusted_publishers[0]",
        '{ repository = "a/b", workflow = "r.yml" }': "trusted_publishers[0].provider",
        '{ provider = "github", repository = "ab", workflow = "r.yml" }': "trusted_publishers[0]",
        '{ provider = "github", repository = "a/b", workflow = "dir/r.yml" }': (
            "trusted_publishers[0]"
        ),
        '{ provider = "github", repository = "a/b", workflow = "r.yml", x = 1 }': (
            "trusted_publishers[0].x"
        ),
        '"acme/app"': "trusted_publishers",
    }
    for text, key in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_repo_configs(parse_toml(table(text), "repos.toml"))
        assert info.value.key == key, text
        assert "repos.toml [team]" in str(info.value)


def test_keys_refresh_on_an_unknown_kid_once_a_minute_and_keep_the_last_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    github = GitHubOidc(tmp_path)
    keys = oidc.KeySet(str(github.jwks_path))
    assert keys.key("test-key-1") is not None
    github.jwks_path.write_text("not json")  # a broken refresh keeps what was good
    github.kid = "test-key-2"
    monkeypatch.setattr(oidc, "REFRESH_SECONDS", 0.0)
    assert keys.key("test-key-2") is None
    assert keys.key("test-key-1") is not None
    github.write_jwks()
    assert keys.key("test-key-2") is not None  # fetched again: the rotated key
    monkeypatch.setattr(oidc, "REFRESH_SECONDS", 60.0)
    github.kid = "test-key-3"
    github.write_jwks()
    assert keys.key("test-key-3") is None  # a fetch came less than a minute ago


class FakeRepo:
    def __init__(self, folder: Path, *publishers: TrustedPublisher) -> None:
        self.name = folder.name
        self.state = LocalState(folder)  # the same read/write as a StateStore
        self.state.update = lambda name, change: _update(self.state, name, change)  # type: ignore[attr-defined]
        self.tokens = TokenStore(self.state, 60)  # type: ignore[arg-type]

        class Policy:
            trusted_publishers = publishers

        self.policy = Policy()


def _update(state: LocalState, name: str, change) -> bytes:
    current = state.read(name)
    data = change(None if current is None else current[0])
    state.write(name, data, None if current is None else current[1])
    return data


def test_mint_checks_claims_and_uses_each_jti_once(tmp_path: Path) -> None:
    github = GitHubOidc(tmp_path)
    publishing = oidc.TrustedPublishing("pywharf", oidc.KeySet(str(github.jwks_path)))
    repo = FakeRepo(tmp_path / "state", TrustedPublisher("github", "Acme/App", "release.yml"))
    token = github.id_token(environment=None)  # no environment configured: any is fine
    minted = publishing.mint(token, [repo])  # type: ignore[list-item]
    assert minted.expires - time.time() <= oidc.MINTED_TOKEN_SECONDS
    grant = repo.tokens.check(minted.token.token)
    assert grant is not None and grant.access is Access.WRITE and grant.projects is None
    with pytest.raises(PublishingRefused, match="already used"):
        publishing.mint(token, [repo])  # type: ignore[list-item]
    used = json.loads((tmp_path / "state" / oidc.JTI_DOCUMENT).read_text())["used"]
    assert len(used) == 1  # kept until the ID token expires, then pruned
    # A second repository trusting the same publisher makes it ambiguous: refused.
    twin = FakeRepo(tmp_path / "twin", TrustedPublisher("github", "acme/app", "release.yml"))
    with pytest.raises(PublishingRefused) as info:
        publishing.mint(github.id_token(), [repo, twin])  # type: ignore[list-item]
    assert info.value.code == "invalid-publisher"


def test_token_store_refuses_what_it_does_not_hold(tmp_path: Path) -> None:
    state = LocalState(tmp_path)
    state.update = lambda name, change: _update(state, name, change)  # type: ignore[attr-defined]
    store = TokenStore(state, 60)  # type: ignore[arg-type]
    new = store.create("read", None, None, "")
    assert store.check(new.token) is not None
    for bad in ("", "pywharf-", new.token + "x", new.token.upper(), "x" + new.token[1:]):
        assert store.check(bad) is None, bad
    assert new.token not in (tmp_path / "tokens.json").read_text()
