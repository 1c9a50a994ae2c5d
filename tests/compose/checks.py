"""What the compose test asks of the replicas behind nginx, as functions that
return the problems they find (so that the negative check can show that they
do find them)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

from tests.cluster.clients import ChatClient, Member

from .stack import Replicas

TIMEOUT = 10  # seconds for any one expected frame
TYPING_EVERY = 1.6  # seconds: just over the server's CHAT_TYPING_INTERVAL (1.5)


@dataclass
class Placed:
    client: ChatClient
    replica: str


class Sockets:
    """Opens sockets through the load balancer and records, from the
    replicas' logs, where each one landed. One at a time: that is what makes
    the logs unambiguous."""

    def __init__(self, replicas: Replicas, base: str, slug: str):
        self.replicas, self.base, self.slug = replicas, base, slug
        self.path = f"/ws/rooms/{slug}/"
        self.placed: list[Placed] = []
        self._one_at_a_time = asyncio.Lock()

    async def open(self, member: Member, after: int | None = None) -> Placed:
        async with self._one_at_a_time:
            before = await asyncio.to_thread(self.replicas.connects, self.path)
            client = await ChatClient.open(member, self.base, self.slug, after)
            placed = Placed(client, await self.replicas.locate(before, self.path))
        self.placed.append(placed)
        return placed

    async def open_until_every_replica(
        self, members: list[Member], replicas: list[str], timeout: float = 30
    ) -> None:
        """One socket per member in turn (and further rounds, as each member's
        second, third... socket) until every replica holds one."""
        deadline = time.monotonic() + timeout
        for member in itertools.cycle(members):
            enough = len(self.placed) >= len(members)
            if enough and (set(replicas) <= self.holding() or time.monotonic() > deadline):
                return
            await self.open(member)

    def holding(self) -> set[str]:
        return {p.replica for p in self.placed}

    def by_replica(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.placed:
            counts[p.replica] = counts.get(p.replica, 0) + 1
        return counts

    async def close(self) -> None:
        for p in self.placed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.client.close(), 5)


async def waited(client: ChatClient, predicate, what: str, timeout: float) -> str | None:
    """None when it happened in time, else the problem."""
    try:
        await client.wait(predicate, what, timeout)
    except AssertionError as error:
        return str(error)
    return None


async def presence_problems(sockets: Sockets, timeout: float = TIMEOUT) -> list[str]:
    """Every socket's `hello` lists whoever had connected before it, and it
    then sees a `join` for everyone who came after."""
    problems = []
    names: list[str] = []
    for p in sockets.placed:
        if p.client.name not in names:
            names.append(p.client.name)
        expected = sorted(names)
        if p.client.hello["online"] != expected:
            problems.append(
                f"{p.client.label} on {p.replica[:12]}: hello says online "
                f"{p.client.hello['online']}, expected {expected}"
            )

    async def sees_everyone(p: Placed) -> str | None:
        def online():
            seen = set(p.client.hello["online"])
            for kind, user in p.client.presence(others_only=False):
                (seen.add if kind == "join" else seen.discard)(user)
            return seen == set(names)

        return await waited(p.client, online, "everyone online", timeout)

    found = await asyncio.gather(*(sees_everyone(p) for p in sockets.placed))
    problems += [
        f"presence on {p.replica[:12]}: {f}"
        for p, f in zip(sockets.placed, found, strict=True)
        if f
    ]
    return problems


async def typing_problems(sockets: Sockets, timeout: float) -> list[str]:
    """Everyone types until every socket has heard every other one. Like a
    person's page, each socket says so again every TYPING_EVERY seconds: a
    worker running late may shed a typing notice, a cut-off one hears none."""
    heard_all = asyncio.Event()

    async def keep_typing():
        while not heard_all.is_set():
            for p in sockets.placed:
                with contextlib.suppress(Exception):
                    await p.client.send(type="typing")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard_all.wait(), TYPING_EVERY)

    async def hears_everyone(p: Placed) -> str | None:
        others = {q.client.name for q in sockets.placed if q is not p}

        def heard():
            return others <= {f["user"] for f in p.client.frames if f["type"] == "typing"}

        return await waited(p.client, heard, f"typing from {sorted(others)}", timeout)

    typing = asyncio.create_task(keep_typing())
    try:
        found = await asyncio.gather(*(hears_everyone(p) for p in sockets.placed))
    finally:
        heard_all.set()
        await typing
    return [
        f"fan-out (typing) to {p.client.label} on {p.replica[:12]}: {f}"
        for p, f in zip(sockets.placed, found, strict=True)
        if f
    ]


async def fan_out_problems(sockets: Sockets, tag: str, timeout: float = TIMEOUT) -> list[str]:
    """Every room event reaches every socket on every replica. Typing notices
    (only the channel layer carries them): each socket hears everyone else.
    Messages: every socket sends one at once, then the first sends a last one;
    every socket gets all of them exactly once, in seq order, and all agree
    on the order. (A replica cut off from the channel layer may still get
    stored messages late from the database; it never gets a typing notice.)"""
    problems = await typing_problems(sockets, timeout)
    clients = [p.client for p in sockets.placed]
    start = max((c.hello["last_seq"] or 0) for c in clients)
    acks = await asyncio.gather(
        *(c.send_message(f"{tag} from {c.label} #{i}", f"{tag}-{i}") for i, c in enumerate(clients))
    )
    last = await clients[0].send_message(f"{tag} last", f"{tag}-last")
    expected = list(range(start + 1, last["seq"] + 1))
    if sorted(a["seq"] for a in [*acks, last]) != expected:
        problems.append(f"acks name seqs {sorted(a['seq'] for a in acks)}, expected {expected}")

    async def gets_everything(p: Placed) -> str | None:
        has_last = lambda: any(m["seq"] == last["seq"] for m in p.client.messages())  # noqa: E731
        missing = await waited(p.client, has_last, f"the last message (seq {last['seq']})", timeout)
        seqs = [s for s in p.client.seqs() if s > start]
        if seqs != expected:
            return f"got seqs {seqs}, expected {expected}" + (f" ({missing})" if missing else "")
        return missing

    found = await asyncio.gather(*(gets_everything(p) for p in sockets.placed))
    problems += [
        f"fan-out to {p.client.label} on {p.replica[:12]}: {f}"
        for p, f in zip(sockets.placed, found, strict=True)
        if f
    ]
    if not problems:
        reference = [(m["seq"], m["id"], m["body"]) for m in clients[0].messages()]
        for c in clients[1:]:
            if [(m["seq"], m["id"], m["body"]) for m in c.messages()] != reference:
                problems.append(f"{c.label} saw another order than {clients[0].label}")
    return problems


# ---------------------------------------------------------------- a resuming client


@dataclass
class ResumingClient:
    """What the room page does with its socket: when it drops, connect again
    through the load balancer with `after` = the last seq it has, and send
    again every message not yet acknowledged, with the same client_id."""

    member: Member
    sockets: Sockets
    connections: list[Placed] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # client_id -> body, unacked
    acks: dict[str, dict] = field(default_factory=dict)

    @property
    def current(self) -> ChatClient:
        return self.connections[-1].client

    def messages(self) -> list[dict]:
        """Everything received, over every connection, in arrival order."""
        return [m for placed in self.connections for m in placed.client.messages()]

    def last_seq(self) -> int | None:
        seqs = [m["seq"] for m in self.messages()]
        return max(seqs) if seqs else None

    async def connect(self) -> None:
        self.connections.append(await self.sockets.open(self.member, after=self.last_seq()))
        for client_id, body in list(self.pending.items()):
            await self.current.send(type="message.send", body=body, client_id=client_id)

    async def send(self, body: str, client_id: str) -> None:
        self.pending[client_id] = body
        with contextlib.suppress(Exception):  # a dead socket: sent again on reconnect
            await self.current.send(type="message.send", body=body, client_id=client_id)

    def collect_acks(self) -> None:
        for placed in self.connections:
            for frame in placed.client.frames:
                if frame["type"] == "ack":
                    self.acks.setdefault(frame["client_id"], frame)
                    self.pending.pop(frame["client_id"], None)

    async def stay_connected(self, stop: asyncio.Event, give_up_after: float = 30) -> None:
        while not stop.is_set():
            self.collect_acks()
            if not self.current.closed:
                await asyncio.sleep(0.05)
                continue
            deadline = time.monotonic() + give_up_after
            delay = 0.1
            while True:
                try:
                    await self.connect()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(delay)
                    delay = min(1.0, delay * 2)
