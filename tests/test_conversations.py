"""Room-level conversation features: topics, leaving, the member list,
invites and direct messages (services, views, and the sockets they affect)."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.test import Client

from chat import selectors, services
from chat.models import Membership, ModerationLog, Room

pytestmark = pytest.mark.django_db


def logged_in(user):
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


async def as_client(user):
    return await sync_to_async(logged_in)(user)


# ---------------------------------------------------------------- topic


class TestTopic:
    def test_owner_sets_and_clears_the_topic(self, alice, room):
        assert services.set_topic(room=room, actor=alice, topic="  Weekly planning  ") is True
        assert Room.objects.get(pk=room.pk).topic == "Weekly planning"
        assert services.set_topic(room=room, actor=alice, topic="Weekly planning") is False
        assert services.set_topic(room=room, actor=alice, topic="") is True
        assert Room.objects.get(pk=room.pk).topic == ""

    def test_a_member_or_moderator_cannot_set_it(self, alice, bob, room):
        Membership.objects.create(room=room, user=bob, role=Membership.Role.MODERATOR)
        with pytest.raises(services.Forbidden, match="owner"):
            services.set_topic(room=room, actor=bob, topic="mine now")
        assert Room.objects.get(pk=room.pk).topic == ""

    def test_staff_may_set_it(self, make_user, room):
        staff = make_user("mod", is_staff=True, is_superuser=True)
        assert services.set_topic(room=room, actor=staff, topic="by staff")

    @pytest.mark.parametrize(
        ("topic", "error"),
        [
            ("x" * 201, "at most 200"),
            ("two\nlines", "one line"),
            ("hidden\u200bchar", "invisible"),
            ("rtl \u202e trick", "invisible"),
        ],
    )
    def test_bad_topics_are_refused_and_change_nothing(self, alice, room, topic, error):
        services.set_topic(room=room, actor=alice, topic="before")
        with pytest.raises(services.InvalidInput, match=error):
            services.set_topic(room=room, actor=alice, topic=topic)
        assert Room.objects.get(pk=room.pk).topic == "before"

    def test_200_characters_are_fine(self, alice, room):
        assert services.set_topic(room=room, actor=alice, topic="y" * 200)

    def test_room_page_and_directory_show_it(self, alice, bob, room):
        services.set_topic(room=room, actor=alice, topic="Coffee & news")
        for path in ("/", f"/rooms/{room.slug}/"):
            page = logged_in(bob).get(path).content.decode()
            assert "Coffee &amp; news" in page

    def test_settings_page_and_form(self, alice, bob, room):
        owner = logged_in(alice)
        assert owner.get(f"/rooms/{room.slug}/settings/").status_code == 200
        assert 'href="/rooms/general/settings/"' in owner.get("/rooms/general/").content.decode()
        response = owner.post(f"/rooms/{room.slug}/topic/", {"topic": "Hello there"})
        assert response.status_code == 302 and response.url == "/rooms/general/"
        assert Room.objects.get(pk=room.pk).topic == "Hello there"
        response = owner.post(f"/rooms/{room.slug}/topic/", {"topic": "a\u200bb"})
        assert response.status_code == 400 and "invisible" in response.content.decode()
        assert Room.objects.get(pk=room.pk).topic == "Hello there"

    def test_others_get_403_and_strangers_404(self, alice, bob, carol, room, private_room):
        member = logged_in(bob)
        member.get(f"/rooms/{room.slug}/")
        assert member.get(f"/rooms/{room.slug}/settings/").status_code == 403
        assert member.post(f"/rooms/{room.slug}/topic/", {"topic": "x"}).status_code == 403
        assert "settings/" not in member.get(f"/rooms/{room.slug}/").content.decode()
        stranger = logged_in(carol)
        assert stranger.get(f"/rooms/{private_room.slug}/settings/").status_code == 404
        assert (
            stranger.post(f"/rooms/{private_room.slug}/topic/", {"topic": "x"}).status_code == 404
        )
        assert Room.objects.get(pk=room.pk).topic == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.both_transports
async def test_topic_reaches_open_sockets_on_every_worker(connect, redis_layer, alice, bob, room):
    a, _, _ = await connect(alice, room.slug, layer_alias=None)
    b, _, _ = await connect(bob, room.slug, layer_alias="worker2")
    await sync_to_async(services.set_topic)(room=room, actor=alice, topic="Live topic")
    for socket in (a, b):
        frame = await socket.expect("topic")
        assert frame == {"type": "topic", "room": "general", "topic": "Live topic"}


# ---------------------------------------------------------------- leave


class TestLeave:
    def test_member_leaves(self, alice, bob, room):
        services.join_room(room=room, user=bob)
        assert services.leave_room(room=room, user=bob) is True
        assert not Membership.objects.filter(room=room, user=bob).exists()
        assert services.leave_room(room=room, user=bob) is False

    def test_owner_must_hand_over_first(self, alice, room):
        with pytest.raises(services.Forbidden, match="hand it over to another member first"):
            services.leave_room(room=room, user=alice)
        assert Membership.objects.filter(room=room, user=alice).exists()

    def test_banned_or_muted_cannot_leave(self, alice, bob, carol, room):
        services.join_room(room=room, user=bob)
        services.join_room(room=room, user=carol)
        services.ban_user(room=room, user=bob, actor=alice)
        services.mute_user(room=room, user=carol, actor=alice)
        with pytest.raises(services.Forbidden, match="banned"):
            services.leave_room(room=room, user=bob)
        with pytest.raises(services.Forbidden, match="muted"):
            services.leave_room(room=room, user=carol)
        assert Membership.objects.filter(room=room, user__in=[bob, carol]).count() == 2

    def test_leaving_a_private_room_removes_access(self, alice, bob, private_room):
        services.add_member(room=private_room, actor=alice, username="bob")
        client = logged_in(bob)
        assert client.get(f"/rooms/{private_room.slug}/").status_code == 200
        response = client.post(f"/rooms/{private_room.slug}/leave/")
        assert response.status_code == 302 and response.url == "/"
        assert "You left Secret plans." in client.get("/").content.decode()
        assert client.get(f"/rooms/{private_room.slug}/").status_code == 404
        assert "Secret plans" not in client.get("/").content.decode()

    def test_owner_leave_is_a_clear_error(self, alice, room):
        client = logged_in(alice)
        response = client.post(f"/rooms/{room.slug}/leave/", follow=True)
        assert "hand it over to another member first" in response.content.decode()
        assert "Hand over the room in the room&#x27;s settings" in response.content.decode()
        assert Membership.objects.filter(room=room, user=alice).exists()
        assert "Leave room" not in client.get(f"/rooms/{room.slug}/").content.decode()

    def test_leave_needs_post_and_a_visible_room(self, bob, private_room):
        client = logged_in(bob)
        assert client.get(f"/rooms/{private_room.slug}/leave/").status_code == 405
        assert client.post(f"/rooms/{private_room.slug}/leave/").status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.both_transports
@pytest.mark.parametrize("private", [False, True])
async def test_leaving_closes_that_users_sockets_in_the_room_on_every_worker(
    connect, redis_layer, alice, bob, room, private_room, private
):
    left = private_room if private else room
    other = room if private else private_room
    if private:
        await sync_to_async(services.add_member)(room=left, actor=alice, username="bob")
    else:
        await sync_to_async(services.add_member)(room=other, actor=alice, username="bob")
    a, _, _ = await connect(alice, left.slug)
    b1, _, _ = await connect(bob, left.slug)
    b2, _, _ = await connect(bob, left.slug, layer_alias="worker2")
    elsewhere, _, _ = await connect(bob, other.slug, layer_alias="worker2")
    client = await as_client(bob)
    response = await sync_to_async(client.post)(f"/rooms/{left.slug}/leave/")
    assert response.status_code == 302
    await b1.expect_closed(4410)
    await b2.expect_closed(4410)
    assert (await a.expect("leave")) == {"type": "leave", "user": "bob"}
    await elsewhere.send(type="ping")
    await elsewhere.expect("pong")  # bob's socket in his other room stays
    if private:
        again, _, _ = await connect(bob, left.slug, expect_hello=False)
        await again.expect_closed(4403)


# ---------------------------------------------------------------- hand over


def owner_of(room):
    return Room.objects.get(pk=room.pk).owner


def role_of(room, user):
    return Membership.objects.get(room=room, user=user).role


class TestHandOver:
    def test_owner_hands_over_stays_a_moderator_and_may_then_leave(self, alice, bob, room):
        services.join_room(room=room, user=bob)
        assert services.hand_over_room(room=room, by=alice, to=bob) is True
        assert owner_of(room) == bob and room.owner == bob
        assert role_of(room, alice) == "moderator"
        assert selectors.moderation_rank(user=bob, room=room) == selectors.RANK_OWNER
        assert selectors.moderation_rank(user=alice, room=room) == selectors.RANK_MODERATOR
        assert selectors.can_manage_room(user=bob, room=room)
        assert not selectors.can_manage_room(user=alice, room=room)
        # The new owner outranks the former one.
        services.set_role(room=room, user=alice, role="member", actor=bob)
        assert services.leave_room(room=room, user=alice) is True
        assert not Membership.objects.filter(room=room, user=alice).exists()

    def test_it_is_logged_like_a_gift_in_the_admin(self, alice, bob, room):
        services.join_room(room=room, user=bob)
        services.hand_over_room(room=room, by=alice, to=bob, reason="moving on")
        entry = ModerationLog.objects.get()
        assert (entry.action, entry.actor, entry.target_user, entry.room) == (
            "set_owner",
            alice,
            bob,
            room,
        )
        assert entry.summary == "alice gave General from alice to bob"
        assert entry.reason == "moving on"

    def test_staff_who_may_change_rooms_hand_it_over_too(self, alice, bob, make_user, room):
        staff = make_user("mod", is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="change_room"))
        services.join_room(room=room, user=bob)
        assert services.hand_over_room(room=room, by=staff, to=bob) is True
        assert owner_of(room) == bob and role_of(room, alice) == "moderator"

    def test_staff_without_the_permission_may_not(self, alice, bob, make_user, room):
        staff = make_user("mod", is_staff=True)
        services.join_room(room=room, user=bob)
        with pytest.raises(services.Forbidden, match="Only the owner of General"):
            services.hand_over_room(room=room, by=staff, to=bob)
        assert owner_of(room) == alice

    def test_a_moderator_or_member_may_not(self, alice, bob, carol, room):
        services.join_room(room=room, user=bob)
        services.join_room(room=room, user=carol)
        services.set_role(room=room, user=bob, role="moderator", actor=alice)
        for actor in (bob, carol):
            with pytest.raises(services.Forbidden, match="Only the owner"):
                services.hand_over_room(room=room, by=actor, to=carol if actor == bob else bob)
        assert owner_of(room) == alice and role_of(room, bob) == "moderator"
        assert not ModerationLog.objects.filter(action="set_owner").exists()

    def test_a_former_owner_cannot_hand_it_over_again(self, alice, bob, carol, room):
        stale = Room.objects.get(pk=room.pk)  # a page loaded before the hand-over
        for user in (bob, carol):
            services.join_room(room=room, user=user)
        services.hand_over_room(room=room, by=alice, to=bob)
        with pytest.raises(services.Forbidden):
            services.hand_over_room(room=stale, by=alice, to=carol)
        assert owner_of(room) == bob

    def test_a_banned_owner_may_not(self, make_user, alice, bob, room):
        staff = make_user("mod", is_staff=True, is_superuser=True)
        services.join_room(room=room, user=bob)
        services.ban_user(room=room, user=alice, actor=staff)
        with pytest.raises(services.Forbidden):
            services.hand_over_room(room=room, by=alice, to=bob)
        assert owner_of(room) == alice

    def test_only_to_a_member(self, alice, bob, private_room):
        with pytest.raises(services.NotFound, match="bob is not a member of Secret plans"):
            services.hand_over_room(room=private_room, by=alice, to=bob)
        assert owner_of(private_room) == alice
        assert not Membership.objects.filter(room=private_room, user=bob).exists()

    def test_not_to_someone_banned(self, alice, bob, room):
        services.join_room(room=room, user=bob)
        services.ban_user(room=room, user=bob, actor=alice)
        with pytest.raises(services.InvalidInput, match="bob is banned from General"):
            services.hand_over_room(room=room, by=alice, to=bob)
        assert owner_of(room) == alice and role_of(room, alice) == "member"

    def test_not_to_a_deactivated_account(self, alice, bob, room):
        services.join_room(room=room, user=bob)
        bob.is_active = False
        bob.save()
        with pytest.raises(services.InvalidInput, match="deactivated"):
            services.hand_over_room(room=room, by=alice, to=bob)
        assert owner_of(room) == alice

    def test_not_to_yourself(self, alice, make_user, room):
        with pytest.raises(services.InvalidInput, match="alice owns General already"):
            services.hand_over_room(room=room, by=alice, to=alice)
        staff = make_user("mod", is_staff=True, is_superuser=True)
        services.join_room(room=room, user=staff)
        with pytest.raises(services.InvalidInput, match="someone else"):
            services.hand_over_room(room=room, by=staff, to=staff)
        assert owner_of(room) == alice and role_of(room, alice) == "member"
        assert not ModerationLog.objects.exists()

    def test_not_in_a_direct_conversation(self, alice, bob, make_user):
        direct = services.start_direct(user=alice, username="bob")
        staff = make_user("mod", is_staff=True, is_superuser=True)
        for actor in (alice, staff):
            with pytest.raises(services.InvalidInput, match="direct conversation"):
                services.hand_over_room(room=direct, by=actor, to=bob)
        assert owner_of(direct) == alice

    def test_choices_are_the_members_who_could_take_it(self, alice, bob, carol, make_user, room):
        dave, erin = make_user("dave"), make_user("erin")
        for user in (bob, carol, dave, erin):
            services.join_room(room=room, user=user)
        services.ban_user(room=room, user=carol, actor=alice)
        erin.is_active = False
        erin.save()
        assert selectors.handover_choices(room=room, viewer=alice) == ["bob", "dave"]
        assert selectors.handover_choices(room=room, viewer=bob) == []  # not theirs to give

    def test_settings_page_form_hands_over_and_the_room_page_follows(self, alice, bob, room):
        services.join_room(room=room, user=bob)
        owner = logged_in(alice)
        page = owner.get(f"/rooms/{room.slug}/settings/").content.decode()
        assert "Hand over the room" in page
        assert '<option value="bob">bob</option>' in page
        assert '<option value="alice">' not in page
        response = owner.post(f"/rooms/{room.slug}/hand-over/", {"to": "bob", "confirm": "on"})
        assert response.status_code == 302 and response.url == f"/rooms/{room.slug}/"
        assert owner_of(room) == bob
        page = owner.get(response.url).content.decode()
        assert "bob owns General now. You stay on as one of its moderators." in page
        assert "Leave room" in page and "settings/" not in page
        assert owner.get(f"/rooms/{room.slug}/settings/").status_code == 403
        new_owner = logged_in(bob).get(f"/rooms/{room.slug}/").content.decode()
        assert 'href="/rooms/general/settings/"' in new_owner and "Leave room" not in new_owner
        assert logged_in(bob).get(f"/rooms/{room.slug}/settings/").status_code == 200

    def test_settings_form_refusals_change_nothing(self, alice, bob, carol, room):
        services.join_room(room=room, user=bob)
        owner = logged_in(alice)
        path = f"/rooms/{room.slug}/hand-over/"
        response = owner.post(path, {"to": "bob"})  # not confirmed
        assert response.status_code == 400 and "This field is required" in response.content.decode()
        response = owner.post(path, {"to": "carol", "confirm": "on"})
        assert response.status_code == 404
        assert "There is no member called carol in General." in response.content.decode()
        services.ban_user(room=room, user=bob, actor=alice)
        response = owner.post(path, {"to": "bob", "confirm": "on"})
        assert response.status_code == 400 and "bob is banned" in response.content.decode()
        assert owner.get(path).status_code == 405
        assert owner_of(room) == alice

    def test_only_the_owner_gets_the_form(self, alice, bob, carol, room, private_room):
        services.join_room(room=room, user=bob)
        services.join_room(room=room, user=carol)
        response = logged_in(bob).post(
            f"/rooms/{room.slug}/hand-over/", {"to": "carol", "confirm": "on"}
        )
        assert response.status_code == 403
        response = logged_in(carol).post(
            f"/rooms/{private_room.slug}/hand-over/", {"to": "carol", "confirm": "on"}
        )
        assert response.status_code == 404
        assert owner_of(room) == alice and owner_of(private_room) == alice

    def test_nobody_to_hand_over_to(self, alice, private_room):
        page = logged_in(alice).get(f"/rooms/{private_room.slug}/settings/").content.decode()
        assert "Nobody else in Secret plans can take it over yet" in page
        assert "hand-over/" not in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.both_transports
async def test_hand_over_reaches_open_pages_on_every_worker(connect, redis_layer, alice, bob, room):
    await sync_to_async(services.join_room)(room=room, user=bob)
    a, _, _ = await connect(alice, room.slug, layer_alias=None)
    b, _, _ = await connect(bob, room.slug, layer_alias="worker2")
    await sync_to_async(services.hand_over_room)(room=room, by=alice, to=bob)
    for socket in (a, b):
        frame = await socket.expect("owner")
        assert frame == {"type": "owner", "room": "general", "user": "bob", "previous": "alice"}


# ---------------------------------------------------------------- members


class TestMemberList:
    def test_everyone_online_first_with_roles(self, alice, bob, carol, make_user, room):
        from asgiref.sync import async_to_sync

        from chat import presence, selectors

        dave = make_user("dave")
        for user in (bob, carol, dave):
            services.join_room(room=room, user=user)
        services.set_role(room=room, user=carol, role="moderator", actor=alice)
        services.ban_user(room=room, user=dave, actor=alice)
        async_to_sync(presence.get_store().open)(room.pk, "carol", "conn-1")
        entries, total = selectors.member_list(room=room)
        assert [(e.username, e.role, e.online) for e in entries] == [
            ("carol", "moderator", True),
            ("alice", "owner", False),
            ("bob", "member", False),
        ]
        assert total == 3  # the banned are not members to show
        entries, total = selectors.member_list(room=room, limit=2)
        assert [e.username for e in entries] == ["carol", "alice"] and total == 3

    def test_public_room_page_lists_members(self, alice, bob, room):
        services.join_room(room=room, user=bob)
        page = logged_in(bob).get(f"/rooms/{room.slug}/").content.decode()
        assert "Members (2)" in page
        assert 'data-user="alice"' in page and 'data-user="bob"' in page
        assert "owner" in page


# ---------------------------------------------------------------- invites


class TestInvites:
    def test_owner_makes_a_link_and_someone_joins_with_it(self, alice, bob, private_room):
        from chat.models import Invite

        invite = services.create_invite(room=private_room, actor=alice, hours=24)
        assert len(invite.token) >= 32
        assert services.accept_invite(token=invite.token, user=bob) == private_room
        assert Membership.objects.filter(room=private_room, user=bob).exists()
        services.accept_invite(token=invite.token, user=bob)  # again: nothing new
        assert Invite.objects.get(pk=invite.pk).uses == 1

    def test_only_the_owner_of_a_private_room(self, alice, bob, room, private_room):
        services.add_member(room=private_room, actor=alice, username="bob")
        with pytest.raises(services.Forbidden):
            services.create_invite(room=private_room, actor=bob)
        with pytest.raises(services.InvalidInput, match="public room"):
            services.create_invite(room=room, actor=alice)
        with pytest.raises(services.InvalidInput, match="hours"):
            services.create_invite(room=private_room, actor=alice, hours=5)
        invite = services.create_invite(room=private_room, actor=alice)
        with pytest.raises(services.Forbidden):
            services.revoke_invite(invite=invite, actor=bob)

    def test_revoked_expired_and_unknown_links_are_refused(self, alice, bob, private_room):
        from datetime import timedelta

        from django.utils import timezone

        from chat.models import Invite

        revoked = services.create_invite(room=private_room, actor=alice)
        assert services.revoke_invite(invite=revoked, actor=alice) is True
        assert services.revoke_invite(invite=revoked, actor=alice) is False
        expired = services.create_invite(room=private_room, actor=alice, hours=1)
        Invite.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(1))
        with pytest.raises(services.InvalidInput, match="revoked"):
            services.accept_invite(token=revoked.token, user=bob)
        with pytest.raises(services.InvalidInput, match="expired"):
            services.accept_invite(token=expired.token, user=bob)
        with pytest.raises(services.NotFound, match="not valid"):
            services.accept_invite(token="nope", user=bob)
        assert not Membership.objects.filter(room=private_room, user=bob).exists()

    def test_a_banned_user_stays_out(self, alice, bob, private_room):
        services.add_member(room=private_room, actor=alice, username="bob")
        services.ban_user(room=private_room, user=bob, actor=alice)
        invite = services.create_invite(room=private_room, actor=alice)
        with pytest.raises(services.Forbidden):
            services.accept_invite(token=invite.token, user=bob)
        assert Membership.objects.get(room=private_room, user=bob).is_banned

    def test_links_per_room_are_capped(self, alice, private_room, settings):
        settings.CHAT_INVITES_PER_ROOM = 2
        first = services.create_invite(room=private_room, actor=alice)
        services.create_invite(room=private_room, actor=alice)
        with pytest.raises(services.InvalidInput, match="revoke one first"):
            services.create_invite(room=private_room, actor=alice)
        services.revoke_invite(invite=first, actor=alice)
        services.create_invite(room=private_room, actor=alice)

    def test_settings_page_makes_lists_and_revokes(self, alice, bob, private_room):
        from chat.models import Invite

        owner = logged_in(alice)
        response = owner.post(f"/rooms/{private_room.slug}/invites/", {"hours": "24"})
        assert response.status_code == 302
        invite = Invite.objects.get(room=private_room)
        page = owner.get(f"/rooms/{private_room.slug}/settings/").content.decode()
        assert f"http://localhost/invite/{invite.token}/" in page
        assert logged_in(bob).post(f"/rooms/{private_room.slug}/invites/").status_code == 404
        owner.post(f"/rooms/{private_room.slug}/invites/{invite.pk}/revoke/")
        page = owner.get(f"/rooms/{private_room.slug}/settings/").content.decode()
        assert invite.token not in page and "No invite links work now." in page

    def test_invite_page_joins_on_post_and_explains_dead_links(self, alice, bob, private_room):
        invite = services.create_invite(room=private_room, actor=alice)
        guest = logged_in(bob)
        page = guest.get(f"/invite/{invite.token}/")
        assert page.status_code == 200 and "Join Secret plans" in page.content.decode()
        assert not Membership.objects.filter(room=private_room, user=bob).exists()
        response = guest.post(f"/invite/{invite.token}/")
        assert response.status_code == 302 and response.url == f"/rooms/{private_room.slug}/"
        assert guest.get(f"/rooms/{private_room.slug}/").status_code == 200
        assert guest.get(f"/invite/{invite.token}/").status_code == 302  # a member already
        services.revoke_invite(invite=invite, actor=alice)
        page = logged_in(alice).get(f"/invite/{invite.token}/")
        assert page.status_code == 410 and "revoked" in page.content.decode()
        assert logged_in(bob).get("/invite/unknown-token/").status_code == 404

    def test_invite_link_needs_login(self, alice, private_room):
        invite = services.create_invite(room=private_room, actor=alice)
        response = Client(HTTP_HOST="localhost").get(f"/invite/{invite.token}/")
        assert response.status_code == 302 and response.url.startswith("/accounts/login/")


# ---------------------------------------------------------------- direct messages


class TestDirect:
    def test_start_makes_a_private_room_of_two_once_per_pair(self, alice, bob):
        room = services.start_direct(user=alice, username="bob")
        assert room.kind == "direct" and room.is_private and room.slug.startswith("dm-")
        members = set(Membership.objects.filter(room=room).values_list("user__username", flat=True))
        assert members == {"alice", "bob"}
        assert services.start_direct(user=alice, username=" bob ") == room
        assert services.start_direct(user=bob, username="alice") == room  # either side
        assert Room.objects.filter(kind="direct").count() == 1

    def test_restarting_puts_both_back_but_a_ban_holds(self, alice, bob, make_user):
        staff = make_user("mod", is_staff=True, is_superuser=True)
        room = services.start_direct(user=alice, username="bob")
        services.remove_member(room=room, user=bob, actor=staff)
        assert services.start_direct(user=bob, username="alice") == room
        assert Membership.objects.filter(room=room, user=bob, is_banned=False).exists()
        services.ban_user(room=room, user=bob, actor=staff)
        services.start_direct(user=alice, username="bob")
        assert Membership.objects.get(room=room, user=bob).is_banned
        assert logged_in(bob).get(f"/rooms/{room.slug}/").status_code == 404

    def test_bad_partners_are_refused(self, alice, make_user):
        make_user("gone", is_active=False)
        with pytest.raises(services.InvalidInput, match="someone else"):
            services.start_direct(user=alice, username="alice")
        for name in ("nobody", "gone", ""):
            with pytest.raises(services.NotFound):
                services.start_direct(user=alice, username=name)
        assert not Room.objects.filter(kind="direct").exists()

    def test_names_matching_nobody_are_capped(self, alice, bob, settings):
        settings.CHAT_ADD_MEMBER_MISS_LIMIT = (2, 3600)
        for _ in range(2):
            with pytest.raises(services.NotFound):
                services.start_direct(user=alice, username="nobody")
        with pytest.raises(services.RateLimited):
            services.start_direct(user=alice, username="bob")

    def test_new_conversations_per_hour_are_capped(self, alice, make_user, settings):
        settings.CHAT_DIRECT_PER_HOUR = 2
        for name in ("u1", "u2", "u3"):
            make_user(name)
        services.start_direct(user=alice, username="u1")
        services.start_direct(user=alice, username="u2")
        with pytest.raises(services.RateLimited, match="2 conversations an hour"):
            services.start_direct(user=alice, username="u3")
        services.start_direct(user=alice, username="u1")  # an existing one opens

    def test_nobody_else_gets_in_and_nobody_owns_it(self, alice, bob, carol):
        from chat import selectors

        room = services.start_direct(user=alice, username="bob")
        with pytest.raises(selectors.RoomNotFound):
            selectors.get_room_for(user=carol, slug=room.slug)
        with pytest.raises(services.InvalidInput):
            services.add_member(room=room, actor=alice, username="carol")
        with pytest.raises(services.InvalidInput):
            services.set_topic(room=room, actor=alice, topic="ours")
        with pytest.raises(services.InvalidInput):
            services.create_invite(room=room, actor=alice)
        with pytest.raises(services.InvalidInput):
            services.leave_room(room=room, user=bob)
        with pytest.raises(services.Forbidden):
            services.ban_user(room=room, user=bob, actor=alice)
        assert not selectors.can_moderate(user=alice, room=room)
        assert not Membership.objects.filter(room=room, user=carol).exists()
        assert logged_in(carol).get(f"/rooms/{room.slug}/").status_code == 404

    def test_staff_moderate_it_and_messages_are_reportable(self, alice, bob, make_user):
        staff = make_user("mod", is_staff=True, is_superuser=True)
        room = services.start_direct(user=alice, username="bob")
        message = services.store_message(room=room, author=bob, body="hi", client_id=None)
        services.report_message(message=message.message, reporter=alice, reason="rude")
        assert services.ban_user(room=room, user=bob, actor=staff)

    def test_directory_shows_them_apart_with_the_other_name(self, alice, bob, room):
        direct = services.start_direct(user=alice, username="bob")
        services.store_message(room=direct, author=bob, body="psst", client_id=None)
        page = logged_in(alice).get("/").content.decode()
        rooms_part, direct_part = page.split('id="direct-heading"')
        assert "General" in rooms_part and direct.slug not in rooms_part
        assert f'href="/rooms/{direct.slug}/" class="room-link">bob</a>' in direct_part
        assert "1 unread" in direct_part
        page = logged_in(bob).get("/").content.decode()
        assert f'href="/rooms/{direct.slug}/" class="room-link">alice</a>' in page
        room_page = logged_in(bob).get(f"/rooms/{direct.slug}/").content.decode()
        assert "<title>alice" in room_page and "Leave room" not in room_page

    def test_dm_route_opens_or_offers_to_start(self, alice, bob):
        client = logged_in(alice)
        page = client.get("/dm/bob/")
        assert page.status_code == 200 and "Message bob" in page.content.decode()
        assert not Room.objects.filter(kind="direct").exists()  # a GET starts nothing
        response = client.post("/dm/bob/")
        room = Room.objects.get(kind="direct")
        assert response.status_code == 302 and response.url == f"/rooms/{room.slug}/"
        assert client.get("/dm/bob/").url == f"/rooms/{room.slug}/"
        assert client.post("/dm/", {"username": "bob"}).url == f"/rooms/{room.slug}/"
        assert client.post("/dm/", {"username": "nobody"}).status_code == 404
        assert client.get("/dm/nobody/").status_code == 404
        assert client.post("/dm/alice/").status_code == 400

    def test_member_list_offers_a_message_link(self, alice, bob, room):
        services.join_room(room=room, user=bob)
        page = logged_in(bob).get(f"/rooms/{room.slug}/").content.decode()
        assert 'href="/dm/alice/"' in page and 'href="/dm/bob/"' not in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.both_transports
async def test_direct_conversation_through_the_same_consumer(connect, alice, bob, carol):
    room = await sync_to_async(services.start_direct)(user=alice, username="bob")
    a, hello, _ = await connect(alice, room.slug)
    assert hello["room"]["slug"] == room.slug
    b, _, _ = await connect(bob, room.slug)
    await a.send(type="message.send", body="just us", client_id="d-1")
    assert (await b.expect("message"))["message"]["body"] == "just us"
    await a.expect("ack", client_id="d-1")
    stranger, _, _ = await connect(carol, room.slug, expect_hello=False)
    await stranger.expect_closed(4403)


def test_admin_keeps_a_direct_conversation_private(alice, bob, make_user):
    staff = make_user("mod", is_staff=True, is_superuser=True)
    room = services.start_direct(user=alice, username="bob")
    page = logged_in(staff).get(f"/admin/chat/room/{room.pk}/change/")
    assert page.status_code == 200
    response = logged_in(staff).post(
        f"/admin/chat/room/{room.pk}/change/",
        {
            "name": room.name,
            "slug": room.slug,
            "owner": alice.pk,
            "topic": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200 and "stays private" in response.content.decode()
    assert Room.objects.get(pk=room.pk).is_private
