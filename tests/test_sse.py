"""What only the event stream has (chat.sse), through the whole ASGI stack:
its lifecycle as an AsyncHttpConsumer, Last-Event-ID, the opening and the
heartbeat comments, and the CSRF refusal of a POSTed frame. What it shares
with the WebSocket runs over both in the contract's tests (both_transports)."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import Client

from chat import hub, services, sse
from chat.models import Message
from tests.conftest import TIMEOUT, post_frame, session_cookie_for

pytestmark = pytest.mark.django_db(transaction=True)
# The `connect` fixture's sockets are event streams in these tests.
eventstream = pytest.mark.parametrize("transport", ["eventstream"], indirect=True)

count_messages = sync_to_async(lambda **kw: Message.objects.filter(**kw).count())


async def post_messages(room, author, count):
    for i in range(count):
        await services.post_message(room=room, author=author, body=f"m{i}", client_id=None)


# ---------------------------------------------------------------- lifecycle


@eventstream
async def test_a_stream_the_server_closes_is_a_finished_request(connect, bob, private_room):
    """The close event ends the response, and the consumer with it, without
    waiting for the client to hang up."""
    stream, _, _ = await connect(bob, private_room.slug, expect_hello=False)
    await stream.expect_closed(4403)
    await asyncio.wait_for(stream.ended.wait(), TIMEOUT)
    await asyncio.wait([stream.comm.future], timeout=TIMEOUT)
    assert stream.comm.future.done(), "the consumer still runs"


@eventstream
async def test_a_stream_leaves_the_room_when_the_client_hangs_up(connect, alice, room):
    stream, _, _ = await connect(alice, room.slug)
    room_hub = (await hub.get_hub("default")).rooms[room.pk]
    assert list(room_hub.listeners) == [stream.conn]
    # The hub delivers the room's events: no channel on the layer per stream
    # (Channels' consumers would open one, "specific.…").
    assert not [name for name in get_channel_layer().channels if name.startswith("specific")]

    await stream.close()
    assert stream.comm.future.done()
    assert room_hub.listeners == {}


# ---------------------------------------------------------------- resuming


@eventstream
async def test_last_event_id_resumes_after_the_last_event_seen(connect, alice, room):
    await post_messages(room, alice, 3)
    first, _, history = await connect(alice, room.slug)
    assert [m["seq"] for m in history["messages"]] == [1, 2, 3]
    assert first.last_event_id == "3"  # the history event's id: its last seq
    await first.close()
    await post_messages(room, alice, 2)

    # What EventSource sends back when it reconnects by itself.
    resumed = [(b"last-event-id", first.last_event_id.encode())]
    _, _, history = await connect(alice, room.slug, headers=resumed)
    assert [m["seq"] for m in history["messages"]] == [4, 5]
    # EventSource keeps the URL it began with (its `after`): the header wins.
    _, _, history = await connect(alice, room.slug, after=1, headers=resumed)
    assert [m["seq"] for m in history["messages"]] == [4, 5]


# ---------------------------------------------------------------- keeping it open


@eventstream
async def test_the_stream_opens_with_retry_then_beats_with_comments(connect, alice, room, settings):
    settings.CHAT_SSE_HEARTBEAT = 0.05
    stream, _, _ = await connect(alice, room.slug)
    assert stream.body.startswith(b"retry: 2000\n\n")
    assert await asyncio.wait_for(stream.comments.get(), TIMEOUT) == b": ping"
    assert await asyncio.wait_for(stream.comments.get(), TIMEOUT) == b": ping"  # and again


# ---------------------------------------------------------------- frames up


@pytest.mark.parametrize("csrf_header", [None, "w" * 32], ids=["missing", "wrong"])
async def test_a_frame_posted_without_a_valid_csrf_token_is_refused_as_a_frame(
    alice, room, csrf_header
):
    cookie = "sessionid=" + await sync_to_async(session_cookie_for)(alice)
    frame = json.dumps({"type": "message.send", "body": "forged", "client_id": "c1"}).encode()
    path = f"/sse/rooms/{room.slug}/"

    status, frames = await post_frame(path, frame, cookie=cookie, csrf_header=csrf_header)
    assert status == 403
    assert frames == [{"type": "error", "code": "forbidden", "detail": sse.CSRF_REFUSED}]
    assert await count_messages(room=room) == 0

    status, frames = await post_frame(path, frame, cookie=cookie)  # the page's own token
    assert status == 200 and frames[0]["type"] == "ack"
    assert await count_messages(room=room) == 1


def test_other_csrf_refusals_are_still_djangos_page(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/rooms/new/", {"name": "x"})
    assert response.status_code == 403
    assert response["content-type"].startswith("text/html")
