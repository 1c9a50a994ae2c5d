"""The contract between the services and the sockets: group names, close
codes, the events sent over the channel layer, and the broadcast helpers.

Only chat.services sends events. Each worker's hub (chat.hub) receives them,
once per worker, and applies them to its local sockets. An event is a dict
whose `type` names the hub's handler; room events carry the room's id.
"""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

# Every worker's hub is in this group: events about users and sessions, which
# may have sockets in any room on any worker.
CONTROL_GROUP = "control"


class Close:
    """WebSocket close codes (the contract's, then this server's)."""

    SESSION_ENDED = 4401  # not logged in, or the session ended
    NO_ACCESS = 4403  # no such room, not a member, banned
    FRAME_TOO_LARGE = 4009  # a client frame over the limit
    LEFT = 4410  # the user left the room: do not reconnect (the page goes to the directory)
    RECONNECT = 4000  # reconnect now: access is checked again (age, password, privacy)
    TOO_FAR_BEHIND = 4008  # the client stopped reading: too much queued for it
    NO_ROUTE = 4404  # no WebSocket endpoint at that path
    TOO_MANY_SOCKETS = 4429  # the user has CHAT_MAX_SOCKETS_PER_USER open already
    SERVICE_RESTART = 1012  # the worker is restarting: reconnect at once
    TRY_AGAIN_LATER = 1013  # the worker is busy, or cannot open the socket now


def room_group(room_id: int) -> str:
    """The hubs of every worker with a socket in the room."""
    return f"room.{room_id}"


# ---------------------------------------------------------------- room events


def room_message(room_id: int, seq: int, text: str) -> dict:
    """A stored message (`text`: its JSON object), delivered in seq order.
    `at`: when it was sent, so that a worker can tell how far behind it is."""
    return {"type": "room.message", "room": room_id, "seq": seq, "text": text, "at": time.time()}


def room_frame(
    room_id: int,
    text: str,
    skip: str | None = None,
    user_id: int | None = None,
    sheddable: bool = False,
) -> dict:
    """A frame every socket in the room gets as it is (typing, join, leave),
    but the one whose connection id is `skip`; with `user_id`, only that
    user's sockets (their read position moved on another one). A worker that
    is behind drops a `sheddable` one (typing) rather than send it late."""
    event = {"type": "room.frame", "room": room_id, "text": text, "skip": skip}
    if user_id is not None:
        event["user_id"] = user_id
    if sheddable:
        event["shed"] = True
        event["at"] = time.time()
    return event


def room_presence(room_id: int, kind: str, username: str, skip: str | None = None) -> dict:
    """`kind` is join or leave: the user's first socket in the room opened,
    or their last closed (the socket `skip` is not told)."""
    return {"type": "room.presence", "room": room_id, "kind": kind, "user": username, "skip": skip}


def room_deleted(
    room_id: int, *, message_id: int, seq: int, rev: int = 0, by: str = "moderator"
) -> dict:
    """A message was removed (`by` its author or a moderator): gone from
    history, and sockets are told. `rev`: the room's change number for it."""
    return {
        "type": "room.deleted",
        "room": room_id,
        "id": message_id,
        "seq": seq,
        "rev": rev,
        "by": by,
    }


def room_changed(room_id: int, *, seq: int, rev: int, text: str) -> dict:
    """A stored message changed (edited, reacted to): `text` is its JSON as
    it is now, `rev` its change number (a later one wins)."""
    return {"type": "room.changed", "room": room_id, "seq": seq, "rev": rev, "text": text}


def room_close(room_id: int, *, code: int, user_id: int | None = None) -> dict:
    """Close the room's sockets of `user_id` (all of the room's with None)."""
    return {"type": "room.close", "room": room_id, "code": code, "user_id": user_id}


# ---------------------------------------------------------------- control events


def close_sockets(*, code: int, user_id: int | None = None, session_key: str | None = None) -> dict:
    """Close every socket of a user, or of one login session, in every room."""
    return {"type": "control.close", "code": code, "user_id": user_id, "session_key": session_key}


# ---------------------------------------------------------------- sending


def layer(alias: str | None = None):
    return get_channel_layer() if alias is None else get_channel_layer(alias)


async def send(group: str, event: dict) -> None:
    await layer().group_send(group, event)


def send_sync(group: str, event: dict) -> None:
    channel_layer = layer()
    if channel_layer is not None:
        async_to_sync(channel_layer.group_send)(group, event)


def send_on_commit(group: str, event: dict) -> None:
    """Send once the current transaction commits (never for a rolled-back one)."""
    transaction.on_commit(lambda: send_sync(group, event))
