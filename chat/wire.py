"""Server frames, encoded once.

A message is serialized to its JSON object text a single time, when it is
stored (or read back); every frame that carries it (`message`, `messages`,
`history`) is spliced from that text, so a broadcast is never encoded again
per recipient, per batch or per history page.
"""

from __future__ import annotations

import json
import struct
from datetime import datetime
from typing import Any

from django.conf import settings

from .models import Message, Room

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def iso_utc(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_object(message: Message) -> dict:
    """The contract's fields, then this server's, each only when it has
    something to say: `reply_to` (a quote of the original), `edited` (when
    the text last changed), `rev` (the room's change counter at the
    message's last change) and `reactions` ({emoji: [usernames]})."""
    data: dict[str, Any] = {
        "id": message.id,
        "seq": message.seq,
        "room": message.room.slug,
        "user": message.author.username,
        "body": message.body,
        "created": iso_utc(message.created),
        "client_id": message.client_id,
    }
    if message.reply_to is not None:
        data["reply_to"] = quote_object(message.reply_to)
    if message.edited_at is not None:
        data["edited"] = iso_utc(message.edited_at)
    if message.rev:
        data["rev"] = message.rev
    reactions = getattr(message, "reaction_map", None)
    if reactions:
        data["reactions"] = reactions
    return data


def quote_object(original: Message) -> dict:
    """What a reply shows of the message it answers: its author and the
    start of its text (nothing of a removed one)."""
    if original.deleted_at is not None:
        return {
            "id": original.id,
            "seq": original.seq,
            "user": None,
            "excerpt": "",
            "removed": True,
        }
    limit = settings.CHAT_QUOTE_CHARS
    body = " ".join(original.body.split())
    excerpt = body if len(body) <= limit else body[: limit - 1] + "\u2026"
    return {
        "id": original.id,
        "seq": original.seq,
        "user": original.author.username,
        "excerpt": excerpt,
    }


def message_json(message: Message) -> str:
    """The message object as JSON text: the unit every message frame is built from."""
    return _dumps(message_object(message))


def frame(kind: str, **fields: Any) -> str:
    return _dumps({"type": kind, **fields})


def message_frame(message_text: str) -> str:
    return '{"type":"message","message":' + message_text + "}"


def messages_frame(message_texts: list[str]) -> str:
    """One frame for several messages: a single one as a plain `message`."""
    if len(message_texts) == 1:
        return message_frame(message_texts[0])
    return '{"type":"messages","messages":[' + ",".join(message_texts) + "]}"


def history_frame(message_texts: list[str], has_more: bool, has_newer: bool | None = None) -> str:
    """has_newer: only in answers to `around` and `after` (newer messages exist)."""
    more = "true" if has_more else "false"
    newer = "" if has_newer is None else ',"has_newer":' + ("true" if has_newer else "false")
    return (
        '{"type":"history","messages":['
        + ",".join(message_texts)
        + '],"has_more":'
        + more
        + newer
        + "}"
    )


def hello_frame(
    *, username: str, room: Room, online: list[str], last_seq: int, **extras: Any
) -> str:
    return frame(
        "hello",
        user=username,
        room={"slug": room.slug, "name": room.name},
        online=online,
        last_seq=last_seq or None,
        **extras,
    )


def ack_frame(*, client_id: str | None, message_id: int, seq: int, of: str | None = None) -> str:
    """`of`: the frame type acknowledged, for every write but message.send."""
    if of is None:
        return frame("ack", client_id=client_id, id=message_id, seq=seq)
    return frame("ack", of=of, client_id=client_id, id=message_id, seq=seq)


def updated_frame(message_text: str) -> str:
    return '{"type":"message.updated","message":' + message_text + "}"


def changes_frame(message_texts: list[str], deleted: list[dict], last_change: int) -> str:
    return (
        '{"type":"changes","messages":['
        + ",".join(message_texts)
        + '],"deleted":'
        + _dumps(deleted)
        + ',"last_change":'
        + str(last_change)
        + "}"
    )


def error_frame(code: str, detail: str, **fields: Any) -> str:
    """`fields`: retry_after (rate_limited, unavailable), until (a timed mute)."""
    return frame("error", code=code, detail=detail, **fields)


PONG = frame("pong")
# Whether messages reach this worker from the others (the channel layer).
FANOUT_DEGRADED = frame("status", fanout="degraded")
FANOUT_OK = frame("status", fanout="ok")


class Outgoing:
    """One frame on its way to many sockets: its wire encodings (WebSocket,
    Server-Sent Events) are built once, on first use, and shared by all.
    `seq`: the last message seq the frame carries (an SSE event id), if any."""

    __slots__ = ("text", "seq", "_ws", "_sse", "_sse_chunk")

    def __init__(self, text: str, seq: int | None = None):
        self.text, self.seq = text, seq
        self._ws: bytes | None = None
        self._sse: bytes | None = None
        self._sse_chunk: bytes | None = None

    @property
    def ws(self) -> bytes:
        if self._ws is None:
            self._ws = websocket_text_frame(self.text)
        return self._ws

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = sse_event(self.text, self.seq)
        return self._sse

    @property
    def sse_chunk(self) -> bytes:
        """The SSE event as one chunk of an HTTP/1.1 chunked response."""
        if self._sse_chunk is None:
            self._sse_chunk = http_chunk(self.sse)
        return self._sse_chunk


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse_event(text: str, event_id: int | None = None) -> bytes:
    """A Server-Sent Events event carrying one frame (frames are one line of
    JSON); with an id, a reconnecting EventSource sends it back as
    Last-Event-ID."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {text}\n\n".encode()


def websocket_text_frame(text: str) -> bytes:
    """The bytes of an unmasked, unfragmented WebSocket text frame (RFC 6455
    5.2), as a server sends it: built once per broadcast and written as they
    are to every local socket."""
    payload = text.encode("utf-8")
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload
