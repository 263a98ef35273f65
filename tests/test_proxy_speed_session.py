"""The upstream session reads the environment once a host, and what it reads is what
requests itself would: proxies, no_proxy per host, the CA bundle."""

from __future__ import annotations

import pytest
import requests

from pywharf_core.upstream import _session


@pytest.mark.parametrize(
    "url",
    [
        "http://pypi.example/simple/a/",
        "https://pypi.example/simple/a/",
        "https://files.example/packages/a-1.0-py3-none-any.whl",
        "http://127.0.0.1:8080/simple/a/",
    ],
)
def test_settings_are_those_requests_reads_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3129")
    monkeypatch.setenv("NO_PROXY", "files.example,127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    session = _session()
    expected = requests.Session().merge_environment_settings(url, {}, True, None, None)
    for _ in range(2):  # read, then remembered
        assert session.merge_environment_settings(url, {}, True, None, None) == expected


def test_the_environment_is_read_once_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    session = _session()
    first = session.merge_environment_settings("http://pypi.example/a/", {}, True, None, None)
    first["proxies"]["http"] = "changed by a caller"  # a copy: the memo is not touched
    monkeypatch.setenv("HTTP_PROXY", "http://other.invalid:1")
    again = session.merge_environment_settings("http://pypi.example/b/", {}, False, None, None)
    assert again["proxies"] == {"http": "http://proxy.invalid:3128"}
    assert again["stream"] is False
    # What a call passes itself is still merged by requests.
    given = session.merge_environment_settings(
        "http://pypi.example/c/", {"http": "http://mine.invalid:9"}, True, None, None
    )
    assert given["proxies"]["http"] == "http://mine.invalid:9"
