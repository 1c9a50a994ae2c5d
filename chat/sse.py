"""The chat where WebSockets are blocked: Server-Sent Events down, POST up.

`GET /sse/rooms/<slug>/[?after=<seq>]` is a `text/event-stream` carrying the
same frames, in the same order, as the room's WebSocket: each event's data is
one frame; events that carry messages have the last seq as their id, so a
reconnecting EventSource resumes with `Last-Event-ID` exactly like `after`.
Where the WebSocket would close with a code, the stream sends
`{"type": "close", "code": ...}` and ends. A comment every
CHAT_SSE_HEARTBEAT seconds keeps proxies from closing a quiet stream.

The stream is RoomEventStream, a Channels AsyncHttpConsumer around the
room session the WebSocket consumer has too (chat.consumers.RoomSession:
access checks, limits, the hub seat, hello and history) with another writer,
so it is one more listener of the worker's room hub, not a second
implementation. Its `handle` lasts as long as the stream: until the server
ends it (a close) or the client goes away.

`POST /sse/rooms/<slug>/[?conn=<id>]` takes one client frame (the same JSON,
CSRF-protected, the same validation, budgets, rate limits and errors) and
answers with a JSON array of the frames the socket would have answered with
(`ack`, `error`, `pong`, `history`; none for `typing` and `read`). `conn` is
the stream's connection id from its `hello`, so that the stream is skipped
where a socket would be (its own typing, its own read position). Without a
valid CSRF token nothing is done and the answer is `403` with a `forbidden`
error frame (`csrf_refused`), which the page shows like any refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import hub, sockets, wire
from .consumers import RoomSession
from .events import Close

logger = logging.getLogger(__name__)

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]
# Sent first: it flushes the headers through proxies, and tells EventSource
# to wait this long (ms) before its own reconnect (the page reconnects itself).
OPENING = b"retry: 2000\n\n"
HEARTBEAT = b": ping\n\n"


def close_frame(code: int, reason: str = "") -> str:
    fields = {"reason": reason} if reason else {}
    return wire.frame("close", code=code, **fields)


class EventStreamWriter:
    """The socket writer interface (chat.sockets) over a streamed HTTP
    response. Under Daphne it writes the events' bytes straight to the
    request (as DaphneWriter does to a WebSocket) and sees what waits for a
    client that does not read; elsewhere it goes through the ASGI `send`."""

    def __init__(self, send, *, max_queued: int, on_overflow: Callable[[], None]):
        self.send = send
        self.request = sockets.daphne_target(send, "setResponseCode", "channel")
        self.max_queued = max_queued
        self.on_overflow = on_overflow
        self.started = False
        self.finished = False
        self.queue: deque[bytes] = deque()  # the ASGI path only
        self.drainer: asyncio.Task | None = None
        self.tail: bytes | None = None  # the rest of a chunk the client has begun
        # Done once the response is complete: the last of the body sent (or
        # the client gone meanwhile).
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def is_open(self) -> bool:
        if self.finished:
            return False
        return self.request is None or self.request.channel is not None

    def begin(self) -> None:
        """The headers are sent: the events follow the opening."""
        self.started = True
        self._put(OPENING)

    def write(self, text: str, data: wire.Outgoing | None = None) -> None:
        if not self.is_open:
            return
        request = self.request
        if request is not None and request.chunked and request.startedWriting:
            # The event already framed as a chunk, once for every stream of
            # the broadcast, straight to the socket (as DaphneWriter does).
            chunk = data.sse_chunk if data is not None else wire.http_chunk(wire.sse_event(text))
            self.tail = sockets.send_now(request.channel.transport, chunk) or self.tail
        else:
            self._put(data.sse if data is not None else wire.sse_event(text))
        if self.queued_bytes() > self.max_queued:
            self.on_overflow()

    def heartbeat(self) -> None:
        if self.is_open:
            self._put(HEARTBEAT)

    def close(self, code: int, reason: str = "") -> None:
        if self.is_open:
            if self.started:
                self._put(wire.sse_event(close_frame(code, reason)))
            self._finish()

    def close_behind(self, code: int) -> None:
        self.queue.clear()
        transport = self._transport()
        if transport is not None:  # drop what has not begun, as DaphneWriter does
            kept = [chunk for chunk in transport._tempDataBuffer[:1] if chunk is self.tail]
            transport._tempDataBuffer = kept
            transport._tempDataLen = sum(map(len, kept))
        self.close(code)

    def queued_bytes(self) -> int:
        transport = self._transport()
        if transport is None:
            return sum(map(len, self.queue))
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def _transport(self):
        channel = getattr(self.request, "channel", None)
        return getattr(channel, "transport", None)

    def _put(self, data: bytes) -> None:
        if self.request is not None:
            from twisted.web import http

            http.Request.write(self.request, data)
            return
        self.queue.append(data)
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    def client_left(self) -> None:
        """Nothing more goes out (the request is over)."""
        self.finished = True
        self.queue.clear()
        self._ended()

    def _ended(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def _finish(self) -> None:
        self.finished = True
        if self.request is not None:
            with contextlib.suppress(Exception):  # the client left meanwhile
                self.request.finish()
            return self._ended()
        self.queue.append(b"")  # the end of the body
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self.queue:
            data = self.queue.popleft()
            last = self.finished and not self.queue
            try:
                await self.send({"type": "http.response.body", "body": data, "more_body": not last})
            except Exception:
                logger.debug("stream send failed; dropping what is queued", exc_info=True)
                self.queue.clear()
                last = True
            if last:
                self._ended()


class RoomEventStream(RoomSession, AsyncHttpConsumer):
    """A room's frames as Server-Sent Events (see the module's docstring).
    The session comes first in the MRO, so `close(code)` (the hub's) is the
    session's; `send` is AsyncHttpConsumer's, the response's messages."""

    async def __call__(self, scope, receive, send):
        """AsyncConsumer's, without the channel on the channel layer (and
        the task reading it) it would open for every stream: the room's
        events come from the worker's hub. The client's messages go to
        AsyncHttpConsumer's handlers (http_request, http_disconnect)."""
        self.scope = scope
        self.base_send = send
        self.client_receive = receive
        self.writer = EventStreamWriter(
            send, max_queued=settings.CHAT_MAX_QUEUED_BYTES, on_overflow=self._too_far_behind
        )
        with contextlib.suppress(StopConsumer):
            while True:
                await self.dispatch(await receive())

    async def dispatch(self, message):
        """AsyncConsumer's dispatch without its trip to the database thread
        (close_old_connections) before every message: the stream reaches
        the database only through database_sync_to_async, which does that
        itself, and a storm of reconnecting streams would queue behind one
        another on that thread."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def handle(self, body: bytes) -> None:
        """The whole stream: open the session (the headers go first, a
        refusal is a close event), then stay until the server ends the
        stream or the client goes away; `dispatch` is blocked meanwhile, so
        the client's `http.disconnect` is watched for here."""
        await self.open()
        client_gone = asyncio.ensure_future(self.client_receive())
        ended = (client_gone, self.writer.ended)
        try:
            await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client_gone.cancel()

    async def disconnect(self) -> None:
        """However the stream ended (AsyncHttpConsumer calls this after
        `handle`, even when it was cancelled): leave the room, stop writing."""
        self._leave()
        self.writer.client_left()

    async def open_transport(self) -> None:
        await self.send_headers(headers=HEADERS)
        self.writer.begin()

    def requested_after(self) -> str | None:
        """`Last-Event-ID` (an EventSource reconnecting), else `after`."""
        for name, value in self.scope.get("headers", ()):
            if name == b"last-event-id":
                return value.decode("latin-1")
        return super().requested_after()

    def hello_extras(self) -> dict:
        return {"conn": self.conn_id}

    def heartbeat(self) -> None:
        self.writer.heartbeat()


# ---------------------------------------------------------------- frames up


class FramesAnswer:
    """The writer a POSTed frame is answered through: it keeps the frames."""

    max_queued = None
    is_open = True

    def __init__(self):
        self.frames: list[str] = []

    def write(self, text: str, data=None) -> None:
        self.frames.append(text)

    def close(self, code: int, reason: str = "") -> None:
        self.frames.append(close_frame(code, reason))

    def close_behind(self, code: int) -> None:
        self.close(code)

    def queued_bytes(self) -> int:
        return 0

    def body(self) -> bytes:
        return ("[" + ",".join(self.frames) + "]").encode()


@never_cache
@require_POST
async def post_frame(request, slug: str):
    """One client frame for the room, beside its event stream."""
    answer = FramesAnswer()
    status = 200
    try:
        worker_hub = await hub.get_hub(events_alias())
        access = await worker_hub.authorizer.submit(
            (request.COOKIES.get(settings.SESSION_COOKIE_NAME), slug)
        )
    except hub.selectors.RoomNotFound:
        access, status = False, 403
        answer.close(Close.NO_ACCESS)
    except Exception:
        logger.exception("a frame for %s could not be taken", slug)
        access, status = False, 503
        answer.write(
            wire.error_frame("unavailable", "The server cannot do that right now.", retry_after=2)
        )
    if access is None:
        status = 401
        answer.close(Close.SESSION_ENDED)
    if access:
        frame_handler = RoomSession()
        frame_handler.user, frame_handler.room = access.user, access.room
        frame_handler.conn_id = request.GET.get("conn", "")[:64] or "http"
        frame_handler.worker_hub = worker_hub
        frame_handler.seat = worker_hub.reader(access.room)
        frame_handler.writer = answer
        text = request.body.decode("utf-8", "replace")
        await frame_handler.receive(text_data=text)
        if frame_handler.history_task is not None:
            await frame_handler.history_task
    return HttpResponse(answer.body(), status=status, content_type="application/json")


# The page's CSRF token no longer matches its cookie (a login elsewhere
# rotated it, the cookie was cleared): only a reload gives it a new one.
CSRF_REFUSED = "This page is out of date: reload it, then send again."


def csrf_refused() -> HttpResponse:
    """A frame POSTed without a valid CSRF token: refused before the view
    (chat.views.csrf_failure), answered as frames the page reads rather than
    Django's HTML page, which it could not."""
    answer = FramesAnswer()
    answer.write(wire.error_frame("forbidden", CSRF_REFUSED))
    return HttpResponse(answer.body(), status=403, content_type="application/json")


def events_alias() -> str:
    from channels.layers import DEFAULT_CHANNEL_LAYER

    return DEFAULT_CHANNEL_LAYER
