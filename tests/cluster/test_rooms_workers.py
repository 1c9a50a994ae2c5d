"""Room-level changes made over HTTP on one worker reach sockets on every
other worker: leaving a room closes the leaver's sockets there (4410), a new
topic reaches every open page."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request

import pytest
from asgiref.sync import sync_to_async

from .clients import TIMEOUT

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def _post_from_room_page(server, member, slug: str, path: str, **fields) -> int:
    """What the room page's forms do: load the page (CSRF token), then POST."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    jar.set_cookie(
        http.cookiejar.Cookie(
            0, "sessionid", member.cookie, None, False, "127.0.0.1", False, False, "/",
            True, False, None, False, None, None, {},
        )
    )  # fmt: skip
    page = opener.open(f"{server.http}/rooms/{slug}/", timeout=TIMEOUT).read().decode()
    token = re.search(r'data-csrf="([^"]+)"', page)[1]
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode()
    request = urllib.request.Request(f"{server.http}{path}", data=body)
    with opener.open(request, timeout=TIMEOUT) as response:
        return response.status  # after the redirect, followed


post_from_room_page = sync_to_async(_post_from_room_page)


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
