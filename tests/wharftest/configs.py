"""Repository configurations that several test modules start servers with."""

from __future__ import annotations

from pathlib import Path

#: Two file_system repositories: ``main``, and ``small`` whose files may be 4 KiB at most.
MAIN_AND_SMALL = """
[main]
type = "file_system"
read_secret = "main-read"
write_secret = "main-write"

[small]
type = "file_system"
read_secret = "small-read"
write_secret = "small-write"
max_file_bytes = 4096
"""

#: Basic-auth pairs of ``shared_config``'s repository.
TEAM_READ = ("team", "team-read")
TEAM_WRITE = ("team", "team-write")


def shared_config(tmp_path: Path, storage: Path, interval: int = 1) -> Path:
    """A config whose one repository ``team`` keeps its files in ``storage`` (servers
    started with it share that storage) and syncs every ``interval`` seconds."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[team]\ntype = "file_system"\nread_secret = "team-read"\nwrite_secret = "team-write"\n'
        f'storage_root = "{storage}"\nsync_index_interval = {interval}\n'
    )
    return config
