"""WebSocket chat clients over real sockets, and committed users and rooms for
them, shared by the multi-worker tests and the deployment tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass

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


def _make_room(owner: Member):
    try:
        return services.create_room(owner=owner.user, name=f"Room {uuid.uuid4().hex[:8]}")
    finally:
        connections.close_all()


# await make_member(name): a committed user with a logged-in session (the test
# must be django_db(transaction=True) so that other processes see it).
make_member = sync_to_async(_make_member)
# await make_room(owner): a committed public room.
make_room = sync_to_async(_make_room)


# ---------------------------------------------------------------- clients


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
        await client.wait(lambda: len(client.frames) >= 2, "hello and history")
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.label}: {what} did not happen within {timeout}s; closed="
                    f"{self.closed} (code {self.close_code}), last frames: {self.frames[-8:]}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

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
