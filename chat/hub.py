"""One hub per worker process: the real-time path for every local socket.

Work that is the same for every socket in a room is done here once per room
per worker, not once per socket:

- The hub has one channel on the channel layer. It joins a room's group when
  the first local socket enters the room, so every event is received,
  decoded and dispatched once per worker, whatever the number of sockets.
- Per room it keeps the seq cursor: messages committed on different workers
  may arrive out of order, so a later one is held until the gap before it
  fills, and a gap that does not fill by itself (a lost broadcast, a removed
  message) is read from the database with one query for the room.
- It fans each frame out by writing the same bytes to every local socket
  (chat.sockets), batching a room's messages that arrive within
  CHAT_BATCH_WINDOW of each other into one `messages` frame.
- It keeps the room's latest CHAT_HUB_RECENT visible messages, so `hello`'s
  history and most resumes (`after`) and `history` requests are answered
  without the database.
- Presence is kept per worker and user: the shared store hears about a user's
  first socket in a room on this worker and their last, and the worker's
  entries are refreshed on one heartbeat.
- Every few seconds one query reads the last seq of every local room: a room
  whose last message never reached this worker (stored while Redis was away)
  is caught up without waiting for the next message. The same query reads
  each room's change counter: edits, deletions and reactions whose broadcast
  was lost are read from the database and sent on too. A change older than
  one applied already (changes made on different workers can cross) loses.

A socket (a `Listener`) takes a `Seat` in a room: `enter()` registers it and
returns what its `hello` and `history` need, atomically with the cursor, so
that every later message reaches it live, exactly once and in order; `leave()`
undoes whatever `enter()` got to, however the socket ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from . import admission, events, limits, selectors, services, shutdown, wire
from . import redis as redis_clients
from .batching import Batcher
from .frames import MAX_SEQ
from .models import Room

logger = logging.getLogger(__name__)

# Seconds between checks that Redis answers (fan-out status frames).
REDIS_PROBE_INTERVAL = 1.0
# Seconds a draining worker waits for presence to be closed before exiting.
DRAIN_TIMEOUT = 3.0
# The batch window (seconds) of a worker that receives messages late.
BEHIND_BATCH_WINDOW = 0.25


class Listener(Protocol):
    """What the hub needs of a socket."""

    conn_id: str
    user_id: int
    username: str
    session_key: str | None
    expires_at: float  # loop time after which it is asked to reconnect

    def write(self, text: str, data: wire.Outgoing | None = None) -> None:
        """Send a frame (`data`: the same frame with its encodings, shared by
        every listener of a broadcast)."""

    def close(self, code: int) -> None:
        """The server closes this socket; the hub has let go of it already."""


@dataclass
class Entry:
    """What a socket's first frames need, consistent with the room's cursor."""

    online: list[str]
    last_seq: int
    history: str  # the `history` frame
    last_change: int = 0  # the highest change number this worker has applied


@dataclass
class _UserPresence:
    sockets: int = 0  # this worker's sockets of the user in the room
    announced: bool = False  # the shared store has this worker's entry
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


# ---------------------------------------------------------------- one room


class RoomHub:
    def __init__(self, hub: Hub, room: Room):
        self.hub = hub
        self.room = room
        self.listeners: dict[str, Listener] = {}
        self.seats = 0
        self.users: dict[str, _UserPresence] = {}
        self.online: set[str] = set()
        self.loaded = asyncio.get_running_loop().create_future()
        # Delivery order.
        self.cursor = 0  # every message up to this seq has been released
        self.pending: dict[int, str | None] = {}  # ahead of a gap; None: removed
        self.gap_timer: asyncio.TimerHandle | None = None
        self.filling = False
        self.behind: int | None = None  # last_seq seen ahead of the cursor
        self.catch_up_to = 0  # shedding: the highest seq to read from the database
        # Recent visible messages, ascending: every one with seq in (floor, cursor].
        self.seqs: list[int] = []
        self.texts: list[str] = []
        self.floor = 0
        self.latest_page: str | None = None  # `history` frame of the latest page
        # Changes (edits, deletions, reactions): the highest change number
        # applied, and the change number of each changed message held (in
        # memory or pending), so that a late, older change loses to a newer.
        self.last_change = 0
        self.revs: dict[int, int] = {}
        # Every change up to change_floor has been applied here (or waits in
        # pending with its message); changes_seen are those above it. The
        # change watch reads what a lost broadcast left out.
        self.change_floor = 0
        self.changes_seen: set[int] = set()
        self.change_behind: int | None = None
        self.fetching_changes = False
        # Batching.
        self.batch: list[str] | None = None
        self.batch_seq = 0  # the last seq in the batch
        self.last_emit = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def room_id(self) -> int:
        return self.room.pk

    # -------------------------------------------------------- loading

    async def load(self) -> None:
        """Subscribe, then read the room: anything committed after the read
        arrives through the subscription."""
        try:
            await self.hub.subscribe(self)
            recent = await database_sync_to_async(selectors.recent_messages)(
                room=self.room, limit=settings.CHAT_HUB_RECENT
            )
        except Exception as error:
            self.loaded.set_exception(error)
            self.hub.forget(self)
            return
        self.cursor = recent.last_seq
        self.last_change = max(self.last_change, recent.last_change)
        self.change_floor = max(self.change_floor, recent.last_change)
        self._advance_changes()
        for seq, text in recent.texts:
            if '"rev":' in text:  # changed once: a change event older than this loses
                rev = json.loads(text).get("rev", 0)
                self.revs[seq] = max(self.revs.get(seq, 0), rev)
        self.seqs = [seq for seq, _ in recent.texts]
        self.texts = [text for _, text in recent.texts]
        if recent.older_exist:
            self.floor = self.seqs[0] - 1 if self.seqs else self.cursor
        self.pending = {s: t for s, t in self.pending.items() if s > self.cursor}
        self.loaded.set_result(None)
        self._release_pending()
        self._watch_gap()

    # -------------------------------------------------------- entering and leaving

    def register(self, listener: Listener, after: int | None) -> tuple[int, str | None]:
        """Add a socket; returns the cursor and its history from memory (None
        when the database must answer). Nothing awaits in here: the socket
        gets every message after the cursor live, and none before it."""
        self._flush()  # a held batch is in the history the socket is given
        self.listeners[listener.conn_id] = listener
        return self.cursor, self.history_after(after)

    def history_after(self, after: int | None) -> str | None:
        """The `history` frame for a socket that opens with `after` (the
        latest page when None), if memory holds all of it."""
        if after is None:
            if self.latest_page is None:
                page = settings.CHAT_HISTORY_PAGE
                if len(self.texts) < page and self.floor:
                    return None
                has_more = len(self.texts) > page or bool(self.floor)
                self.latest_page = wire.history_frame(self.texts[-page:], has_more)
            return self.latest_page
        if after < self.floor:
            return None
        start = bisect_right(self.seqs, after)
        return wire.history_frame(self.texts[start:], start > 0 or bool(self.floor))

    def history_before(self, before: int | None, limit: int) -> str | None:
        """The answer to a `history` request, if memory holds all of it."""
        end = len(self.seqs) if before is None else bisect_left(self.seqs, before)
        if end < limit and self.floor:
            return None
        start = max(0, end - limit)
        return wire.history_frame(self.texts[start:end], start > 0 or bool(self.floor))

    async def open_presence(self, listener: Listener) -> None:
        user = self.users.setdefault(listener.username, _UserPresence())
        user.sockets += 1
        async with user.lock:
            if user.sockets and not user.announced:
                user.announced = True
                try:
                    online = await services.open_presence(
                        room_id=self.room_id,
                        username=listener.username,
                        conn_id=self.hub.worker_id,
                        skip=listener.conn_id,
                    )
                except Exception:  # the heartbeat announces it once the store answers
                    logger.exception("presence: could not open %s", listener.username)
                else:
                    self.online = set(online)
        self.online.add(listener.username)

    def close_presence(self, username: str) -> None:
        user = self.users.get(username)
        if user is None:
            return
        user.sockets -= 1
        if user.sockets == 0:
            self.hub.spawn(self._announce_gone(username, user))

    async def _announce_gone(self, username: str, user: _UserPresence) -> None:
        # Under the user's lock, and the entry stays until the store has
        # answered: a socket of the same user entering meanwhile waits, then
        # announces itself again, in that order.
        async with user.lock:
            if user.sockets or not user.announced:
                return
            try:
                await services.close_presence(
                    room_id=self.room_id, username=username, conn_id=self.hub.worker_id
                )
            finally:
                user.announced = False
                if not user.sockets and self.users.get(username) is user:
                    del self.users[username]

    def local_usernames(self) -> list[str]:
        return [name for name, user in self.users.items() if user.sockets]

    def seat_taken(self) -> None:
        self.seats += 1
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def seat_left(self) -> None:
        self.seats -= 1
        if self.seats == 0:
            # Kept warm a while: a worker's sockets that drop together come back together.
            self.idle_timer = asyncio.get_running_loop().call_later(
                settings.CHAT_HUB_IDLE, self._drop_if_idle
            )

    def _drop_if_idle(self) -> None:
        self.idle_timer = None
        if self.seats == 0:
            self.close()
            self.hub.forget(self)

    def close(self) -> None:
        for timer in (self.gap_timer, self.idle_timer):
            if timer is not None:
                timer.cancel()
        self.gap_timer = self.idle_timer = None
        self.batch = None

    # -------------------------------------------------------- events

    def on_message(self, event: dict) -> None:
        seq = event["seq"]
        if seq <= self.cursor or seq in self.pending:
            return  # delivered already, or held (a removal stays a removal)
        if self.loaded.done() and seq == self.cursor + 1 and not self.pending:
            self._release(seq, event["text"])
            return
        self.pending[seq] = event["text"]
        if self.loaded.done():
            self._release_pending()
            self._watch_gap()

    def on_changed(self, event: dict) -> None:
        """A message changed: the memory and the held messages take its new
        text, and every socket gets `message.updated` (unless a later change
        of it was applied here already)."""
        seq, rev, text = event["seq"], event["rev"], event["text"]
        self.saw_change(rev)
        if rev <= self.revs.get(seq, 0):
            return  # older than what was applied
        if seq > self.cursor:
            if seq in self.pending and self.pending[seq] is None:
                return  # removed meanwhile
            # Not delivered here yet: it goes out as it is now when its turn comes.
            self.revs[seq] = rev
            self.pending[seq] = text
            if self.loaded.done():
                self._release_pending()
                self._watch_gap()
            return
        index = bisect_left(self.seqs, seq)
        if index < len(self.seqs) and self.seqs[index] == seq:
            self.texts[index] = text
            self.revs[seq] = rev
            self.latest_page = None
        self.broadcast(wire.updated_frame(text))

    def on_deleted(self, event: dict) -> None:
        seq = event["seq"]
        self.saw_change(event.get("rev", 0))
        self.revs.pop(seq, None)
        if seq > self.cursor:
            self.pending[seq] = None  # removed before it got here: never deliver it
        else:
            index = bisect_left(self.seqs, seq)
            if index < len(self.seqs) and self.seqs[index] == seq:
                del self.seqs[index], self.texts[index]
                self.latest_page = None
        # A moderator's removal is the contract's frame as it is; the
        # author's own says so.
        fields = {"by": "author"} if event.get("by") == "author" else {}
        self.broadcast(wire.frame("message.deleted", id=event["id"], seq=seq, **fields))

    # -------------------------------------------------------- the change watch

    def saw_change(self, rev: int) -> None:
        self.last_change = max(self.last_change, rev)
        if rev > self.change_floor:
            self.changes_seen.add(rev)
            self._advance_changes()

    def _advance_changes(self) -> None:
        while self.change_floor + 1 in self.changes_seen:
            self.change_floor += 1
        self.changes_seen = {rev for rev in self.changes_seen if rev > self.change_floor}

    def check_last_change(self, last_change: int) -> None:
        """As check_last_seq, for changes: when the room's change counter
        stays ahead of what reached this worker for two looks in a row (a
        lost broadcast), the changes after the floor are read from the
        database and applied, once for all local sockets."""
        if last_change <= self.change_floor:
            self.change_behind = None
        elif self.change_behind is None:
            self.change_behind = last_change
        else:
            self.change_behind = last_change
            if not self.fetching_changes:
                self.fetching_changes = True
                self.hub.spawn(self._fetch_changes())

    async def _fetch_changes(self) -> None:
        try:
            found = await database_sync_to_async(selectors.changes_since)(
                room=self.room, since=self.change_floor, upto_seq=MAX_SEQ
            )
        except Exception:
            logger.exception("room %s: could not read changes", self.room_id)
            return
        finally:
            self.fetching_changes = False
        for text in found.texts:
            data = json.loads(text)
            self.on_changed(
                {"seq": data["seq"], "rev": data.get("rev", 0), "text": text, "room": self.room_id}
            )
        for gone in found.deleted:
            seq = gone["seq"]
            if self.floor < seq <= self.cursor and not self._shown(seq):
                continue  # memory covers it and it is gone here already: told before
            self.on_deleted({**gone, "room": self.room_id})
        self.change_floor = max(self.change_floor, found.last_change)
        self._advance_changes()

    def _shown(self, seq: int) -> bool:
        index = bisect_left(self.seqs, seq)
        return index < len(self.seqs) and self.seqs[index] == seq

    def on_frame(self, event: dict) -> None:
        self.broadcast(event["text"], skip=event.get("skip"), user_id=event.get("user_id"))

    def on_presence(self, event: dict) -> None:
        username = event["user"]
        if event["kind"] == "join":
            self.online.add(username)
        elif username not in self.local_usernames():
            self.online.discard(username)
        self.broadcast(wire.frame(event["kind"], user=username), skip=event.get("skip"))

    def on_close(self, event: dict) -> None:
        user_id = event.get("user_id")
        for listener in list(self.listeners.values()):
            if user_id is None or listener.user_id == user_id:
                self.hub.close_listener(listener, event["code"])

    # -------------------------------------------------------- ordering

    def _release(self, seq: int, text: str | None) -> None:
        self.cursor = seq
        if text is None:
            return  # removed: skipped
        self.seqs.append(seq)
        self.texts.append(text)
        limit = settings.CHAT_HUB_RECENT
        if len(self.seqs) > limit + limit // 4:  # trim in steps, not on every message
            cut = len(self.seqs) - limit
            self.floor = self.seqs[cut - 1]
            del self.seqs[:cut], self.texts[:cut]
            self.revs = {s: r for s, r in self.revs.items() if s > self.floor}
        self.latest_page = None
        self._emit(seq, text)

    def _release_pending(self) -> None:
        while self.cursor + 1 in self.pending:
            seq = self.cursor + 1
            self._release(seq, self.pending.pop(seq))

    def _release_through(self, upto: int) -> None:
        """Everything up to `upto` is known now: release what is held, skip the rest."""
        while self.cursor < upto:
            seq = self.cursor + 1
            self._release(seq, self.pending.pop(seq, None))
        self._release_pending()

    def _watch_gap(self) -> None:
        if self.pending and self.gap_timer is None and not self.filling:
            self.gap_timer = asyncio.get_running_loop().call_later(
                settings.CHAT_GAP_WAIT, self._gap_due
            )
        elif not self.pending and self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None

    def _gap_due(self) -> None:
        self.gap_timer = None
        if self.pending:
            self.fill(upto=max(self.pending))

    def fill(self, *, upto: int) -> None:
        """Read the messages up to seq `upto` that never arrived: one query
        for the room, whatever the number of local sockets."""
        if self.filling or upto <= self.cursor or not self.loaded.done():
            return
        self.filling = True
        self.hub.spawn(self._fill(upto))

    async def _fill(self, upto: int) -> None:
        try:
            found = await database_sync_to_async(selectors.message_texts_between)(
                room=self.room, after=self.cursor, upto=upto
            )
        except Exception:
            logger.exception("room %s: could not read seqs up to %s", self.room_id, upto)
            found = None
        finally:
            self.filling = False
        if found is not None:
            for seq, text in found:
                if seq > self.cursor:
                    self.pending.setdefault(seq, text)
            self._release_through(upto)
        if self.catch_up_to > self.cursor:  # more arrived late while reading
            self.fill(upto=self.catch_up_to)
        self._watch_gap()

    def catch_up(self, seq: int) -> None:
        """Deliver everything up to `seq` from the database (see Hub._shed)."""
        self.catch_up_to = max(self.catch_up_to, seq)
        self.fill(upto=self.catch_up_to)

    def check_last_seq(self, last_seq: int) -> None:
        """The seq watch: a room behind the database twice in a row is filled
        (once is normal: a broadcast may be on its way)."""
        if last_seq <= self.cursor:
            self.behind = None
        elif self.behind is None:
            self.behind = last_seq
        else:
            self.fill(upto=self.behind)
            self.behind = last_seq

    # -------------------------------------------------------- fan-out

    def _emit(self, seq: int, text: str) -> None:
        if self.batch is not None:
            self.batch.append(text)
            self.batch_seq = seq
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        window = settings.CHAT_BATCH_WINDOW
        if self.hub.lag > settings.CHAT_SHED_LAG / 4:
            window = max(window, BEHIND_BATCH_WINDOW)  # behind: fewer, larger frames
        if now - self.last_emit >= window:
            self.last_emit = now
            self._fanout(wire.message_frame(text), seq=seq)
            return
        # Within the window of the last frame: wait for its end and send
        # everything that came meanwhile as one frame.
        self.batch, self.batch_seq = [text], seq
        loop.call_at(self.last_emit + window, self._flush)

    def _flush(self) -> None:
        batch, self.batch = self.batch, None
        if batch:
            self.last_emit = asyncio.get_running_loop().time()
            self._fanout(wire.messages_frame(batch), seq=self.batch_seq)

    def broadcast(self, text: str, skip: str | None = None, user_id: int | None = None) -> None:
        """Any frame but a message: after the held batch, so frames keep their
        order. With `user_id`, only to that user's sockets."""
        self._flush()
        self._fanout(text, skip, user_id)

    def _fanout(
        self,
        text: str,
        skip: str | None = None,
        user_id: int | None = None,
        seq: int | None = None,
    ) -> None:
        if not self.listeners:
            return
        data = wire.Outgoing(text, seq)
        listeners = list(self.listeners.values())
        if skip is not None or user_id is not None:  # not the per-message path
            listeners = [
                listener
                for listener in listeners
                if listener.conn_id != skip and (user_id is None or listener.user_id == user_id)
            ]
        for listener in listeners:
            listener.write(text, data)


# ---------------------------------------------------------------- one socket's seat


class RoomReader:
    """Reads a room's history: from the worker's memory of it when it has
    the room and the memory holds the page, else from the database."""

    def __init__(self, room: Room, room_hub: RoomHub | None):
        self.room = room
        self.room_hub = room_hub

    def history_from_memory(self, before: int | None, limit: int) -> str | None:
        """The answer to a `history` request, if the room's memory holds it."""
        if self.room_hub is None or not self.room_hub.loaded.done():
            return None
        return self.room_hub.history_before(before, limit)

    async def history_from_database(self, before: int | None, limit: int) -> str:
        texts, has_more = await database_sync_to_async(selectors.message_texts_before)(
            room=self.room, before=before, limit=limit
        )
        return wire.history_frame(texts, has_more)

    async def history_around(self, *, around: int | None, after: int | None, limit: int) -> str:
        """The answer to a `history` request with `around` or `after`."""
        texts, has_more, has_newer = await database_sync_to_async(selectors.message_texts_around)(
            room=self.room, around=around, after=after, limit=limit
        )
        return wire.history_frame(texts, has_more, has_newer)

    def leave(self) -> None:
        """A reader holds no seat: nothing to give back."""


class Seat(RoomReader):
    """One socket's place in one room's hub."""

    def __init__(self, hub: Hub, listener: Listener, room: Room):
        self.hub = hub
        self.listener = listener
        super().__init__(room, hub.room_hub(room))
        self.room_hub.seat_taken()
        self.counted = False
        self.left = False

    async def enter(self, after: int | None) -> Entry:
        room_hub = self.room_hub
        await asyncio.shield(room_hub.loaded)
        self.counted = True
        await room_hub.open_presence(self.listener)
        online = sorted(room_hub.online)
        last_seq, history = room_hub.register(self.listener, after)
        if history is None:  # older than memory holds: the database answers
            history = await database_sync_to_async(_history_from_database)(
                room=room_hub.room, after=after, upto=last_seq
            )
        return Entry(
            online=online, last_seq=last_seq, history=history, last_change=room_hub.change_floor
        )

    def leave(self) -> None:
        """Undo what entering did (idempotent, never awaits: it runs from
        cancellation and crash paths too)."""
        if self.left:
            return
        self.left = True
        room_hub = self.room_hub
        if room_hub.listeners.get(self.listener.conn_id) is self.listener:
            del room_hub.listeners[self.listener.conn_id]
        if self.counted:
            room_hub.close_presence(self.listener.username)
        room_hub.seat_left()


def _history_from_database(*, room: Room, after: int | None, upto: int) -> str:
    if after is None:
        texts, has_more = selectors.message_texts_before(
            room=room, before=upto + 1, limit=settings.CHAT_HISTORY_PAGE
        )
        return wire.history_frame(texts, has_more)
    found = selectors.message_texts_between(room=room, after=after, upto=upto)
    has_more = selectors.older_messages_exist(room=room, seq=after)
    return wire.history_frame([text for _, text in found], has_more)


# ---------------------------------------------------------------- the worker's hub


class Hub:
    def __init__(self, alias: str):
        self.alias = alias
        self.layer = events.layer(alias)
        self.loop = asyncio.get_running_loop()
        # Names this worker's entries in the shared presence store.
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.rooms: dict[int, RoomHub] = {}
        self.channel: str | None = None
        self.tasks: set[asyncio.Task] = set()
        self.subscription_locks: dict[int, asyncio.Lock] = {}
        self.opening = 0  # sockets between their handshake and their hello
        self.draining = False  # shutting down: no socket opens any more
        self.fanout_degraded = False  # the channel layer's Redis does not answer
        self.lag = 0.0  # seconds the latest message event took to get here
        # Opening sockets' access checks: one trip to the database thread for
        # all that open at the same moment (see chat.batching).
        self.authorizer = Batcher(database_sync_to_async(admission.authorize_many))
        self.started = self.loop.create_task(self._start())

    async def _start(self) -> None:
        self.channel = await self.layer.new_channel("hub")
        await self.layer.group_add(events.CONTROL_GROUP, self.channel)
        shutdown.install(self)
        if settings.REDIS_URL:
            self.spawn(self._watch_redis_forever())
        self.spawn(self._read_forever())
        self.spawn(self._heartbeat_forever())
        self.spawn(self._watch_seqs_forever())
        self.spawn(self._expire_sockets_forever())
        self.spawn(self._heartbeat_streams_forever())

    def spawn(self, coroutine) -> asyncio.Task:
        """A task the hub owns: kept referenced until done, errors logged."""
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hub task failed", exc_info=task.exception())

    # -------------------------------------------------------- rooms

    def seat(self, listener: Listener, room: Room) -> Seat:
        return Seat(self, listener, room)

    def reader(self, room: Room) -> RoomReader:
        """History of a room without a seat in it (an HTTP request)."""
        return RoomReader(room, self.rooms.get(room.pk))

    def room_hub(self, room: Room) -> RoomHub:
        room_hub = self.rooms.get(room.pk)
        if room_hub is None:
            room_hub = self.rooms[room.pk] = RoomHub(self, room)
            self.spawn(room_hub.load())
        return room_hub

    def forget(self, room_hub: RoomHub) -> None:
        if self.rooms.get(room_hub.room_id) is room_hub:
            del self.rooms[room_hub.room_id]
        self.spawn(self.unsubscribe(room_hub.room_id))

    def _subscription_lock(self, room_id: int) -> asyncio.Lock:
        return self.subscription_locks.setdefault(room_id, asyncio.Lock())

    async def subscribe(self, room_hub: RoomHub) -> None:
        await self.started
        async with self._subscription_lock(room_hub.room_id):
            await self.layer.group_add(events.room_group(room_hub.room_id), self.channel)

    async def unsubscribe(self, room_id: int) -> None:
        # Under the same lock as subscribe: a room left and entered again at
        # once must end up subscribed.
        async with self._subscription_lock(room_id):
            if room_id not in self.rooms:
                await self.layer.group_discard(events.room_group(room_id), self.channel)

    # -------------------------------------------------------- admission and faults

    def admit(self) -> bool:
        """Room for one more socket to open now? A reconnect storm is let in
        CHAT_MAX_OPENING at a time; the rest are turned away at once and
        cheaply (1013 with a retry hint) instead of all timing out together."""
        if self.opening >= settings.CHAT_MAX_OPENING:
            return False
        self.opening += 1
        return True

    def admitted(self) -> None:
        self.opening -= 1

    def listeners(self) -> list[Listener]:
        return [listener for room in self.rooms.values() for listener in room.listeners.values()]

    def tell_everyone(self, text: str) -> None:
        data = wire.Outgoing(text)
        for listener in self.listeners():
            listener.write(text, data)

    async def _watch_redis_forever(self) -> None:
        """Tell local sockets when messages from other workers stop coming
        (Redis away) and when they come again. Meanwhile the seq watch still
        delivers what is stored, from the database."""
        client = redis_clients.async_client(settings.REDIS_URL)
        while True:
            await asyncio.sleep(REDIS_PROBE_INTERVAL)
            try:
                await client.ping()
            except Exception:
                healthy = False
            else:
                healthy = True
            if healthy == self.fanout_degraded:
                self.fanout_degraded = not healthy
                logger.warning("fan-out %s", "restored" if healthy else "degraded: Redis away")
                self.tell_everyone(wire.FANOUT_OK if healthy else wire.FANOUT_DEGRADED)

    async def drain(self) -> None:
        """Shut down gently: no new sockets, every socket told to reconnect
        elsewhere at once (1012), this worker's presence entries closed (so
        `leave` goes out now, not when they expire)."""
        self.draining = True
        for listener in self.listeners():
            self.close_listener(listener, events.Close.SERVICE_RESTART)
        pending = [t for t in self.tasks if t is not asyncio.current_task()]
        background = ("_read_forever", "_heartbeat_forever", "_watch")
        pending = [t for t in pending if not t.get_coro().__name__.startswith(background)]
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)

    def close_listener(self, listener: Listener, code: int) -> None:
        for room_hub in self.rooms.values():
            if room_hub.listeners.get(listener.conn_id) is listener:
                del room_hub.listeners[listener.conn_id]
        listener.close(code)

    # -------------------------------------------------------- events

    async def _read_forever(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("hub: receiving from the channel layer failed")
                await asyncio.sleep(0.5)
                continue
            try:
                self.dispatch(event)
            except Exception:
                logger.exception("hub: event %r failed", event.get("type"))

    def dispatch(self, event: dict) -> None:
        kind = event["type"]
        if kind == "control.close":
            self._close_matching(event)
            return
        room_hub = self.rooms.get(event.get("room"))
        if room_hub is None:
            return  # a room this worker has left
        if "at" in event and self._shed(room_hub, event):
            return
        handler = _ROOM_HANDLERS.get(kind)
        if handler is None:
            logger.warning("hub: unknown event %r", kind)
            return
        handler(room_hub, event)

    def _shed(self, room_hub: RoomHub, event: dict) -> bool:
        """Load shedding, when events reach this worker late (its CPU cannot
        keep up): typing notices are dropped first; then messages are no
        longer handled one by one but caught up from the database, a room at
        a time, in one query and one batched frame, so the backlog of events
        drains at the cost of a dict lookup each and latency recovers while
        the load lasts. True: the event is handled."""
        lag = time.time() - event["at"]
        if event["type"] == "room.message":
            self.lag = lag
            if lag > settings.CHAT_SHED_LAG and room_hub.loaded.done():
                room_hub.catch_up(event["seq"])
                return True
            return False
        return event.get("shed", False) and lag > settings.CHAT_SHED_LAG / 4

    def _close_matching(self, event: dict) -> None:
        user_id, session_key = event.get("user_id"), event.get("session_key")
        for room_hub in list(self.rooms.values()):
            for listener in list(room_hub.listeners.values()):
                if (user_id is not None and listener.user_id == user_id) or (
                    session_key is not None and listener.session_key == session_key
                ):
                    self.close_listener(listener, event["code"])

    # -------------------------------------------------------- periodic work

    async def _heartbeat_forever(self) -> None:
        interval = max(settings.CHAT_PRESENCE_TTL / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat()
            except Exception:  # Redis away for a moment: try again next beat
                logger.exception("presence heartbeat failed")

    async def heartbeat(self) -> None:
        """Refresh this worker's presence entries, room by room, and sweep out
        the expired entries of dead workers; keep its sockets counted."""
        for room_hub in list(self.rooms.values()):
            online = await services.refresh_presence(
                room_id=room_hub.room_id,
                conn_id=self.worker_id,
                usernames=room_hub.local_usernames(),
            )
            room_hub.online = set(online)
        # Taken after the awaits above, so that no socket closed meanwhile is
        # counted again (limits.SocketCounter.refresh covers those closing
        # while it runs).
        sockets: dict[int, list[str]] = defaultdict(list)
        for room_hub in self.rooms.values():
            for listener in room_hub.listeners.values():
                sockets[listener.user_id].append(listener.conn_id)
        await limits.sockets.refresh(sockets)

    async def _heartbeat_streams_forever(self) -> None:
        """A comment on every event stream now and then (chat.sse): proxies
        close a response that stays quiet too long."""
        while True:
            await asyncio.sleep(settings.CHAT_SSE_HEARTBEAT)
            for listener in self.listeners():
                heartbeat = getattr(listener, "heartbeat", None)
                if heartbeat is not None:
                    heartbeat()

    async def _expire_sockets_forever(self) -> None:
        interval = min(60.0, max(settings.CHAT_MAX_SOCKET_AGE / 20, 0.05))
        while True:
            await asyncio.sleep(interval)
            self.expire_sockets()

    def expire_sockets(self) -> None:
        """Ask sockets past their maximum age to reconnect: their session and
        room access are checked again on the way back in."""
        now = self.loop.time()
        for room_hub in list(self.rooms.values()):
            for listener in list(room_hub.listeners.values()):
                if listener.expires_at <= now:
                    self.close_listener(listener, events.Close.RECONNECT)

    async def _watch_seqs_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_SEQ_WATCH)
            try:
                await self.watch_seqs()
            except Exception:
                logger.exception("seq watch failed")

    async def watch_seqs(self) -> None:
        """One query for the last seq of every local room."""
        loaded = [r for r in self.rooms.values() if r.loaded.done() and not r.loaded.exception()]
        if not loaded:
            return
        counters = await database_sync_to_async(selectors.room_counters)(
            room_ids=[r.room_id for r in loaded]
        )
        for room_hub in loaded:
            if room_hub.room_id in counters:
                last_seq, last_change = counters[room_hub.room_id]
                room_hub.check_last_seq(last_seq)
                room_hub.check_last_change(last_change)

    async def stop(self) -> None:
        for room_hub in self.rooms.values():
            room_hub.close()
        self.started.cancel()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(self.started, *self.tasks, return_exceptions=True)


_ROOM_HANDLERS = {
    "room.message": RoomHub.on_message,
    "room.deleted": RoomHub.on_deleted,
    "room.changed": RoomHub.on_changed,
    "room.frame": RoomHub.on_frame,
    "room.presence": RoomHub.on_presence,
    "room.close": RoomHub.on_close,
}


# ---------------------------------------------------------------- the registry

_hubs: dict[str, Hub] = {}


async def get_hub(alias: str) -> Hub:
    """This worker's hub on channel layer `alias` (tests use a second alias
    as a second worker), started on first use."""
    hub = _hubs.get(alias)
    if hub is None or hub.loop is not asyncio.get_running_loop() or _failed(hub.started):
        hub = _hubs[alias] = Hub(alias)
    await asyncio.shield(hub.started)
    return hub


def _failed(task: asyncio.Task) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def running_hubs() -> list[Hub]:
    return list(_hubs.values())


async def stop_hubs() -> None:
    """Stop every hub of this event loop and forget all (tests)."""
    loop = asyncio.get_running_loop()
    hubs = list(_hubs.values())
    _hubs.clear()
    for hub in hubs:
        if hub.loop is loop:
            await hub.stop()


def forget_hubs() -> None:
    """Forget every hub without stopping it (its event loop is gone)."""
    _hubs.clear()
