"""The summary cache behind the home page's search (``pywharf_core.summaries``): the pure
matching and freshness rules, the cache's file under ROOT, and its lazy fill from a real
file_system repository's stored metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pywharf_core.auth import AccessCache
from pywharf_core.backend import LocalFile
from pywharf_core.config import parse_repo_configs, parse_toml
from pywharf_core.errors import BackendUnavailable
from pywharf_core.metadata import parse_metadata
from pywharf_core.records import FileRecord
from pywharf_core.repository import Repository
from pywharf_core.summaries import (
    MAX_SUMMARY_CHARS,
    Search,
    SummaryCache,
    cap_summary,
    describes_latest,
    latest_described,
)
from pywharf_core.testing import record_for, stage


def record(project: str, version: str, kind: str = "whl", described: bool = True) -> FileRecord:
    stem = f"{project.replace('-', '_')}-{version}"
    filename = f"{stem}-py3-none-any.whl" if kind == "whl" else f"{stem}.tar.gz"
    return FileRecord(
        project=project,
        filename=filename,
        version=version,
        sha256="0" * 64,
        size=1,
        upload_time=0.0,
        core_metadata_sha256="1" * 64 if described and kind == "whl" else None,
    )


# -- pure rules ------------------------------------------------------------------------------


def test_a_summary_is_one_capped_line() -> None:
    assert cap_summary(None) == ""
    assert cap_summary("  Forecasts\n and\tobservations  ") == "Forecasts and observations"
    long = cap_summary("word " * 1000)
    assert len(long) == MAX_SUMMARY_CHARS and long.endswith("…")


@pytest.mark.parametrize(
    "query, name, summary, found",
    [
        ("", "acme-weather", "", True),
        ("weather", "acme-weather", "", True),
        ("BAROMETRIC", "acme-weather", "Barometric pressure readings", True),  # summary only
        ("Acme_Weather", "acme-weather", "", True),  # spelt as the name normalizes it
        ("acme.weather", "acme-weather", "", True),
        ("acme pressure", "acme-weather", "Barometric pressure", True),  # every word, anywhere
        ("acme rain", "acme-weather", "Barometric pressure", False),
        ("café", "x", "Pour les CAFÉS", True),  # case-insensitive beyond ASCII
        ("straße", "x", "STRASSE maps", True),  # casefolded, not just lowered
        ("weather", "other", "", False),
        ("\x00", "x", "y", False),
    ],
)
def test_search_matches_every_word_in_the_name_or_the_summary(
    query: str, name: str, summary: str, found: bool
) -> None:
    assert Search.parse(query).matches(name, summary) is found


def test_the_latest_release_decides_which_summary_is_current() -> None:
    old = record("acme", "1.0")
    new_wheel, new_sdist = record("acme", "2.0"), record("acme", "2.0", "tar.gz")
    records = (old, new_sdist, new_wheel)  # as the index sorts them: version, then filename
    assert latest_described(records) == new_wheel
    assert describes_latest(new_wheel.filename, records)
    assert describes_latest(new_sdist.filename, records)  # one release: one summary
    assert not describes_latest(old.filename, records)
    # The newest release has no stored metadata (an sdist only): the newest that has is
    # the best there is, so reading it again would be pointless.
    sdist_only = (old, record("acme", "3.0", "tar.gz"))
    assert latest_described(sdist_only) == old
    assert describes_latest(old.filename, sdist_only)
    assert not describes_latest("gone.whl", ())


def test_stored_metadata_is_read_as_utf8() -> None:
    raw = "Metadata-Version: 2.1\nName: x\nVersion: 1\nSummary: Café ☃\n\nbody".encode()
    assert parse_metadata(raw)["Summary"] == "Café ☃"


# -- the cache -------------------------------------------------------------------------------


class Reader:
    """A stand-in for the backend read: summaries by filename; a missing name fails."""

    def __init__(self, summaries: dict[str, str]) -> None:
        self.summaries = summaries
        self.calls: list[str] = []

    def __call__(self, source: FileRecord) -> str:
        self.calls.append(source.filename)
        if source.filename not in self.summaries:
            raise BackendUnavailable("down")
        return self.summaries[source.filename]


def test_an_upload_is_kept_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "summaries.jsonl"
    old, new = record("acme", "1.0"), record("acme", "2.0")
    projects = {"acme": (old, new)}
    cache = SummaryCache(path, Reader({}), lambda: projects)
    cache.offer(new, "Forecasts\n  for everyone")
    assert path.stat().st_mode & 0o777 == 0o600  # a private repository's summaries
    cache.offer(old, "The old summary")  # an older release uploaded late: not kept
    assert cache.summary("acme") == "Forecasts for everyone"
    again = SummaryCache(path, Reader({}), lambda: projects)
    assert again.summary("acme") == "Forecasts for everyone"
    assert again.stale(projects) == []  # nothing to read


def test_the_lazy_fill_reads_only_what_is_stale_and_retries_later(tmp_path: Path) -> None:
    acme = (record("acme", "1.0"), record("acme", "2.0"))
    broken = (record("broken", "1.0"),)
    sdist_only = (record("plain", "1.0", "tar.gz"),)
    projects = {"acme": acme, "broken": broken, "plain": sdist_only}
    reader = Reader({acme[1].filename: "Barometric pressure"})
    cache = SummaryCache(tmp_path / "summaries.jsonl", reader, lambda: projects)
    cache.offer(acme[0], "Old")  # described, but by an older release: stale
    assert cache.fill() == 1
    assert cache.summary("acme") == "Barometric pressure"
    assert sorted(reader.calls) == sorted([acme[1].filename, broken[0].filename])
    reader.calls.clear()
    assert cache.fill() == 0 and reader.calls == []  # the failure waits RETRY_AFTER
    assert cache.summary("plain") == ""  # nothing stored to read: only an upload offers it


def test_nothing_is_filled_or_forgotten_before_the_first_sync(tmp_path: Path) -> None:
    path = tmp_path / "summaries.jsonl"
    path.write_text(
        json.dumps({"project": "acme", "filename": "a.whl", "summary": "kept"})
        + "\nnot json\n"
        + json.dumps(["a list"])
        + "\n"
    )
    reader = Reader({})
    cache = SummaryCache(path, reader, lambda: None)
    assert cache.summary("acme") == "kept"  # the torn and foreign lines are skipped
    assert cache.fill() == 0 and reader.calls == []
    cache.save()
    assert SummaryCache(path, reader, lambda: None).summary("acme") == "kept"
    cache = SummaryCache(path, reader, lambda: {})  # synced: acme is gone (deleted)
    cache.save()
    assert SummaryCache(path, reader, lambda: {}).summary("acme") == ""


def test_a_fill_does_not_overwrite_an_upload_made_meanwhile(tmp_path: Path) -> None:
    old, new = record("acme", "1.0"), record("acme", "2.0")
    projects: dict[str, tuple[FileRecord, ...]] = {"acme": (old,)}

    def read(source: FileRecord) -> str:
        projects["acme"] = (old, new)
        cache.offer(new, "From the upload")  # lands while the fill reads the old file
        return "From the old file"

    cache = SummaryCache(tmp_path / "summaries.jsonl", read, lambda: projects)
    cache.fill()
    assert cache.summary("acme") == "From the upload"


# -- against a real repository ------------------------------------------------------------------

CONFIG = """
[team]
type = "file_system"
read_secret = "team-read-secret-1"
write_secret = "team-write-secret-1"
"""


def store_elsewhere(repo: Repository, name: str, version: str, summary: str) -> FileRecord:
    """Store and index a wheel as another replica (or an older server) would: without
    this server's summary cache hearing of it."""
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n\n"
    data = f"{name} {version}".encode()
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    fresh = record_for(filename, data, metadata.encode())
    stored = repo.backend.put_file(fresh, stage(repo.backend, data), metadata.encode())
    repo.index.add(stored)
    return stored


def test_the_lazy_fill_reads_stored_metadata_through_the_backend(tmp_path: Path) -> None:
    config = parse_repo_configs(parse_toml(CONFIG, "<test>"))["team"]
    repo = Repository.open(config, tmp_path, None, AccessCache(60, 60))
    stored = store_elsewhere(repo, "acme-weather", "1.0", "Barometric  pressure, café")
    assert repo.summaries.summary("acme-weather") == ""
    assert repo.summaries.fill() == 1
    assert repo.summaries.summary("acme-weather") == "Barometric pressure, café"
    # Kept under ROOT: a restarted server has it without reading the metadata again.
    reopened = Repository.open(config, tmp_path, None, AccessCache(60, 60))
    assert reopened.summaries.summary("acme-weather") == "Barometric pressure, café"
    assert reopened.summaries.stale(reopened.index.snapshot.projects) == []
    kept = tmp_path / "cache" / "team" / "summaries.jsonl"
    assert stored.filename in kept.read_text() and kept.stat().st_mode & 0o777 == 0o600
    # A sidecar gone from storage: no summary, no error, and no second read at once.
    fresh = store_elsewhere(reopened, "gone-meta", "1.0", "x")
    opened = reopened.backend.open_file(fresh, metadata=True)
    assert isinstance(opened, LocalFile)
    opened.path.unlink()
    assert reopened.summaries.fill() == 0
    assert reopened.summaries.summary("gone-meta") == ""
    assert reopened.summaries.stale(reopened.index.snapshot.projects) == []
