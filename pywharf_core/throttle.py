"""Slowing down secret guessing: failed logins counted per client address.

After ``allowed`` failures an address is blocked for ``base_delay`` seconds, and each
further failure doubles the block up to ``max_delay``; blocked requests are answered
``429`` with ``Retry-After`` before any secret is checked, so guessing from one address
goes no faster than one try per block. An address is forgotten ``forget_after`` seconds
after its last failure.

What a flood of failures cannot do:

- block anyone else: addresses are counted apart (IPv6 by /64, the block one client
  holds; behind ``--trusted_proxy``, the forwarded address);
- block a secret the server has verified before: a request whose secret the access cache
  holds is not throttled (it reveals nothing and costs nothing);
- exhaust memory: at most ``max_addresses`` addresses are held, the least recently
  failed forgotten first.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RequestRefused


class TooManyAttempts(RequestRefused):
    """Too many failed logins from this address; ``retry_after`` seconds until the next try."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed logins from this address; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Failures:
    count: int
    last: float
    blocked_until: float


class FailureThrottle:
    def __init__(
        self,
        *,
        allowed: int = 10,
        base_delay: float = 5.0,
        max_delay: float = 300.0,
        forget_after: float = 900.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = allowed
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_addresses = max_addresses
        self._clock = clock
        self._table: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str | None) -> None:
        """Raise ``TooManyAttempts`` while ``address`` is blocked."""
        key = client_key(address)
        now = self._clock()
        with self._lock:
            entry = self._table.get(key)
            if entry is None or entry.blocked_until <= now:
                return
            wait = entry.blocked_until - now
        raise TooManyAttempts(max(1, math.ceil(wait)))

    def failed(self, address: str | None) -> None:
        """Count a failed login from ``address``."""
        key = client_key(address)
        now = self._clock()
        with self._lock:
            entry = self._table.pop(key, None)
            if entry is None or now - entry.last > self.forget_after:
                entry = _Failures(0, now, 0.0)
            entry.count += 1
            entry.last = now
            if entry.count >= self.allowed:
                excess = min(entry.count - self.allowed, 32)  # 2**32 s caps any delay
                entry.blocked_until = now + min(self.max_delay, self.base_delay * 2**excess)
            self._table[key] = entry  # the most recent failure goes last
            while len(self._table) > self.max_addresses:
                self._table.popitem(last=False)

    def __len__(self) -> int:
        return len(self._table)


def client_key(address: str | None) -> str:
    """The unit counted: an IPv4 address, or an IPv6 address's /64 (one subscriber's)."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
