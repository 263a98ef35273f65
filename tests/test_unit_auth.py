"""``pywharf_core.auth``: basic-auth parsing and the access cache, by function call."""

from __future__ import annotations

import base64
import time

import pytest

from pywharf_core.auth import AccessCache, Credentials, parse_basic_auth
from pywharf_core.backend import Access


def basic(raw: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(
    "header, username, password",
    [
        (basic(b"team:s3cret"), "team", "s3cret"),
        (basic(b"team:s3cret", "basic"), "team", "s3cret"),  # the scheme is case-insensitive
        (basic(b"team:s3cret", "BASIC"), "team", "s3cret"),
        (basic(b"team:a:b:c"), "team", "a:b:c"),  # only the first colon separates
        (basic(b"team:"), "team", ""),
        (basic(b":secret"), "", "secret"),
        (basic("tëam:pässword".encode()), "tëam", "pässword"),
        ("Basic  " + base64.b64encode(b"team:x").decode() + "  ", "team", "x"),
    ],
)
def test_good_headers(header: str, username: str, password: str) -> None:
    assert parse_basic_auth(header) == Credentials(username, password)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer dGVhbTpzM2NyZXQ=",
        basic(b"team:s3cret", "Digest"),
        "Basic !!!not-base64!!!",
        "Basic dGVhbTpzM2NyZXQ",  # padding missing
        "Basic dGVhbTpz M2NyZXQ=",  # a space inside
        basic(b"no colon here"),
        basic(b"team:\xff\xfe"),  # not UTF-8
    ],
)
def test_garbage_headers_are_no_credentials(header: str | None) -> None:
    assert parse_basic_auth(header) is None


@pytest.mark.parametrize("header", ["Basic é", "Basic dGVhbTpz\u00e9M2NyZXQ="])
def test_non_ascii_headers_are_no_credentials(header: str) -> None:
    # Starlette decodes header bytes as latin-1, so any byte >= 0x80 arrives like this.
    assert parse_basic_auth(header) is None


def test_credentials_repr_hides_the_password() -> None:
    text = repr(Credentials("team", "hunter2-secret"))
    assert "team" in text and "hunter2-secret" not in text


class Checker:
    """A backend's check_access stand-in that counts its calls."""

    def __init__(self, answers: dict[str, Access]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, secret: str) -> Access:
        self.calls.append(secret)
        return self.answers.get(secret, Access.NONE)


def test_positive_decisions_are_remembered_per_repo_and_secret() -> None:
    cache = AccessCache(60, 60)
    check = Checker({"r": Access.READ, "w": Access.WRITE})
    assert cache.lookup("team", "r") is None
    assert cache.decide("team", "r", check) is Access.READ
    assert cache.decide("team", "r", check) is Access.READ
    assert cache.decide("team", "w", check) is Access.WRITE
    assert cache.lookup("team", "w") is Access.WRITE
    assert check.calls == ["r", "w"]
    # the same secret for another repository is another question
    assert cache.decide("other", "r", check) is Access.READ
    assert check.calls == ["r", "w", "r"]


def test_refusals_are_never_remembered() -> None:
    cache = AccessCache(60, 60)
    check = Checker({})
    for _ in range(3):
        assert cache.decide("team", "wrong", check) is Access.NONE
    assert check.calls == ["wrong"] * 3
    assert cache.lookup("team", "wrong") is None


def test_a_zero_lifetime_disables_caching_for_that_access() -> None:
    cache = AccessCache(read_expires=0, write_expires=60)
    check = Checker({"r": Access.READ, "w": Access.WRITE})
    for _ in range(2):
        cache.decide("team", "r", check)
        cache.decide("team", "w", check)
    assert check.calls == ["r", "w", "r"]


def test_entries_expire_after_their_access_lifetime() -> None:
    cache = AccessCache(read_expires=0.05, write_expires=60)
    check = Checker({"r": Access.READ, "w": Access.WRITE})
    cache.decide("team", "r", check)
    cache.decide("team", "w", check)
    time.sleep(0.08)
    assert cache.lookup("team", "r") is None
    assert cache.lookup("team", "w") is Access.WRITE
    assert cache.decide("team", "r", check) is Access.READ
    assert check.calls == ["r", "w", "r"]


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = AccessCache(60, 60, max_entries=2)
    check = Checker({"a": Access.READ, "b": Access.READ, "c": Access.WRITE})
    cache.decide("team", "a", check)
    cache.decide("team", "b", check)
    assert cache.lookup("team", "a") is Access.READ  # "a" is now the most recent
    cache.decide("team", "c", check)
    assert cache.lookup("team", "b") is None
    assert cache.lookup("team", "a") is Access.READ
    assert cache.lookup("team", "c") is Access.WRITE


def test_clear_forgets_everything() -> None:
    cache = AccessCache(60, 60)
    check = Checker({"r": Access.READ})
    cache.decide("team", "r", check)
    cache.clear()
    assert cache.lookup("team", "r") is None
    cache.decide("team", "r", check)
    assert check.calls == ["r", "r"]
