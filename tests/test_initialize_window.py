"""Item 19 of issue 14: without ``--initialize_secret``, ``POST /initialize/`` may replace
an untouched embedded default only for the service-container flow: a server started in
environment mode, asked from loopback or a private address (as a trusted proxy forwards
it), with a warning in the log. (tests/test_container.py replays the flow itself.)"""

from __future__ import annotations

import pytest
import requests
from wharftest.server import get

from pywharf_core.runtime import is_local_address

NEW_CONFIG = '[fresh]\ntype = "file_system"\nread_secret = "fresh-r"\nwrite_secret = "fresh-w"\n'


def post_config(url: str, **headers: str) -> requests.Response:
    return requests.post(
        url + "initialize/", data={"config": NEW_CONFIG}, headers=headers, timeout=30
    )


def test_a_server_started_from_the_command_line_has_no_open_window(start_server) -> None:
    server = start_server()  # listening on loopback, embedded default untouched
    refused = post_config(server.url)
    assert refused.status_code == 403, refused.text
    assert "--initialize_secret" in refused.text and "environment mode" in refused.text
    assert get(server, "simple/", auth=("local", server.read_secret)).status_code == 200
    assert get(server, "simple/", auth=("fresh", "fresh-r")).status_code == 401


def test_environment_mode_takes_it_from_loopback_with_a_warning(start_server) -> None:
    server = start_server(env_mode=True)
    accepted = post_config(server.url)
    assert accepted.status_code == 200, accepted.text
    assert get(server, "simple/", auth=("fresh", "fresh-r")).status_code == 200
    log = server.log_text()
    assert "WARNING" in log and "accepted without a secret" in log and "127.0.0.1" in log


def test_environment_mode_refuses_a_public_address_behind_a_trusted_proxy(start_server) -> None:
    server = start_server(env_mode=True, env={"PYWHARF_COMMAND_TRUSTED_PROXY": "127.0.0.1"})
    # The proxy appends the address it saw; what the client wrote further left is not believed.
    for forwarded in ("203.0.113.7", "10.0.0.8, 203.0.113.7", "2001:db8::1"):
        refused = post_config(server.url, **{"X-Forwarded-For": forwarded})
        assert refused.status_code == 403, (forwarded, refused.text)
        assert "loopback or private" in refused.text
    assert get(server, "simple/", auth=("local", server.read_secret)).status_code == 200
    accepted = post_config(server.url, **{"X-Forwarded-For": "203.0.113.7, 172.17.0.1"})
    assert accepted.status_code == 200, accepted.text
    assert "from 172.17.0.1 accepted without a secret" in server.log_text()


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.17.0.1", True),  # the Docker bridge a service container sees
        ("192.168.1.20", True),
        ("fd00::5", True),
        ("fe80::1", True),
        ("::ffff:172.17.0.1", True),
        ("8.8.8.8", False),
        ("203.0.113.7", False),
        ("::ffff:8.8.8.8", False),
        ("2606:4700::1111", False),
        ("not-an-address", False),
        ("", False),
        (None, False),
    ],
)
def test_is_local_address(address: str | None, local: bool) -> None:
    assert is_local_address(address) is local
