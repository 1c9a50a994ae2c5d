"""Writing frames to one WebSocket, in order, without a task per frame.

Under Daphne a socket's ASGI `send` is `partial(server.handle_reply,
protocol)`: every frame goes through a coroutine, a message dict and
autobahn's framing. The room hub sends the same frame to every local socket,
so `DaphneWriter` writes the frame's bytes, built once per broadcast, straight
to the connection's transport. It also sees how many bytes are waiting for a
client that does not read, which bounds that client's memory.

Any other server (and the in-process test communicator) gets `AsgiWriter`: the
same interface over the ASGI `send`, one drain task keeping frames in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections import deque
from collections.abc import Callable

from . import daphne_tuning, wire

logger = logging.getLogger(__name__)


# What the kernel may hold for one socket (it doubles this for its own
# bookkeeping): with CHAT_MAX_QUEUED_BYTES in the process, the most a client
# that stops reading costs. Chat traffic never needs more in flight.
SEND_BUFFER = 128 * 1024
# Seconds a socket closed for falling behind (4008) gets to read what was in
# flight and the close frame before the connection is dropped.
BEHIND_CLOSE_GRACE = 5.0


def send_now(transport, data: bytes) -> bytes | None:
    """Write to the socket at once when nothing is queued before it, as
    asyncio's and libuv's transports do. Twisted's `write` always queues and
    registers for writability first: two epoll_ctl calls and a loop turn per
    frame per socket, a third of the fan-out's CPU when profiled. What the
    kernel does not take now goes to Twisted's queue; returns that rest, if
    the kernel took part of the data."""
    idle = (
        not transport._tempDataLen
        and len(transport.dataBuffer) == transport.offset
        and transport.connected
        and not transport._writeDisconnected
        and not getattr(transport, "TLS", False)
    )
    rest = None
    if idle:
        try:
            sent = transport.socket.send(data)
        except OSError:  # full (EAGAIN) or broken: Twisted's write handles both
            sent = 0
        if sent == len(data):
            return None
        data = data[sent:]
        if sent:
            rest = data
    transport.write(data)
    return rest


class DaphneWriter:
    """Frames straight to a Daphne (autobahn) connection."""

    def __init__(self, protocol, *, max_queued: int, on_overflow: Callable[[], None]):
        self.protocol = protocol
        self.max_queued = max_queued
        self.on_overflow = on_overflow
        self.tail: bytes | None = None  # see close_behind
        with contextlib.suppress(AttributeError, OSError):  # not a plain TCP socket
            protocol.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)

    @property
    def is_open(self) -> bool:
        return self.protocol.state == self.protocol.STATE_OPEN

    def write(self, text: str, data: wire.Outgoing | None = None) -> None:
        """Send one text frame; `data`: the same frame shared by a broadcast."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return  # closing or closed: nothing more goes out
        if protocol._perMessageCompress is not None or protocol.send_queue:
            protocol.sendMessage(text.encode("utf-8"), False)  # autobahn frames it
        else:
            self._send(data.ws if data is not None else wire.websocket_text_frame(text))
        if self.queued_bytes() > self.max_queued:
            self.on_overflow()

    def _send(self, data: bytes) -> None:
        tail = send_now(self.protocol.transport, data)
        if tail is not None:
            self.tail = tail  # the rest of a frame the client has begun

    def queued_bytes(self) -> int:
        """Bytes written but not yet taken by the kernel (a client that stops
        reading makes this grow)."""
        transport = self.protocol.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def close(self, code: int, reason: str = "") -> None:
        """Close with any code, 1012 and 1013 included (autobahn's public
        sendClose allows only 1000 and 3000-4999); the connection drops if
        the client does not answer the close within autobahn's timeout."""
        if self.is_open:
            self.protocol.sendCloseFrame(
                code=code, reasonUtf8=reason.encode("utf-8")[:123] or None, isReply=False
            )

    def close_behind(self, code: int) -> None:
        """Close a client that fell too far behind: the frames not started
        yet are dropped at once (their memory with them), the close frame
        follows the one being written, and the client gets a few seconds to
        read up to it. (Twisted keeps each write as it is in `_tempDataBuffer`
        until it moves them to `dataBuffer`, so what stays ends on a frame
        boundary.)"""
        transport = self.protocol.transport
        # Only the rest of a frame written in part straight to the socket
        # (`_send`) must stay: the client has its first bytes.
        kept = [chunk for chunk in transport._tempDataBuffer[:1] if chunk is self.tail]
        transport._tempDataBuffer = kept
        transport._tempDataLen = sum(map(len, kept))
        self.protocol.closeHandshakeTimeout = BEHIND_CLOSE_GRACE
        self.close(code)


class AsgiWriter:
    """Frames through the ASGI `send` callable, in the order written."""

    max_queued = None

    def __init__(self, send):
        self.send = send
        self.queue: deque[dict] = deque()
        self.drainer: asyncio.Task | None = None
        self.closed = False

    @property
    def is_open(self) -> bool:
        return not self.closed

    def write(self, text: str, data: wire.Outgoing | None = None) -> None:
        if not self.closed:
            self._put({"type": "websocket.send", "text": text})

    def queued_bytes(self) -> int:
        return sum(len(m.get("text", "")) for m in self.queue)

    def close(self, code: int, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            close = {"type": "websocket.close", "code": code}
            if reason:  # 1013's retry_after hint (ASGI spec 2.3)
                close["reason"] = reason
            self._put(close)

    def close_behind(self, code: int) -> None:
        self.queue.clear()
        self.close(code)

    def _put(self, message: dict) -> None:
        self.queue.append(message)
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self.queue:
            try:
                await self.send(self.queue.popleft())
            except Exception:  # the client went away mid-send: the rest is moot
                logger.debug("send failed; dropping queued frames", exc_info=True)
                self.queue.clear()


def daphne_target(send, *attributes: str):
    """What is behind Daphne's `send` (partial(server.handle_reply, x)): the
    autobahn protocol of a WebSocket, the request of an HTTP response; x if
    it has these attributes, else None (another server, a test client)."""
    if isinstance(send, functools.partial) and send.args:
        target = send.args[0]
        if all(hasattr(target, name) for name in attributes):
            return target
    return None


def daphne_protocol(send):
    """The autobahn protocol behind a WebSocket's `send`, or None."""
    return daphne_target(send, "sendCloseFrame", "transport")


def writer_for(send, *, max_queued: int, on_overflow: Callable[[], None]):
    protocol = daphne_protocol(send)
    if protocol is not None:
        daphne_tuning.tune(protocol)
        return DaphneWriter(protocol, max_queued=max_queued, on_overflow=on_overflow)
    return AsgiWriter(send)
