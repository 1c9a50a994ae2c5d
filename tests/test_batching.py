"""chat.batching: what is submitted in one turn of the loop runs in one call."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.batching import Batcher
from tests.conftest import session_cookie_for


async def test_submissions_of_one_turn_share_one_call():
    calls = []

    async def run(items):
        calls.append(list(items))
        return [item * 2 for item in items]

    batcher = Batcher(run)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert calls == [[0, 1, 2, 3, 4]]
    assert await batcher.submit(7) == 14  # a lone one: a call of its own
    assert calls[-1] == [7]


async def test_an_error_result_goes_to_its_submitter_alone():
    async def run(items):
        return [ValueError(item) if item == "bad" else item for item in items]

    batcher = Batcher(run)
    good, bad = await asyncio.gather(
        batcher.submit("good"), batcher.submit("bad"), return_exceptions=True
    )
    assert good == "good" and isinstance(bad, ValueError)


async def test_a_failed_call_fails_every_submitter():
    async def run(items):
        raise ConnectionError("away")

    batcher = Batcher(run)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_batches_are_bounded():
    sizes = []

    async def run(items):
        sizes.append(len(items))
        return items

    batcher = Batcher(run, limit=4)
    await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert max(sizes) <= 4 and sum(sizes) == 10


@pytest.mark.django_db(transaction=True)
async def test_sockets_opening_together_are_checked_in_one_database_trip(
    connect, alice, bob, carol, room, monkeypatch
):
    from chat import admission

    trips = []
    real = admission.authorize_many

    def counting(sockets):
        trips.append(len(sockets))
        return real(sockets)

    monkeypatch.setattr(admission, "authorize_many", counting)
    await connect(alice, room.slug)  # the hub starts (and is built with the counting function)
    cookies = [await sync_to_async(session_cookie_for)(u) for u in (alice, bob, carol, bob)]
    trips.clear()
    opened = await asyncio.gather(*(connect(None, room.slug, cookie=c) for c in cookies))
    assert all(hello["type"] == "hello" for _, hello, _ in opened)
    assert sum(trips) == 4 and len(trips) < 4, trips
