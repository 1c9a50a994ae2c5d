import json
import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from chat import services
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client(HTTP_HOST="localhost")


def logged_in(user):
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ["/", "/rooms/new/", "/rooms/general/"])
def test_pages_need_login(client, room, path):
    response = client.get(path)
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_login_form_sets_session(client, alice):
    page = client.get("/accounts/login/")
    assert b'name="username"' in page.content and b'name="password"' in page.content
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "a-long-test-password"}
    )
    assert response.status_code == 302 and "sessionid" in response.cookies


def test_signup_creates_account_and_logs_in(client, django_user_model):
    response = client.post(
        "/accounts/signup/",
        {
            "username": "newbie",
            "password1": "correct-horse-battery",
            "password2": "correct-horse-battery",
        },
    )
    assert response.status_code == 302 and response.url == "/"
    assert django_user_model.objects.filter(username="newbie").exists()
    assert client.get("/").status_code == 200


def test_signup_mismatch_is_refused(client, django_user_model):
    response = client.post(
        "/accounts/signup/",
        {
            "username": "newbie",
            "password1": "correct-horse-battery",
            "password2": "other-horse-9",
        },
    )
    assert response.status_code == 400
    assert not django_user_model.objects.filter(username="newbie").exists()


def test_directory_lists_public_and_own_private_rooms(alice, bob, room, private_room):
    other_private = services.create_room(owner=bob, name="Bobs den", is_private=True)
    page = logged_in(alice).get("/").content.decode()
    assert "General" in page and "Secret plans" in page and other_private.name not in page
    page = logged_in(bob).get("/").content.decode()
    assert "General" in page and "Secret plans" not in page and "Bobs den" in page


def test_create_room_redirects_to_room_page(alice):
    client = logged_in(alice)
    response = client.post("/rooms/new/", {"name": "Book Club", "private": "on"})
    assert response.status_code == 302 and response.url == "/rooms/book-club/"
    room = Room.objects.get(slug="book-club")
    assert room.is_private and room.owner == alice


def test_create_room_with_taken_name_is_a_clear_error(alice, room):
    response = logged_in(alice).post("/rooms/new/", {"name": "general"})
    assert response.status_code == 400 and b"exists already" in response.content
    assert Room.objects.count() == 1


def test_room_page_has_the_contract_hooks(alice, room):
    page = logged_in(alice).get("/rooms/general/").content.decode()
    # exactly one of each, so that tests finding them by role are unambiguous
    assert page.count('role="status"') == 1 and page.count('role="log"') == 1
    for hook in [
        'role="log"',
        'aria-label="Online"',
        'role="status"',
        ">Send<",
        'for="message-input" class="visually-hidden">Message<',
    ]:
        assert hook in page


def room_config(page: str) -> dict:
    """The numbers the room page hands its scripts (a json_script block)."""
    block = re.search(r'<script id="room-config" type="application/json">(.*?)</script>', page)
    assert block, "no room-config block on the page"
    return json.loads(block.group(1))


def test_the_room_page_takes_its_numbers_from_the_settings(settings, alice, room):
    settings.CHAT_HISTORY_PAGE = 17
    settings.CHAT_TYPING_INTERVAL = 2.25
    config = room_config(logged_in(alice).get("/rooms/general/").content.decode())
    assert config["historyPage"] == 17
    assert config["typingIntervalMs"] == 2250
    # The contract's close codes (docs/protocol.md).
    assert config["close"] == {
        "sessionEnded": 4401,
        "noAccess": 4403,
        "left": 4410,
        "reconnect": 4000,
        "tooFarBehind": 4008,
        "serviceRestart": 1012,
        "tryAgainLater": 1013,
    }


def test_the_room_scripts_keep_no_copy_of_the_servers_numbers():
    scripts = Path(django_settings.BASE_DIR, "static", "chat")
    for name in ["room.js", "connection.js", "eventstream.js", "render.js"]:
        source = (scripts / name).read_text()
        # (4000, RECONNECT, is left out: it is also a count of milliseconds.)
        for code in ["4401", "4403", "4410", "4008", "1012", "1013"]:
            assert not re.search(rf"\b{code}\b", source), (name, code)
        assert not re.search(r"HISTORY_PAGE\s*=\s*\d", source), name
        assert not re.search(r"TYPING_EVERY_MS\s*=\s*\d", source), name


def test_opening_a_public_room_makes_you_a_member(bob, room):
    assert logged_in(bob).get("/rooms/general/").status_code == 200
    assert Membership.objects.get(room=room, user=bob).role == "member"


def test_private_room_is_404_for_outsiders_same_as_missing(bob, private_room):
    client = logged_in(bob)
    assert client.get("/rooms/secret-plans/").status_code == 404
    assert client.get("/rooms/no-such-room/").status_code == 404


def test_owner_adds_member_by_username(alice, bob, private_room):
    response = logged_in(alice).post("/rooms/secret-plans/members/", {"username": "bob"})
    assert response.status_code == 302
    assert Membership.objects.filter(room=private_room, user=bob).exists()
    assert logged_in(bob).get("/rooms/secret-plans/").status_code == 200


def test_member_cannot_add_members(alice, bob, carol, private_room):
    services.add_member(room=private_room, actor=alice, username="bob")
    logged_in(bob).post("/rooms/secret-plans/members/", {"username": "carol"})
    assert not Membership.objects.filter(room=private_room, user=carol).exists()


@pytest.mark.django_db
def test_with_redis_away_the_directory_and_room_pages_answer_without_who_is_online(
    redis_away, alice, bob, room
):
    services.join_room(room=room, user=bob)
    client = logged_in(alice)
    directory = client.get("/")
    assert directory.status_code == 200 and b"General" in directory.content
    page = client.get(f"/rooms/{room.slug}/")
    assert page.status_code == 200
    assert b"alice" in page.content and b"bob" in page.content  # the members, none online
