"""The WebSocket contract (shared/PROTOCOL.md) through the whole ASGI stack."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import Client

from chat import events, services, wire
from chat.models import Membership, Message
from tests.conftest import session_cookie_for

# Every test of the contract runs over the WebSocket and over the event
# stream (chat.sse), but those about what only a WebSocket has.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_transports]
websocket_only = pytest.mark.websocket_only

count_messages = sync_to_async(lambda **kw: Message.objects.filter(**kw).count())


async def post(socket, body, client_id=None):
    frame = {"type": "message.send", "body": body}
    if client_id is not None:
        frame["client_id"] = client_id
    await socket.send(**frame)
    return await socket.expect("ack", client_id=client_id)


# ---------------------------------------------------------------- handshake


async def test_anonymous_socket_is_accepted_then_closed_4401(connect, room):
    socket, _, _ = await connect(None, room.slug, expect_hello=False)
    assert socket.connected
    await socket.expect_closed(4401)


@pytest.mark.parametrize("case", ["missing", "private", "banned"])
async def test_no_access_is_4403_whatever_the_reason(connect, alice, bob, room, private_room, case):
    slug = {"missing": "no-such-room", "private": private_room.slug, "banned": room.slug}[case]
    if case == "banned":
        await sync_to_async(Membership.objects.create)(room=room, user=bob, is_banned=True)
    socket, _, _ = await connect(bob, slug, expect_hello=False)
    assert socket.connected
    await socket.expect_closed(4403)


@websocket_only
@pytest.mark.parametrize("origin", ["http://evil.example", None])
async def test_foreign_or_missing_origin_is_refused_at_handshake(connect, alice, room, origin):
    socket, _, _ = await connect(alice, room.slug, origin=origin, expect_hello=False)
    assert not socket.connected  # Daphne answers such a refusal with HTTP 403


async def test_private_room_member_gets_in(connect, alice, bob, private_room):
    await sync_to_async(services.add_member)(room=private_room, actor=alice, username="bob")
    _, hello, _ = await connect(bob, private_room.slug)
    assert hello["room"] == {"slug": "secret-plans", "name": "Secret plans"}


async def test_hello_then_history(connect, alice, room, transport):
    socket, hello, history = await connect(alice, room.slug)
    if transport == "eventstream":  # the stream's id, for the frames POSTed beside it
        assert hello.pop("conn")
    assert hello == {
        "type": "hello",
        "user": "alice",
        "room": {"slug": "general", "name": "General"},
        "online": ["alice"],
        "last_seq": None,
    }
    assert history == {"type": "history", "messages": [], "has_more": False}


async def test_history_is_latest_50_oldest_first(connect, alice, room, settings):
    settings.CHAT_RATE_LIMIT = None
    for i in range(55):
        await sync_to_async(services.store_message)(
            room=room, author=alice, body=f"m{i}", client_id=None
        )
    _, hello, history = await connect(alice, room.slug)
    assert hello["last_seq"] == 55
    assert [m["seq"] for m in history["messages"]] == list(range(6, 56))
    assert history["has_more"] is True
    first = history["messages"][0]
    assert first["body"] == "m5" and first["user"] == "alice" and first["room"] == "general"


async def test_resume_after_gets_everything_after(connect, alice, bob, room, settings):
    settings.CHAT_RATE_LIMIT = None
    for i in range(70):
        await sync_to_async(services.store_message)(
            room=room, author=alice, body=f"m{i}", client_id=None
        )
    _, _, history = await connect(bob, room.slug, after=3)
    assert [m["seq"] for m in history["messages"]] == list(range(4, 71))
    assert history["has_more"] is True
    _, _, history = await connect(bob, room.slug, after=70)
    assert history["messages"] == [] and history["has_more"] is True


async def test_bad_after_is_reported_and_latest_history_sent(connect, alice, room):
    socket, hello, history = await connect(alice, room.slug, after="abc")
    error = await socket.expect("error")
    assert error["code"] == "bad_request" and "after" in error["detail"]


# ---------------------------------------------------------------- messages


async def test_message_reaches_everyone_and_sender_gets_ack(connect, alice, bob, room):
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    await a.send(type="message.send", body="hello bob", client_id="c-1")
    to_bob = (await b.expect("message"))["message"]
    to_alice = (await a.expect("message"))["message"]
    assert to_bob == to_alice
    assert to_bob["body"] == "hello bob" and to_bob["user"] == "alice"
    assert to_bob["seq"] == 1 and to_bob["client_id"] == "c-1"
    ack = await a.expect("ack")
    assert ack == {"type": "ack", "client_id": "c-1", "id": to_bob["id"], "seq": 1}
    stored = await sync_to_async(Message.objects.get)(pk=to_bob["id"])
    assert stored.body == "hello bob" and stored.seq == 1


async def test_repeated_client_id_is_acked_again_but_stored_and_sent_once(
    connect, alice, bob, room
):
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    first = await post(a, "once", "retry-me")
    second = await post(a, "once", "retry-me")
    assert first == second
    assert (await b.expect("message"))["message"]["client_id"] == "retry-me"
    await post(a, "after", "next")
    # bob's next message is the one after: the retry was not broadcast again
    assert (await b.expect("message"))["message"]["body"] == "after"
    assert await count_messages(room=room) == 2


async def test_send_without_client_id_is_acked_with_null(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    await a.send(type="message.send", body="no id")
    ack = await a.expect("ack")
    assert ack["client_id"] is None and ack["seq"] == 1


BAD_FRAMES = [
    ("not json", "bad_request"),
    ("[1]", "bad_request"),
    ('{"body": "no type"}', "bad_request"),
    ('{"type": "unknown"}', "bad_request"),
    ('{"type": "message.send", "body": 3}', "bad_request"),
    ('{"type": "message.send", "body": "   "}', "bad_request"),
    ('{"type": "message.send", "body": ""}', "bad_request"),
    ('{"type": "message.send", "body": "nul\\u0000"}', "bad_request"),
    ('{"type": "message.send", "body": "x", "client_id": 12}', "bad_request"),
    ('{"type": "history", "before": "x"}', "bad_request"),
    (json.dumps({"type": "message.send", "body": "x" * 4001}), "too_long"),
]


@pytest.mark.parametrize("text, code", BAD_FRAMES)
async def test_bad_frame_gets_error_keeps_socket_stores_nothing(
    connect, alice, bob, room, text, code
):
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    await a.expect("join", user="bob")
    await a.send_raw(text)
    error = await a.expect("error")
    assert error["code"] == code and error["detail"]
    await a.send(type="ping")
    await a.expect("pong")  # still open
    await b.nothing()  # nothing was broadcast
    assert await count_messages() == 0


@websocket_only
async def test_binary_frame_is_a_bad_request(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    await a.send_raw(bytes_data=b'{"type": "ping"}')
    assert (await a.expect("error"))["code"] == "bad_request"
    await a.send(type="ping")
    await a.expect("pong")


@websocket_only
async def test_frame_over_64_kib_closes_4009(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    await a.send_raw(json.dumps({"type": "message.send", "body": "x" * (64 * 1024)}))
    await a.expect_closed(4009)
    assert await count_messages() == 0


@websocket_only
async def test_frame_of_64_kib_in_multibyte_characters_closes_4009(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    await a.send_raw(json.dumps({"type": "message.send", "body": "é" * 33000}, ensure_ascii=False))
    await a.expect_closed(4009)


async def test_rate_limit_answers_retry_after(connect, alice, room, settings):
    settings.CHAT_RATE_LIMIT = (2, 30)
    a, _, _ = await connect(alice, room.slug)
    await post(a, "one", "1")
    await post(a, "two", "2")
    await a.send(type="message.send", body="three", client_id="3")
    error = await a.expect("error")
    assert error["code"] == "rate_limited" and 0 < error["retry_after"] <= 30
    assert await count_messages() == 2


async def test_locked_room_refuses_sends(connect, alice, room):
    await sync_to_async(type(room).objects.filter(pk=room.pk).update)(is_locked=True)
    a, _, _ = await connect(alice, room.slug)
    await a.send(type="message.send", body="hello", client_id="1")
    assert (await a.expect("error"))["code"] == "locked"
    assert await count_messages() == 0


# ---------------------------------------------------------------- ordering


async def test_live_messages_arrive_in_seq_order_even_when_published_out_of_order(
    connect, alice, room, settings
):
    """Commits on two workers can be published in the other order: the
    consumer holds the later one until the earlier arrives."""
    settings.CHAT_RATE_LIMIT = None
    a, _, _ = await connect(alice, room.slug)
    first = await sync_to_async(services.store_message)(
        room=room, author=alice, body="first", client_id=None
    )
    second = await sync_to_async(services.store_message)(
        room=room, author=alice, body="second", client_id=None
    )
    layer = get_channel_layer()
    for posted in (second, first):
        message = posted.message
        await layer.group_send(
            events.room_group(room.pk),
            events.room_message(room.pk, message.seq, wire.message_json(message)),
        )
    got = [(await a.expect("message"))["message"]["body"] for _ in range(2)]
    assert got == ["first", "second"]


async def test_a_lost_broadcast_is_filled_from_the_database(connect, alice, room, settings):
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_GAP_WAIT = 0.05
    a, _, _ = await connect(alice, room.slug)
    lost = await sync_to_async(services.store_message)(
        room=room, author=alice, body="lost", client_id=None
    )
    assert lost.message.seq == 1  # stored but never broadcast
    await post(a, "next", "n")
    bodies = [(await a.expect("message"))["message"]["body"] for _ in range(2)]
    assert bodies == ["lost", "next"]


async def test_history_then_live_without_gap_or_duplicate(connect, alice, bob, room, settings):
    settings.CHAT_RATE_LIMIT = None
    a, _, _ = await connect(alice, room.slug)
    for i in range(5):
        await post(a, f"m{i}", f"c{i}")
    b, hello, history = await connect(bob, room.slug, after=2)
    assert [m["seq"] for m in history["messages"]] == [3, 4, 5]
    await post(a, "m5", "c5")
    assert (await b.expect("message"))["message"]["seq"] == 6


# ---------------------------------------------------------------- other frames


async def test_history_request_pages_backwards(connect, alice, room, settings):
    settings.CHAT_RATE_LIMIT = None
    for i in range(8):
        await sync_to_async(services.store_message)(
            room=room, author=alice, body=f"m{i}", client_id=None
        )
    a, _, _ = await connect(alice, room.slug)
    await a.send(type="history", before=6, limit=3)
    page = await a.expect("history")
    assert [m["seq"] for m in page["messages"]] == [3, 4, 5] and page["has_more"] is True
    await a.send(type="history", before=3, limit=3)
    page = await a.expect("history")
    assert [m["seq"] for m in page["messages"]] == [1, 2] and page["has_more"] is False


async def test_typing_reaches_others_not_the_typist(connect, alice, bob, room):
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    await a.expect("join", user="bob")
    await a.send(type="typing")
    assert await b.expect("typing") == {"type": "typing", "user": "alice"}
    await a.nothing()


async def test_ping_pong(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    await a.send(type="ping")
    assert await a.recv() == {"type": "pong"}


# ---------------------------------------------------------------- presence


async def test_join_and_leave_only_on_first_open_and_last_close(connect, alice, bob, room):
    a, _, _ = await connect(alice, room.slug)
    b1, hello, _ = await connect(bob, room.slug)
    assert hello["online"] == ["alice", "bob"]
    await a.expect("join", user="bob")
    b2, hello, _ = await connect(bob, room.slug)  # bob's second tab
    assert hello["online"] == ["alice", "bob"]
    await b1.close()
    await a.send(type="ping")
    await a.expect("pong")  # no leave: bob still has a tab open
    await a.nothing()
    await b2.close()
    await a.expect("leave", user="bob")


# ---------------------------------------------------------------- sessions


@websocket_only
async def test_logout_closes_every_socket_of_that_session_with_4401(connect, alice, bob, room):
    client = Client(HTTP_HOST="localhost")
    await sync_to_async(client.force_login)(alice)
    cookie = client.cookies["sessionid"].value
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application
    from tests.conftest import ChatSocket

    sockets = []
    for _ in range(2):
        comm = WebsocketCommunicator(
            application,
            f"/ws/rooms/{room.slug}/",
            headers=[(b"origin", b"http://localhost"), (b"cookie", f"sessionid={cookie}".encode())],
        )
        assert (await comm.connect())[0]
        sockets.append(ChatSocket(comm))
        await sockets[-1].expect("history")
    other_session, _, _ = await connect(alice, room.slug)  # alice elsewhere: stays open
    response = await sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    for socket in sockets:
        await socket.expect_closed(4401)
    await other_session.send(type="ping")
    await other_session.expect("pong")


# ---------------------------------------------------------------- try again later (1013)


async def close_of(socket, timeout=5) -> dict:
    """The server's close (its code and reason), frames before it skipped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await socket.comm.receive_output(max(deadline - loop.time(), 0.01))
        if message["type"] == "websocket.close":
            return message


@websocket_only
async def test_past_the_opening_cap_sockets_get_1013_with_a_hint_and_get_in_on_retry(
    connect, alice, bob, carol, room, settings, monkeypatch
):
    import threading

    from chat import admission, hub

    settings.CHAT_MAX_OPENING = 1
    users = {"alice": alice, "bob": bob, "carol": carol}
    cookies = {name: await sync_to_async(session_cookie_for)(u) for name, u in users.items()}
    # The first socket is held in its access check (the database thread),
    # so that it is still opening while the others arrive.
    authorize_many = admission.authorize_many
    checking, go_on = threading.Event(), threading.Event()

    def held_authorize_many(sockets):
        checking.set()
        go_on.wait(10)
        return authorize_many(sockets)

    monkeypatch.setattr(admission, "authorize_many", held_authorize_many)
    first, _, _ = await connect(alice, room.slug, cookie=cookies["alice"], expect_hello=False)
    assert await asyncio.to_thread(checking.wait, 5)
    crowd = await asyncio.gather(
        *(connect(u, room.slug, cookie=cookies[n], expect_hello=False) for n, u in users.items())
    )
    closes = [await close_of(socket) for socket, _, _ in crowd]
    assert [(c["code"], c.get("reason")) for c in closes] == [(1013, "retry_after=1")] * 3
    go_on.set()
    assert (await first.expect("hello"))["user"] == "alice"
    assert hub.running_hubs()[0].opening == 0
    # Back after the hint: each gets in.
    for name, user in users.items():
        _, hello, _ = await connect(user, room.slug, cookie=cookies[name])
        assert hello["user"] == name


@websocket_only
async def test_a_handshake_the_database_fails_closes_with_1013_not_1011(
    connect, alice, room, monkeypatch
):
    from django.db import OperationalError

    from chat import admission

    def database_away(session_key, slug):
        raise OperationalError("database is locked")

    monkeypatch.setattr(admission, "authorize", database_away)
    socket, _, _ = await connect(alice, room.slug, expect_hello=False)
    assert socket.connected  # accepted, then closed with a code the page understands
    close = await close_of(socket)
    assert (close["code"], close.get("reason")) == (1013, "retry_after=2")
    monkeypatch.undo()
    _, hello, _ = await connect(alice, room.slug)  # back once the database is
    assert hello["user"] == "alice"


@websocket_only
async def test_a_handshake_redis_fails_closes_with_1013_not_1011(connect, alice, room, settings):
    from deploy.processes import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [dead]},
        }
    }
    socket, _, _ = await connect(alice, room.slug, expect_hello=False)
    assert socket.connected
    close = await close_of(socket, timeout=15)
    assert (close["code"], close.get("reason")) == (1013, "retry_after=2")


# ---------------------------------------------------------------- across workers


async def test_two_workers_on_redis_deliver_to_each_other(connect, redis_layer, alice, bob, room):
    a, _, _ = await connect(alice, room.slug)
    b, hello, _ = await connect(bob, room.slug, layer_alias="worker2")
    assert hello["online"] == ["alice", "bob"]
    await a.expect("join", user="bob")
    await post(b, "from worker 2", "w2")
    assert (await a.expect("message"))["message"]["body"] == "from worker 2"
    assert (await b.expect("message"))["message"]["body"] == "from worker 2"  # its own
    await post(a, "from worker 1", "w1")
    assert (await b.expect("message"))["message"]["body"] == "from worker 1"
    await b.close()
    await a.expect("leave", user="bob")


async def test_redis_rate_limit_is_shared(connect, redis_layer, alice, room, settings):
    settings.CHAT_RATE_LIMIT = (1, 30)
    a, _, _ = await connect(alice, room.slug)
    a2, _, _ = await connect(alice, room.slug, layer_alias="worker2")
    await post(a, "one", "1")
    await a2.send(type="message.send", body="two", client_id="2")
    assert (await a2.expect("error"))["code"] == "rate_limited"


async def test_concurrent_senders_everyone_sees_same_order(
    connect, redis_layer, alice, bob, carol, room, settings
):
    settings.CHAT_RATE_LIMIT = None
    sockets = [
        (await connect(alice, room.slug))[0],
        (await connect(bob, room.slug, layer_alias="worker2"))[0],
        (await connect(carol, room.slug))[0],
    ]
    per_sender = 10

    async def burst(socket, tag):
        for i in range(per_sender):
            await socket.send(type="message.send", body=f"{tag}{i}", client_id=f"{tag}{i}")

    await asyncio.gather(*(burst(s, t) for s, t in zip(sockets, "xyz", strict=True)))
    total = per_sender * len(sockets)
    orders = []
    for socket in sockets:
        seqs = [(await socket.expect("message"))["message"]["seq"] for _ in range(total)]
        orders.append(seqs)
    assert orders[0] == list(range(1, total + 1))
    assert orders[0] == orders[1] == orders[2]
    assert await count_messages(room=room) == total


# ---------------------------------------------------------------- batching


async def raw_frames(socket, count):
    frames = []
    for _ in range(count):
        message = await socket.comm.receive_output(5)
        frames.append(json.loads(message["text"]))
    return frames


@websocket_only
async def test_a_burst_is_batched_after_the_first_message(connect, alice, bob, room, settings):
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_BATCH_WINDOW = 0.3
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    for i in range(5):
        await a.send(type="message.send", body=f"m{i}", client_id=f"c{i}")
    frames = await raw_frames(b, 2)
    assert frames[0]["type"] == "message" and frames[0]["message"]["body"] == "m0"
    assert frames[1]["type"] == "messages"
    assert [m["body"] for m in frames[1]["messages"]] == ["m1", "m2", "m3", "m4"]
    assert [m["seq"] for m in frames[1]["messages"]] == [2, 3, 4, 5]


@websocket_only
async def test_no_batching_with_a_zero_window(connect, alice, bob, room, settings):
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_BATCH_WINDOW = 0
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    for i in range(4):
        await a.send(type="message.send", body=f"m{i}", client_id=f"c{i}")
    frames = await raw_frames(b, 4)
    assert [f["type"] for f in frames] == ["message"] * 4


@websocket_only
async def test_other_frames_wait_for_held_messages(connect, alice, bob, room, settings):
    """A frame about a message (or anything else) never overtakes a message
    held for a batch."""
    settings.CHAT_BATCH_WINDOW = 5  # held until something else is sent
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    await a.expect("join", user="bob")
    await a.send(type="message.send", body="first", client_id="1")
    await a.send(type="message.send", body="second", client_id="2")
    await a.expect("ack", client_id="2")
    await a.send(type="typing")
    frames = await raw_frames(b, 3)
    assert [f["type"] for f in frames] == ["message", "message", "typing"]
    assert [f["message"]["body"] for f in frames[:2]] == ["first", "second"]
