"""What only the event stream has (chat.sse), through the whole ASGI stack:
its lifecycle as an AsyncHttpConsumer, Last-Event-ID, the opening and the
heartbeat comments. What it shares with the WebSocket runs over both in the
contract's tests (both_transports)."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from chat import hub, services
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.django_db(transaction=True)
# The `connect` fixture's sockets are event streams in these tests.
eventstream = pytest.mark.parametrize("transport", ["eventstream"], indirect=True)


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
