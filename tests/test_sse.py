"""What only the event stream has (chat.sse), through the whole ASGI stack:
its lifecycle as an AsyncHttpConsumer. What it shares with the WebSocket runs
over both in the contract's tests (both_transports)."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from chat import hub
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.django_db(transaction=True)
# The `connect` fixture's sockets are event streams in these tests.
eventstream = pytest.mark.parametrize("transport", ["eventstream"], indirect=True)


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
