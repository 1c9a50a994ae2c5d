"""One consumer per WebSocket: authenticate, check access, join the groups,
validate frames, call services, and forward the room's events in seq order."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import events, selectors, services, wire
from .frames import FrameError, HistoryRequest, Ping, Read, SendMessage, Typing, parse_after
from .frames import parse_client_frame as parse_frame

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NO_ACCESS = 4403
CLOSE_FRAME_TOO_LARGE = 4009


class RoomConsumer(AsyncWebsocketConsumer):
    room = None
    last_delivery = 0.0
    flush_timer: asyncio.TimerHandle | None = None
    gap_timer: asyncio.TimerHandle | None = None
    catchup_timer: asyncio.TimerHandle | None = None
    groups_joined: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outbox: list[str] = []  # message frames held for a batch

    async def dispatch(self, message):
        # Channels' own dispatch runs close_old_connections through a thread
        # hop before every handler, group forwards included: about half the
        # CPU per delivered message when measured. Every database access here
        # goes through database_sync_to_async, which does that cleanup itself.
        if self.room is None and message["type"].startswith(("room.", "socket.")):
            return  # left the room already; events still queued are moot
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def send(self, text_data=None, bytes_data=None, close=False):
        if self.outbox:  # messages held for a batch go first: frames keep their order
            await self._flush()
        await self._send_now(text_data, bytes_data, close)

    async def _send_now(self, text_data=None, bytes_data=None, close=False):
        # A socket can drop between Daphne's check and the write: that is the
        # client leaving, not an error to crash the consumer (and skip the
        # cleanup) over.
        try:
            await super().send(text_data, bytes_data, close)
        except Disconnected:
            await self._leave()

    async def _deliver(self, text: str):
        """Send a message frame. Under load (a message within the batch window
        of the last one sent to this socket) hold it, and send what was held
        as one `messages` frame at the window's end: each frame costs Daphne
        far more than its bytes."""
        if self.outbox:
            self.outbox.append(text)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self.last_delivery >= settings.CHAT_BATCH_WINDOW:
            self.last_delivery = now
            await self._send_now(text)
            return
        self.outbox.append(text)
        self.flush_timer = loop.call_at(
            self.last_delivery + settings.CHAT_BATCH_WINDOW,
            lambda: asyncio.ensure_future(self._flush()),
        )

    async def _flush(self):
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        batch, self.outbox = self.outbox, []
        if batch:
            self.last_delivery = asyncio.get_running_loop().time()
            await self._send_now(wire.batch_frame(batch))

    # ------------------------------------------------------------ lifecycle

    async def connect(self):
        # Accept first, then close with a code: browsers can read 44xx codes
        # only on a socket that was opened.
        await self.accept()
        self.user = self.scope["user"]
        if not self.user.is_authenticated:
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        after_error = None
        try:
            after = parse_after(query.get("after", [None])[-1])
        except FrameError as error:
            after, after_error = None, error
        slug = self.scope["url_route"]["kwargs"]["slug"]
        try:
            room = await database_sync_to_async(self._enter_room)(slug)
        except selectors.RoomNotFound:
            await self.close(CLOSE_NO_ACCESS)
            return
        self.room = room
        await self._join_groups()
        # Joined the room's group before reading history: nothing committed
        # from here on can fall between the two.
        history, last_seq = await database_sync_to_async(self._read_history)(after)
        self.cursor = last_seq  # highest seq this socket has been given
        self.pending: dict[int, str] = {}  # live messages that arrived ahead of a gap
        self.last_typing = 0.0
        online = await services.open_presence(
            room=room, user=self.user, channel_name=self.channel_name
        )
        await self.send(
            wire.hello_frame(
                username=self.user.username, room=room, online=online, last_seq=last_seq
            )
        )
        await self.send(wire.history_frame(history.messages, history.has_more))
        if after_error:
            await self._send_error(after_error.code, after_error.detail)
        # A message committed while the subscription was still settling is
        # found by one look at the room's last seq a moment later.
        self.catchup_timer = self._later(1.0, "room.catchup")

    def _enter_room(self, slug: str):
        room = selectors.get_room_for(user=self.user, slug=slug)
        services.join_room(room=room, user=self.user)
        return room

    def _read_history(self, after: int | None):
        last_seq = selectors.room_last_seq(room=self.room)
        if after is None:
            page = selectors.latest_messages(room=self.room)
        else:
            page = selectors.messages_after(room=self.room, after=after, upto=last_seq)
        return page, last_seq

    async def _join_groups(self):
        groups = [events.room_group(self.room.pk), events.user_group(self.user.pk)]
        session_key = self.scope["session"].session_key
        if session_key:
            groups.append(events.session_group(session_key))
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = tuple(groups)

    async def disconnect(self, code):
        await self._leave()

    async def _leave(self):
        """Leave groups and presence, once, whoever closed the socket."""
        room, self.room = self.room, None
        if room is None:
            return
        self.outbox = []  # held messages are moot once the socket is closing
        for timer in (self.gap_timer, self.catchup_timer, self.flush_timer):
            if timer is not None:
                timer.cancel()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        await services.close_presence(room=room, user=self.user, channel_name=self.channel_name)

    async def _close_with(self, code: int):
        await self.close(code)
        await self._leave()  # at once: no frame of this room may follow the close

    # ------------------------------------------------------------ client frames

    async def receive(self, text_data=None, bytes_data=None):
        if self.room is None:
            return  # closing already
        raw = text_data if text_data is not None else bytes_data
        if _too_large(raw):
            await self._close_with(CLOSE_FRAME_TOO_LARGE)
            return
        if text_data is None:
            await self._send_error("bad_request", "binary frames are not accepted; send JSON text")
            return
        try:
            frame = parse_frame(text_data)
        except FrameError as error:
            await self._send_error(error.code, error.detail)
            return
        if isinstance(frame, SendMessage):
            await self._send_message(frame)
        elif isinstance(frame, Typing):
            await self._typing()
        elif isinstance(frame, HistoryRequest):
            await self._history(frame)
        elif isinstance(frame, Ping):
            await self.send(wire.frame("pong"))
        elif isinstance(frame, Read):
            await self._read(frame)

    async def _send_message(self, frame: SendMessage):
        try:
            posted = await services.post_message(
                room=self.room, author=self.user, body=frame.body, client_id=frame.client_id
            )
        except services.Forbidden:
            await self._close_with(CLOSE_NO_ACCESS)  # banned a moment ago
            return
        except services.ServiceError as error:
            await self._send_error(error.code, error.detail, **error.fields)
            return
        await self.send(wire.ack_frame(posted.message))

    async def _typing(self):
        now = time.monotonic()
        if now - self.last_typing < settings.CHAT_TYPING_INTERVAL:
            return  # one notice per interval is enough for "is typing…"
        self.last_typing = now
        await services.notify_typing(
            room=self.room, user=self.user, sender_channel=self.channel_name
        )

    async def _history(self, frame: HistoryRequest):
        page = await database_sync_to_async(selectors.messages_before)(
            room=self.room, before=frame.before, limit=frame.limit
        )
        await self.send(wire.history_frame(page.messages, page.has_more))

    async def _read(self, frame: Read):
        """The reader has seen up to frame.seq: store it; the user's other
        sockets get a `read` frame (not this one)."""
        await services.mark_read(
            room=self.room, user=self.user, seq=frame.seq, sender_channel=self.channel_name
        )

    async def _send_error(self, code: str, detail: str, **fields):
        await self.send(wire.error_frame(code, detail, **fields))

    # ------------------------------------------------------------ group events

    async def room_frame(self, event):
        """A frame for everyone in the room (typing, join, leave, deletions)."""
        if event.get("skip") != self.channel_name:
            await self.send(event["text"])

    async def room_message(self, event):
        """A new message: delivered in seq order, each exactly once."""
        seq = event["seq"]
        if seq <= self.cursor:
            return  # in the history this socket was sent, or gap-filled
        if seq == self.cursor + 1 and not self.pending:
            self.cursor = seq
            await self._deliver(event["text"])
            return
        # Messages committed on different workers can arrive out of order:
        # hold this one until the gap before it fills.
        self.pending[seq] = event["text"]
        await self._release_pending()
        if self.pending and self.gap_timer is None:
            self.gap_timer = self._later(settings.CHAT_GAP_WAIT, "room.gap")
        elif not self.pending and self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None

    async def room_gap(self, event):
        """The gap did not fill by itself (a lost or deleted message): read it."""
        self.gap_timer = None
        if self.pending:
            await self._fill_from_database(upto=max(self.pending))

    async def room_catchup(self, event):
        last_seq = await database_sync_to_async(selectors.room_last_seq)(room=self.room)
        if last_seq > self.cursor and not self.pending:
            await self._fill_from_database(upto=last_seq)

    async def _fill_from_database(self, *, upto: int):
        page = await database_sync_to_async(selectors.messages_after)(
            room=self.room, after=self.cursor, upto=upto
        )
        for message in page.messages:
            await self._deliver(wire.message_frame(message))
        self.cursor = max(self.cursor, upto)
        self.pending = {s: t for s, t in self.pending.items() if s > self.cursor}
        await self._release_pending()

    async def _release_pending(self):
        """Deliver held messages for as long as the next seq is among them."""
        while self.cursor + 1 in self.pending:
            self.cursor += 1
            await self._deliver(self.pending.pop(self.cursor))

    def _later(self, delay: float, event_type: str) -> asyncio.TimerHandle:
        """Deliver an event to this consumer after `delay`, through its own
        channel so that it runs in turn with every other event."""
        layer, channel = self.channel_layer, self.channel_name

        def fire():
            asyncio.ensure_future(layer.send(channel, {"type": event_type}))

        return asyncio.get_running_loop().call_later(delay, fire)

    async def room_ban(self, event):
        """A moderator banned a user from this room: close that user's sockets."""
        if event["user_id"] == self.user.pk:
            await self._close_with(CLOSE_NO_ACCESS)

    async def socket_close(self, event):
        """The session ended (logout) or the account was deactivated."""
        await self._close_with(event["code"])


def _too_large(raw) -> bool:
    limit = settings.CHAT_MAX_FRAME_BYTES
    if raw is None or len(raw) * 4 <= limit:  # a character is at most 4 bytes
        return False
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    return size > limit
