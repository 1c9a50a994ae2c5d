"""Bounded work per socket and per user, and sockets that follow what let
them in (issue 8), through the whole ASGI stack."""

import asyncio
import json
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import update_session_auth_hash
from django.contrib.sessions.models import Session
from django.test import Client

from chat import hub, limits, presence, selectors, services
from chat.models import Membership, Room
from chatsite.asgi import application
from tests.conftest import eventually, eventually_off_loop, session_cookie_for

pytestmark = pytest.mark.django_db(transaction=True)


# ---------------------------------------------------------------- frame budgets


@pytest.mark.both_transports
@pytest.mark.parametrize("layers", ["memory", "redis"])
async def test_every_frame_kind_counts_against_one_budget_per_user(
    connect, alice, room, settings, layers, request
):
    second_worker = None
    if layers == "redis":
        request.getfixturevalue("redis_layer")
        second_worker = "worker2"
    settings.CHAT_FRAME_RATE = (4, 30)
    a, _, _ = await connect(alice, room.slug)
    a2, _, _ = await connect(alice, room.slug, layer_alias=second_worker)
    await a.send(type="ping")
    await a.expect("pong")
    await a.send(type="typing")
    await a.send_raw("not json")
    assert (await a.expect("error"))["code"] == "bad_request"
    await a2.send(type="history", before=1, limit=5)  # the same user elsewhere: same budget
    await a2.expect("history")
    await a.send(type="ping")
    refused = await a.expect("error")
    assert refused["code"] == "rate_limited" and 0 < refused["retry_after"] <= 30
    await a2.send(type="history", before=1, limit=5)
    assert (await a2.expect("error"))["code"] == "rate_limited"
    # Messages have their own budget (CHAT_RATE_LIMIT): still allowed.
    await a.send(type="message.send", body="still here", client_id="m1")
    assert (await a.expect("ack", client_id="m1"))["seq"] == 1


async def test_one_history_request_in_flight_per_socket(
    connect, alice, room, settings, monkeypatch
):
    """A client that never reads cannot pile history pages up on the server."""
    settings.CHAT_HUB_RECENT = 5
    settings.CHAT_RATE_LIMIT = None
    for i in range(12):
        await sync_to_async(services.store_message)(
            room=room, author=alice, body=f"m{i}", client_id=None
        )
    a, _, _ = await connect(alice, room.slug)
    release = threading.Event()
    real = selectors.message_texts_before

    def slow(**kwargs):
        release.wait(5)
        return real(**kwargs)

    monkeypatch.setattr(selectors, "message_texts_before", slow)
    await a.send(type="history", before=3, limit=2)  # older than memory: the database
    await a.send(type="history", before=3, limit=2)
    busy = await a.expect("error")
    assert busy["code"] == "rate_limited" and "One history request at a time" in busy["detail"]
    # The socket goes on meanwhile: a page being read holds up no other frame.
    await a.send(type="ping")
    await a.expect("pong")
    release.set()
    page = await a.expect("history")
    assert [m["seq"] for m in page["messages"]] == [1, 2]


# ---------------------------------------------------------------- sockets per user


@pytest.mark.parametrize("layers", ["memory", "redis"])
async def test_sockets_per_user_are_capped_across_workers(
    connect, alice, bob, room, settings, layers, request
):
    second_worker = None
    if layers == "redis":
        request.getfixturevalue("redis_layer")
        second_worker = "worker2"
    settings.CHAT_MAX_SOCKETS_PER_USER = 3
    first, _, _ = await connect(alice, room.slug)
    await connect(alice, room.slug, layer_alias=second_worker)
    await connect(alice, room.slug)
    extra, _, _ = await connect(alice, room.slug, layer_alias=second_worker, expect_hello=False)
    await extra.expect_closed(4429)
    assert await limits.sockets.count(alice.pk) == 3  # the refused one was never counted
    await connect(bob, room.slug)  # per user
    await first.close()
    for _ in range(50):  # the count drops as the closed socket's cleanup runs
        again, hello, _ = await connect(alice, room.slug, expect_hello=False)
        frame = await again.comm.receive_output(2)
        if frame["type"] != "websocket.close":
            assert json.loads(frame["text"])["type"] == "hello"
            return
        await asyncio.sleep(0.02)
    raise AssertionError("a closed socket never stopped counting")


async def test_a_socket_closing_during_a_refresh_is_not_counted_again(
    redis_layer, monkeypatch, settings
):
    # The heartbeat's refresh (ZADD of every open socket) and a close (ZREM)
    # go to Redis on different connections: a refresh that lands after the
    # close of a socket it still listed would count it again (a storm of
    # 1000 sockets left counts behind this way). Hold the refresh until the
    # close has landed, the worst order.
    import redis as redis_sync

    from chat import redis as redis_clients

    client = redis_clients.async_client(redis_layer)
    pipeline_class = type(client.pipeline())
    execute = pipeline_class.execute
    gate, waiting = asyncio.Event(), asyncio.Event()

    async def held_execute(self, *args, **kwargs):
        if any(command[0][0] == "ZADD" for command in self.command_stack):
            waiting.set()
            await gate.wait()
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "execute", held_execute)
    counter = limits.sockets
    assert await counter.open(7, "conn-a") and await counter.open(7, "conn-b")
    refresh = asyncio.create_task(counter.refresh({7: ["conn-a", "conn-b"]}))
    await asyncio.wait_for(waiting.wait(), 5)
    await counter.close(7, "conn-a")
    gate.set()
    await asyncio.wait_for(refresh, 5)

    store = redis_sync.Redis.from_url(redis_layer)
    try:
        key = f"{settings.CHAT_REDIS_PREFIX}:sockets:7"
        assert store.zrange(key, 0, -1) == [b"conn-b"]
    finally:
        store.close()


async def test_a_socket_cancelled_while_its_count_is_on_its_way_is_not_left_counted(
    connect, redis_layer, alice, room, monkeypatch, settings
):
    # A client gone mid-handshake: Daphne cancels its consumer, here while
    # Redis has counted the socket but its answer has not come back yet.
    import redis as redis_sync

    from chat import limits

    open_many = limits.sockets._open_many
    counted, answer = asyncio.Event(), asyncio.Event()

    async def answer_late(sockets):
        result = await open_many(sockets)
        counted.set()
        await answer.wait()
        return result

    monkeypatch.setattr(limits.sockets, "_open_many", answer_late)
    socket, _, _ = await connect(alice, room.slug, expect_hello=False)
    await asyncio.wait_for(counted.wait(), 5)
    socket.comm.future.cancel()  # as Daphne does with a consumer whose client left
    answer.set()

    store = redis_sync.Redis.from_url(redis_layer)
    key = f"{settings.CHAT_REDIS_PREFIX}:sockets:{alice.pk}"
    try:
        assert store.zcard(key) == 1  # counted by Redis, the consumer gone
        await eventually_off_loop(lambda: store.zcard(key) == 0, "the count taken back", 5)
    finally:
        store.close()


# ---------------------------------------------------------------- sockets follow access


@pytest.mark.both_transports
async def test_a_socket_past_its_maximum_age_is_asked_to_reconnect(connect, alice, room, settings):
    settings.CHAT_MAX_SOCKET_AGE = 1
    a, _, _ = await connect(alice, room.slug)
    await a.expect_closed(4000, timeout=3)


async def test_a_password_change_sends_every_socket_back_through_the_check(connect, alice, room):
    kept = Client(HTTP_HOST="localhost")
    await sync_to_async(kept.force_login)(alice)
    kept_cookie = kept.cookies["sessionid"].value
    other_cookie = await sync_to_async(session_cookie_for)(alice)
    on_kept, _, _ = await connect(None, room.slug, cookie=kept_cookie)
    on_other, _, _ = await connect(None, room.slug, cookie=other_cookie)

    def change_password():
        alice.set_password("a-new-long-password")
        alice.save()
        # As PasswordChangeView does: the session it was changed in stays
        # valid (under a new key).
        session = kept.session
        update_session_auth_hash(type("R", (), {"session": session, "user": alice})(), alice)
        session.save()
        return session.session_key

    kept_cookie = await sync_to_async(change_password)()
    await on_kept.expect_closed(4000)
    await on_other.expect_closed(4000)
    back, hello, _ = await connect(None, room.slug, cookie=kept_cookie)
    assert hello["user"] == "alice"
    refused, _, _ = await connect(None, room.slug, cookie=other_cookie, expect_hello=False)
    await refused.expect_closed(4401)


@pytest.mark.both_transports
async def test_a_deleted_session_closes_its_sockets_and_keeps_them_out(connect, alice, room):
    cookie = await sync_to_async(session_cookie_for)(alice)
    a, _, _ = await connect(None, room.slug, cookie=cookie)
    await sync_to_async(Session.objects.filter(session_key=cookie).delete)()
    await a.expect_closed(4401)
    again, _, _ = await connect(None, room.slug, cookie=cookie, expect_hello=False)
    await again.expect_closed(4401)  # not let in from the session cache either


@pytest.mark.both_transports
async def test_removal_from_a_private_room_closes_4403(connect, alice, bob, private_room):
    await sync_to_async(services.add_member)(room=private_room, actor=alice, username="bob")
    b, _, _ = await connect(bob, private_room.slug)
    a, _, _ = await connect(alice, private_room.slug)
    await sync_to_async(Membership.objects.filter(room=private_room, user=bob).delete)()
    await b.expect_closed(4403)
    await a.send(type="ping")
    await a.expect("pong")  # the others stay


async def test_a_room_turned_private_lets_only_members_back(connect, alice, bob, carol, room):
    b, _, _ = await connect(bob, room.slug)  # bob opened it while public: a member
    c, _, _ = await connect(carol, room.slug)
    await sync_to_async(Membership.objects.filter(room=room, user=carol).delete)()

    def make_private():
        room.is_private = True
        room.save()

    await sync_to_async(make_private)()
    await b.expect_closed(4000)
    await c.expect_closed(4000)
    _, hello, _ = await connect(bob, room.slug)
    assert hello["room"]["slug"] == room.slug
    refused, _, _ = await connect(carol, room.slug, expect_hello=False)
    await refused.expect_closed(4403)


async def test_a_deleted_room_closes_its_sockets_and_a_late_send_is_refused(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    await sync_to_async(Room.objects.filter(pk=room.pk).delete)()
    await a.expect_closed(4403)
    with pytest.raises(services.Forbidden):
        await sync_to_async(services.store_message)(
            room=room, author=alice, body="too late", client_id=None
        )


async def test_a_deleted_room_leaves_no_presence_entry_or_socket_count_behind(
    connect, alice, bob, room, redis_layer
):
    store = presence.get_store()
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug, layer_alias="worker2")
    assert await store.online_users(room.pk) == ["alice", "bob"]
    assert await limits.sockets.count(alice.pk) == await limits.sockets.count(bob.pk) == 1

    await sync_to_async(Room.objects.filter(pk=room.pk).delete)()
    await a.expect_closed(4403)
    await b.expect_closed(4403)

    async def all_gone():
        counts = [await limits.sockets.count(user.pk) for user in (alice, bob)]
        return await store.online_users(room.pk) == [] and counts == [0, 0]

    await eventually(all_gone, "the closed sockets' presence entries and counts to go")
    # A heartbeat after the close puts nothing back: a worker's heartbeat once
    # kept a deleted room's entry alive for as long as the worker ran.
    for worker_hub in hub.running_hubs():
        await worker_hub.heartbeat()
    assert await all_gone()


# ---------------------------------------------------------------- crash safety


async def test_an_absurd_after_is_an_error_frame_not_a_crash(connect, alice, room):
    a, _, history = await connect(alice, room.slug, after="9" * 5000)
    assert history["messages"] == []
    assert (await a.expect("error"))["code"] == "bad_request"
    await a.send(type="history", before=10**30, limit=5)
    assert (await a.expect("error"))["code"] == "bad_request"
    await a.send(type="ping")
    await a.expect("pong")


async def test_an_unknown_websocket_path_is_closed_4404(alice):
    cookie = await sync_to_async(session_cookie_for)(alice)
    comm = WebsocketCommunicator(
        application,
        "/ws/nowhere/",
        headers=[(b"origin", b"http://localhost"), (b"cookie", f"sessionid={cookie}".encode())],
    )
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_output(2)) == {"type": "websocket.close", "code": 4404}
