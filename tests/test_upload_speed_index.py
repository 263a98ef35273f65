"""The overlay's append skips the look at the file's last byte when the file still ends
where this process's last whole line did; any other end is still looked at, so a line
cut short (a crash, another process) never swallows the next record."""

from __future__ import annotations

import json
from pathlib import Path

from test_index import record  # the same records as the index's own tests

from pywharf_core.index import RepoIndex


def names(path: Path) -> set[str]:
    return set(RepoIndex(path).snapshot.projects)


def test_a_line_cut_short_before_this_process_started_is_not_joined(tmp_path: Path) -> None:
    path = tmp_path / "overlay.jsonl"
    RepoIndex(path).add(record("first", "1.0"))
    with path.open("ab") as handle:
        handle.write(b'{"project": "cut')  # a crash mid-append
    index = RepoIndex(path)
    index.add(record("second", "1.0"))
    index.add(record("third", "1.0"))
    assert names(path) == {"first", "second", "third"}


def test_a_line_cut_short_by_another_writer_meanwhile_is_not_joined(tmp_path: Path) -> None:
    path = tmp_path / "overlay.jsonl"
    index = RepoIndex(path)
    index.add(record("first", "1.0"))
    with path.open("ab") as handle:
        handle.write(b'{"project": "cut')  # after this process's last append
    index.add(record("second", "1.0"))
    assert names(path) == {"first", "second"}


def test_appends_after_the_overlay_was_rewritten_stay_whole(tmp_path: Path) -> None:
    path = tmp_path / "overlay.jsonl"
    index = RepoIndex(path)
    for project in ("alpha", "beta", "gamma"):
        index.add(record(project, "1.0"))
    # A complete remote view drops every overlay entry: the overlay is rewritten (empty).
    index.set_remote([record("alpha", "1.0")], complete_since=float("inf"))
    assert path.read_text() == ""
    index.add(record("delta", "1.0"))
    index.add(record("epsilon", "1.0"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["project"] for line in lines] == ["delta", "epsilon"]


def test_the_overlay_folder_is_made_on_the_first_append(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "overlay.jsonl"
    RepoIndex(path).add(record("first", "1.0"))
    assert names(path) == {"first"}
