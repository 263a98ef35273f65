"""``pywharf_core.config``: repository tables split into the core's policy and the
backend's settings; every refusal names the file, the table and the key."""

from __future__ import annotations

import logging

import pytest

from pywharf_core.config import RepoConfig, RepoPolicy, parse_repo_configs, parse_toml
from pywharf_core.errors import ConfigError

READ = "read-secret-long-enough"
WRITE = "write-secret-long-enough"
SECRETS = f'read_secret = "{READ}"\nwrite_secret = "{WRITE}"\n'
GITHUB = '[gh]\ntype = "github"\nowner = "o"\nrepo = "r"\n'


def parse(text: str) -> dict[str, RepoConfig]:
    return parse_repo_configs(parse_toml(text, "repos.toml"))


def refusal(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def test_policy_keys_go_to_the_core_and_the_rest_to_the_backend() -> None:
    repos = parse(
        f'[team]\ntype = "file_system"\n{SECRETS}max_file_bytes = 1000\n'
        'sync_index_interval = 5\nstorage_root = "/srv/packages"\n'
    )
    team = repos["team"]
    assert (team.name, team.spec.type, team.source) == ("team", "file_system", "repos.toml")
    assert team.policy == RepoPolicy(READ, WRITE, 1000, 5)
    assert team.settings.storage_root == "/srv/packages"
    assert not hasattr(team.settings, "read_secret")
    assert not hasattr(team.settings, "max_file_bytes")


def test_policy_defaults_come_from_the_backend_spec() -> None:
    repos = parse(f'[team]\ntype = "file_system"\n{SECRETS}\n{GITHUB}')
    assert repos["team"].policy.max_file_bytes == repos["team"].spec.file_size_limit
    assert repos["team"].policy.max_file_bytes == 5368709119
    assert repos["gh"].policy.max_file_bytes == 2147483647  # GitHub's largest release asset
    assert repos["team"].policy.sync_index_interval == 60
    assert repos["gh"].policy.read_secret is None and repos["gh"].policy.write_secret is None
    assert (repos["gh"].settings.owner, repos["gh"].settings.repo) == ("o", "r")


def test_a_policy_never_prints_its_secrets() -> None:
    policy = parse(f'[team]\ntype = "file_system"\n{SECRETS}')["team"].policy
    assert READ not in repr(policy) and WRITE not in repr(policy)
    assert "max_file_bytes=5368709119" in repr(policy)


def test_an_unknown_key_is_named_with_file_table_and_key() -> None:
    error = refusal(f'[team]\ntype = "file_system"\n{SECRETS}colour = "red"\n')
    assert (error.source, error.table, error.key) == ("repos.toml", "team", "colour")
    assert str(error).startswith("repos.toml [team] key 'colour': unknown key (allowed: type, ")
    for allowed in ("max_file_bytes", "read_secret", "storage_root", "sync_index_interval"):
        assert allowed in error.message


def test_github_tables_refuse_client_secrets() -> None:
    error = refusal(f'{GITHUB}read_secret = "{READ}"\n')
    assert (error.table, error.key) == ("gh", "read_secret")
    assert "unknown key" in error.message
    assert "read_secret" not in error.message.partition("allowed:")[2]
    assert "max_file_bytes" in error.message  # the other policy keys stay allowed


def test_equal_secrets_are_refused() -> None:
    error = refusal(
        f'[team]\ntype = "file_system"\nread_secret = "{READ}"\nwrite_secret = "{READ}"\n'
    )
    assert (error.table, error.key) == ("team", "read_secret")
    assert "equal" in error.message


@pytest.mark.parametrize("key", ["read_secret", "write_secret"])
@pytest.mark.parametrize("value", ["12345678901234567890", "true", "[1, 2]", "1.5"])
def test_a_secret_must_be_a_toml_string(key: str, value: str) -> None:
    other = "write_secret" if key == "read_secret" else "read_secret"
    error = refusal(f'[team]\ntype = "file_system"\n{key} = {value}\n{other} = "{WRITE}x"\n')
    assert (error.table, error.key) == ("team", key)
    assert "expected a string" in error.message and "quotes" in error.message


@pytest.mark.parametrize("missing", ["read_secret", "write_secret"])
def test_a_serving_table_needs_both_secrets(missing: str) -> None:
    kept = "write_secret" if missing == "read_secret" else "read_secret"
    error = refusal(f'[team]\ntype = "file_system"\n{kept} = "{WRITE}"\n{missing} = ""\n')
    assert (error.table, error.key) == ("team", missing)
    assert "missing or empty" in error.message


def test_short_secrets_are_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pywharf_core.config"):
        repos = parse(
            '[team]\ntype = "file_system"\nread_secret = "rsec1"\nwrite_secret = "wsec2"\n'
        )
    assert repos["team"].policy.read_secret == "rsec1"
    warned = [r.getMessage() for r in caplog.records]
    assert any("read_secret is shorter than 16" in m for m in warned)
    assert any("write_secret is shorter than 16" in m for m in warned)
    assert not any("rsec1" in m or "wsec2" in m for m in warned)  # the secrets are not logged


@pytest.mark.parametrize(
    "line, key, words",
    [
        ("max_file_bytes = 0", None, "max_file_bytes must be positive"),
        ("max_file_bytes = -5", None, "max_file_bytes must be positive"),
        ("sync_index_interval = 0", None, "sync_index_interval must be positive"),
        ('max_file_bytes = "lots"', "max_file_bytes", "expected int"),
        ("max_file_bytes = 1.5", "max_file_bytes", "expected int"),
        ("max_file_bytes = true", "max_file_bytes", "expected int"),
    ],
)
def test_policy_values_are_checked(line: str, key: str | None, words: str) -> None:
    error = refusal(f'[team]\ntype = "file_system"\n{SECRETS}{line}\n')
    assert (error.source, error.table, error.key) == ("repos.toml", "team", key)
    assert words in error.message


def test_backend_keys_are_checked_by_the_backend_class() -> None:
    error = refusal('[bucket]\ntype = "s3"\nsync_index_interval = 30\n' + SECRETS)
    assert (error.table, error.key) == ("bucket", "bucket")
    assert "required key is missing" in error.message
    error = refusal(f'[bucket]\ntype = "s3"\nbucket = "b"\npresign_expires = "soon"\n{SECRETS}')
    assert error.key == "presign_expires" and "expected int" in error.message
    s3 = parse(f'[bucket]\ntype = "s3"\nbucket = "b"\nproxy_downloads = true\n{SECRETS}')["bucket"]
    assert (s3.settings.bucket, s3.settings.proxy_downloads) == ("b", True)


@pytest.mark.parametrize(
    "text, table, key, words",
    [
        ("", None, None, "no repository tables"),
        ('name = "x"', "name", None, "expected a table"),
        (f"[team]\n{SECRETS}", "team", "type", "missing 'type'"),
        (f'[team]\ntype = "ftp"\n{SECRETS}', "team", "type", "unknown backend type 'ftp'"),
        (f'[".hidden"]\ntype = "file_system"\n{SECRETS}', ".hidden", None, "may not start"),
        (f'["a b"]\ntype = "file_system"\n{SECRETS}', "a b", None, "letters, digits"),
        (f'["a/b"]\ntype = "file_system"\n{SECRETS}', "a/b", None, "letters, digits"),
    ],
)
def test_table_level_refusals(text: str, table: str | None, key: str | None, words: str) -> None:
    error = refusal(text)
    assert (error.source, error.table, error.key) == ("repos.toml", table, key)
    assert words in error.message


def test_invalid_toml_names_the_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml("[team\ntype = ", "repos.toml")
    assert info.value.source == "repos.toml" and "invalid TOML" in info.value.message


def test_several_tables_each_get_their_own_policy() -> None:
    repos = parse(
        f'[a]\ntype = "file_system"\n{SECRETS}max_file_bytes = 10\n'
        f'[b]\ntype = "file_system"\nread_secret = "{READ}b"\nwrite_secret = "{WRITE}b"\n'
    )
    assert list(repos) == ["a", "b"]
    assert (repos["a"].policy.max_file_bytes, repos["b"].policy.max_file_bytes) == (10, 5368709119)
    assert repos["b"].policy.read_secret == READ + "b"
