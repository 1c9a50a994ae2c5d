"""Presence: open and close a socket's entry in the shared store, announce
`join` and `leave`, and refresh this worker's entries on one heartbeat."""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from .. import events, presence, wire
from ..models import Room

logger = logging.getLogger(__name__)


async def _announce(room_id: int, kind: str, usernames, skip: str | None = None) -> None:
    for username in usernames:
        await events.send(
            events.room_group(room_id), events.room_frame(wire.frame(kind, user=username), skip)
        )


async def open_presence(*, room: Room, user, channel_name: str) -> list[str]:
    """Mark a socket online; announce `join` for the user's first socket.
    Returns who is online."""
    result = await presence.get_store().open(room.pk, user.username, channel_name)
    await _announce(room.pk, "leave", [u for u in result.expired if u not in result.online])
    if result.joined:  # the joining socket has it in its hello already
        await _announce(room.pk, "join", [user.username], skip=channel_name)
    _local_sockets.setdefault(room.pk, {})[channel_name] = user.username
    _ensure_heartbeat()
    return result.online


async def close_presence(*, room: Room, user, channel_name: str) -> None:
    sockets = _local_sockets.get(room.pk, {})
    sockets.pop(channel_name, None)
    if not sockets:
        _local_sockets.pop(room.pk, None)
    if await presence.get_store().close(room.pk, user.username, channel_name):
        await _announce(room.pk, "leave", [user.username])


# This worker's open sockets, {room_id: {channel_name: username}}: refreshed in
# the store on one heartbeat for the whole process, not a timer per socket.
_local_sockets: dict[int, dict[str, str]] = {}
_heartbeats: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def _ensure_heartbeat() -> None:
    loop = asyncio.get_running_loop()
    task = _heartbeats.get(loop)
    if task is None or task.done():
        _heartbeats[loop] = loop.create_task(_heartbeat_forever())


async def _heartbeat_forever() -> None:
    interval = max(settings.CHAT_PRESENCE_TTL / 3, 0.2)
    while True:
        await asyncio.sleep(interval)
        try:
            await heartbeat_once()
        except Exception:  # Redis away for a moment: try again next beat
            logger.exception("presence heartbeat failed")


async def heartbeat_once() -> None:
    """Refresh this worker's sockets and sweep out the expired sockets of dead
    workers, announcing `leave` for users who have none left."""
    store = presence.get_store()
    for room_id, sockets in list(_local_sockets.items()):
        result = await store.heartbeat(room_id, dict(sockets))
        await _announce(room_id, "leave", result.expired)
        await _announce(room_id, "join", result.returned)
