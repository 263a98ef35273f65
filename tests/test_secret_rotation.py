"""Item 18 of issue 14: secrets rotated by ``POST /initialize/`` take effect at once,
though the access cache would remember the old ones for an hour (read) or 5 minutes."""

from __future__ import annotations

from pathlib import Path

import requests
from wharftest.server import get

from pywharf_core.auth import AccessCache
from pywharf_core.backend import Access


def team(read: str, write: str) -> str:
    return f'[team]\ntype = "file_system"\nread_secret = "{read}"\nwrite_secret = "{write}"\n'


def test_rotated_secrets_are_refused_at_once(start_server, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(team("old-read", "old-write"))
    server = start_server("--config", str(config), "--initialize_secret", "init-s3cret")
    for secret in ("old-read", "old-write"):  # verified, so remembered by the cache
        assert get(server, "simple/", auth=("team", secret)).status_code == 200
    rotated = requests.post(
        server.url + "initialize/",
        data={"config": team("new-read", "new-write"), "initialize_secret": "init-s3cret"},
        timeout=30,
    )
    assert rotated.status_code == 200, rotated.text
    for secret in ("old-read", "old-write"):
        assert get(server, "simple/", auth=("team", secret)).status_code == 401
    for secret in ("new-read", "new-write"):
        assert get(server, "simple/", auth=("team", secret)).status_code == 200


def test_a_renewed_cache_is_empty_and_keeps_the_settings() -> None:
    cache = AccessCache(3600, 300)
    assert cache.decide("team", "s", lambda secret: Access.WRITE) is Access.WRITE
    assert cache.lookup("team", "s") is Access.WRITE
    renewed = cache.renewed()
    assert renewed.lookup("team", "s") is None
    assert renewed.decide("team", "s", lambda secret: Access.READ) is Access.READ
    assert renewed.lookup("team", "s") is Access.READ
