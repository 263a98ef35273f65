"""Issue 16 on S3: token state and used ID-token ids live in the bucket, so two replicas
(two ROOTs, one bucket) agree on creation, revocation and replays."""

from __future__ import annotations

import uuid
from pathlib import Path

import requests
import test_backend_s3 as s3tests
from wharftest.oidcstub import GitHubOidc
from wharftest.server import WharfServer, get, wait_for

moto_url = s3tests.moto_url  # the fixtures
bucket = s3tests.bucket
PUBLISHER = '[{ provider = "github", repository = "acme/app", workflow = "release.yml" }]'


def replica(
    start_server, tmp_path: Path, endpoint: str, bucket_name: str, jwks: Path
) -> WharfServer:
    folder = tmp_path / uuid.uuid4().hex[:8]
    folder.mkdir()
    config, secret = s3tests.write_config(
        folder, endpoint, bucket_name, trusted_publishers=PUBLISHER
    )
    server: WharfServer = start_server(
        "--config", str(config), "--admin_secret", str(secret), "--oidc_jwks", str(jwks)
    )
    return server


def test_s3_replicas_share_tokens_and_used_jtis(
    start_server,
    tmp_path: Path,
    moto_url: str,
    bucket: str,
) -> None:
    github = GitHubOidc(tmp_path)
    first, second = (
        replica(start_server, tmp_path, moto_url, bucket, github.jwks_path) for _ in range(2)
    )
    made = requests.post(
        first.url + "r/cloud/tokens/",
        json={"permission": "read"},
        auth=("x", "cloud-write"),
        timeout=30,
    ).json()
    assert get(second, "r/cloud/simple/", auth=("x", made["token"])).status_code == 200
    gone = requests.delete(
        f"{second.url}r/cloud/tokens/{made['id']}", auth=("x", "cloud-write"), timeout=30
    )
    assert gone.status_code == 204
    wait_for(  # sync_index_interval = 1 in this config
        lambda: get(first, "r/cloud/simple/", auth=("x", made["token"])).status_code == 401,
        timeout=10,
    )
    id_token = github.id_token()
    minted = requests.post(first.url + "_/oidc/mint-token", json={"token": id_token}, timeout=30)
    assert minted.status_code == 200, minted.text
    replay = requests.post(second.url + "_/oidc/mint-token", json={"token": id_token}, timeout=30)
    assert replay.status_code == 422 and "already used" in replay.text
    listed = s3tests.s3_client(moto_url).list_objects_v2(Bucket=bucket)["Contents"]
    s3_keys = [o["Key"] for o in listed]
    assert any(k.endswith("tokens.json") for k in s3_keys), s3_keys
    assert any(k.endswith("oidc-jti.json") for k in s3_keys), s3_keys
