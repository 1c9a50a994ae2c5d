"""Validation of client frames: the one place that decides what is a bad frame.

Every rule here answers with a FrameError whose code is one of the contract's
error codes; the consumer turns it into an `error` frame and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeGuard

from django.conf import settings

from . import text

CLIENT_TYPES = (
    "message.send",
    "typing",
    "history",
    "ping",
    "read",
    "message.edit",
    "message.delete",
    "reaction",
)
# seq values are stored in a signed 64-bit column.
MAX_SEQ = 2**63 - 1


class FrameError(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class SendMessage:
    body: str
    client_id: str | None
    reply_to: int | None = None


@dataclass(frozen=True)
class EditMessage:
    """Replace the text of one's own message (an extension)."""

    id: int
    body: str
    client_id: str | None


@dataclass(frozen=True)
class DeleteMessage:
    """Remove one's own message (an extension)."""

    id: int
    client_id: str | None


@dataclass(frozen=True)
class React:
    """Add (`on`) or take back one's emoji on a message (an extension)."""

    id: int
    emoji: str
    on: bool
    client_id: str | None


# Writes: counted against the message rate limit, not the frame budget.
WRITES = (SendMessage, EditMessage, DeleteMessage, React)


@dataclass(frozen=True)
class Typing:
    pass


@dataclass(frozen=True)
class HistoryRequest:
    """Older messages (`before`), or, as extensions, the messages around a
    seq (`around`: the page a search result opens at) or after one
    (`after`: the newer side of such a page). At most one of the three."""

    before: int | None
    limit: int
    around: int | None = None
    after: int | None = None

    @property
    def from_memory(self) -> bool:
        """Whether the room hub's memory may answer (the latest pages only)."""
        return self.around is None and self.after is None


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Read:
    """The reader has seen every message up to `seq` (an extension)."""

    seq: int


ClientFrame = (
    SendMessage | Typing | HistoryRequest | Ping | Read | EditMessage | DeleteMessage | React
)


def bad(detail: str) -> FrameError:
    return FrameError("bad_request", detail)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(value: str, field: str) -> None:
    if "\x00" in value:
        raise bad(f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(f"{field} is not valid Unicode (lone surrogate)") from None


def parse_client_frame(text: str) -> ClientFrame:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise bad("frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("frame must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise bad("frame needs a string 'type'")
    if kind == "message.send":
        return _parse_send(data)
    if kind == "history":
        return _parse_history(data)
    if kind == "typing":
        return Typing()
    if kind == "ping":
        return Ping()
    if kind == "read":
        return _parse_read(data)
    if kind == "message.edit":
        return EditMessage(
            id=_message_id(data, kind), body=_body(data, kind), client_id=_client_id(data)
        )
    if kind == "message.delete":
        return DeleteMessage(id=_message_id(data, kind), client_id=_client_id(data))
    if kind == "reaction":
        return _parse_reaction(data)
    raise bad(f"unknown frame type {kind[:64]!r}; expected one of {', '.join(CLIENT_TYPES)}")


def _parse_send(data: dict) -> SendMessage:
    body = _body(data, "message.send")
    client_id = _client_id(data)
    reply_to = data.get("reply_to")
    if reply_to is not None:
        reply_to = _message_id(data, "message.send", field="reply_to")
    return SendMessage(body=body, client_id=client_id, reply_to=reply_to)


def _message_id(data: dict, kind: str, field: str = "id") -> int:
    value = data.get(field)
    if not (_is_int(value) and 1 <= value <= MAX_SEQ):
        raise bad(f"{kind} needs a message id (a whole number) in '{field}'")
    return value


def _parse_reaction(data: dict) -> React:
    emoji = data.get("emoji")
    if not isinstance(emoji, str) or emoji not in settings.CHAT_REACTIONS:
        raise bad(f"reaction 'emoji' must be one of {' '.join(settings.CHAT_REACTIONS)}")
    on = data.get("on", True)
    if not isinstance(on, bool):
        raise bad("reaction 'on' must be true (add) or false (take back)")
    return React(id=_message_id(data, "reaction"), emoji=emoji, on=on, client_id=_client_id(data))


def _body(data: dict, kind: str) -> str:
    body = data.get("body")
    if not isinstance(body, str):
        raise bad(f"{kind} needs a string 'body'")
    if text.is_blank(body):  # also zero-width or other invisible characters only
        raise bad("body must not be empty")
    _check_text(body, "body")
    if text.has_bidi_override(body):
        raise bad("body must not contain bidirectional override, embedding or isolate controls")
    limit = settings.CHAT_MAX_MESSAGE_LENGTH
    if len(body) > limit:
        raise FrameError("too_long", f"body is {len(body)} characters; the limit is {limit}")
    return body


def _client_id(data: dict) -> str | None:
    client_id = data.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
            raise bad("client_id must be a string of 1 to 64 characters")
        _check_text(client_id, "client_id")
    return client_id


def _parse_history(data: dict) -> HistoryRequest:
    seqs = {}
    for name in ("before", "around", "after"):
        value = data.get(name)
        if value is not None and not (_is_int(value) and 0 <= value <= MAX_SEQ):
            raise bad(f"history '{name}' must be a seq (a whole number, 0 or more)")
        seqs[name] = value
    if sum(value is not None for value in seqs.values()) > 1:
        raise bad("history takes one of 'before', 'around' and 'after'")
    limit = data.get("limit", settings.CHAT_HISTORY_PAGE)
    if not (_is_int(limit) and 1 <= limit <= settings.CHAT_HISTORY_MAX):
        raise bad(f"history 'limit' must be a whole number from 1 to {settings.CHAT_HISTORY_MAX}")
    return HistoryRequest(limit=limit, **seqs)


def _parse_read(data: dict) -> Read:
    seq = data.get("seq")
    if not (_is_int(seq) and 0 <= seq <= MAX_SEQ):
        raise bad("read 'seq' must be a seq (a whole number, 0 or more)")
    return Read(seq=seq)


def parse_after(raw: str | None) -> int | None:
    """The `after` query parameter of the WebSocket URL."""
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(MAX_SEQ)):
        raise bad("'after' must be a seq (a whole number, 0 or more)")
    after = int(raw)
    if after > MAX_SEQ:
        raise bad("'after' must be a seq (a whole number, 0 or more)")
    return after
