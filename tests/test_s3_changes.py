"""The s3 backend's change feed: an upload or a yank on one replica reaches the others
within a sync interval, before ``update_index`` runs, for a few KB. Two backends on one
bucket of moto's S3 server (over HTTP on loopback), the bytes a sync round costs, and two
real servers."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import test_backend_s3 as s3tests
from botocore.awsrequest import AWSResponse
from pywharf_backends.s3 import S3Backend, S3Config
from pywharf_backends.s3.storage import CHANGE_LAG_SECONDS, create
from wharftest.server import get, upload_file, wait_for

from pywharf_core.auth import AccessCache
from pywharf_core.backend import BackendContext
from pywharf_core.config import parse_repo_configs, parse_toml
from pywharf_core.errors import BackendUnavailable
from pywharf_core.records import FileRecord
from pywharf_core.repository import Repository
from pywharf_core.testing import indexed, make_wheel, put, record_for

moto_url = s3tests.moto_url  # the fixtures
bucket = s3tests.bucket
KEYS = s3tests.KEYS
FEED = "cloud/.pywharf-changes/"


def backend_on(endpoint: str, bucket_name: str) -> S3Backend:
    config = S3Config(bucket=bucket_name, endpoint_url=endpoint)
    return create(BackendContext("cloud", Path("."), KEYS), config)


@pytest.fixture
def replicas(moto_url: str, bucket: str) -> tuple[S3Backend, S3Backend]:
    """Two backends on one bucket and prefix, as two servers hold them."""
    return backend_on(moto_url, bucket), backend_on(moto_url, bucket)


def feed_keys(endpoint: str, bucket_name: str) -> list[str]:
    listed = s3tests.s3_client(endpoint).list_objects_v2(Bucket=bucket_name, Prefix=FEED)
    return [o["Key"] for o in listed.get("Contents", [])]


def write_change(endpoint: str, bucket_name: str, stamp_ms: int, body: bytes) -> str:
    """A change object put by hand, named as if written at ``stamp_ms``."""
    key = f"{FEED}{stamp_ms:013d}-{uuid.uuid4().hex}.json"
    s3tests.s3_client(endpoint).put_object(Bucket=bucket_name, Key=key, Body=body)
    return key


def a_record(name: str) -> FileRecord:
    filename, data, metadata = make_wheel(name, "1.0")
    return record_for(filename, data, metadata).with_changes(backend_ref=f"cloud/{name}/{filename}")


def as_json(record: FileRecord) -> bytes:
    return json.dumps(record.to_dict(), sort_keys=True).encode()


def mark_of(cursor: str | None) -> int:
    assert cursor is not None
    return int(cursor.partition(".")[0])


# -- the feed between two backends ------------------------------------------------------


def test_uploads_and_yanks_on_a_reach_b_once_each(
    replicas: tuple[S3Backend, S3Backend],
) -> None:
    a, b = replicas
    assert b.changes_since(None)[0] == []
    first, _ = put(a, "feed-first", "1.0")
    assert first.backend_ref and first.upload_time > 1_700_000_000  # as put_file returned it
    changes, cursor = b.changes_since(None)
    assert changes == [first]
    assert b.changes_since(cursor)[0] == []
    second, _ = put(a, "feed-second", "1.0")
    changes, cursor = b.changes_since(cursor)
    assert changes == [second]
    a.set_yanked(first, "broken build")
    changes, cursor = b.changes_since(cursor)
    assert changes == [first.with_changes(yanked="broken build")]
    a.set_yanked(first, None)
    changes, cursor = b.changes_since(cursor)
    assert changes == [first]
    assert b.changes_since(cursor)[0] == []
    # The whole feed, in order: a reload reads it all and the last record per file wins.
    everything, _ = b.changes_since(None)
    assert [(r.filename, r.yanked) for r in everything] == [
        (first.filename, None),
        (second.filename, None),
        (first.filename, "broken build"),
        (first.filename, None),
    ]
    # The feed is a dot folder: never listed as the repository's files.
    assert sorted(e.filename for e in a.list_files()) == sorted([first.filename, second.filename])


def test_compaction_keeps_only_what_the_index_does_not_hold(
    replicas: tuple[S3Backend, S3Backend], moto_url: str, bucket: str
) -> None:
    a, b = replicas
    kept, _ = put(a, "feed-kept", "1.0")
    gone, _ = put(a, "feed-gone", "1.0")
    a.set_yanked(kept, "")  # supersedes kept's first record
    assert len(feed_keys(moto_url, bucket)) == 3
    a.compact_changes(lambda r: r.filename == gone.filename)
    assert [r for r in b.changes_since(None)[0]] == [kept.with_changes(yanked="")]
    assert len(feed_keys(moto_url, bucket)) == 1
    # A deleted file's record goes, whatever the index says.
    a.delete_file(kept)
    a.compact_changes(lambda r: False)
    assert feed_keys(moto_url, bucket) == []
    # update_index compacts after it wrote the index.
    later, _ = put(a, "feed-later", "1.0")
    assert len(feed_keys(moto_url, bucket)) == 1
    assert later.filename in indexed(a)
    assert feed_keys(moto_url, bucket) == []


def test_an_unreadable_change_is_skipped_once_and_compacted(
    replicas: tuple[S3Backend, S3Backend],
    moto_url: str,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = replicas
    garbage = write_change(moto_url, bucket, time.time_ns() // 1_000_000, b"{not json")
    stored, _ = put(a, "feed-readable", "1.0")
    with caplog.at_level(logging.WARNING, "pywharf_backends.s3.storage"):
        changes, cursor = b.changes_since(None)
        assert changes == [stored]
        assert f"unreadable change record {garbage}" in caplog.text
        caplog.clear()
        assert b.changes_since(cursor)[0] == []
        assert caplog.text == ""  # reported (skipped) once, not every round
    a.compact_changes(lambda r: False)
    assert garbage not in feed_keys(moto_url, bucket)
    assert len(feed_keys(moto_url, bucket)) == 1


def test_a_change_named_before_the_cursor_within_the_lag_window_is_reported_once(
    replicas: tuple[S3Backend, S3Backend], moto_url: str, bucket: str
) -> None:
    a, b = replicas
    put(a, "feed-now", "1.0")
    _, cursor = b.changes_since(None)
    mark = mark_of(cursor)
    # A writer whose clock is a minute behind, or whose PUT completed only now.
    late = a_record("feed-late")
    write_change(moto_url, bucket, mark - 60_000, as_json(late))
    # Older than the window: this feed never reports it (update_index will index it).
    write_change(moto_url, bucket, mark - (CHANGE_LAG_SECONDS + 10) * 1000, as_json(a_record("x")))
    changes, cursor = b.changes_since(cursor)
    assert changes == [late]
    assert b.changes_since(cursor)[0] == []
    # A writer whose clock is ten minutes ahead is reported, and does not hide the
    # changes of writers with the right time (the mark never passes the reader's clock).
    ahead = a_record("feed-ahead")
    write_change(moto_url, bucket, time.time_ns() // 1_000_000 + 600_000, as_json(ahead))
    changes, cursor = b.changes_since(cursor)
    assert changes == [ahead]
    assert mark_of(cursor) <= time.time_ns() // 1_000_000
    on_time, _ = put(a, "feed-on-time", "1.0")
    changes, cursor = b.changes_since(cursor)
    assert changes == [on_time]
    assert b.changes_since(cursor)[0] == []
    # A cursor this backend did not hand out (another process's) reads its window
    # again: records twice rather than one missed.
    again, _ = backend_on(moto_url, bucket).changes_since(cursor)
    assert {r.filename for r in again} >= {late.filename, ahead.filename, on_time.filename}


class RefuseChanges:
    """An S3 that answers 403 to PUTs of change objects (a bucket policy, say), until
    ``lifted``: botocore's ``before-send`` hook answers in place of the server."""

    def __init__(self, backend: S3Backend) -> None:
        self.lifted = False
        backend.client.meta.events.register("before-send.s3.PutObject", self.answer)

    def answer(self, request: Any, **_: Any) -> AWSResponse | None:
        if self.lifted or "/.pywharf-changes/" not in request.url:
            return None
        body = b"<Error><Code>AccessDenied</Code><Message>denied by policy</Message></Error>"
        return AWSResponse(request.url, 403, {}, Raw(body))


class Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self) -> Iterator[bytes]:
        yield self.body


def test_a_change_that_cannot_be_written_fails_no_upload_and_is_written_later(
    replicas: tuple[S3Backend, S3Backend], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = replicas
    refusal = RefuseChanges(a)
    with caplog.at_level(logging.WARNING, "pywharf_backends.s3.storage"):
        stored, _ = put(a, "feed-refused", "1.0")
    assert "could not publish the change of feed_refused-1.0" in caplog.text
    assert [e.filename for e in a.list_files()] == [stored.filename]  # stored all the same
    changes, cursor = b.changes_since(None)
    assert changes == []
    a.changes_since(None)  # still refused: kept for the next round
    refusal.lifted = True
    a.changes_since(None)  # the next sync round of the uploading server writes it
    assert b.changes_since(cursor)[0] == [stored]


def test_s3_unreachable_is_backend_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = backend_on(f"http://127.0.0.1:{port}", "nowhere")
    with pytest.raises(BackendUnavailable):
        backend.changes_since("0.1")
    with pytest.raises(BackendUnavailable):
        backend.compact_changes(lambda r: True)


def test_delete_state_removes_a_document_and_ignores_an_absent_one(
    replicas: tuple[S3Backend, S3Backend],
) -> None:
    a, b = replicas
    a.write_state("parts/one.json", b"{}", None)
    assert b.read_state("parts/one.json") is not None
    b.delete_state("parts/one.json")
    assert a.read_state("parts/one.json") is None
    b.delete_state("parts/one.json")  # absent: nothing happens


# -- what a sync round costs --------------------------------------------------------------


class Traffic:
    """The HTTP bytes one boto3 client sends and receives: request line, headers and
    body; status line, headers and body. Counted by botocore's event hooks, per call."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        self.sent = 0
        self.received = 0
        client.meta.events.register("before-send.s3", self.request)
        client.meta.events.register("after-call.s3", self.response)

    def request(self, request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else b""
        headers = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
        self.sent += len(request.method) + len(request.url) + 12 + headers + len(body)

    def response(self, http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        self.calls.append(model.name)
        headers = sum(len(k) + len(v) + 4 for k, v in http_response.headers.items())
        if model.has_streaming_output and http_response.status_code < 300:
            body = int(parsed.get("ContentLength", 0))  # read by the caller, not here
        else:
            body = len(http_response.content)
        self.received += 17 + headers + body

    def total(self) -> int:
        return self.sent + self.received

    def reset(self) -> None:
        self.calls, self.sent, self.received = [], 0, 0


SERVER_CONFIG = """
[cloud]
type = "s3"
bucket = "{bucket}"
endpoint_url = "{endpoint}"
read_secret = "cloud-read"
write_secret = "cloud-write"
"""


def test_one_new_file_reaches_another_replica_for_a_few_kilobytes(
    replicas: tuple[S3Backend, S3Backend], moto_url: str, bucket: str, tmp_path: Path
) -> None:
    a, _ = replicas
    put(a, "feed-old", "1.0")
    indexed(a)  # an index, and an empty feed, as after a scheduled update_index
    # Replica B: the core's own sync round (Repository.sync) on its own S3 client.
    text = SERVER_CONFIG.format(bucket=bucket, endpoint=moto_url)
    config = parse_repo_configs(parse_toml(text, "<test>"))["cloud"]
    b = Repository.open(config, tmp_path, KEYS, AccessCache(60, 60))
    assert isinstance(b.backend, S3Backend)
    traffic = Traffic(b.backend.client)
    b.sync()

    traffic.reset()
    b.sync()
    empty_round, empty_calls = traffic.total(), list(traffic.calls)
    assert empty_calls.count("ListObjectsV2") == 1  # the feed's whole cost
    reader = backend_on(moto_url, bucket)  # the feed alone, apart from the core's reads
    _, cursor = reader.changes_since(None)
    feed = Traffic(reader.client)
    reader.changes_since(cursor)
    assert feed.calls == ["ListObjectsV2"]

    new, _ = put(a, "feed-new", "1.0")
    traffic.reset()
    b.sync()
    new_file_round = traffic.total()
    assert b.index.snapshot.find("feed-new", new.filename) == new
    assert traffic.calls.count("ListObjectsV2") == 1
    print(
        f"S3 bytes per sync round of the replica: {empty_round} with nothing new "
        f"({', '.join(empty_calls)}), of which the feed {feed.total()} (sent {feed.sent}, "
        f"received {feed.received}); {new_file_round} "
        f"with one new file ({', '.join(traffic.calls)})"
    )
    assert feed.total() < 2_000
    assert empty_round < 10_000
    assert new_file_round < 1_000_000  # the bound; in fact a few KB
    assert new_file_round - empty_round < 10_000


# -- two real servers ---------------------------------------------------------------------


def test_replicas_list_each_others_uploads_without_update_index(
    start_server, tmp_path: Path, moto_url: str, bucket: str, dists
) -> None:
    a = s3tests.s3_server(start_server, tmp_path, moto_url, bucket)  # sync_index_interval = 1
    b = s3tests.s3_server(start_server, tmp_path, moto_url, bucket)
    wheel = dists.base_wheel.filename
    assert upload_file(a, dists.base_wheel.path, "Foo_Bar.baz", "1.0", s3tests.WRITE).ok
    page = "simple/foo-bar-baz/"
    took = wait_for(lambda: wheel in get(b, page, auth=s3tests.READ).text, timeout=10)
    print(f"replica B listed A's upload after {took:.1f} s (sync_index_interval = 1)")
    assert get(b, f"{page}{wheel}", auth=s3tests.READ).status_code == 302
    yank = requests.post(
        f"{a.url}{page}{wheel}/yank", auth=s3tests.WRITE, data={"reason": "bad"}, timeout=30
    )
    assert yank.status_code == 200, yank.text

    def yanked_on(server: Any) -> object:
        listing = get(server, page, auth=s3tests.READ, headers={"Accept": s3tests.JSON}).json()
        return next(f.get("yanked") for f in listing["files"] if f["filename"] == wheel)

    wait_for(lambda: yanked_on(b) == "bad", timeout=10)
    assert len(feed_keys(moto_url, bucket)) == 2  # the upload and the yank

    assert "1 files, 1 projects, index written" in s3tests.update_index(moto_url, bucket)
    assert feed_keys(moto_url, bucket) == []
    for server in (a, b):  # each reloads the new index (and the feed, empty now)
        wait_for(lambda s=server: int(get(s, "index_mtime/", auth=s3tests.READ).text) > 0, 10)
        assert wheel in get(server, page, auth=s3tests.READ).text
        assert yanked_on(server) == "bad"
