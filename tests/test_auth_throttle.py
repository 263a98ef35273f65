"""Item 27 of issue 14: repeated wrong secrets from one client address are slowed down
(429 with Retry-After, before any secret is checked), without a flood of failures locking
out anyone else's address or a secret the server has verified before; memory is bounded."""

from __future__ import annotations

import pytest
import requests
from wharftest.server import get

from pywharf_core.throttle import FailureThrottle, TooManyAttempts, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **options: float) -> FailureThrottle:
    settings = {"allowed": 3, "base_delay": 5.0, "max_delay": 40.0, "forget_after": 100.0}
    return FailureThrottle(clock=clock, **{**settings, **options})  # type: ignore[arg-type]


def test_blocks_after_the_allowed_failures_and_doubles_the_block() -> None:
    clock = Clock()
    limiter = throttle(clock)
    for _ in range(2):
        limiter.failed("198.51.100.1")
        limiter.check("198.51.100.1")  # not yet
    limiter.failed("198.51.100.1")  # the third: blocked for 5 s
    with pytest.raises(TooManyAttempts) as blocked:
        limiter.check("198.51.100.1")
    assert blocked.value.retry_after == 5
    limiter.check("198.51.100.2")  # another address is not
    clock.now += 5
    limiter.check("198.51.100.1")  # the block is over
    limiter.failed("198.51.100.1")  # and the next failure doubles it
    with pytest.raises(TooManyAttempts) as again:
        limiter.check("198.51.100.1")
    assert again.value.retry_after == 10
    for _ in range(10):
        limiter.failed("198.51.100.1")
    with pytest.raises(TooManyAttempts) as capped:
        limiter.check("198.51.100.1")
    assert capped.value.retry_after == 40


def test_an_address_is_forgotten_after_a_quiet_while() -> None:
    clock = Clock()
    limiter = throttle(clock)
    for _ in range(2):
        limiter.failed("198.51.100.1")
    clock.now += 101
    limiter.failed("198.51.100.1")  # counts as the first again
    limiter.check("198.51.100.1")


def test_memory_is_bounded_and_the_oldest_go_first() -> None:
    clock = Clock()
    limiter = throttle(clock, allowed=1, max_addresses=100)
    limiter.failed("192.0.2.1")
    for i in range(10_000):
        limiter.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(limiter) == 100
    limiter.check("192.0.2.1")  # forgotten: the least recently failed
    with pytest.raises(TooManyAttempts):
        limiter.check("10.0.39.15")  # the most recent is held


def test_ipv6_is_counted_by_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == client_key("") == ""


def test_a_real_server_throttles_one_address_only(start_server) -> None:
    server = start_server("--trusted_proxy", "127.0.0.1")
    read, write = ("local", server.read_secret), ("local", server.write_secret)
    guesser = {"X-Forwarded-For": "203.0.113.66"}
    neighbour = {"X-Forwarded-For": "203.0.113.67"}
    # Verified before the flood: remembered by the access cache.
    assert get(server, "simple/", auth=read, headers=guesser).status_code == 200
    for attempt in range(10):
        wrong = get(server, "simple/", auth=("local", f"guess-{attempt}"), headers=guesser)
        assert wrong.status_code == 401, attempt
    throttled = get(server, "simple/", auth=("local", "guess-10"), headers=guesser)
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 5
    assert "Too many failed logins" in throttled.text
    # An unknown repository is throttled alike (it looks exactly like a wrong secret).
    assert get(server, "simple/", auth=("nope", "x"), headers=guesser).status_code == 429
    assert get(server, "r/nope/simple/", auth=("x", "y"), headers=guesser).status_code == 429
    # The secret verified before still passes from the throttled address...
    assert get(server, "simple/", auth=read, headers=guesser).status_code == 200
    # ...and other addresses are not throttled at all, right or wrong.
    assert get(server, "simple/", auth=write, headers=neighbour).status_code == 200
    assert get(server, "simple/", auth=("local", "typo"), headers=neighbour).status_code == 401
    # The proxy itself (the loopback peer) was never blamed for the guesses it forwarded.
    direct = requests.get(server.url + "simple/", auth=("local", "typo"), timeout=30)
    assert direct.status_code == 401


def test_guessing_the_initialize_secret_is_throttled_too(start_server) -> None:
    server = start_server("--initialize_secret", "init-s3cret")
    url = server.url + "initialize/"
    config = '[x]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n'
    for attempt in range(10):
        wrong = requests.post(
            url, data={"config": config, "initialize_secret": f"guess-{attempt}"}, timeout=30
        )
        assert wrong.status_code == 403, attempt
    throttled = requests.post(
        url, data={"config": config, "initialize_secret": "init-s3cret"}, timeout=30
    )
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
