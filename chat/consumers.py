"""A room's conversation over one connection: authenticate, check access,
take a seat in the room's hub (chat.hub), validate client frames and call
services.

`RoomSession` is all of that, free of any transport: it writes frames to a
writer and is closed with a code. `RoomConsumer` is the session over a
WebSocket; chat.sse has it over an event stream (`RoomEventStream`, an
AsyncHttpConsumer) and answers POSTed frames with it.

Everything the room sends (messages, typing, presence, removals, closes)
reaches the connection through its worker's hub, which writes the same frame
to every local listener; no session has a channel on the channel layer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
import time
from urllib.parse import parse_qs

from channels import DEFAULT_CHANNEL_LAYER
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import hub, limits, selectors, services, sockets, wire
from .events import Close
from .frames import (
    WRITES,
    DeleteMessage,
    EditMessage,
    FrameError,
    HistoryRequest,
    Ping,
    React,
    Read,
    SendMessage,
    Typing,
    parse_after,
)
from .frames import parse_client_frame as parse_frame
from .redis import unless_redis_is_away

# Connection ids name a socket across workers (presence announcements skip
# the socket that caused them): a per-process prefix and a counter.
_CONN_PREFIX = secrets.token_hex(4)
_conn_numbers = itertools.count(1)
# Seconds a client waits before its next `history` request when one was in flight.
HISTORY_RETRY = 0.5
# Seconds a client is told to wait (close 1013 reason, `unavailable` errors):
# after something failed (the database, Redis), and when the worker is busy
# opening sockets (the page adds jitter to both).
RETRY_LATER = 2
RETRY_BUSY = 1
logger = logging.getLogger(__name__)


class RoomSession:
    """One member in one room, whatever carries the frames: a subclass sets
    `writer` (the interface of chat.sockets' writers) and says how the
    connection is accepted (`open_transport`)."""

    slug: str  # the route's (chat.routing)
    session_key: str | None  # from the session cookie (chat.routing)
    channel_layer_alias: str = DEFAULT_CHANNEL_LAYER  # whose hub the session sits in
    seat: hub.Seat | None = None
    user = None
    room = None
    closed = False
    held: list | None = None  # frames from the hub while hello and history are on their way
    last_typing = 0.0
    # Counting this socket in the user's open sockets (limits.sockets): the
    # task that asks Redis while it is on its way, then True once counted
    # (an idle socket does not keep a finished task).
    counting: asyncio.Future | bool | None = None
    history_busy = False
    history_task: asyncio.Task | None = None
    expires_at = float("inf")  # loop time at which the hub asks it to reconnect

    def __init__(self, *, channel_layer_alias: str | None = None):
        # Channels' consumers ignore as_asgi's keyword arguments: honour the
        # one that picks the channel layer (tests run a second layer, and
        # with it a second hub, as another worker).
        super().__init__()
        if channel_layer_alias is not None:
            self.channel_layer_alias = channel_layer_alias

    async def open_transport(self) -> None:
        """Accept the connection, before anything else: a refusal is then
        told with a close code the client can read."""
        raise NotImplementedError

    # ------------------------------------------------------------ the Listener side

    @property
    def user_id(self) -> int:
        return self.user.pk

    @property
    def username(self) -> str:
        return self.user.username

    def write(self, text: str, data: wire.Outgoing | None = None) -> None:
        if self.held is not None:
            self.held.append((text, data))
        else:
            self.writer.write(text, data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the server's side; no frame of the room follows."""
        if not self.closed:
            self.closed = True
            self._leave()
            self.writer.close(code, reason)

    def _leave(self) -> None:
        """Undo what opening did, once (it runs from every way out)."""
        if self.seat is not None:
            self.seat.leave()
        if self.counting is not None:
            counting, self.counting = self.counting, None
            self.worker_hub.spawn(self._uncount(counting))

    async def _uncount(self, counting: asyncio.Future | bool) -> None:
        """Take this socket out of the user's count once its count has
        landed: a socket that leaves while the count is on its way (a client
        gone mid-handshake) would otherwise stay counted until it expires."""
        try:
            counted = counting if counting is True else await counting
        except Exception:
            # Unknown (Redis away, or a timeout after the script ran; the
            # heartbeat counts it once Redis is back): take it out anyway,
            # removing a socket that was not counted is a no-op.
            counted = True
        if counted:
            # Still away: the entry expires after CHAT_PRESENCE_TTL.
            with unless_redis_is_away(f"socket {self.conn_id} not uncounted"):
                await limits.sockets.close(self.user.pk, self.conn_id)

    def _too_far_behind(self) -> None:
        """More than CHAT_MAX_QUEUED_BYTES wait for a client that does not
        read: close it (it resumes with `after`) rather than hold more."""
        if not self.closed:
            self.closed = True
            self._leave()
            self.writer.close_behind(Close.TOO_FAR_BEHIND)

    # ------------------------------------------------------------ opening

    async def open(self):
        # Accept first, then close with a code: browsers can read 44xx codes
        # only on a socket that was opened.
        await self.open_transport()
        self.conn_id = f"{_CONN_PREFIX}.{next(_conn_numbers)}"
        try:
            self.worker_hub = await hub.get_hub(self.channel_layer_alias)
        except Exception:
            logger.exception("the channel layer is unavailable; socket refused for now")
            return self.close(Close.TRY_AGAIN_LATER, f"retry_after={RETRY_LATER}")
        if self.worker_hub.draining:
            return self.close(Close.SERVICE_RESTART)
        if not self.worker_hub.admit():  # too many sockets opening at once: come back soon
            return self.close(Close.TRY_AGAIN_LATER, f"retry_after={RETRY_BUSY}")
        try:
            await self._open()
        except Exception:  # the database or Redis failed us: a documented code, not 1011
            logger.exception("socket %s could not open", self.conn_id)
            self.close(Close.TRY_AGAIN_LATER, f"retry_after={RETRY_LATER}")
        finally:
            self.worker_hub.admitted()

    async def _open(self):
        try:
            access = await self.worker_hub.authorizer.submit((self.session_key, self.slug))
        except selectors.RoomNotFound:
            return self.close(Close.NO_ACCESS)
        if access is None:
            return self.close(Close.SESSION_ENDED)
        self.user, self.room = access.user, access.room
        if not await self._count_socket():
            return self.close(Close.TOO_MANY_SOCKETS)
        self.expires_at = self._expiry()
        after_error = None
        try:
            after = parse_after(self.requested_after())
        except FrameError as error:
            after, after_error = None, error
        self.held = []
        self.seat = self.worker_hub.seat(self, self.room)
        entry = await self.seat.enter(after)
        self.room = self.seat.room_hub.room  # one Room per room in the worker, not per socket
        follows, changes = self.requested_changes()
        extras = self.hello_extras()
        if follows:
            extras["last_change"] = entry.last_change
        self.writer.write(
            wire.hello_frame(
                username=self.user.username,
                room=self.room,
                online=entry.online,
                last_seq=entry.last_seq,
                **extras,
            )
        )
        self.writer.write(entry.history, wire.Outgoing(entry.history, entry.last_seq))
        if changes is not None and after_error is None:
            self.writer.write(
                await database_sync_to_async(_changes_frame)(
                    room=self.room, since=changes, upto_seq=entry.last_seq
                )
            )
        if after_error:
            self.writer.write(wire.error_frame(after_error.code, after_error.detail))
        if self.worker_hub.fanout_degraded:
            self.writer.write(wire.FANOUT_DEGRADED)
        held, self.held = self.held, None
        for text, data in held:
            self.writer.write(text, data)

    def requested_after(self) -> str | None:
        """The raw `after` the client resumes from (the URL's query)."""
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        return query.get("after", [None])[-1]

    def requested_changes(self) -> tuple[bool, int | None]:
        """`changes` in the URL's query: whether the client follows changes
        (then `hello` has `last_change`), and the last change number it saw
        (then a `changes` frame follows `history`). Empty: follows, has seen
        nothing yet; a bad number counts as empty."""
        query = parse_qs(
            self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        if "changes" not in query:
            return False, None
        try:
            return True, parse_after(query["changes"][-1])
        except FrameError:
            return True, None

    def hello_extras(self) -> dict:
        """Fields this transport adds to `hello`."""
        return {}

    async def _count_socket(self) -> bool:
        """Count this socket against the user's CHAT_MAX_SOCKETS_PER_USER;
        False at the cap. Without Redis answering, the socket is let in."""
        # A task of its own, shielded: if this socket is cancelled meanwhile,
        # the count still lands and _leave takes it out again (_uncount).
        self.counting = asyncio.ensure_future(limits.sockets.open(self.user.pk, self.conn_id))
        try:
            counted = await asyncio.shield(self.counting)
        except Exception:
            logger.warning("socket count unavailable; letting %s in", self.conn_id, exc_info=True)
            return True
        # At the cap nothing was counted, so there is nothing to undo.
        self.counting = True if counted else None
        return counted

    @staticmethod
    def _expiry() -> float:
        """When the socket is asked to reconnect (and be checked again)."""
        age = settings.CHAT_MAX_SOCKET_AGE * (1 - random.random() / 10)
        return asyncio.get_running_loop().time() + age

    # ------------------------------------------------------------ client frames

    async def receive(self, text_data=None, bytes_data=None):
        if self.closed or self.seat is None:
            return  # closing, or never opened
        raw = text_data if text_data is not None else bytes_data
        if _too_large(raw):
            return self.close(Close.FRAME_TOO_LARGE)
        try:
            frame = parse_frame(text_data) if text_data is not None else None
        except FrameError as error:
            frame = error
        # Every frame but a message counts against the user's frame budget
        # (a message against the message rate limit, in post_message).
        if not isinstance(frame, WRITES) and not await self._spend_frame_budget():
            return
        if frame is None:
            return self._error("bad_request", "binary frames are not accepted; send JSON text")
        if isinstance(frame, FrameError):
            return self._error(frame.code, frame.detail)
        try:
            await self._act_on(frame)
        except Exception:  # the database or Redis failed us: the socket stays
            logger.exception("socket %s: %s failed", self.conn_id, type(frame).__name__)
            self._error(
                "unavailable",
                "The server cannot do that right now; try again shortly.",
                retry_after=RETRY_LATER,
            )

    async def _act_on(self, frame) -> None:
        if isinstance(frame, SendMessage):
            await self._send_message(frame)
        elif isinstance(frame, Typing):
            await self._typing()
        elif isinstance(frame, HistoryRequest):
            await self._history(frame)
        elif isinstance(frame, Ping):
            self.write(wire.PONG)
        elif isinstance(frame, Read):
            await self._read(frame)
        elif isinstance(frame, EditMessage | DeleteMessage | React):
            await self._change(frame)

    async def _send_message(self, frame: SendMessage):
        try:
            posted = await services.post_message(
                room=self.room,
                author=self.user,
                body=frame.body,
                client_id=frame.client_id,
                reply_to=frame.reply_to,
            )
        except services.ServiceError as error:
            return self._refused(error)
        message = posted.message
        ack = wire.ack_frame(client_id=message.client_id, message_id=message.id, seq=message.seq)
        self.write(ack)

    async def _change(self, frame: EditMessage | DeleteMessage | React):
        """Edit, delete or react: answered with an `ack` naming the frame
        (`of`); everyone in the room, this socket too, gets the change."""
        try:
            if isinstance(frame, EditMessage):
                kind = "message.edit"
                message = await services.edit_message(
                    room=self.room, user=self.user, message_id=frame.id, body=frame.body
                )
            elif isinstance(frame, DeleteMessage):
                kind = "message.delete"
                message = await services.delete_message(
                    room=self.room, user=self.user, message_id=frame.id
                )
            else:
                kind = "reaction"
                message = await services.react(
                    room=self.room,
                    user=self.user,
                    message_id=frame.id,
                    emoji=frame.emoji,
                    on=frame.on,
                )
        except services.ServiceError as error:
            if error.close_code is not None:
                return self.close(error.close_code)
            fields = {**error.fields, "id": frame.id}
            if frame.client_id is not None:
                fields["client_id"] = frame.client_id
            return self._error(error.code, error.detail, **fields)
        self.write(
            wire.ack_frame(
                client_id=frame.client_id, message_id=message.id, seq=message.seq, of=kind
            )
        )

    async def _typing(self):
        now = time.monotonic()
        if now - self.last_typing < settings.CHAT_TYPING_INTERVAL:
            return  # one notice per interval is enough for "is typing…"
        self.last_typing = now
        await services.notify_typing(room=self.room, user=self.user, conn_id=self.conn_id)

    async def _history(self, frame: HistoryRequest):
        """Answered from the hub's memory at once, or read from the database
        beside the socket's other frames (a page of an old archive does not
        hold up a send); one at a time, so a client that never reads cannot
        pile them up."""
        page = (
            self.seat.history_from_memory(frame.before, frame.limit) if frame.from_memory else None
        )
        if page is not None:
            return self.write(page)
        if self.history_busy:
            return self._error(
                "rate_limited", "One history request at a time.", retry_after=HISTORY_RETRY
            )
        self.history_busy = True
        self.history_task = self.worker_hub.spawn(self._history_from_database(frame))

    async def _history_from_database(self, frame: HistoryRequest):
        try:
            if frame.from_memory:
                page = await self.seat.history_from_database(frame.before, frame.limit)
            else:
                page = await self.seat.history_around(
                    around=frame.around, after=frame.after, limit=frame.limit
                )
            self.write(page)
        except Exception:
            logger.exception("socket %s: history read failed", self.conn_id)
            self._error(
                "unavailable", "Older messages cannot be read right now.", retry_after=RETRY_LATER
            )
        finally:
            self.history_busy = False

    async def _spend_frame_budget(self) -> bool:
        try:
            await limits.spend(kind="frame", user_id=self.user.pk)
        except services.RateLimited as error:
            self._refused(error)
            return False
        except Exception:  # the budget's store is away: let the frame through
            logger.warning("frame budget unavailable", exc_info=True)
        return True

    async def _read(self, frame: Read):
        """The reader has seen up to frame.seq: store it; the user's other
        sockets in the room get a `read` frame (not this one)."""
        await services.mark_read(
            room=self.room, user=self.user, seq=frame.seq, conn_id=self.conn_id
        )

    def _error(self, code: str, detail: str, **fields):
        self.write(wire.error_frame(code, detail, **fields))

    def _refused(self, error: services.ServiceError) -> None:
        """A service's refusal, as its class says a socket gets it: closed
        with its close code (e.g. banned a moment ago), or else an `error`
        frame with its code and fields."""
        if error.close_code is not None:
            return self.close(error.close_code)
        self._error(error.code, error.detail, **error.fields)


class RoomConsumer(RoomSession, AsyncWebsocketConsumer):
    """The room over a WebSocket. The session comes first in the MRO: its
    `close` (synchronous, from the hub) and `receive` are the ones used, not
    AsyncWebsocketConsumer's."""

    async def __call__(self, scope, receive, send):
        """Channels' own loop would give every socket a channel on the layer
        and a task waiting on it; here only the client's frames come in."""
        self.scope = scope
        self.base_send = send
        self.writer = sockets.writer_for(
            send, max_queued=settings.CHAT_MAX_QUEUED_BYTES, on_overflow=self._too_far_behind
        )
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.connect":
                    await self.open()
                elif kind == "websocket.receive":
                    await self.receive(message.get("text"), message.get("bytes"))
                elif kind == "websocket.disconnect":
                    raise StopConsumer
        except StopConsumer:
            pass
        finally:  # however the socket ends: closed, cancelled, crashed
            self._leave()

    async def open_transport(self) -> None:
        await self.accept()


class NoRouteConsumer(AsyncWebsocketConsumer):
    """A WebSocket to a path that has no endpoint: accepted, then closed with
    4404 (a refused handshake would not tell the client why)."""

    async def connect(self):
        await self.accept()
        await AsyncWebsocketConsumer.close(self, code=Close.NO_ROUTE)


def _changes_frame(*, room, since: int, upto_seq: int) -> str:
    changes = selectors.changes_since(room=room, since=since, upto_seq=upto_seq)
    return wire.changes_frame(changes.texts, changes.deleted, changes.last_change)


def _too_large(raw) -> bool:
    limit = settings.CHAT_MAX_FRAME_BYTES
    if raw is None or len(raw) * 4 <= limit:  # a character is at most 4 bytes
        return False
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    return size > limit
