"""Who is online in which room, shared by every worker.

A user is online in a room while any worker has an entry for them there: each
worker (chat.hub) opens one entry per user and room when the user's first
socket there opens on it and closes it with the last. Entries have an expiry
time and the worker refreshes its own on a heartbeat, so the entries of a
worker that died without running its disconnect handlers expire and are swept
away by any other worker.

Two stores with the same behaviour: Redis (several workers; every step is one
atomic Lua script, so exactly one socket is "first" or "last" across workers)
and process memory (the single-process local run without REDIS_URL).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from . import redis as redis_clients


@dataclass
class OpenResult:
    joined: bool  # the user's first socket in the room
    online: list[str]  # usernames online now, this socket included
    expired: list[str] = field(default_factory=list)  # users swept out on the way


@dataclass
class SweepResult:
    expired: list[str] = field(default_factory=list)  # last entry expired: now offline
    returned: list[str] = field(default_factory=list)  # refreshed after being swept
    online: list[str] = field(default_factory=list)  # everyone online now


def _member(username: str, conn_id: str) -> str:
    return f"{username}\n{conn_id}"


# Shared prologue: drop expired entries, returning users left with none.
_LUA_SWEEP = """
local gone = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[1], m)
  local u = string.match(m, '^(.-)\\n')
  if redis.call('HINCRBY', KEYS[2], u, -1) <= 0 then
    redis.call('HDEL', KEYS[2], u)
    table.insert(gone, u)
  end
end
"""

# KEYS: conns zset, users hash. ARGV: now, expiry, key ttl, member, username
_LUA_OPEN = (
    _LUA_SWEEP
    + """
local joined = 0
if redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[5], 1) == 1 then joined = 1 end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {joined, redis.call('HKEYS', KEYS[2]), gone}
"""
)

# KEYS: conns zset, users hash. ARGV: member, username
_LUA_CLOSE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    return 1
  end
end
return 0
"""

# KEYS: conns zset, users hash. ARGV: now, expiry, key ttl, then member, username pairs
_LUA_HEARTBEAT = (
    _LUA_SWEEP
    + """
local back = {}
for i = 4, #ARGV, 2 do
  if redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i]) == 1 then
    if redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1) == 1 then table.insert(back, ARGV[i + 1]) end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {gone, back, redis.call('HKEYS', KEYS[2])}
"""
)


def _decode(values: Iterable[bytes | str]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


class RedisPresence:
    def __init__(self, url: str, prefix: str, ttl: int):
        self.url, self.prefix, self.ttl = url, prefix, ttl

    def _client(self) -> Any:
        client: Any = redis_clients.async_client(self.url)  # carries its scripts
        if not hasattr(client, "presence_lua"):
            client.presence_lua = {
                "open": client.register_script(_LUA_OPEN),
                "close": client.register_script(_LUA_CLOSE),
                "heartbeat": client.register_script(_LUA_HEARTBEAT),
            }
        return client

    def _keys(self, room_id: int) -> list[str]:
        return [
            f"{self.prefix}:presence:{room_id}:conns",
            f"{self.prefix}:presence:{room_id}:users",
        ]

    def _times(self) -> tuple[float, float, int]:
        now = time.time()
        return now, now + self.ttl, self.ttl * 4

    async def open(self, room_id: int, username: str, conn_id: str) -> OpenResult:
        now, expiry, key_ttl = self._times()
        lua = self._client().presence_lua["open"]
        joined, online, gone = await lua(
            keys=self._keys(room_id),
            args=[now, expiry, key_ttl, _member(username, conn_id), username],
        )
        return OpenResult(bool(joined), sorted(_decode(online)), _decode(gone))

    async def close(self, room_id: int, username: str, conn_id: str) -> bool:
        lua = self._client().presence_lua["close"]
        return bool(
            await lua(keys=self._keys(room_id), args=[_member(username, conn_id), username])
        )

    async def heartbeat(self, room_id: int, conn_id: str, usernames: list[str]) -> SweepResult:
        """Refresh `conn_id`'s entries for these users in the room and sweep
        expired entries of every worker."""
        now, expiry, key_ttl = self._times()
        args: list = [now, expiry, key_ttl]
        for username in usernames:
            args += [_member(username, conn_id), username]
        gone, back, online = await self._client().presence_lua["heartbeat"](
            keys=self._keys(room_id), args=args
        )
        return SweepResult(_decode(gone), _decode(back), sorted(_decode(online)))

    async def online_counts(self, room_ids: list[int]) -> dict[int, int]:
        """How many users are online in each room: one round trip for all.
        Read only: entries of a dead worker count until a heartbeat sweeps
        them (within CHAT_PRESENCE_TTL)."""
        if not room_ids:
            return {}
        async with self._client().pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.hlen(self._keys(room_id)[1])
            counts = await pipe.execute()
        return dict(zip(room_ids, counts, strict=True))

    async def online_users(self, room_id: int) -> list[str]:
        """Who is online in the room (read only, as online_counts)."""
        return sorted(_decode(await self._client().hkeys(self._keys(room_id)[1])))


class MemoryPresence:
    """The same semantics in one process (no Redis configured)."""

    def __init__(self, ttl: int):
        self.ttl = ttl
        self.rooms: dict[int, dict[str, tuple[str, float]]] = {}  # {room: {member: (user, expiry)}}

    def _sweep(self, room_id: int, now: float) -> list[str]:
        conns = self.rooms.setdefault(room_id, {})
        expired = {c: u for c, (u, exp) in conns.items() if exp <= now}
        for conn_id in expired:
            del conns[conn_id]
        remaining = {u for u, _ in conns.values()}
        return sorted(set(expired.values()) - remaining)

    def _online(self, room_id: int) -> set[str]:
        return {u for u, _ in self.rooms.get(room_id, {}).values()}

    async def open(self, room_id: int, username: str, conn_id: str) -> OpenResult:
        now = time.time()
        gone = self._sweep(room_id, now)
        joined = username not in self._online(room_id)
        self.rooms[room_id][_member(username, conn_id)] = (username, now + self.ttl)
        return OpenResult(joined, sorted(self._online(room_id)), gone)

    async def close(self, room_id: int, username: str, conn_id: str) -> bool:
        if self.rooms.get(room_id, {}).pop(_member(username, conn_id), None) is None:
            return False
        return username not in self._online(room_id)

    async def heartbeat(self, room_id: int, conn_id: str, usernames: list[str]) -> SweepResult:
        now = time.time()
        gone = self._sweep(room_id, now)
        before = self._online(room_id)
        room = self.rooms[room_id]
        for username in usernames:
            room[_member(username, conn_id)] = (username, now + self.ttl)
        online = self._online(room_id)
        return SweepResult(gone, sorted(online - before), sorted(online))

    async def online_counts(self, room_ids: list[int]) -> dict[int, int]:
        now = time.time()
        return {
            room_id: len({u for u, exp in self.rooms.get(room_id, {}).values() if exp > now})
            for room_id in room_ids
        }

    async def online_users(self, room_id: int) -> list[str]:
        now = time.time()
        return sorted({u for u, exp in self.rooms.get(room_id, {}).values() if exp > now})


_store: RedisPresence | MemoryPresence | None = None


def get_store() -> RedisPresence | MemoryPresence:
    global _store
    if _store is None:
        if settings.REDIS_URL:
            _store = RedisPresence(
                settings.REDIS_URL, settings.CHAT_REDIS_PREFIX, settings.CHAT_PRESENCE_TTL
            )
        else:
            _store = MemoryPresence(settings.CHAT_PRESENCE_TTL)
    return _store


def reset_store() -> None:
    """Forget the configured store (tests switch settings)."""
    global _store
    _store = None
