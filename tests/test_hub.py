"""Guards on the per-worker room hub: what a connect and a delivery cost, and
that work the same for every socket in a room is done once per worker."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from chat import events, hub, services, wire
from tests.conftest import session_cookie_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def db_statements():
    """The SQL statements run in the database thread, where consumers and
    hubs run theirs (database_sync_to_async), as a list that grows."""
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    # `connection` resolves to the connection of the thread that reads it.
    await database_sync_to_async(lambda: connection.execute_wrappers.append(record))()
    yield statements
    await database_sync_to_async(lambda: connection.execute_wrappers.remove(record))()


def queries(statements: list[str]) -> list[str]:
    """Statements but transaction control (BEGIN, COMMIT, savepoints)."""
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
    return [sql for sql in statements if not sql.lstrip().upper().startswith(control)]


async def store(room, author, body):
    """A stored message that is not broadcast (as if its broadcast was lost)."""
    return (
        await sync_to_async(services.store_message)(
            room=room, author=author, body=body, client_id=None
        )
    ).message


def room_group_channels(alias, room):
    """The channels of this worker (layer instance) in the room's group."""
    layer = get_channel_layer(alias)
    group = events.room_group(room.pk)
    if hasattr(layer, "_get_group_channel_name"):  # the Redis pub/sub layer
        group = layer._get_group_channel_name(group)
    return layer.groups.get(group, {})


# ---------------------------------------------------------------- connect


async def test_a_connect_to_a_warm_room_is_one_query(connect, alice, bob, room, db_statements):
    await connect(alice, room.slug)  # the room's hub loads
    await connect(bob, room.slug)  # bob becomes a member
    cookie = await sync_to_async(session_cookie_for)(bob)
    before = len(db_statements)
    _, hello, history = await connect(bob, room.slug, cookie=cookie)
    assert hello["online"] == ["alice", "bob"]
    made = queries(db_statements[before:])
    assert len(made) == 1, made  # the session's user, the room and the membership
    assert "chat_room" in made[0] and "chat_membership" in made[0]


async def test_history_and_resume_come_from_memory(connect, alice, room, settings, db_statements):
    settings.CHAT_RATE_LIMIT = None
    for i in range(60):
        await store(room, alice, f"m{i}")
    await connect(alice, room.slug)  # loads the room's recent messages
    cookie = await sync_to_async(session_cookie_for)(alice)
    before = len(db_statements)
    _, _, latest = await connect(alice, room.slug, cookie=cookie)
    _, _, resumed = await connect(alice, room.slug, after=7, cookie=cookie)
    assert [m["seq"] for m in latest["messages"]] == list(range(11, 61))
    assert latest["has_more"] is True
    assert [m["seq"] for m in resumed["messages"]] == list(range(8, 61))
    made = queries(db_statements[before:])
    assert len(made) == 2, made  # one access query per socket, no history query


async def test_history_older_than_memory_comes_from_the_database(
    connect, alice, room, settings, db_statements
):
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_HUB_RECENT = 20
    for i in range(30):
        await store(room, alice, f"m{i}")
    a, _, latest = await connect(alice, room.slug)
    assert [m["seq"] for m in latest["messages"]] == list(range(1, 31))  # a page is 50
    _, _, resumed = await connect(alice, room.slug, after=3)
    assert [m["seq"] for m in resumed["messages"]] == list(range(4, 31))
    assert resumed["has_more"] is True
    await a.send(type="history", before=5, limit=10)
    page = await a.expect("history")
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4] and page["has_more"] is False


# ---------------------------------------------------------------- delivery


async def test_one_group_membership_per_room_per_worker(connect, alice, bob, carol, room):
    for user in (alice, bob, carol, alice, bob):
        await connect(user, room.slug)
    assert len(room_group_channels("default", room)) == 1


async def test_one_subscription_per_room_per_worker_on_redis(
    connect, redis_layer, alice, bob, room
):
    for alias in ("default", "default", "worker2", "worker2", "worker2"):
        await connect(alice, room.slug, layer_alias=alias)
    await connect(bob, room.slug)
    assert len(room_group_channels("default", room)) == 1
    assert len(room_group_channels("worker2", room)) == 1


async def test_a_delivery_makes_no_query(connect, alice, bob, carol, room, settings, db_statements):
    settings.CHAT_RATE_LIMIT = None
    watchers = [(await connect(u, room.slug))[0] for u in (bob, carol, bob, carol)]
    a, _, _ = await connect(alice, room.slug)
    before = len(db_statements)
    for i in range(5):
        await a.send(type="message.send", body=f"m{i}", client_id=f"c{i}")
        await a.expect("ack", client_id=f"c{i}")
    for watcher in watchers:
        assert [(await watcher.expect("message"))["message"]["body"] for _ in range(5)] == [
            f"m{i}" for i in range(5)
        ]
    stores = queries(db_statements[before:])
    # Each send: the seq UPDATE and the INSERT. Nothing per recipient.
    assert len(stores) == 10, stores


async def test_a_gap_is_filled_with_one_query_per_worker(
    connect, redis_layer, alice, bob, carol, room, settings, db_statements
):
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_GAP_WAIT = 0.05
    sockets = []
    for alias in ("default", "worker2"):
        for user in (bob, carol, bob):
            sockets.append((await connect(user, room.slug, layer_alias=alias))[0])
    sender, _, _ = await connect(alice, room.slug)
    await store(room, alice, "lost")  # seq 1, never broadcast
    before = len(db_statements)
    await sender.send(type="message.send", body="next", client_id="n")
    for socket in sockets:
        assert [(await socket.expect("message"))["message"]["body"] for _ in range(2)] == [
            "lost",
            "next",
        ]
    fills = [sql for sql in db_statements[before:] if '"chat_message"."seq" >' in sql]
    assert len(fills) == 2, fills  # one per worker, not one per socket


async def test_a_message_whose_broadcast_was_lost_arrives_in_a_quiet_room(
    connect, alice, bob, room, settings
):
    """Nothing follows it: each worker's seq watch notices the room is behind."""
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_SEQ_WATCH = 0.05
    b, _, _ = await connect(bob, room.slug)
    await store(room, alice, "stored while the broadcast failed")
    message = await b.expect("message", timeout=3)
    assert message["message"]["body"] == "stored while the broadcast failed"


async def test_a_retried_send_is_broadcast_again_to_whoever_missed_it(
    connect, alice, bob, room, settings
):
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_SEQ_WATCH = 60  # only the retry can deliver it
    b, _, _ = await connect(bob, room.slug)
    await sync_to_async(services.store_message)(
        room=room, author=alice, body="sent before a crash", client_id="k-1"
    )
    a, _, _ = await connect(alice, room.slug)
    await a.send(type="message.send", body="sent before a crash", client_id="k-1")
    ack = await a.expect("ack", client_id="k-1")
    got = await b.expect("message")
    assert got["message"]["id"] == ack["id"] and got["message"]["body"] == "sent before a crash"
    await b.expect("join", user="alice")
    await b.nothing()  # exactly once


async def test_out_of_order_publishes_released_in_order_once(connect, alice, bob, room, settings):
    settings.CHAT_RATE_LIMIT = None
    b, _, _ = await connect(bob, room.slug)
    first, second = await store(room, alice, "first"), await store(room, alice, "second")
    layer = get_channel_layer()
    for message in (second, first, second, first):
        await layer.group_send(
            events.room_group(room.pk),
            events.room_message(room.pk, message.seq, wire.message_json(message)),
        )
    assert [(await b.expect("message"))["message"]["body"] for _ in range(2)] == [
        "first",
        "second",
    ]
    await b.nothing()


async def test_a_room_left_by_every_socket_is_dropped_after_the_idle_time(
    connect, alice, room, settings
):
    settings.CHAT_HUB_IDLE = 0.05
    a, _, _ = await connect(alice, room.slug)
    worker_hub = await hub.get_hub("default")
    assert room.pk in worker_hub.rooms
    await a.close()
    for _ in range(100):
        if room.pk not in worker_hub.rooms and not room_group_channels("default", room):
            break
        await asyncio.sleep(0.02)
    assert room.pk not in worker_hub.rooms
    assert not room_group_channels("default", room)  # unsubscribed
    b, _, _ = await connect(alice, room.slug)  # and back: subscribed again
    assert len(room_group_channels("default", room)) == 1


async def test_a_worker_behind_drops_typing_and_catches_messages_up_from_the_database(
    connect, alice, bob, room, settings, db_statements
):
    """Load shedding: events that arrive CHAT_SHED_LAG late (the worker's CPU
    cannot keep up) are not handled one by one any more."""
    import time

    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_SHED_LAG = 1.0
    b, _, _ = await connect(bob, room.slug)
    late = time.time() - 5
    stored = [await store(room, alice, f"m{i}") for i in range(10)]
    layer = get_channel_layer()
    group = events.room_group(room.pk)
    typing = events.room_frame(room.pk, wire.frame("typing", user="alice"), sheddable=True)
    typing["at"] = late
    await layer.group_send(group, typing)
    before = len(db_statements)
    for message in stored:
        event = events.room_message(room.pk, message.seq, wire.message_json(message))
        event["at"] = late
        await layer.group_send(group, event)
    got = [(await b.expect("message"))["message"]["body"] for _ in range(10)]
    assert got == [f"m{i}" for i in range(10)]
    reads = [sql for sql in queries(db_statements[before:]) if "chat_message" in sql]
    # Caught up a range at a time (a read, then one for what came meanwhile),
    # not one message at a time.
    assert 1 <= len(reads) <= 3, reads
    await b.nothing()  # and the late typing notice was dropped
