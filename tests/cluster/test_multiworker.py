"""Three real Daphne workers behind one Redis and one database: fan-out,
ordering, resume, presence, and a worker killed with SIGKILL."""

from __future__ import annotations

import asyncio
import time

import pytest

from .clients import PRESENCE_TTL, TIMEOUT

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

# A dead worker's sockets expire PRESENCE_TTL after their last refresh, and a
# surviving worker sweeps them on its next heartbeat (every TTL/3 s).
LEAVE_BOUND = PRESENCE_TTL + 2 * PRESENCE_TTL / 3 + 2


async def test_a_message_from_any_worker_reaches_everyone_on_every_worker_once(
    workers, make_member, make_room, open_client
):
    members = [await make_member(f"fan{i}") for i in range(6)]
    room = await make_room(members[0])
    # Two clients on each worker.
    clients = [
        await open_client(m, workers[i % len(workers)], room.slug) for i, m in enumerate(members)
    ]

    acks = await asyncio.gather(
        *(c.send_message(f"hello from {c.name}", client_id=f"{c.name}-1") for c in clients)
    )
    sent = {ack["id"] for ack in acks}
    assert len(sent) == len(clients)
    # One more message after all the others: it has the highest seq, so a
    # client that has it has been given everything before it.
    last = await clients[0].send_message("last", client_id="last")

    for client in clients:
        await client.wait_messages(len(clients) + 1)
    for client in clients:
        ids = [m["id"] for m in client.messages()]
        assert sorted(ids) == sorted(sent | {last["id"]}), client.label
        assert len(ids) == len(set(ids)), f"{client.label} got a message twice"
        assert client.seqs() == list(range(1, len(clients) + 2)), client.label
        assert client.messages()[-1]["body"] == "last"


async def test_concurrent_senders_on_different_workers_see_one_order_and_resume_is_exact(
    workers, make_member, make_room, open_client
):
    per_sender = 20
    senders_m = [await make_member(f"snd{i}") for i in range(3)]
    watcher_m, resumer_m = await make_member("watcher"), await make_member("resumer")
    room = await make_room(senders_m[0])
    senders = [await open_client(m, workers[i], room.slug) for i, m in enumerate(senders_m)]
    watcher = await open_client(watcher_m, workers[1], room.slug)
    resumer = await open_client(resumer_m, workers[0], room.slug)
    total = per_sender * len(senders)
    reconnected = asyncio.Event()
    acks: dict[str, dict] = {}

    async def send_all(client):
        for i in range(per_sender):
            if i == per_sender - 5:
                # The last few go out after the resumer is back: some messages
                # reach it live, the ones sent while it was away by `after`.
                await reconnected.wait()
            body = f"{client.name} #{i}"
            acks[body] = await client.send_message(body, client_id=f"{client.name}-{i}")

    async def drop_and_resume():
        await resumer.wait(lambda: len(resumer.messages()) >= 10, "10 messages")
        await resumer.close()
        seen = resumer.seqs()
        assert seen == list(range(1, len(seen) + 1)), f"not contiguous before the drop: {seen}"
        # Back on another worker, mid-stream, from the last seq it has.
        resumed = await open_client(resumer_m, workers[2], room.slug, after=seen[-1])
        reconnected.set()
        return seen, resumed

    *_, (before, resumed) = await asyncio.gather(*(send_all(s) for s in senders), drop_and_resume())

    for client in [*senders, watcher]:
        await client.wait_messages(total)
    await resumed.wait(lambda: resumed.seqs() and resumed.seqs()[-1] >= total, "the last seq")

    # Every client on every worker: seqs 1..total, in that order, each once,
    # and the same message at each seq.
    reference = [(m["seq"], m["id"], m["body"]) for m in watcher.messages()]
    assert [s for s, _, _ in reference] == list(range(1, total + 1))
    for client in senders:
        got = [(m["seq"], m["id"], m["body"]) for m in client.messages()]
        assert got == reference, f"{client.label} saw another order"
    # Each ack names the seq its message got.
    by_body = {body: (seq, mid) for seq, mid, body in reference}
    assert len(acks) == total
    for body, ack in acks.items():
        assert (ack["seq"], ack["id"]) == by_body[body], body

    # The resumer: 1..K before the drop, then exactly K+1..total after it
    # (history for the gap, live messages after), nothing twice, nothing lost.
    k = before[-1]
    assert resumed.hello["last_seq"] >= k
    assert all(m["seq"] > k for m in resumed.history["messages"])
    after = [(m["seq"], m["id"], m["body"]) for m in resumed.messages()]
    assert after == reference[k:], "resume with `after` did not give exactly the missing messages"
    assert len(resumed.messages()) > len(resumed.history["messages"]), "nothing arrived live"


async def test_presence_agrees_across_workers(workers, make_member, make_room, open_client):
    a, b, c, d, e = [await make_member(n) for n in ("pa", "pb", "pc", "pd", "pe")]
    room = await make_room(a)
    w0, w1, w2 = workers

    ca = await open_client(a, w0, room.slug)
    assert ca.hello["online"] == ["pa"]
    cb = await open_client(b, w1, room.slug)
    assert cb.hello["online"] == ["pa", "pb"]
    await ca.wait_presence("join", "pb")
    cc = await open_client(c, w2, room.slug)
    assert cc.hello["online"] == ["pa", "pb", "pc"]
    await ca.wait_presence("join", "pc")
    await cb.wait_presence("join", "pc")

    # pb's second socket, on another worker: pb is online already, no join.
    cb2 = await open_client(b, w2, room.slug)
    assert cb2.hello["online"] == ["pa", "pb", "pc"]
    # A later event seen by everyone fences the absence of a second join.
    cd = await open_client(d, w0, room.slug)
    assert cd.hello["online"] == ["pa", "pb", "pc", "pd"]
    for client in (ca, cb, cc, cb2):
        await client.wait_presence("join", "pd")

    # pb closes one of two sockets: still online, no leave.
    await cb.close()
    await cd.close()
    for client in (ca, cc, cb2):
        await client.wait_presence("leave", "pd")
    # pb closes the last one: leave, on every worker.
    await cb2.close()
    for client in (ca, cc):
        await client.wait_presence("leave", "pb")

    ce = await open_client(e, w1, room.slug)
    assert ce.hello["online"] == ["pa", "pc", "pe"]
    for client in (ca, cc):
        await client.wait_presence("join", "pe")

    assert ca.presence() == [
        ("join", "pb"),
        ("join", "pc"),
        ("join", "pd"),
        ("leave", "pd"),
        ("leave", "pb"),
        ("join", "pe"),
    ]
    assert cc.presence() == [("join", "pd"), ("leave", "pd"), ("leave", "pb"), ("join", "pe")]


async def test_killed_worker_drops_out_of_presence_and_its_clients_catch_up_elsewhere(
    workers, spare_worker, make_member, make_room, open_client
):
    a, b, k, m, f = [await make_member(n) for n in ("ka", "kb", "kk", "km", "kf")]
    room = await make_room(a)
    w0, w1, _ = workers
    victim = spare_worker

    ca = await open_client(a, w0, room.slug)
    cb = await open_client(b, w1, room.slug)
    ck = await open_client(k, victim, room.slug)
    # km has a socket on the victim and one on a surviving worker.
    cm_victim = await open_client(m, victim, room.slug)
    cm = await open_client(m, w0, room.slug)
    assert cm.hello["online"] == ["ka", "kb", "kk", "km"]
    for client in (ca, cb):
        await client.wait_presence("join", "km")

    for i in range(3):
        await ca.send_message(f"before #{i}", client_id=f"before-{i}")
    await ck.wait_messages(3)
    seen_by_k = ck.seqs()
    assert seen_by_k == [1, 2, 3]
    joins_before = len(ca.presence())

    victim.kill()  # SIGKILL: no disconnect handler runs
    killed_at = time.monotonic()
    await ck.wait(lambda: ck.closed, "the socket to close")
    await cm_victim.wait(lambda: cm_victim.closed, "the socket to close")

    # Sent while kk is away.
    for i in range(5):
        await ca.send_message(f"while away #{i}", client_id=f"away-{i}")

    # kk's entries expire and a surviving worker's heartbeat sweeps them out.
    for client in (ca, cb, cm):
        await client.wait_presence("leave", "kk", timeout=LEAVE_BOUND + TIMEOUT)
    elapsed = time.monotonic() - killed_at
    assert elapsed <= LEAVE_BOUND, f"leave took {elapsed:.1f}s, bound {LEAVE_BOUND:.1f}s"

    # Everyone agrees: kk is gone, km (still on a live worker) is not.
    cf = await open_client(f, w1, room.slug)
    assert cf.hello["online"] == ["ka", "kb", "kf", "km"]

    # kk reconnects to a surviving worker from the last seq it saw.
    ck2 = await open_client(k, w1, room.slug, after=seen_by_k[-1])
    assert ck2.hello["online"] == ["ka", "kb", "kf", "kk", "km"]
    assert [msg["body"] for msg in ck2.history["messages"]] == [
        f"while away #{i}" for i in range(5)
    ]
    for client in (ca, cb, cm, cf):
        await client.wait_presence("join", "kk")
    await ca.send_message("welcome back", client_id="welcome")
    await ck2.wait(lambda: ck2.has_message("welcome back"), "the live message")
    assert seen_by_k + ck2.seqs() == list(range(1, 10)), "kk lost or repeated a message"

    # One leave for kk, none for km; the survivors saw the same presence story.
    assert ca.presence()[joins_before:] == [("leave", "kk"), ("join", "kf"), ("join", "kk")]
    assert cb.presence()[-3:] == [("leave", "kk"), ("join", "kf"), ("join", "kk")]
    assert ("leave", "km") not in ca.presence() + cb.presence()
    for client in (ca, cb, cm):
        await client.wait_messages(9)
        assert client.seqs() == list(range(1, 10)), client.label


async def test_later_sockets_open_after_the_first_tuned_the_protocol(
    workers, make_member, make_room, open_client
):
    """The first socket of a worker moves autobahn's per-connection settings
    to the protocol class (chat.daphne_tuning); sockets after it, offering
    permessage-deflate as browsers do (the websockets client does too), must
    still open, and with no compression (Daphne declines it)."""
    member = await make_member("tuned")
    room = await make_room(member)
    for _ in range(3):
        client = await open_client(member, workers[2], room.slug)
        assert client.hello["type"] == "hello"
        assert client.ws.protocol.extensions == []
