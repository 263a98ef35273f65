"""Item 20 of issue 14: ``/readyz`` and ``/metrics`` name no repository to strangers.
Anyone gets readiness as one yes or no (enough for a load balancer); the holder of the
``--metrics_token`` gets it per repository, and ``/metrics`` (Prometheus sends the token
as a bearer token or as a basic-auth password)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from wharftest.server import METRICS_AUTH, METRICS_TOKEN, get

SECRET_NAME = "skunkworks"


def config(tmp_path: Path) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[{SECRET_NAME}]\ntype = "file_system"\nread_secret = "r-s3cret"\nwrite_secret = "w"\n'
    )
    return str(path)


def test_strangers_get_readiness_without_names(start_server, tmp_path: Path) -> None:
    server = start_server("--config", config(tmp_path), "--metrics_token", METRICS_TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic Og=="}):
        ready = get(server, "readyz", headers=headers)
        assert ready.status_code == 200 and ready.json() == {"ready": True}
        assert SECRET_NAME not in ready.text
        refused = get(server, "metrics", headers=headers)
        assert refused.status_code == 401 and SECRET_NAME not in refused.text
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    # A repository's own secret is not the metrics token.
    assert get(server, "metrics", auth=(SECRET_NAME, "r-s3cret")).status_code == 401


@pytest.mark.parametrize("how", ["bearer", "basic"])
def test_the_metrics_token_gets_the_detail(start_server, tmp_path: Path, how: str) -> None:
    server = start_server("--config", config(tmp_path), "--metrics_token", METRICS_TOKEN)
    auth = {"auth": ("prometheus", METRICS_TOKEN)} if how == "basic" else {"headers": METRICS_AUTH}
    ready = get(server, "readyz", **auth)
    assert ready.status_code == 200
    assert ready.json()["repositories"][SECRET_NAME]["files"] == 0
    scraped = get(server, "metrics", **auth)
    assert scraped.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    files = {s.labels["repo"]: s.value for s in families["pywharf_index_files"].samples}
    assert files == {SECRET_NAME: 0}


def test_without_a_metrics_token_metrics_are_off(start_server, tmp_path: Path) -> None:
    server = start_server("--config", config(tmp_path))
    assert get(server, "readyz").json() == {"ready": True}
    assert get(server, "readyz", headers=METRICS_AUTH).json() == {"ready": True}
    off = get(server, "metrics")
    assert off.status_code == 404 and "--metrics_token" in off.text
    assert SECRET_NAME not in off.text
