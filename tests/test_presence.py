"""Both presence stores behave the same: first open joins, last close leaves,
and entries a dead worker stopped refreshing expire and are swept out."""

import uuid

import pytest

from chat import presence


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return presence.MemoryPresence(ttl=30)
    url = request.getfixturevalue("redis_url")
    return presence.RedisPresence(url, prefix=f"t{uuid.uuid4().hex[:8]}", ttl=30)


async def test_first_open_joins_last_close_leaves(store):
    assert (await store.open(1, "ann", "c1")).joined
    second = await store.open(1, "ann", "c2")
    assert not second.joined and second.online == ["ann"]
    other = await store.open(1, "ben", "c3")
    assert other.joined and other.online == ["ann", "ben"]
    assert not await store.close(1, "ann", "c1")
    assert await store.close(1, "ann", "c2")
    assert not await store.close(1, "ann", "c2")  # closing twice changes nothing
    assert (await store.open(1, "cat", "c4")).online == ["ben", "cat"]


async def test_rooms_are_separate(store):
    await store.open(1, "ann", "c1")
    assert (await store.open(2, "ann", "c2")).joined
    assert (await store.open(2, "ben", "c3")).online == ["ann", "ben"]


async def test_unrefreshed_entries_expire_and_are_swept(store, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(presence.time, "time", lambda: now[0])
    await store.open(1, "dead", "gone-worker-conn")
    await store.open(1, "alive", "live-conn")
    now[0] += 20
    assert (await store.heartbeat(1, "live-conn", ["alive"])).expired == []
    now[0] += 15  # "dead" was last refreshed 35 s ago, ttl 30
    swept = await store.heartbeat(1, "live-conn", ["alive"])
    assert swept.expired == ["dead"] and swept.returned == [] and swept.online == ["alive"]
    assert (await store.open(1, "new", "c9")).online == ["alive", "new"]


async def test_open_sweeps_expired_users(store, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(presence.time, "time", lambda: now[0])
    await store.open(1, "dead", "x")
    now[0] += 31
    result = await store.open(1, "ann", "y")
    assert result.expired == ["dead"] and result.online == ["ann"]


async def test_refresh_after_being_swept_returns_the_user(store, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(presence.time, "time", lambda: now[0])
    await store.open(1, "slow", "s1")
    now[0] += 31
    await store.open(1, "ann", "a1")  # sweeps "slow"
    result = await store.heartbeat(1, "s1", ["slow"])  # slow's worker was only stalled
    assert result.returned == ["slow"]
    assert (await store.open(1, "ben", "b1")).online == ["ann", "ben", "slow"]


async def test_online_users_of_a_room(store):
    assert await store.online_users(1) == []
    await store.open(1, "ben", "c1")
    await store.open(1, "ann", "c2")
    await store.open(1, "ann", "c3")
    await store.open(2, "cat", "c4")
    assert await store.online_users(1) == ["ann", "ben"]
    await store.close(1, "ben", "c1")
    assert await store.online_users(1) == ["ann"]
