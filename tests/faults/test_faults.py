"""Faults without drama (issue 14), on real processes: Redis killed or shut
down and restarted mid-traffic (fresh sockets right after it returns), Redis
down for logins, sign-ups and pages, Redis stalled, the database away,
SIGTERM, a reconnect storm, and handshakes abandoned mid-open. Clients behave
as the page does (tests/cluster/clients.py ResumingClient). Each test prints
what it measured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
import urllib.request

import pytest
from django.db import connection
from websockets.asyncio.client import connect

from tests.cluster.clients import ChatClient, Refused, ResumingClient
from tests.conftest import eventually_off_loop

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def no_server_fault(*clients: ResumingClient) -> None:
    codes = [code for client in clients for code in client.close_codes]
    assert 1011 not in codes, f"a socket ended with 1011: {codes}"


async def all_acked(client: ResumingClient, timeout: float = 20):
    await client.wait(lambda: not client.unacked, "every send acknowledged", timeout)


# Seconds from Redis back to every stored message delivered, and a fresh
# socket's hello, on a busy 2-core machine (measured 0.5-1.5 s).
RECOVERY_BOUND = 5
FRESH_SOCKETS = 90  # issue 14: 6-17 of 90 fresh sockets died with 1011 here


@pytest.mark.parametrize("stop", ["SIGKILL", "SHUTDOWN NOSAVE"])
async def test_redis_stopped_and_restarted_mid_traffic_loses_nothing(
    stop, own_redis, fault_workers, make_member, make_room
):
    w0, w1 = fault_workers
    alice, bob, carol = [await make_member(n) for n in ("r-alice", "r-bob", "r-carol")]
    room = await make_room(alice)
    a = await ResumingClient(alice, [w0.ws, w1.ws], room.slug).start()
    b = await ResumingClient(bob, [w1.ws, w0.ws], room.slug).start()
    for i in range(5):
        await a.send(f"before #{i}", f"before-{i}")
    await b.wait(lambda: b.seqs == list(range(1, 6)), "the first five")

    if stop == "SIGKILL":
        own_redis.kill()
    else:
        own_redis.shut_down()
    killed = time.monotonic()
    for i in range(5):
        await a.send(f"during #{i}", f"during-{i}")
    await all_acked(a)  # stored and acknowledged with Redis away
    await b.wait(lambda: len(b.seqs) == 10, "the messages sent during the outage", timeout=15)
    during = time.monotonic() - killed
    await b.wait(lambda: "degraded" in b.statuses, "the degraded fan-out status")
    # A socket opening during the outage opens (no HTTP 500, no 1011).
    c = await ResumingClient(carol, [w1.ws], room.slug).start()
    assert c.seqs == list(range(1, 11))

    own_redis.start()
    restarted = time.monotonic()
    # Fresh sockets at once, while the workers' pooled Redis connections are
    # the dead ones: every one opens (hello and the stored history).
    members = [alice, bob, carol]
    fresh = await asyncio.gather(
        *(
            _open_or_refusal(members[i % 3], [w0.ws, w1.ws][i % 2], room.slug)
            for i in range(FRESH_SOCKETS)
        ),
    )
    opened = time.monotonic() - restarted
    refused = [f for f in fresh if isinstance(f, Refused)]
    assert not refused, (
        f"{len(refused)} of {FRESH_SOCKETS}: {[(r.code, r.reason) for r in refused]}"
    )
    # Every stored message, from history or live (a worker whose room missed
    # the outage's broadcasts catches up from the database within a second).
    for f in fresh:
        await f.wait(lambda f=f: f.seqs() == list(range(1, 11)), "messages 1-10", RECOVERY_BOUND)
    await asyncio.gather(*(f.close() for f in fresh))
    assert all(f.close_code == 1000 for f in fresh), {f.close_code for f in fresh}

    await b.wait(lambda: b.statuses[-1:] == ["ok"], "the fan-out status back to ok", 15)
    for i in range(5):
        await a.send(f"after #{i}", f"after-{i}")
    await all_acked(a)
    for client in (a, b, c):
        await client.wait(lambda cl=client: len(cl.seqs) >= 15, "all fifteen", 15)
        assert client.seqs == list(range(1, 16)), f"{client.member.name}: {client.seqs}"
    back = time.monotonic() - restarted
    no_server_fault(a, b, c)
    print(
        f"\n{stop}: during the outage messages arrived within {during:.1f}s (from the "
        f"database); {FRESH_SOCKETS} fresh sockets opened {opened:.1f}s after Redis returned; "
        f"every message delivered {back:.1f}s after"
    )
    assert back < RECOVERY_BOUND, f"recovery took {back:.1f}s"
    for client in (a, b, c):
        await client.stop()


async def _open_or_refusal(member, base: str, slug: str) -> ChatClient | Refused:
    try:
        return await ChatClient.open(member, base, slug)
    except Refused as refused:
        return refused


async def test_with_redis_down_logins_sign_ups_and_pages_answer_not_500(
    own_redis, fault_workers, make_member, make_room
):
    from tests.test_auth_throttle import FormClient

    w0, _ = fault_workers
    alice = await make_member("h-alice")
    room = await make_room(alice)
    own_redis.kill()

    def as_a_person() -> list[tuple[str, int]]:
        answers = []
        client = FormClient(w0.http)
        for _ in range(12):  # past CHAT_LOGIN_LIMIT_USER (10): not counted meanwhile
            answers.append(("wrong password", client.login("h-alice", "wrong")))
        answers.append(("login", client.login("h-alice", "a-long-password")))
        answers.append(("directory", client.get("/")))
        answers.append(("room page", client.get(f"/rooms/{room.slug}/")))
        answers.append(("search", client.get("/search/?q=anything")))
        new = {"password1": "correct-horse-battery", "password2": "correct-horse-battery"}
        answers.append(
            (
                "sign-up",
                FormClient(w0.http).submit("/accounts/signup/", {"username": "h-new", **new}),
            )
        )
        return answers

    answers = await asyncio.to_thread(as_a_person)
    expected = [("wrong password", 200)] * 12 + [
        ("login", 302),
        ("directory", 200),
        ("room page", 200),
        ("search", 200),
        ("sign-up", 302),
    ]
    assert answers == expected


async def test_a_stalled_redis_neither_hangs_health_checks_nor_drops_sockets(
    own_redis, fault_workers, make_member, make_room
):
    w0, w1 = fault_workers
    alice, bob = await make_member("s-alice"), await make_member("s-bob")
    room = await make_room(alice)
    a = await ResumingClient(alice, [w0.ws], room.slug).start()
    b = await ResumingClient(bob, [w1.ws], room.slug).start()
    stall = own_redis.stall(5)
    answered = []
    for path in ("/healthz", "/readyz"):
        started = time.monotonic()
        with contextlib.suppress(OSError):  # 503 raises; its timing is what counts
            urllib.request.urlopen(w0.http + path, timeout=10)
        answered.append(time.monotonic() - started)
    await a.send("during the stall", "stalled-1")
    await all_acked(a)
    await b.wait(lambda: len(b.seqs) == 1, "the message sent during the stall", timeout=20)
    stall.wait(10)
    no_server_fault(a, b)
    assert a.close_codes == [] and b.close_codes == []
    assert max(answered) < 4, f"health checks took {answered}"
    print(f"\nhealth checks answered in {', '.join(f'{t:.1f}s' for t in answered)}")
    await a.stop()
    await b.stop()


@contextlib.contextmanager
def database_away():
    """The database refuses writes: SQLite held under an exclusive lock (the
    workers give up after CHAT_SQLITE_LOCK_TIMEOUT), PostgreSQL refusing
    connections to the test database, the workers' ones cut."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        held = sqlite3.connect(settings["NAME"], isolation_level=None, timeout=10)
        held.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            held.execute("ROLLBACK")
            held.close()
        return
    import psycopg

    admin = psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"] or "postgres",
        dbname="postgres",
        autocommit=True,
    )
    name = settings["NAME"]
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND application_name = 'chat-worker'",
        [name],
    )
    try:
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


async def test_the_database_away_gives_clear_errors_and_everything_recovers(
    own_redis, fault_workers, make_member, make_room
):
    w0, w1 = fault_workers
    alice, bob = await make_member("d-alice"), await make_member("d-bob")
    room = await make_room(alice)
    a = await ResumingClient(alice, [w0.ws, w1.ws], room.slug).start()
    b = await ResumingClient(bob, [w1.ws, w0.ws], room.slug).start()
    await a.send("before", "db-before")
    await b.wait(lambda: b.seqs == [1], "the first message")
    errors_before = _errors(a)
    with database_away():
        away = time.monotonic()
        await a.send("while the database is away", "db-during")
        await a.client.wait(
            lambda: _errors(a) > errors_before, "an `unavailable` error", timeout=15
        )
        assert a.unacked  # refused, not stored: nothing was acknowledged
    await all_acked(a)  # sent again by the client, stored once
    recovered = time.monotonic() - away
    await b.wait(lambda: b.seqs == [1, 2], "the message sent while it was away", 15)
    no_server_fault(a, b)
    print(f"\nunavailable while the database was away; stored {recovered:.1f}s after it left")
    await a.stop()
    await b.stop()


def _errors(client: ResumingClient) -> int:
    frames = [f for c in [client.client] if c for f in c.frames]
    return sum(f["type"] == "error" and f["code"] == "unavailable" for f in frames)


async def test_sigterm_closes_sockets_with_1012_and_says_leave_at_once(
    own_redis, fault_workers, make_member, make_room
):
    w0, w1 = fault_workers
    leaver, watcher = await make_member("t-leaver"), await make_member("t-watcher")
    room = await make_room(leaver)
    moving = await ChatClient.open(leaver, w0.ws, room.slug)
    seeing = await ChatClient.open(watcher, w1.ws, room.slug)
    assert seeing.hello["online"] == ["t-leaver", "t-watcher"]
    os_started = time.monotonic()
    w0.proc.send_signal(signal.SIGTERM)
    await moving.wait(lambda: moving.closed, "the close", timeout=5)
    closed_in = time.monotonic() - os_started
    assert moving.close_code == 1012
    await seeing.wait_presence("leave", "t-leaver", timeout=5)
    left_in = time.monotonic() - os_started
    await asyncio.to_thread(w0.proc.wait, 10)
    exited_in = time.monotonic() - os_started
    # Issue 14: 1012 and `leave` within a second (measured: 0.00 s and
    # 0.08-0.09 s, five runs on a shared 2-core machine).
    assert closed_in < 1 and left_in < 1, (closed_in, left_in)
    assert exited_in < 8, exited_in
    print(f"\n1012 after {closed_in:.2f}s, leave after {left_in:.2f}s, exit after {exited_in:.1f}s")
    await seeing.close()


STORM = int(os.environ.get("CHAT_TEST_STORM", "1000"))


async def test_a_storm_of_a_thousand_sockets_on_one_worker_is_served_within_10s(
    own_redis, fault_workers, make_member, make_room
):
    w0, _ = fault_workers
    members = [await make_member(f"storm-{i}") for i in range(10)]
    room = await make_room(members[0])
    started = time.monotonic()
    clients = [ResumingClient(members[i % 10], [w0.ws], room.slug) for i in range(STORM)]
    await asyncio.gather(*(client.start(timeout=30) for client in clients))
    took = time.monotonic() - started
    refused = sum(client.close_codes.count(1013) for client in clients)
    print(f"\n{STORM} sockets served in {took:.1f}s ({refused} turned away to come back later)")
    assert took < 10
    await asyncio.gather(*(client.stop() for client in clients))
    # Nothing stays behind (issue 14: a storm used to leave 10,303 pub/sub
    # subscriptions and 48 connections on a worker): the sockets' counts and
    # presence go, and the worker's subscriptions are its hub's, not one per
    # socket.
    import redis

    store = redis.Redis.from_url(own_redis.url)
    try:
        await _eventually(lambda: not store.keys("*:sockets:*"), "the socket counts to go")
        await _eventually(
            lambda: not any(store.hlen(k) for k in store.keys("*:presence:*:users")),
            "presence to go",
        )
        channels = store.pubsub_channels()
        clients_connected = store.info("clients")["connected_clients"]
    finally:
        store.close()
    print(f"afterwards: {len(channels)} pub/sub channels, {clients_connected} Redis connections")
    assert len(channels) <= 6, channels  # per worker: its hub's channel, control, the room
    assert clients_connected < 100


async def _eventually(predicate, what: str):
    await eventually_off_loop(predicate, what, timeout=10)


DROPPED = 200  # handshakes abandoned at once, half before and half after the accept


async def test_handshakes_abandoned_mid_open_leave_nothing_behind(
    own_redis, fault_workers, make_member, make_room
):
    # Clients that connect and drop at once (a page closed while loading, a
    # flaky network, a storm's impatient retries): the worker is opening
    # their sockets when they go. Their counts, presence and the worker's
    # pub/sub channels must come back to what they were.
    import redis

    from tests.servers import RUN_PREFIX

    w0, _ = fault_workers
    watcher = await make_member("m-watcher")
    droppers = [await make_member(f"m-drop-{i}") for i in range(4)]
    room = await make_room(watcher)
    seeing = await ChatClient.open(watcher, w0.ws, room.slug)
    store = redis.Redis.from_url(own_redis.url)
    try:
        channels_before = set(store.pubsub_channels())
        await asyncio.gather(
            *(
                _connect_and_drop(droppers[i % 4], w0, room.slug, accepted=i % 2 == 0)
                for i in range(DROPPED)
            )
        )
        counts = [f"{RUN_PREFIX}:sockets:{m.user.pk}" for m in droppers]
        users = f"{RUN_PREFIX}:presence:{room.pk}:users"
        await _eventually(lambda: not any(store.zcard(k) for k in counts), "the counts to go")
        await _eventually(lambda: store.hkeys(users) == [b"m-watcher"], "presence to go")
        await _eventually(
            lambda: set(store.pubsub_channels()) == channels_before, "the channels to settle"
        )
    finally:
        store.close()
    # The worker is none the worse: the watcher's socket works, one more opens.
    await seeing.send(type="ping")
    await seeing.wait(lambda: seeing.frames[-1]["type"] == "pong", "pong")
    assert not seeing.closed
    again = await ChatClient.open(droppers[0], w0.ws, room.slug)
    assert again.hello["type"] == "hello"
    await again.close()
    await seeing.close()


async def _connect_and_drop(member, server, slug: str, *, accepted: bool) -> None:
    """Open a socket and cut the TCP connection (no close frame): once the
    worker has accepted it (`accepted`), or right after sending the request."""
    path = f"/ws/rooms/{slug}/"
    headers = {"Cookie": f"sessionid={member.cookie}"}
    if accepted:
        ws = await connect(
            server.ws + path, additional_headers=headers, origin=server.http, open_timeout=10
        )
        ws.transport.abort()
        return
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {server.http}\r\nCookie: sessionid={member.cookie}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    writer.transport.abort()
