"""A reconnect storm on real Daphne processes: a worker holding a few hundred
sockets is SIGKILLed mid-traffic, they all reconnect to another worker at once
with `after`, and none of them misses or repeats a message."""

from __future__ import annotations

import asyncio
import time

import pytest

from .clients import TIMEOUT, ChatClient

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

SOCKETS = 300
MEMBERS = 10  # 30 sockets each, like tabs and devices (and load tools)
MESSAGES = 40


class ResumingClient:
    """One reader that keeps every message it was given across reconnects."""

    def __init__(self, member):
        self.member = member
        self.seqs: list[int] = []
        self.client: ChatClient | None = None

    async def open(self, base: str, slug: str):
        after = self.seqs[-1] if self.seqs else None
        self.client = await ChatClient.open(self.member, base, slug, after)
        self.offset = 0  # messages of this connection already moved to self.seqs

    def collect(self) -> list[int]:
        """All seqs seen so far, over every connection, in arrival order."""
        if self.client is not None:
            fresh = [m["seq"] for m in self.client.messages()][self.offset :]
            self.seqs += fresh
            self.offset += len(fresh)
        return self.seqs


async def test_a_killed_workers_sockets_all_resume_on_another_without_loss_or_repeat(
    workers, spare_worker, make_member, make_room
):
    members = [await make_member(f"storm{i}") for i in range(MEMBERS)]
    sender_member = await make_member("stormsender")
    room = await make_room(sender_member)
    victim, survivor = spare_worker, workers[1]

    readers = [ResumingClient(members[i % MEMBERS]) for i in range(SOCKETS)]
    limit = asyncio.Semaphore(50)

    async def open_on(reader, base):
        async with limit:
            await reader.open(base, room.slug)

    await asyncio.gather(*(open_on(r, victim.ws) for r in readers))
    sender = await ChatClient.open(sender_member, workers[0].ws, room.slug)
    sent = 0

    async def send(count):
        nonlocal sent
        for _ in range(count):
            sent += 1
            await sender.send_message(f"storm #{sent}", client_id=f"storm-{sent}")

    await send(MESSAGES // 2)
    victim.kill()  # SIGKILL mid-traffic: no close frames, no cleanup
    killed_at = time.monotonic()
    traffic = asyncio.create_task(send(MESSAGES // 2))  # goes on during the storm
    for reader in readers:
        await reader.client.wait(lambda r=reader: r.client.closed, "the socket to drop")
        reader.collect()
    # Everyone back at once, on a surviving worker, from the last seq they saw.
    await asyncio.gather(*(r.open(survivor.ws, room.slug) for r in readers))
    back_in = time.monotonic() - killed_at
    await traffic

    for reader in readers:
        await reader.client.wait(
            lambda r=reader: r.collect() and r.collect()[-1] == MESSAGES,
            f"seq {MESSAGES}",
            timeout=TIMEOUT,
        )
        assert reader.collect() == list(range(1, MESSAGES + 1)), "lost or repeated"
    print(f"\n{SOCKETS} sockets back on another worker {back_in:.2f}s after the kill")
    for reader in readers:
        await reader.client.close()
    await sender.close()
