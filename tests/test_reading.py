"""Read positions, unread counts and the directory: the server side of
issue 9 (the browser side is in tests/e2e/test_reading.py)."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat import selectors, services
from chat.models import Membership, Message

store = services.store_message


def post_many(room, author, count):
    for n in range(count):
        store(room=room, author=author, body=f"message {n}", client_id=None)


@pytest.fixture(autouse=True)
def no_rate_limit(settings):
    settings.CHAT_RATE_LIMIT = None


def position(room, user):
    return Membership.objects.get(room=room, user=user).last_read_seq


def logged_in(user):
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


@pytest.mark.django_db
class TestReadPosition:
    def test_advances_and_never_moves_back(self, room, alice, bob):
        services.join_room(room=room, user=bob)
        post_many(room, alice, 5)
        assert services.advance_read_position(room=room, user=bob, seq=3) == 3
        assert services.advance_read_position(room=room, user=bob, seq=2) is None
        assert services.advance_read_position(room=room, user=bob, seq=3) is None
        assert position(room, bob) == 3
        assert services.advance_read_position(room=room, user=bob, seq=5) == 5
        assert position(room, bob) == 5

    def test_never_past_the_last_message(self, room, alice, bob):
        services.join_room(room=room, user=bob)
        post_many(room, alice, 2)
        assert services.advance_read_position(room=room, user=bob, seq=10**12) == 2
        assert position(room, bob) == 2
        post_many(room, alice, 1)  # seq 3 is unread, though the client claimed more
        assert selectors.room_directory(user=bob)[0].unread == 1

    def test_not_a_member_changes_nothing(self, room, alice, bob):
        post_many(room, alice, 2)
        assert services.advance_read_position(room=room, user=bob, seq=2) is None
        assert not Membership.objects.filter(user=bob).exists()

    def test_one_statement(self, room, alice):
        post_many(room, alice, 2)
        with CaptureQueriesContext(connection) as queries:
            services.advance_read_position(room=room, user=alice, seq=2)
        assert len(queries) == 1 and queries[0]["sql"].lstrip().startswith("UPDATE")


@pytest.mark.django_db
class TestDirectory:
    def test_unread_counts_others_messages_after_the_position(self, alice, bob, carol):
        general = services.create_room(owner=alice, name="General")
        random = services.create_room(owner=alice, name="Random")
        quiet = services.create_room(owner=alice, name="Quiet")
        for room in (general, random, quiet):
            services.join_room(room=room, user=bob)
        services.join_room(room=general, user=carol)
        post_many(general, alice, 3)  # seq 1-3
        post_many(general, bob, 2)  # seq 4-5: his own, never unread to him
        post_many(general, carol, 1)  # seq 6
        services.advance_read_position(room=general, user=bob, seq=2)
        post_many(random, alice, 4)
        removed = Message.objects.filter(room=random).last()
        services.remove_message(message=removed, actor=alice)  # removed: not unread
        services.create_room(owner=carol, name="Never opened by bob")
        post_many(quiet, alice, 1)
        services.advance_read_position(room=quiet, user=bob, seq=1)

        rooms = {room.name: room for room in selectors.room_directory(user=bob)}
        assert rooms["General"].unread == 2  # seq 3 (alice) and 6 (carol)
        assert rooms["Random"].unread == 3
        assert rooms["Quiet"].unread == 0
        assert rooms["Never opened by bob"].unread == 0  # not a member: no count
        assert rooms["General"].member_count == 3
        assert rooms["Never opened by bob"].member_count == 1

    def test_one_query_for_the_rows_whatever_their_number(self, alice, bob, settings):
        settings.CHAT_DIRECTORY_PAGE = 50
        for n in range(12):
            room = services.create_room(owner=alice, name=f"Room {n:02}")
            services.join_room(room=room, user=bob)
            post_many(room, alice, 2)
        with CaptureQueriesContext(connection) as queries:
            rooms = list(selectors.room_directory(user=bob))
            assert [r.unread for r in rooms] == [2] * 12
        assert len(queries) == 2  # the page's rows with their counts, and the total

    def test_banned_members_do_not_count(self, room, alice, bob):
        services.join_room(room=room, user=bob)
        services.ban_user(room=room, user=bob, actor=alice)
        assert selectors.room_directory(user=alice)[0].member_count == 1

    def test_pages(self, alice, settings):
        settings.CHAT_DIRECTORY_PAGE = 2
        for name in ("Delta", "Alpha", "Echo", "Bravo", "Charlie"):
            services.create_room(owner=alice, name=name)
        client = logged_in(alice)
        first = client.get("/").content.decode()
        assert "Alpha" in first and "Bravo" in first and "Charlie" not in first
        assert "Page 1 of 3" in first and 'href="?page=2"' in first
        last = client.get("/?page=3").content.decode()
        assert "Echo" in last and "Alpha" not in last and 'href="?page=2"' in last
        # Out of range or nonsense: the nearest real page, not an error.
        assert "Echo" in client.get("/?page=99").content.decode()
        assert "Alpha" in client.get("/?page=abc").content.decode()

    def test_page_shows_counts(self, room, alice, bob):
        services.join_room(room=room, user=bob)
        post_many(room, alice, 3)
        page = logged_in(bob).get("/").content.decode()
        assert "3 unread" in page and "2 members" in page and "0 online" in page


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.django_db(transaction=True)
async def test_directory_counts_people_online(request, alice, bob, store):
    if store == "redis":
        request.getfixturevalue("redis_layer")
    room = await sync_to_async(services.create_room)(owner=alice, name="Live")
    other = await sync_to_async(services.create_room)(owner=alice, name="Empty")
    await services.open_presence(room_id=room.pk, username="alice", conn_id="c1", skip="c1")
    await services.open_presence(room_id=room.pk, username="alice", conn_id="c2", skip="c2")
    await services.open_presence(room_id=room.pk, username="bob", conn_id="c3", skip="c3")
    rooms = await sync_to_async(lambda: list(selectors.room_directory(user=alice)))()
    assert {r.name: r.online for r in rooms} == {"Live": 2, "Empty": 0}
    await services.close_presence(room_id=room.pk, username="bob", conn_id="c3")
    rooms = await sync_to_async(lambda: list(selectors.room_directory(user=alice)))()
    assert {r.name: r.online for r in rooms}["Live"] == 1
    assert other.pk


@pytest.mark.django_db
class TestRoomPageData:
    def test_room_page_carries_the_read_position(self, room, alice, bob):
        services.join_room(room=room, user=bob)
        post_many(room, alice, 4)
        services.advance_read_position(room=room, user=bob, seq=3)
        page = logged_in(bob).get("/rooms/general/").content.decode()
        assert 'data-last-read="3"' in page

    def test_people_lists_members_by_prefix(self, room, alice, bob, carol, make_user):
        make_user("albert")  # not a member
        services.join_room(room=room, user=bob)
        services.join_room(room=room, user=carol)
        client = logged_in(bob)
        assert client.get("/rooms/general/people/?q=").json() == {
            "users": ["alice", "bob", "carol"]
        }
        assert client.get("/rooms/general/people/?q=AL").json() == {"users": ["alice"]}
        assert client.get("/rooms/general/people/?q=zz").json() == {"users": []}

    def test_people_of_a_private_room_are_404_to_outsiders(self, private_room, bob):
        assert logged_in(bob).get("/rooms/secret-plans/people/?q=a").status_code == 404

    def test_people_needs_login(self, room):
        response = Client(HTTP_HOST="localhost").get("/rooms/general/people/")
        assert response.status_code == 302


@pytest.mark.django_db
class TestErrorPages:
    def test_404_has_the_site_header_and_a_way_back(self, alice, settings):
        settings.DEBUG = False
        response = logged_in(alice).get("/rooms/no-such-room/")
        page = response.content.decode()
        assert response.status_code == 404
        assert 'class="site-header"' in page and "Page not found" in page
        assert 'href="/">Back to the rooms' in page and "alice" in page

    def test_403_is_the_styled_page_with_a_way_back(self, room, bob, settings):
        settings.DEBUG = False
        response = logged_in(bob).get("/rooms/general/settings/")  # the owner's page
        page = response.content.decode()
        assert response.status_code == 403
        assert 'class="site-header"' in page and "bob" in page
        assert '<p class="error-code">403</p>' in page and "<h1>Not allowed</h1>" in page
        assert "You do not have access to this page." in page
        assert 'href="/">Back to the rooms' in page

    def test_403_on_a_forged_form_has_the_site_header(self, alice, settings):
        settings.DEBUG = False
        client = Client(HTTP_HOST="localhost", enforce_csrf_checks=True)
        client.force_login(alice)
        response = client.post("/rooms/new/", {"name": "x"})
        assert response.status_code == 403
        assert 'class="site-header"' in response.content.decode()

    def test_favicon_is_linked(self, alice):
        page = logged_in(alice).get("/").content.decode()
        assert re.search(r'rel="icon" href="/static/chat/favicon\.[0-9a-f]{12}\.svg"', page)


async def drain(socket, kind, count):
    for _ in range(count):
        await socket.expect(kind)


@pytest.mark.django_db(transaction=True)
async def test_read_frame_stores_and_reaches_the_users_other_sockets(connect, alice, bob, room):
    await sync_to_async(post_many)(room, alice, 3)
    phone, _, _ = await connect(bob, room.slug)
    laptop, _, _ = await connect(bob, room.slug)
    other, _, _ = await connect(alice, room.slug)
    await drain(phone, "join", 1)
    await drain(laptop, "join", 1)

    await laptop.send(type="read", seq=2)
    assert await phone.expect("read") == {"type": "read", "room": room.slug, "seq": 2}
    await laptop.nothing()  # the socket that read knows already
    await other.nothing()  # nobody else hears of it
    assert await sync_to_async(position)(room, bob) == 2

    await laptop.send(type="read", seq=1)  # backwards: stored nothing, told nobody
    await laptop.send(type="read", seq=2)  # the same: likewise
    await phone.nothing()
    assert await sync_to_async(position)(room, bob) == 2

    await phone.send(type="read", seq="3")
    error = await phone.expect("error")
    assert error["code"] == "bad_request" and "read" in error["detail"]
    assert await sync_to_async(position)(room, bob) == 2
