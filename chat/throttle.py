"""Counting attempts against `<count>/<seconds>` limits, shared by every
worker: the counters live in Django's cache, which is Redis when REDIS_URL is
set (one in-memory cache per process otherwise, which is one process).

A limit is a fixed window: the first attempt of a window creates its counter
with the window's lifetime, and every attempt increments it atomically (Redis
INCR). Once `count` attempts are in, further ones are refused until the
window ends, and `retry_after` says when that is. What is counted (failures
only, or every attempt) is the caller's choice.

While Redis is away (down, stalled, restarting) nothing is counted and
nobody is refused, as with the socket budgets (chat.limits): the limits fail
open, with a warning in the log, rather than failing every login, sign-up and
search with a server error.

Keys are hashed, so a username or an address of any length or alphabet makes
a safe cache key and never appears in Redis as such.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time

from django.core.cache import cache

from .redis import unless_redis_is_away

Rate = tuple[int, int] | None  # (count, seconds); None: no limit


def _key(scope: str, subject: str, rate: tuple[int, int], now: float) -> str:
    window = int(now // rate[1])
    digest = hashlib.sha256(f"{scope}\0{subject}".encode()).hexdigest()[:32]
    return f"throttle:{scope}:{digest}:{rate[1]}:{window}"


def _seconds_left(rate: tuple[int, int], now: float) -> float:
    return rate[1] - (now % rate[1])


def record(scope: str, subject: str, rate: Rate) -> None:
    """Count one attempt of `subject` (a username, an address…) in `scope`."""
    if rate is None:
        return
    now = time.time()
    key = _key(scope, subject, rate, now)
    with unless_redis_is_away(f"throttle {scope}: attempt not counted"):
        # add() is a no-op when the counter exists; incr() is atomic either way.
        cache.add(key, 0, timeout=math.ceil(_seconds_left(rate, now)) + 1)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr: this attempt opens the next window
            cache.add(key, 1, timeout=rate[1] + 1)


def retry_after(scope: str, subject: str, rate: Rate) -> float | None:
    """Seconds until `subject` may try again, or None if it may now."""
    if rate is None:
        return None
    now = time.time()
    count = 0  # while Redis is away: let the attempt through
    with unless_redis_is_away(f"throttle {scope}: not checked"):
        count = cache.get(_key(scope, subject, rate, now)) or 0
    if count < rate[0]:
        return None
    return _seconds_left(rate, now)


def client_address(request) -> str:
    """The client's address as the server saw it: REMOTE_ADDR, never a
    client-sent X-Forwarded-For. Behind the proxy, Daphne runs with
    --proxy-headers and the proxy sets X-Forwarded-For to the address it
    saw ($remote_addr), which Daphne turns into REMOTE_ADDR; served
    directly, Daphne ignores the header. An IPv6 client counts as its /64
    (one machine commonly holds a whole /64)."""
    address = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 4:
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False))


def wait_text(seconds: float) -> str:
    """'in 40 seconds', 'in 12 minutes'…, for messages to people."""
    if seconds < 90:
        return f"in {math.ceil(seconds)} seconds"
    return f"in {math.ceil(seconds / 60)} minutes"
