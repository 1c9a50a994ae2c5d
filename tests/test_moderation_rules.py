"""The rules of who may moderate whom, in the services and the admin: no
membership made by moderation, rank checked on undo too, staff rank only with
the admin's permission, one record of ownership, and no unlogged unban."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from chat import selectors, services
from chat.models import Membership, ModerationLog, Room
from tests.admin_forms import change_form_data

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def log_actions():
    return list(ModerationLog.objects.order_by("id").values_list("action", flat=True))


@pytest.fixture
def superuser(make_user):
    return make_user("boss", is_staff=True, is_superuser=True)


@pytest.fixture
def rita(make_user, room):
    """A moderator of `room`."""
    user = make_user("rita")
    Membership.objects.create(room=room, user=user, role=Membership.Role.MODERATOR)
    return user


@pytest.fixture
def otto(make_user, room):
    """Another moderator of `room`."""
    user = make_user("otto")
    Membership.objects.create(room=room, user=user, role=Membership.Role.MODERATOR)
    return user


# ---------------------------------------------------------------- no membership made


@pytest.mark.parametrize("action", ["mute", "ban"])
def test_moderating_a_stranger_does_not_let_them_into_a_private_room(
    action, alice, bob, private_room
):
    act = {"mute": services.mute_user, "ban": services.ban_user}[action]
    with pytest.raises(services.NotFound):
        act(room=private_room, user=bob, actor=alice)
    assert services.unban_user(room=private_room, user=bob, actor=alice) is False
    assert not Membership.objects.filter(room=private_room, user=bob).exists()
    assert client_for(bob).get(f"/rooms/{private_room.slug}/").status_code == 404
    assert ModerationLog.objects.count() == 0


@pytest.mark.parametrize("action", ["mute", "ban"])
def test_the_room_page_endpoint_makes_no_member_either(action, alice, bob, private_room):
    response = client_for(alice).post(f"/rooms/{private_room.slug}/users/bob/{action}/")
    assert response.status_code == 404 and response.json()["ok"] is False
    assert not Membership.objects.filter(room=private_room, user=bob).exists()


# ---------------------------------------------------------------- undo checks rank


def test_a_muted_moderator_cannot_unmute_themself(alice, rita, room):
    services.mute_user(room=room, user=rita, actor=alice)
    with pytest.raises(services.Forbidden):
        services.unmute_user(room=room, user=rita, actor=rita)
    response = client_for(rita).post(f"/rooms/{room.slug}/users/rita/unmute/")
    assert response.status_code == 403
    assert Membership.objects.get(room=room, user=rita).muted_until > timezone.now()


def test_a_moderator_cannot_unban_a_moderator_the_owner_banned(alice, rita, otto, room):
    services.ban_user(room=room, user=otto, actor=alice)
    with pytest.raises(services.Forbidden):
        services.unban_user(room=room, user=otto, actor=rita)
    assert client_for(rita).post(f"/rooms/{room.slug}/users/otto/unban/").status_code == 403
    assert Membership.objects.get(room=room, user=otto).is_banned
    assert services.unban_user(room=room, user=otto, actor=alice)  # the owner can
    assert log_actions() == ["ban", "unban"]


def test_a_moderator_cannot_unmute_a_moderator_the_owner_muted(alice, rita, otto, room):
    services.mute_user(room=room, user=otto, actor=alice, until=timezone.now() + timedelta(hours=1))
    with pytest.raises(services.Forbidden):
        services.unmute_user(room=room, user=otto, actor=rita)
    assert Membership.objects.get(room=room, user=otto).muted_until > timezone.now()


# ---------------------------------------------------------------- staff rank


@pytest.fixture
def sam(make_user, room):
    """Staff without any permission, a plain member of `room`."""
    user = make_user("sam", is_staff=True)
    services.join_room(room=room, user=user)
    return user


def grant(user, codename):
    user.user_permissions.add(Permission.objects.get(codename=codename))
    return type(user).objects.get(pk=user.pk)  # a fresh permission cache


def test_staff_without_permissions_has_no_rank_beyond_their_role(sam, bob, room):
    services.join_room(room=room, user=bob)
    assert selectors.moderation_rank(user=sam, room=room) == selectors.RANK_MEMBER
    assert not selectors.can_moderate(user=sam, room=room)
    with pytest.raises(services.Forbidden):
        services.ban_user(room=room, user=bob, actor=sam)
    # …and the owner may moderate them like any member.
    services.mute_user(room=room, user=sam, actor=room.owner)

    sam = grant(sam, "change_membership")
    assert selectors.moderation_rank(user=sam, room=room) == selectors.RANK_STAFF
    assert services.ban_user(room=room, user=bob, actor=sam)


def test_staff_with_view_permission_only_gets_no_moderation_actions(sam, bob, room):
    services.join_room(room=room, user=bob)
    sam = grant(sam, "view_membership")
    client = client_for(sam)
    changelist = client.get("/admin/chat/membership/")
    assert changelist.status_code == 200
    assert b'value="ban"' not in changelist.content
    membership = Membership.objects.get(room=room, user=bob)
    client.post(
        "/admin/chat/membership/",
        {"action": "ban", "_selected_action": [membership.pk], "index": "0"},
    )
    assert not Membership.objects.get(pk=membership.pk).is_banned


def test_staff_cannot_add_members_without_the_permission(sam, private_room):
    with pytest.raises(services.Forbidden):
        services.add_member(room=private_room, actor=sam, username="sam")
    sam = grant(sam, "add_membership")
    services.add_member(room=private_room, actor=sam, username="sam")


# ---------------------------------------------------------------- the admin's membership pages


def test_deleting_a_banned_membership_in_the_admin_is_refused(superuser, alice, bob, room):
    services.join_room(room=room, user=bob)
    services.ban_user(room=room, user=bob, actor=alice)
    membership = Membership.objects.get(room=room, user=bob)
    client = client_for(superuser)
    response = client.post(f"/admin/chat/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    client.post(
        "/admin/chat/membership/",
        {"action": "delete_selected", "_selected_action": [membership.pk], "post": "yes"},
    )
    client.post(
        "/admin/chat/membership/",
        {"action": "remove_members", "_selected_action": [membership.pk], "index": "0"},
    )
    assert Membership.objects.get(pk=membership.pk).is_banned
    assert client_for(bob).get(f"/rooms/{room.slug}/").status_code == 404
    assert log_actions() == ["ban"]


def test_removing_a_member_in_the_admin_is_logged(superuser, alice, bob, carol, private_room):
    for user in (bob, carol):
        services.add_member(room=private_room, actor=alice, username=user.username)
    client = client_for(superuser)
    bobs = Membership.objects.get(room=private_room, user=bob)
    response = client.post(f"/admin/chat/membership/{bobs.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    carols = Membership.objects.get(room=private_room, user=carol)
    client.post(
        "/admin/chat/membership/",
        {"action": "remove_members", "_selected_action": [carols.pk], "index": "0", "reason": "x"},
    )
    assert not Membership.objects.filter(room=private_room, user__in=[bob, carol]).exists()
    assert log_actions() == ["remove_member", "remove_member"]
    assert client_for(bob).get(f"/rooms/{private_room.slug}/").status_code == 404


def test_the_owners_membership_cannot_be_deleted(superuser, alice, room):
    membership = Membership.objects.get(room=room, user=alice)
    response = client_for(superuser).post(
        f"/admin/chat/membership/{membership.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_the_membership_form_does_not_offer_owner(superuser, bob, room):
    client = client_for(superuser)
    page = client.get("/admin/chat/membership/add/")
    assert page.status_code == 200
    assert b'value="owner"' not in page.content
    response = client.post(
        "/admin/chat/membership/add/", {"room": room.pk, "user": bob.pk, "role": "owner"}
    )
    assert response.status_code == 200  # the form again, with its error
    assert not Membership.objects.filter(room=room, user=bob).exists()


def test_a_membership_added_as_moderator_in_the_admin_is_logged(superuser, bob, room):
    response = client_for(superuser).post(
        "/admin/chat/membership/add/", {"room": room.pk, "user": bob.pk, "role": "moderator"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(room=room, user=bob).role == "moderator"
    assert log_actions() == ["set_role"]


# ---------------------------------------------------------------- one record of ownership


def test_room_owner_is_the_one_record_of_ownership(alice, bob, room):
    services.join_room(room=room, user=bob)
    assert selectors.moderation_rank(user=alice, room=room) == selectors.RANK_OWNER
    Room.objects.filter(pk=room.pk).update(owner=bob)
    room.refresh_from_db()
    assert selectors.moderation_rank(user=bob, room=room) == selectors.RANK_OWNER
    assert selectors.moderation_rank(user=alice, room=room) == selectors.RANK_MEMBER
    assert not Membership.objects.exclude(role__in=["moderator", "member"]).exists()


def test_giving_a_room_away_in_the_admin_is_checked_and_logged(superuser, alice, bob, room):
    client = client_for(superuser)
    data = change_form_data(client, f"/admin/chat/room/{room.pk}/change/")
    data["owner"] = bob.pk
    response = client.post(f"/admin/chat/room/{room.pk}/change/", data)
    assert response.status_code == 302, response.content[:3000]
    room.refresh_from_db()
    assert room.owner == bob
    assert Membership.objects.get(room=room, user=bob).role == "member"
    assert selectors.moderation_rank(user=bob, room=room) == selectors.RANK_OWNER
    assert selectors.moderation_rank(user=alice, room=room) == selectors.RANK_MEMBER
    assert log_actions() == ["set_owner"]


def test_a_room_is_not_given_to_someone_banned_from_it(superuser, alice, bob, room):
    services.join_room(room=room, user=bob)
    services.ban_user(room=room, user=bob, actor=alice)
    with pytest.raises(services.InvalidInput, match="banned"):
        services.set_room_owner(room=room, user=bob, actor=superuser)
    room.refresh_from_db()
    assert room.owner == alice


def test_only_staff_give_rooms_away(alice, bob, room):
    with pytest.raises(services.Forbidden):
        services.set_room_owner(room=room, user=bob, actor=alice)


@pytest.mark.django_db(transaction=True)
def test_the_data_migration_keeps_room_owner_and_turns_owner_roles_into_roles():
    executor = MigrationExecutor(connection)
    before = [("chat", "0004_one_owner_record")]
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    User = apps.get_model("auth", "User")
    Room_ = apps.get_model("chat", "Room")
    Membership_ = apps.get_model("chat", "Membership")
    ann, ben, cat = (User.objects.create(username=n) for n in ("ann", "ben", "cat"))
    consistent = Room_.objects.create(name="One", slug="one", owner=ann)
    Membership_.objects.create(room=consistent, user=ann, role="owner")
    disagreeing = Room_.objects.create(name="Two", slug="two", owner=ann)
    Membership_.objects.create(room=disagreeing, user=ben, role="owner")
    Membership_.objects.create(room=disagreeing, user=cat, role="moderator")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    roles = {
        (m.room.slug, m.user.username): m.role
        for m in Membership.objects.select_related("room", "user")
    }
    assert roles == {
        ("one", "ann"): "member",
        ("two", "ben"): "moderator",
        ("two", "cat"): "moderator",
        ("two", "ann"): "member",
    }
    assert set(Room.objects.values_list("slug", "owner__username")) == {
        ("one", "ann"),
        ("two", "ann"),
    }
