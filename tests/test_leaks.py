"""What the pages must not tell: which private rooms exist, and which
usernames exist. And the cap on rooms created per user."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from chat import services
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


# ---------------------------------------------------------------- private room slugs


def test_creating_a_room_named_like_a_private_one_reveals_nothing(bob, private_room):
    client = logged_in(bob)
    response = client.post("/rooms/new/", {"name": "Secret plans"})
    # The same answer as for a name nobody has: a new room, at an address of its own.
    assert response.status_code == 302
    created = Room.objects.get(owner=bob)
    assert response.url == f"/rooms/{created.slug}/"
    assert created.slug.startswith("secret-plans-") and created.slug != private_room.slug
    assert created.name == "Secret plans" and not created.is_private
    assert client.get(f"/rooms/{private_room.slug}/").status_code == 404
    private_room.refresh_from_db()
    assert private_room.owner.username == "alice"


def test_a_slug_the_creator_can_see_is_still_a_clear_error(alice, bob, room, private_room):
    response = logged_in(bob).post("/rooms/new/", {"name": "general"})
    assert response.status_code == 400 and b"exists already" in response.content
    response = logged_in(alice).post("/rooms/new/", {"name": "Secret Plans!"})
    assert response.status_code == 400 and b"exists already" in response.content
    assert Room.objects.count() == 2


# ---------------------------------------------------------------- usernames


def flashes(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_add_member_answers_the_same_for_unknown_names(alice, bob, carol, private_room):
    path = f"/rooms/{private_room.slug}/members/"
    known = logged_in(alice).post(path, {"username": "bob"})
    unknown = logged_in(alice).post(path, {"username": "bobby"})
    assert known.status_code == unknown.status_code == 302
    assert known.url == unknown.url
    assert [m.replace("bobby", "bob") for m in flashes(unknown)] == flashes(known)
    assert Membership.objects.filter(room=private_room, user=bob).exists()


def test_add_member_misses_are_limited_per_owner(settings, alice, bob, private_room):
    settings.CHAT_ADD_MEMBER_MISS_LIMIT = (3, 3600)
    client = logged_in(alice)
    for name in ("nobody1", "nobody2", "nobody3"):
        client.post(f"/rooms/{private_room.slug}/members/", {"username": name})
    response = client.post(f"/rooms/{private_room.slug}/members/", {"username": "bob"})
    assert any("Too many names" in m for m in flashes(response))
    assert not Membership.objects.filter(room=private_room, user=bob).exists()


@pytest.mark.parametrize("action", ["ban", "unban", "mute", "unmute"])
def test_moderation_replies_to_a_non_moderator_do_not_depend_on_the_name(action, bob, carol, room):
    services.join_room(room=room, user=carol)
    client = logged_in(bob)
    existing = client.post(f"/rooms/{room.slug}/users/carol/{action}/")
    missing = client.post(f"/rooms/{room.slug}/users/nobody-here/{action}/")
    assert existing.status_code == missing.status_code == 403
    assert existing.json() == missing.json()


@pytest.mark.parametrize("action", ["ban", "unban", "mute", "unmute"])
def test_moderation_replies_treat_unknown_and_non_members_alike(action, alice, carol, room):
    # carol has an account but never opened the room; "nobody" has no account.
    client = logged_in(alice)
    stranger = client.post(f"/rooms/{room.slug}/users/carol/{action}/")
    missing = client.post(f"/rooms/{room.slug}/users/nobody/{action}/")
    assert stranger.status_code == missing.status_code == 404
    assert stranger.json()["detail"].replace("carol", "nobody") == missing.json()["detail"]
    assert not Membership.objects.filter(user=carol).exists()


# ---------------------------------------------------------------- rooms per hour


def test_rooms_per_hour_cap_is_a_clear_form_error(settings, alice):
    settings.CHAT_ROOMS_PER_HOUR = 3
    client = logged_in(alice)
    for name in ("One", "Two", "Three"):
        assert client.post("/rooms/new/", {"name": name}).status_code == 302
    response = client.post("/rooms/new/", {"name": "Four"})
    assert response.status_code == 429
    assert b"You can create 3 rooms an hour; try again in" in response.content
    assert Room.objects.count() == 3
    # An hour after the first, there is room for one more.
    first = Room.objects.get(name="One")
    Room.objects.filter(pk=first.pk).update(created=first.created - timedelta(minutes=61))
    assert client.post("/rooms/new/", {"name": "Four"}).status_code == 302


def test_the_cap_is_per_user_and_off_at_zero(settings, alice, bob):
    settings.CHAT_ROOMS_PER_HOUR = 1
    services.create_room(owner=alice, name="One")
    services.create_room(owner=bob, name="Two")
    with pytest.raises(services.RateLimited) as refused:
        services.create_room(owner=alice, name="Three")
    assert 3500 < refused.value.fields["retry_after"] <= 3600
    settings.CHAT_ROOMS_PER_HOUR = 0
    services.create_room(owner=alice, name="Three")
