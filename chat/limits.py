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

import logging
import threading
import time
from collections import defaultdict

import redis
from django.conf import settings

from . import redis as redis_clients
from .services.errors import RateLimited

logger = logging.getLogger(__name__)

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
    key, count, seconds, retry_after = window
    if settings.REDIS_URL:
        try:
            async with redis_clients.async_client(settings.REDIS_URL).pipeline(
                transaction=False
            ) as pipe:
                used, _ = await pipe.incr(key).expire(key, seconds + 1).execute()
        except redis.RedisError:
            logger.warning("budget %s not counted: Redis unavailable", kind)
            return
    else:
        used = _count_in_memory(key)
    if used > count:
        raise _refuse(kind, count, seconds, retry_after)


def spend_sync(*, kind: str, user_id: int) -> None:
    """The same, for blocking code (HTTP views, the database thread)."""
    window = _window(kind, user_id)
    if window is None:
        return
    key, count, seconds, retry_after = window
    if settings.REDIS_URL:
        try:
            pipe = redis_clients.sync_client(settings.REDIS_URL).pipeline(transaction=False)
            used, _ = pipe.incr(key).expire(key, seconds + 1).execute()
        except redis.RedisError:
            logger.warning("budget %s not counted: Redis unavailable", kind)
            return
    else:
        used = _count_in_memory(key)
    if used > count:
        raise _refuse(kind, count, seconds, retry_after)


# ---------------------------------------------------------------- open sockets

# KEYS: the user's sockets zset. ARGV: now, expiry, key ttl, cap, conn id.
_LUA_OPEN_SOCKET = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[5]) == false and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class SocketCounter:
    """Open sockets per user, across workers."""

    def __init__(self):
        self.memory: dict[int, dict[str, float]] = defaultdict(dict)

    def _key(self, user_id: int) -> str:
        return f"{settings.CHAT_REDIS_PREFIX}:sockets:{user_id}"

    def _times(self) -> tuple[float, float, int]:
        ttl = settings.CHAT_PRESENCE_TTL
        now = time.time()
        return now, now + ttl, ttl * 4

    async def open(self, user_id: int, conn_id: str) -> bool:
        """Count a new socket; False (and nothing counted) at the cap."""
        cap = settings.CHAT_MAX_SOCKETS_PER_USER
        now, expiry, key_ttl = self._times()
        if not settings.REDIS_URL:
            mine = self.memory[user_id]
            for conn, until in list(mine.items()):
                if until <= now:
                    del mine[conn]
            if conn_id not in mine and len(mine) >= cap:
                return False
            mine[conn_id] = expiry
            return True
        client = redis_clients.async_client(settings.REDIS_URL)
        if not hasattr(client, "sockets_lua"):
            client.sockets_lua = client.register_script(_LUA_OPEN_SOCKET)
        keys, args = [self._key(user_id)], [now, expiry, key_ttl, cap, conn_id]
        return bool(await client.sockets_lua(keys=keys, args=args))

    async def close(self, user_id: int, conn_id: str) -> None:
        if not settings.REDIS_URL:
            self.memory[user_id].pop(conn_id, None)
            if not self.memory[user_id]:
                del self.memory[user_id]
            return
        await redis_clients.async_client(settings.REDIS_URL).zrem(self._key(user_id), conn_id)

    async def refresh(self, conns: dict[int, list[str]]) -> None:
        """Keep this worker's sockets ({user id: [conn ids]}) counted."""
        _, expiry, key_ttl = self._times()
        if not settings.REDIS_URL:
            for user_id, conn_ids in conns.items():
                for conn_id in conn_ids:
                    self.memory[user_id][conn_id] = expiry
            return
        async with redis_clients.async_client(settings.REDIS_URL).pipeline(
            transaction=False
        ) as pipe:
            for user_id, conn_ids in conns.items():
                pipe.zadd(self._key(user_id), dict.fromkeys(conn_ids, expiry))
                pipe.expire(self._key(user_id), key_ttl)
            await pipe.execute()


sockets = SocketCounter()


def reset() -> None:
    """Forget what this process counted (tests switch settings)."""
    _memory_counts.clear()
    sockets.memory.clear()
