"""WebSocket chat clients over real sockets, and committed users and rooms for
them, shared by the multi-worker tests and the deployment tests."""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import json
import random
import re
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, replace

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chat import services

TIMEOUT = 10  # seconds to wait for any one expected frame
PRESENCE_TTL = 3  # the workers' CHAT_PRESENCE_TTL: heartbeats every TTL/3 s


# ---------------------------------------------------------------- users and rooms


@dataclass
class Member:
    user: object
    name: str
    cookie: str  # the id of a logged-in session


def _make_member(name: str) -> Member:
    try:
        user = get_user_model().objects.create_user(username=name, password="a-long-password")
        client = Client()
        client.force_login(user)
        return Member(user, name, client.cookies["sessionid"].value)
    finally:
        # This worker thread's connection: the test database is dropped at
        # the end, which PostgreSQL refuses while a session is open on it.
        connections.close_all()


def _log_in_again(member: Member) -> Member:
    try:
        client = Client()
        client.force_login(member.user)
        return replace(member, cookie=client.cookies["sessionid"].value)
    finally:
        connections.close_all()


def _make_room(owner: Member, *, is_private: bool = False, members: tuple[Member, ...] = ()):
    try:
        room = services.create_room(
            owner=owner.user, name=f"Room {uuid.uuid4().hex[:8]}", is_private=is_private
        )
        for member in members:
            services.add_member(room=room, actor=owner.user, username=member.name)
        return room
    finally:
        connections.close_all()


# await make_member(name): a committed user with a logged-in session (the test
# must be django_db(transaction=True) so that other processes see it).
make_member = sync_to_async(_make_member)
# await log_in_again(member): the same user in a session of its own (another device).
log_in_again = sync_to_async(_log_in_again)
# await make_room(owner, is_private=False, members=()): a committed room, public
# unless `is_private`, with `members` added by its owner.
make_room = sync_to_async(_make_room)


def _post_from_room_page(server, member: Member, slug: str, path: str, **fields) -> int:
    """What the room page's forms do: load the page (CSRF token), then POST."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    jar.set_cookie(
        http.cookiejar.Cookie(
            0, "sessionid", member.cookie, None, False, "127.0.0.1", False, False, "/",
            True, False, None, False, None, None, {},
        )
    )  # fmt: skip
    page = opener.open(f"{server.http}/rooms/{slug}/", timeout=TIMEOUT).read().decode()
    token = re.search(r'data-csrf="([^"]+)"', page)[1]
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode()
    request = urllib.request.Request(f"{server.http}{path}", data=body)
    with opener.open(request, timeout=TIMEOUT) as response:
        return response.status  # after the redirect, followed


# await post_from_room_page(server, member, slug, path, **fields) -> the status
# of the page the POST ends on, as `member` in their session.
post_from_room_page = sync_to_async(_post_from_room_page)


# ---------------------------------------------------------------- clients


async def wait_for_change(
    predicate, changed: asyncio.Event, timeout: float, failure, recheck_every: float | None = None
):
    """Wait until predicate() is truthy (re-checked each time `changed` is
    set, and every `recheck_every` seconds for state that changes without
    it) and return it; AssertionError(failure()) after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        changed.clear()
        result = predicate()
        if result:
            return result
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(failure())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(remaining, recheck_every or remaining))


class Refused(Exception):
    """The server closed the socket before its hello."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"closed with {code} {reason}")
        self.code, self.reason = code, reason

    @property
    def retry_after(self) -> float:
        """1013's hint (`retry_after=<seconds>`), or 0."""
        hint = re.search(r"retry_after=([\d.]+)", self.reason)
        return float(hint[1]) if hint else 0.0


class ChatClient:
    """One WebSocket to one server. A reader task records every frame."""

    def __init__(self, member: Member, ws, label: str):
        self.member, self.ws, self.label = member, ws, label
        self.frames: list[dict] = []
        self.closed = False
        self.close_code: int | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, member: Member, base: str, slug: str, after: int | None = None
    ) -> ChatClient:
        """Connect to ws://host:port `base` and wait for `hello` and `history`."""
        url = f"{base}/ws/rooms/{slug}/" + (f"?after={after}" if after is not None else "")
        ws = await connect(
            url,
            additional_headers={"Cookie": f"sessionid={member.cookie}"},
            origin=base.replace("ws://", "http://", 1),
            open_timeout=TIMEOUT,
        )
        client = cls(member, ws, f"{member.name}@{base.rsplit(':', 1)[-1]}")
        await client.wait(lambda: len(client.frames) >= 2 or client.closed, "hello and history")
        if client.closed and len(client.frames) < 2:
            raise Refused(client.close_code, ws.close_reason or "")
        assert client.hello["type"] == "hello", client.frames
        assert client.history["type"] == "history", client.frames
        return client

    @property
    def name(self) -> str:
        return self.member.name

    async def _read(self):
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.close_code = self.ws.close_code
            self._changed.set()

    async def wait(self, predicate, what: str, timeout: float = TIMEOUT):
        """Wait until predicate() is truthy, and return it."""
        return await wait_for_change(
            predicate,
            self._changed,
            timeout,
            lambda: (
                f"{self.label}: {what} did not happen within {timeout}s; closed="
                f"{self.closed} (code {self.close_code}), last frames: {self.frames[-8:]}"
            ),
        )

    # -------------------------------------------------------- views of the stream

    @property
    def hello(self) -> dict:
        return self.frames[0]

    @property
    def history(self) -> dict:
        return self.frames[1]

    def messages(self) -> list[dict]:
        """Every message object received, in arrival order: the first history
        page, then live `message` / `messages` frames."""
        out = list(self.history["messages"])
        for frame in self.frames[2:]:
            if frame["type"] == "message":
                out.append(frame["message"])
            elif frame["type"] == "messages":
                out.extend(frame["messages"])
        return out

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages()]

    def presence(self, *, others_only: bool = True) -> list[tuple[str, str]]:
        """(`join`|`leave`, username) in arrival order."""
        return [
            (f["type"], f["user"])
            for f in self.frames
            if f["type"] in ("join", "leave") and not (others_only and f["user"] == self.name)
        ]

    def has_message(self, body: str) -> bool:
        return any(m["body"] == body for m in self.messages())

    # -------------------------------------------------------- actions

    async def send(self, **frame):
        await self.ws.send(json.dumps(frame))

    async def send_message(self, body: str, client_id: str) -> dict:
        """Send and wait for the ack; returns it."""
        await self.send(type="message.send", body=body, client_id=client_id)
        return await self.wait(
            lambda: next(
                (f for f in self.frames if f["type"] == "ack" and f["client_id"] == client_id),
                None,
            ),
            f"ack for {client_id}",
        )

    async def wait_presence(self, kind: str, user: str, timeout: float = TIMEOUT):
        await self.wait(lambda: (kind, user) in self.presence(), f"{kind} {user}", timeout)

    async def wait_messages(self, count: int, timeout: float = TIMEOUT):
        await self.wait(lambda: len(self.messages()) >= count, f"{count} messages", timeout)

    async def close(self):
        await self.ws.close()
        await self._reader


@contextlib.asynccontextmanager
async def client_pool():
    """Yields open(member, base, slug, after=None) -> ChatClient; closes every
    client it opened on the way out."""
    opened: list[ChatClient] = []

    async def open_one(member: Member, base: str, slug: str, after: int | None = None):
        client = await ChatClient.open(member, base, slug, after)
        opened.append(client)
        return client

    try:
        yield open_one
    finally:
        for client in opened:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)


# ---------------------------------------------------------------- a client like the page


class ResumingClient:
    """Behaves as the room page does: when its socket ends (but with 4401 or
    4403) it reconnects, to the next of `bases`, with `after` the last seq it
    has; it re-sends what was not acknowledged with the same client_id, and
    sends again after `unavailable` or `rate_limited` once `retry_after` has
    passed. It keeps every message it got, over all its connections, and
    every close code it saw."""

    def __init__(self, member: Member, bases: list[str], slug: str):
        self.member, self.bases, self.slug = member, bases, slug
        self.received: list[dict] = []  # message objects, in arrival order
        self.close_codes: list[int | None] = []
        self.statuses: list[str] = []
        self.acks: dict[str, dict] = {}
        self.unacked: dict[str, str] = {}  # client_id: body
        self.client: ChatClient | None = None
        self.connections = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopped = False

    async def start(self, timeout: float = TIMEOUT) -> ResumingClient:
        self._task = asyncio.create_task(self._run())
        await self.wait(lambda: self.client is not None, "the first connection", timeout)
        return self

    @property
    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.received]

    async def _run(self):
        retry = 0.05
        while not self._stopped:
            base = self.bases[self.connections % len(self.bases)]
            after = self.received[-1]["seq"] if self.received else None
            try:
                client = await ChatClient.open(self.member, base, self.slug, after)
            except Refused as refused:
                self.connections += 1
                self.close_codes.append(refused.code)
                if refused.code in (4401, 4403):
                    return
                # As the page does: the server's hint plus a random part of it.
                pause = refused.retry_after * (1 + random.random()) or retry
                await asyncio.sleep(pause)  # the client's own backoff, not synchronisation
                retry = min(retry * 2, 1.0)
                continue
            except Exception:  # dropped, or the worker is gone
                self.connections += 1
                await asyncio.sleep(retry * (1 + random.random()))  # the client's backoff
                retry = min(retry * 2, 1.0)
                continue
            retry = 0.05
            self.connections += 1
            self.client, seen = client, 2  # hello and history are in
            self.received += client.history["messages"]
            for client_id, body in list(self.unacked.items()):
                await self._send_frame(client_id, body)
            while True:
                await client.wait(
                    lambda c=client, n=seen: len(c.frames) > n or c.closed, "a frame", 3600
                )
                for frame in client.frames[seen:]:
                    await self._take(frame)
                seen = len(client.frames)
                self._changed.set()
                if client.closed or self._stopped:
                    break
            self.close_codes.append(client.close_code)
            if client.close_code in (4401, 4403):
                return

    async def _take(self, frame: dict):
        kind = frame["type"]
        if kind == "message":
            self.received.append(frame["message"])
        elif kind == "messages":
            self.received += frame["messages"]
        elif kind == "ack":
            self.acks[frame["client_id"]] = frame
            self.unacked.pop(frame["client_id"], None)
        elif kind == "status":
            self.statuses.append(frame["fanout"])
        elif kind == "error" and frame["code"] in ("unavailable", "rate_limited"):
            asyncio.get_running_loop().call_later(
                frame.get("retry_after", 1), lambda: asyncio.ensure_future(self._resend())
            )

    async def _resend(self):
        for client_id, body in list(self.unacked.items()):
            await self._send_frame(client_id, body)

    async def _send_frame(self, client_id: str, body: str):
        with contextlib.suppress(Exception):  # the socket is gone: sent after reconnecting
            await self.client.send(type="message.send", body=body, client_id=client_id)

    async def send(self, body: str, client_id: str) -> None:
        """Send (it is retried until acknowledged, across reconnects)."""
        self.unacked[client_id] = body
        await self._send_frame(client_id, body)

    async def wait(self, predicate, what: str, timeout: float = TIMEOUT):
        return await wait_for_change(
            predicate,
            self._changed,
            timeout,
            lambda: (
                f"{self.member.name}: {what} did not happen within {timeout}s; "
                f"close codes {self.close_codes}, seqs {self.seqs[-10:]}"
            ),
            recheck_every=0.25,  # its connection's state changes without `_changed`
        )

    async def stop(self):
        self._stopped = True
        # The socket closes first: a cancel that Python 3.11's wait_for
        # swallows (its inner wait done at the same moment) would otherwise
        # leave the loop waiting an hour for the next frame.
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 5)
