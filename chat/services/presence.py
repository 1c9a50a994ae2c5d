"""Presence: a worker's entry for a user in a room, opened with the user's
first local socket there and closed with the last, refreshed on the worker's
heartbeat; `join` and `leave` announced when a user's first entry anywhere
opens or their last one closes or expires."""

from __future__ import annotations

from collections.abc import Iterable

from .. import events, presence


async def _announce(
    room_id: int, kind: str, usernames: Iterable[str], skip: str | None = None
) -> None:
    for username in usernames:
        await events.send(
            events.room_group(room_id), events.room_presence(room_id, kind, username, skip)
        )


async def open_presence(*, room_id: int, username: str, conn_id: str, skip: str) -> list[str]:
    """Open `conn_id`'s entry for the user; announce `join` (to everyone but
    the socket `skip`, whose hello says it) if they were offline. Returns who
    is online."""
    result = await presence.get_store().open(room_id, username, conn_id)
    await _announce(room_id, "leave", [u for u in result.expired if u not in result.online])
    if result.joined:
        await _announce(room_id, "join", [username], skip=skip)
    return result.online


async def close_presence(*, room_id: int, username: str, conn_id: str) -> None:
    if await presence.get_store().close(room_id, username, conn_id):
        await _announce(room_id, "leave", [username])


async def refresh_presence(*, room_id: int, conn_id: str, usernames: list[str]) -> list[str]:
    """Refresh `conn_id`'s entries for these users and sweep out expired
    entries of every worker, announcing who left and who came back. Returns
    who is online."""
    result = await presence.get_store().heartbeat(room_id, conn_id, usernames)
    await _announce(room_id, "leave", result.expired)
    await _announce(room_id, "join", result.returned)
    return result.online
