"""Limits per user, shared by every worker: frame budgets and open sockets.

Budgets are fixed windows counted in Redis (one INCR+EXPIRE round trip, no
thread hop), or in this process without Redis:

- `message`: `message.send` frames (CHAT_RATE_LIMIT);
- `frame`: every other client frame, invalid ones included (CHAT_FRAME_RATE).

Open sockets per user are entries with an expiry, like presence entries: the
worker that holds a socket refreshes it on its heartbeat, so the sockets of a
worker that died stop counting within CHAT_PRESENCE_TTL seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import defaultdict

from django.conf import settings

from . import redis as redis_clients
from .batching import Batcher
from .services.errors import RateLimited

# ---------------------------------------------------------------- budgets

_BUDGETS = {
    "message": ("CHAT_RATE_LIMIT", "Too many messages"),
    "frame": ("CHAT_FRAME_RATE", "Too many requests"),
}


def _window(kind: str, user_id: int) -> tuple[str, int, int, float] | None:
    """(key, allowed, seconds, retry_after) of the user's current window, or
    None when the budget is off."""
    rate = getattr(settings, _BUDGETS[kind][0])
    if rate is None:
        return None
    count, seconds = rate
    now = time.time()
    window = int(now // seconds)
    key = f"{settings.CHAT_REDIS_PREFIX}:budget:{kind}:{user_id}:{window}"
    return key, count, seconds, round((window + 1) * seconds - now, 3)


def _refuse(kind: str, count: int, seconds: int, retry_after: float) -> RateLimited:
    what = _BUDGETS[kind][1]
    return RateLimited(f"{what}: {count} per {seconds} s.", retry_after=retry_after)


_memory_counts: dict[str, int] = {}
_memory_lock = threading.Lock()


def _count_in_memory(key: str) -> int:
    with _memory_lock:
        if len(_memory_counts) > 10_000:  # old windows: drop them all, now and then
            _memory_counts.clear()
        _memory_counts[key] = _memory_counts.get(key, 0) + 1
        return _memory_counts[key]


async def spend(*, kind: str, user_id: int) -> None:
    """Count one `kind` (message or frame) for the user; RateLimited, with
    retry_after, when the window's budget is spent. While Redis is away the
    budgets are not counted (chat stays up; the outage is logged)."""
    window = _window(kind, user_id)
    if window is None:
        return
    key, _, seconds, _ = window
    used = None
    if settings.REDIS_URL:
        with redis_clients.unless_redis_is_away(f"budget {kind} not counted"):
            client = redis_clients.async_client(settings.REDIS_URL)
            async with client.pipeline(transaction=False) as pipe:
                used, _ = await pipe.incr(key).expire(key, seconds + 1).execute()
    else:
        used = _count_in_memory(key)
    _check(kind, used, window)


def spend_sync(*, kind: str, user_id: int) -> None:
    """The same, for blocking code (HTTP views, the database thread)."""
    window = _window(kind, user_id)
    if window is None:
        return
    key, _, seconds, _ = window
    used = None
    if settings.REDIS_URL:
        with redis_clients.unless_redis_is_away(f"budget {kind} not counted"):
            pipe = redis_clients.sync_client(settings.REDIS_URL).pipeline(transaction=False)
            used, _ = pipe.incr(key).expire(key, seconds + 1).execute()
    else:
        used = _count_in_memory(key)
    _check(kind, used, window)


def _check(kind: str, used: int | None, window: tuple) -> None:
    _, count, seconds, retry_after = window
    if used is not None and used > count:
        raise _refuse(kind, count, seconds, retry_after)


# ---------------------------------------------------------------- open sockets

# Several sockets at once. KEYS: each socket's user's zset. ARGV: now,
# expiry, key ttl, cap, then each socket's conn id. Returns 1 (counted) or 0
# (at the cap) per socket.
_LUA_OPEN_SOCKETS = """
local counted = {}
for i, key in ipairs(KEYS) do
  local conn = ARGV[4 + i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZSCORE', key, conn) == false and
     redis.call('ZCARD', key) >= tonumber(ARGV[4]) then
    counted[i] = 0
  else
    redis.call('ZADD', key, ARGV[2], conn)
    redis.call('EXPIRE', key, ARGV[3])
    counted[i] = 1
  end
end
return counted
"""


class SocketCounter:
    """Open sockets per user, across workers. Sockets that open (or close) in
    the same turn of a worker's event loop are counted in one Redis call."""

    def __init__(self):
        self.memory: dict[int, dict[str, float]] = defaultdict(dict)
        self.batchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Sockets that close while a refresh is on its way to Redis (None: no
        # refresh is): the refresh may land after their close and count them
        # again, so they are taken out once more after it.
        self.closed_during_refresh: set[tuple[int, str]] | None = None

    def _key(self, user_id: int) -> str:
        return f"{settings.CHAT_REDIS_PREFIX}:sockets:{user_id}"

    def _times(self) -> tuple[float, float, int]:
        ttl = settings.CHAT_PRESENCE_TTL
        now = time.time()
        return now, now + ttl, ttl * 4

    def _batcher(self, kind: str) -> Batcher:
        batchers = self.batchers.setdefault(asyncio.get_running_loop(), {})
        if kind not in batchers:
            run = self._open_many if kind == "open" else self._close_many
            batchers[kind] = Batcher(run)
        return batchers[kind]

    async def open(self, user_id: int, conn_id: str) -> bool:
        """Count a new socket; False (and nothing counted) at the cap."""
        if not settings.REDIS_URL:
            return self._open_in_memory(user_id, conn_id)
        return await self._batcher("open").submit((user_id, conn_id))

    def _open_in_memory(self, user_id: int, conn_id: str) -> bool:
        now, expiry, _ = self._times()
        mine = self.memory[user_id]
        for conn, until in list(mine.items()):
            if until <= now:
                del mine[conn]
        if conn_id not in mine and len(mine) >= settings.CHAT_MAX_SOCKETS_PER_USER:
            return False
        mine[conn_id] = expiry
        return True

    async def _open_many(self, sockets: list[tuple[int, str]]) -> list[bool]:
        client = redis_clients.async_client(settings.REDIS_URL)
        if not hasattr(client, "sockets_lua"):
            client.sockets_lua = client.register_script(_LUA_OPEN_SOCKETS)
        now, expiry, key_ttl = self._times()
        keys = [self._key(user_id) for user_id, _ in sockets]
        args = [now, expiry, key_ttl, settings.CHAT_MAX_SOCKETS_PER_USER]
        counted = await client.sockets_lua(keys=keys, args=args + [c for _, c in sockets])
        return [bool(flag) for flag in counted]

    async def close(self, user_id: int, conn_id: str) -> None:
        if self.closed_during_refresh is not None:
            self.closed_during_refresh.add((user_id, conn_id))
        if not settings.REDIS_URL:
            self.memory[user_id].pop(conn_id, None)
            if not self.memory[user_id]:
                del self.memory[user_id]
            return
        await self._batcher("close").submit((user_id, conn_id))

    async def _close_many(self, sockets: list[tuple[int, str]]) -> list[None]:
        async with redis_clients.async_client(settings.REDIS_URL).pipeline(
            transaction=False
        ) as pipe:
            for user_id, conn_id in sockets:
                pipe.zrem(self._key(user_id), conn_id)
            await pipe.execute()
        return [None] * len(sockets)

    async def count(self, user_id: int) -> int:
        """How many sockets the user has open now, on every worker (read only:
        a dead worker's count until its entries expire)."""
        now = time.time()
        if not settings.REDIS_URL:
            return sum(until > now for until in self.memory.get(user_id, {}).values())
        client = redis_clients.async_client(settings.REDIS_URL)
        return await client.zcount(self._key(user_id), now, "+inf")

    async def refresh(self, conns: dict[int, list[str]]) -> None:
        """Keep this worker's sockets ({user id: [conn ids]}) counted."""
        _, expiry, key_ttl = self._times()
        if not settings.REDIS_URL:
            for user_id, conn_ids in conns.items():
                for conn_id in conn_ids:
                    self.memory[user_id][conn_id] = expiry
            return
        self.closed_during_refresh = closed = set()
        try:
            async with redis_clients.async_client(settings.REDIS_URL).pipeline(
                transaction=False
            ) as pipe:
                for user_id, conn_ids in conns.items():
                    pipe.zadd(self._key(user_id), dict.fromkeys(conn_ids, expiry))
                    pipe.expire(self._key(user_id), key_ttl)
                await pipe.execute()
        finally:
            self.closed_during_refresh = None
        counted_again = [(user, conn) for user, conn in closed if conn in conns.get(user, ())]
        if counted_again:
            await self._close_many(counted_again)


sockets = SocketCounter()


def reset() -> None:
    """Forget what this process counted (tests switch settings)."""
    _memory_counts.clear()
    sockets.memory.clear()
