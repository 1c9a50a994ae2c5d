"""The contract between the services and the sockets: group names, the events
sent to them over the channel layer, and the broadcast helpers.

Only chat.services sends events; the consumers (and, per worker, the room
hub) receive them. An event is a dict with a `type` naming the handler.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def room_group(room_id: int) -> str:
    """Everyone in a room."""
    return f"room.{room_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user."""
    return f"user.{user_id}"


def session_group(session_key: str) -> str:
    """Every socket opened with one login session."""
    return f"session.{session_key}"


def room_frame(text: str, skip: str | None = None) -> dict:
    """A frame every socket in the room forwards as it is (but the one named
    by `skip`)."""
    return {"type": "room.frame", "text": text, "skip": skip}


def room_message(seq: int, text: str) -> dict:
    """A new message frame, delivered in seq order."""
    return {"type": "room.message", "seq": seq, "text": text}


def room_ban(user_id: int) -> dict:
    return {"type": "room.ban", "user_id": user_id}


def socket_close(code: int) -> dict:
    return {"type": "socket.close", "code": code}


def layer():
    return get_channel_layer()


async def send(group: str, event: dict) -> None:
    await layer().group_send(group, event)


def send_sync(group: str, event: dict) -> None:
    channel_layer = layer()
    if channel_layer is not None:
        async_to_sync(channel_layer.group_send)(group, event)


def send_on_commit(group: str, event: dict) -> None:
    """Send once the current transaction commits (never for a rolled-back one)."""
    transaction.on_commit(lambda: send_sync(group, event))
