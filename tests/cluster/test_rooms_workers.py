"""Room-level changes made over HTTP on one worker reach sockets on every
other worker: leaving a room closes the leaver's sockets there (4410), a new
topic reaches every open page."""

from __future__ import annotations

import pytest

from .clients import post_from_room_page

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


async def test_topic_and_leaving_reach_every_worker(workers, make_member, make_room, open_client):
    alice, bob = [await make_member(n) for n in ("ralice", "rbob")]
    room, other = await make_room(alice), await make_room(alice)
    w0, w1, w2 = workers
    a = await open_client(alice, w2, room.slug)
    b0 = await open_client(bob, w0, room.slug)
    b1 = await open_client(bob, w1, room.slug)
    b_other = await open_client(bob, w1, other.slug)

    assert await post_from_room_page(w0, alice, room.slug, f"/rooms/{room.slug}/topic/", topic="Hi")
    for client in (a, b0, b1):
        await client.wait(
            lambda c=client: any(f["type"] == "topic" and f["topic"] == "Hi" for f in c.frames),
            "the topic frame",
        )

    assert await post_from_room_page(w0, bob, room.slug, f"/rooms/{room.slug}/leave/")
    for client in (b0, b1):
        await client.wait(lambda c=client: c.closed, "the leaver's socket to close")
        assert client.close_code == 4410
    await a.wait_presence("leave", "rbob")
    assert not b_other.closed  # bob's socket in his other room stays open
    await b_other.send(type="ping")
    await b_other.wait(lambda: any(f["type"] == "pong" for f in b_other.frames), "pong")
