"""The s3 backend against a real S3 API server (moto's server mode) over HTTP on loopback:
the conformance suite, replicas sharing one bucket, presigned downloads, large files,
and S3 going away."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer
from pywharf_backends.s3 import S3Backend, S3Config
from pywharf_backends.s3.storage import create
from wharftest import clients
from wharftest.cli import pywharf
from wharftest.distbuilder import build_wheel, filler
from wharftest.server import METRICS_AUTH, METRICS_TOKEN, WharfServer, get, upload_file, wait_for

from pywharf_core.backend import BackendContext
from pywharf_core.testing import BackendConformance

READ = ("cloud", "cloud-read")
WRITE = ("cloud", "cloud-write")
JSON = "application/vnd.pypi.simple.v1+json"
KEYS = "testing-key-id:testing-secret-key"


def start_moto() -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server, url = start_moto()
    yield url
    server.stop()


def s3_client(endpoint: str) -> Any:
    key_id, secret = KEYS.split(":")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def new_bucket(endpoint: str) -> str:
    name = f"wharf-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(moto_url: str) -> str:
    return new_bucket(moto_url)


class TestS3Conformance(BackendConformance):
    @pytest.fixture
    def backend(self, moto_url: str, bucket: str) -> S3Backend:
        config = S3Config(bucket=bucket, endpoint_url=moto_url)
        return create(BackendContext("conf", Path("."), KEYS), config)


def write_config(folder: Path, endpoint: str, bucket: str, **extra: object) -> tuple[Path, Path]:
    lines = [
        "[cloud]",
        'type = "s3"',
        f'bucket = "{bucket}"',
        f'endpoint_url = "{endpoint}"',
        'read_secret = "cloud-read"',
        'write_secret = "cloud-write"',
        "sync_index_interval = 1",
        *(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items()),
    ]
    config = folder / "config.toml"
    config.write_text("\n".join(lines) + "\n")
    secret = folder / "admin.toml"
    secret.write_text(f'[cloud]\ntype = "s3"\nraw = "{KEYS}"\n')
    return config, secret


def s3_server(
    start_server, tmp_path: Path, endpoint: str, bucket: str, **extra: object
) -> WharfServer:
    folder = tmp_path / uuid.uuid4().hex[:8]
    folder.mkdir()
    config, secret = write_config(folder, endpoint, bucket, **extra)
    return start_server(
        "--config", str(config), "--admin_secret", str(secret), "--metrics_token", METRICS_TOKEN
    )


def sync_failures(server: WharfServer) -> int:
    report = get(server, "readyz", headers=METRICS_AUTH).json()
    return int(report["repositories"]["cloud"]["sync_failures"])


def update_index(endpoint: str, bucket: str) -> str:
    result = pywharf(
        "update_index",
        "s3",
        "cloud",
        "--secret",
        KEYS,
        "--bucket",
        bucket,
        "--endpoint_url",
        endpoint,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_upload_on_a_then_update_index_then_install_through_b(
    start_server, tmp_path: Path, moto_url: str, bucket: str, client_env: dict[str, str], dists
) -> None:
    a = s3_server(start_server, tmp_path, moto_url, bucket)
    b = s3_server(start_server, tmp_path, moto_url, bucket)
    clients.twine_upload(
        a.url + "simple/", *WRITE, dists.base_wheel.path, dists.app_wheel.path, env=client_env
    )
    # A lists its own uploads at once; B learns of them within a sync interval from the
    # change feed (tests/test_s3_changes.py), and from the index.
    assert get(a, "simple/demo-app/", auth=READ).status_code == 200
    assert update_index(moto_url, bucket).startswith(
        "update_index cloud: 2 files, 2 projects, index written"
    )

    wait_for(lambda: get(b, "simple/demo-app/", auth=READ).status_code == 200, timeout=3)
    download = get(b, f"simple/foo-bar-baz/{dists.base_wheel.filename}", auth=READ)
    assert download.status_code == 302
    assert download.headers["Location"].startswith(f"{moto_url}/{bucket}/cloud/foo-bar-baz/")
    assert (
        "Signature=" in download.headers["Location"]
        or "X-Amz-Signature=" in download.headers["Location"]
    )
    target = tmp_path / "target"
    clients.pip_install(b.index_url(*READ), target, "demo-app", env=client_env)
    out = clients.import_from(
        target, "import demo_app, foo_bar_baz; print(foo_bar_baz.VERSION)", client_env
    )
    assert out == "1.0"
    clients.uv_pip_install(b.index_url(*READ), tmp_path / "uv", "demo-app", env=client_env)
    # PEP 658 metadata comes from the bucket too.
    meta = get(
        b,
        f"simple/foo-bar-baz/{dists.base_wheel.filename}.metadata",
        auth=READ,
        allow_redirects=True,
    )
    assert meta.status_code == 200 and meta.content.startswith(b"Metadata-Version")
    # Unchanged storage: the job leaves the index alone.
    assert "index unchanged" in update_index(moto_url, bucket)


def test_replicas_racing_for_one_filename_store_exactly_one(
    start_server, tmp_path: Path, moto_url: str, bucket: str
) -> None:
    servers = [s3_server(start_server, tmp_path, moto_url, bucket) for _ in range(2)]
    variants = [
        build_wheel(tmp_path / f"v{i}", "race-s3", "1.0", summary=f"variant {i}") for i in range(8)
    ]
    barrier = threading.Barrier(8)
    results: dict[int, requests.Response] = {}

    def go(i: int) -> None:
        barrier.wait()
        results[i] = upload_file(servers[i % 2], variants[i].path, "race-s3", "1.0", WRITE)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in results.values()) == [200] + [409] * 7
    winner = next(i for i, r in results.items() if r.status_code == 200)
    s3 = s3_client(moto_url)
    stored = s3.get_object(Bucket=bucket, Key=f"cloud/race-s3/{variants[0].filename}")[
        "Body"
    ].read()
    assert hashlib.sha256(stored).hexdigest() == variants[winner].sha256
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="cloud/race-s3/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == [
        variants[0].filename,
        variants[0].filename + ".metadata",
    ]


def test_proxy_downloads_stream_through_the_server(
    start_server, tmp_path: Path, moto_url: str, bucket: str, client_env: dict[str, str], dists
) -> None:
    server = s3_server(start_server, tmp_path, moto_url, bucket, proxy_downloads=True)
    assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", WRITE).ok
    response = get(server, f"simple/foo-bar-baz/{dists.base_wheel.filename}", auth=READ)
    assert response.status_code == 200
    assert response.content == dists.base_wheel.path.read_bytes()
    assert response.headers["Content-Length"] == str(len(response.content))
    target = tmp_path / "t"
    clients.pip_install(server.index_url(*READ), target, "foo-bar-baz", env=client_env)
    assert (target / "foo_bar_baz" / "__init__.py").exists()


def test_one_gib_upload_keeps_server_memory_flat(
    start_server, tmp_path: Path, moto_url: str, bucket: str
) -> None:
    server = s3_server(start_server, tmp_path, moto_url, bucket)
    small = build_wheel(tmp_path / "small", "warm-s3", "1.0")
    assert upload_file(server, small.path, "warm-s3", "1.0", WRITE).ok  # load what uploads use
    baseline = server.pid_status("VmHWM")
    big = build_wheel(tmp_path / "big", "big-s3", "1.0", extra={"big_s3/blob.bin": filler(1 << 30)})
    response = upload_file(server, big.path, "big-s3", "1.0", WRITE, timeout=600)
    assert response.status_code == 200, response.text
    growth_kb = server.pid_status("VmHWM") - baseline
    print(f"server peak RSS grew {growth_kb / 1024:.1f} MB over a 1 GiB upload to S3")
    assert growth_kb < 100 * 1024
    s3 = s3_client(moto_url)
    head = s3.head_object(Bucket=bucket, Key=f"cloud/big-s3/{big.filename}")
    assert head["ContentLength"] == big.path.stat().st_size
    assert head["Metadata"]["sha256"] == big.sha256


def test_s3_gone_means_503_and_the_last_good_index(start_server, tmp_path: Path, dists) -> None:
    moto, endpoint = start_moto()
    try:
        bucket = new_bucket(endpoint)
        server = s3_server(start_server, tmp_path, endpoint, bucket)
        assert upload_file(server, dists.base_wheel.path, "Foo_Bar.baz", "1.0", WRITE).ok
        update_index(endpoint, bucket)
        wait_for(lambda: int(get(server, "index_mtime/", auth=READ).text) > 0, timeout=3)
        file_url = f"simple/foo-bar-baz/{dists.base_wheel.filename}"
        assert get(server, file_url, auth=READ).status_code == 302  # presigned, key known
    finally:
        moto.stop()
    refused = upload_file(server, dists.app_wheel.path, "demo-app", "0.1", WRITE)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) > 0
    assert "unavailable" in refused.text
    # A presigned URL into the outage could not work: the download says 503 instead.
    download = get(server, file_url, auth=READ)
    assert download.status_code == 503, download.headers
    assert int(download.headers["Retry-After"]) > 0
    page = get(server, "simple/foo-bar-baz/", auth=READ)
    assert page.status_code == 200 and dists.base_wheel.filename in page.text
    wait_for(lambda: sync_failures(server) > 0, 5)
    assert "cannot read the remote index" in server.log_text()


def test_admin_secret_must_be_a_key_pair(tmp_path: Path, moto_url: str, bucket: str) -> None:
    config, secret = write_config(tmp_path, moto_url, bucket)
    secret.write_text('[cloud]\ntype = "s3"\nraw = "no-colon-here"\n')
    result = pywharf(
        "server",
        str(tmp_path / "root"),
        "--config",
        str(config),
        "--admin_secret",
        str(secret),
        "--port",
        "0",
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        f"{config} [cloud]" in result.stderr and "ACCESS_KEY_ID:SECRET_ACCESS_KEY" in result.stderr
    )


def test_a_lost_conditional_race_is_a_conflict_not_an_error() -> None:
    # AWS answers racing conditional CompleteMultipartUpload calls with 409
    # ConditionalRequestConflict; it means what 412 means.
    from botocore.exceptions import ClientError
    from pywharf_backends.s3.storage import _is_precondition_failure

    def error(status: int, code: str) -> ClientError:
        return ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "op"
        )

    assert _is_precondition_failure(error(409, "ConditionalRequestConflict"))
    assert _is_precondition_failure(error(412, "PreconditionFailed"))
    assert not _is_precondition_failure(error(409, "BucketAlreadyOwnedByYou"))
    assert not _is_precondition_failure(error(500, "InternalError"))


def test_update_index_aborts_abandoned_multipart_uploads(
    moto_url: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pywharf_backends.s3 import storage

    client = s3_client(moto_url)
    mine = client.create_multipart_upload(Bucket=bucket, Key="cloud/x/x-1.0.tar.gz")
    other = client.create_multipart_upload(Bucket=bucket, Key="elsewhere/y-1.0.tar.gz")
    backend = create(
        BackendContext("cloud", Path("."), KEYS), S3Config(bucket=bucket, endpoint_url=moto_url)
    )
    # moto stamps every multipart upload with one fixed date in 2010: the age limit is
    # moved instead of the clock. Younger than the limit: left alone.
    monkeypatch.setattr(storage, "ABANDONED_UPLOAD_SECONDS", 100 * 365 * 86400)
    list(backend.list_files())
    assert len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 2
    monkeypatch.setattr(storage, "ABANDONED_UPLOAD_SECONDS", 24 * 3600)
    list(backend.list_files())
    left = [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"]]
    assert left == [other["UploadId"]] and mine["UploadId"] not in left


def test_replicas_share_the_upstream_cache(start_server, tmp_path: Path, moto_url: str) -> None:
    from wharftest.fakeindex import FakeIndex

    data = bytes(range(256)) * 4096
    fake = FakeIndex(served=data, declared=data)
    try:
        bucket = new_bucket(moto_url)
        a, b = (
            s3_server(start_server, tmp_path, moto_url, bucket, upstream_url=f'"{fake.url}"')
            for _ in range(2)
        )
        for server in (a, b):
            response = requests.get(
                f"{server.url}simple/fake/{fake.filename}", auth=READ, timeout=60
            )
            assert response.status_code == 200 and response.content == data
        assert fake.file_gets == 1  # b served a's cached copy from the bucket
        keys = [o["Key"] for o in s3_client(moto_url).list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys == [f"cloud/.pywharf-upstream/fake/{fake.filename}"]
        update_index(moto_url, bucket)  # the cache never becomes the repository's files
        assert "fake" not in get(a, "simple/", auth=READ).text
    finally:
        fake.server.stop()


def test_delete_on_one_replica_hides_the_file_on_the_other(
    start_server, tmp_path: Path, moto_url: str, bucket: str, client_env: dict[str, str], dists
) -> None:
    a = s3_server(start_server, tmp_path, moto_url, bucket)
    b = s3_server(start_server, tmp_path, moto_url, bucket)
    clients.twine_upload(
        a.url + "simple/", *WRITE, dists.base_wheel.path, dists.base_sdist.path, env=client_env
    )
    update_index(moto_url, bucket)
    wait_for(lambda: dists.base_wheel.filename in get(b, "simple/foo-bar-baz/", auth=READ).text, 3)
    url = f"simple/foo-bar-baz/{dists.base_wheel.filename}"
    assert requests.delete(a.url + url, auth=READ, timeout=10).status_code == 403
    assert requests.delete(a.url + url, auth=WRITE, timeout=10).status_code == 204
    keys = {o["Key"] for o in s3_client(moto_url).list_objects_v2(Bucket=bucket)["Contents"]}
    assert not any(k.startswith(f"cloud/foo-bar-baz/{dists.base_wheel.filename}") for k in keys)
    # B still holds the old index; the shared record of deletions hides the file.
    page = "simple/foo-bar-baz/"
    wait_for(lambda: dists.base_wheel.filename not in get(b, page, auth=READ).text, timeout=3)
    assert get(b, url, auth=READ).status_code == 404
    assert "1 files, 1 projects, index written" in update_index(moto_url, bucket)
    for server in (a, b):
        assert dists.base_wheel.filename not in get(server, "simple/foo-bar-baz/", auth=READ).text
        assert dists.base_sdist.filename in get(server, "simple/foo-bar-baz/", auth=READ).text


def test_promote_from_file_system_to_s3_then_install_from_the_target(
    start_server, tmp_path: Path, moto_url: str, bucket: str, client_env: dict[str, str], dists
) -> None:
    config, secret = write_config(tmp_path, moto_url, bucket)
    config.write_text(
        config.read_text() + '\n[staging]\ntype = "file_system"\nread_secret = "staging-read"\n'
        'write_secret = "staging-write"\n'
    )
    server = start_server("--config", str(config), "--admin_secret", str(secret))
    clients.twine_upload(
        server.url + "simple/", "staging", "staging-write", dists.base_wheel.path,
        dists.base_sdist.path, env=client_env,
    )  # fmt: skip
    response = requests.post(
        f"{server.url}simple/foo-bar-baz/1.0/promote",
        auth=("staging", "staging-write"),
        data={"to": "cloud", "to_secret": "cloud-write"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert sorted(response.json()["copied"]) == sorted(
        [dists.base_wheel.filename, dists.base_sdist.filename]
    )
    keys = {o["Key"] for o in s3_client(moto_url).list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"cloud/foo-bar-baz/{dists.base_wheel.filename}" in keys
    assert f"cloud/foo-bar-baz/{dists.base_wheel.filename}.metadata" in keys
    page = get(server, "simple/foo-bar-baz/", auth=READ, headers={"Accept": JSON}).json()
    assert {f["filename"]: f["hashes"]["sha256"] for f in page["files"]} == {
        dists.base_wheel.filename: dists.base_wheel.sha256,
        dists.base_sdist.filename: dists.base_sdist.sha256,
    }
    target = tmp_path / "target"
    clients.pip_install(server.index_url(*READ), target, "foo-bar-baz", env=client_env)
    assert (
        clients.import_from(target, "import foo_bar_baz; print(foo_bar_baz.VERSION)", client_env)
        == "1.0"
    )
    clients.uv_pip_install(server.index_url(*READ), tmp_path / "uv", "foo-bar-baz", env=client_env)
    # The index written from the bucket holds the same records.
    assert "2 files, 1 projects, index written" in update_index(moto_url, bucket)
