"""Server frames, encoded once: a broadcast is serialized a single time and the
same text goes to every recipient."""

from __future__ import annotations

import json

from .models import Message, Room

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def iso_utc(value) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_object(message: Message) -> dict:
    return {
        "id": message.id,
        "seq": message.seq,
        "room": message.room.slug,
        "user": message.author.username,
        "body": message.body,
        "created": iso_utc(message.created),
        "client_id": message.client_id,
    }


def frame(kind: str, **fields) -> str:
    return _dumps({"type": kind, **fields})


def message_frame(message: Message) -> str:
    return frame("message", message=message_object(message))


_MESSAGE_PREFIX = '{"type":"message","message":'


def batch_frame(message_frames: list[str]) -> str:
    """One frame for several message frames: a single one as it is, more as a
    `messages` frame, spliced from their text without decoding it again."""
    if len(message_frames) == 1:
        return message_frames[0]
    cut = len(_MESSAGE_PREFIX)
    return '{"type":"messages","messages":[' + ",".join(f[cut:-1] for f in message_frames) + "]}"


def history_frame(messages: list[Message], has_more: bool) -> str:
    return frame("history", messages=[message_object(m) for m in messages], has_more=has_more)


def hello_frame(*, username: str, room: Room, online: list[str], last_seq: int) -> str:
    return frame(
        "hello",
        user=username,
        room={"slug": room.slug, "name": room.name},
        online=online,
        last_seq=last_seq or None,
    )


def ack_frame(message: Message) -> str:
    return frame("ack", client_id=message.client_id, id=message.id, seq=message.seq)


def error_frame(code: str, detail: str, **fields) -> str:
    """`fields`: retry_after (rate_limited), until (a timed mute)."""
    return frame("error", code=code, detail=detail, **fields)
