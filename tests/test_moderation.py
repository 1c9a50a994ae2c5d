"""Moderation through the admin (real admin forms and actions) and through the
room page, checked on live sockets, including one on a second channel-layer
instance sharing the same Redis (another worker)."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from chat import services
from chat.models import Membership, Message, ModerationLog, Report, Room

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(make_user):
    return make_user("mod", is_staff=True, is_superuser=True)


def client_for(user) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


async def as_user(user):
    return await sync_to_async(client_for)(user)


async def admin_action(staff, model: str, action: str, ids, **extra):
    """POST the admin changelist's action form, as a moderator's browser does."""
    client = await as_user(staff)
    data = {"action": action, "_selected_action": [str(i) for i in ids], "index": "0", **extra}
    app = "auth" if model == "user" else "chat"
    response = await sync_to_async(client.post)(f"/admin/{app}/{model}/", data)
    assert response.status_code == 302, response.content[:2000]
    return client


async def say(socket, body):
    await socket.send(type="message.send", body=body, client_id=body)
    return await socket.expect("ack", client_id=body)


def log_actions():
    return list(
        ModerationLog.objects.order_by("id").values_list(
            "action", "actor__username", "target_user__username", "reason"
        )
    )


@pytest.fixture
async def sockets(connect, redis_layer, alice, bob, room):
    """alice on worker 1, bob on worker 2, both in the room."""
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug, layer_alias="worker2")
    await a.expect("join", user="bob")
    return a, b


# ---------------------------------------------------------------- admin


async def test_admin_remove_message_reaches_every_worker_and_leaves_history(
    sockets, connect, staff, alice, bob, room
):
    a, b = sockets
    ack = await say(b, "spam spam")
    await admin_action(staff, "message", "remove_messages", [ack["id"]], reason="spam")
    for socket in (a, b):
        deleted = await socket.expect("message.deleted")
        assert deleted == {"type": "message.deleted", "id": ack["id"], "seq": ack["seq"]}
    _, _, history = await connect(alice, room.slug)
    assert history["messages"] == []
    _, _, resumed = await connect(alice, room.slug, after=0)
    assert resumed["messages"] == []
    message = await sync_to_async(Message.objects.get)(pk=ack["id"])
    assert message.deleted_at is not None and message.deleted_by_id == staff.pk
    assert await sync_to_async(log_actions)() == [("remove_message", "mod", "bob", "spam")]


@pytest.mark.both_transports  # bans and deactivations close the event stream too
async def test_admin_ban_closes_sockets_on_every_worker_and_blocks_rejoin(
    connect, redis_layer, staff, alice, bob, room
):
    b1, _, _ = await connect(bob, room.slug)
    b2, _, _ = await connect(bob, room.slug, layer_alias="worker2")
    a, _, _ = await connect(alice, room.slug)
    membership = await sync_to_async(Membership.objects.get)(room=room, user=bob)
    await admin_action(staff, "membership", "ban", [membership.pk], reason="abuse")
    await b1.expect_closed(4403)
    await b2.expect_closed(4403)
    await a.expect("leave", user="bob")
    again, _, _ = await connect(bob, room.slug, expect_hello=False)
    await again.expect_closed(4403)
    page = await sync_to_async((await as_user(bob)).get)(f"/rooms/{room.slug}/")
    assert page.status_code == 404

    await admin_action(staff, "membership", "unban", [membership.pk])
    _, hello, _ = await connect(bob, room.slug)
    assert hello["user"] == "bob"
    assert [x[0] for x in await sync_to_async(log_actions)()] == ["ban", "unban"]


async def test_admin_timed_mute_refuses_sends_quietly(sockets, staff, alice, bob, room):
    a, b = sockets
    membership = await sync_to_async(Membership.objects.get)(room=room, user=bob)
    await admin_action(staff, "membership", "mute", [membership.pk], mute_for="60")
    # Bob is told at once (on his socket on the other worker), alice nothing.
    told = await b.expect("muted")
    assert told["room"] == room.slug and told["until"].endswith("Z")
    await b.send(type="message.send", body="can I talk?", client_id="m1")
    error = await b.expect("error")
    assert error["code"] == "muted" and error["until"] == told["until"]
    await a.nothing()
    assert await sync_to_async(Message.objects.count)() == 0

    await admin_action(staff, "membership", "unmute", [membership.pk])
    assert await b.expect("unmuted") == {"type": "unmuted", "room": room.slug}
    await say(b, "back again")
    assert (await a.expect("message"))["message"]["body"] == "back again"


async def test_admin_indefinite_mute_has_no_until(sockets, staff, bob, room):
    _, b = sockets
    membership = await sync_to_async(Membership.objects.get)(room=room, user=bob)
    await admin_action(staff, "membership", "mute", [membership.pk], mute_for="")
    assert await b.expect("muted") == {"type": "muted", "room": room.slug}
    await b.send(type="message.send", body="hello", client_id="m1")
    error = await b.expect("error")
    assert error["code"] == "muted" and "until" not in error


async def test_admin_lock_makes_room_read_only_until_unlocked(sockets, staff, room):
    a, b = sockets
    await admin_action(staff, "room", "lock_rooms", [room.pk], reason="cooling off")
    for socket in (a, b):
        await socket.send(type="message.send", body="hello", client_id="x")
        assert (await socket.expect("error"))["code"] == "locked"
    assert await sync_to_async(Message.objects.count)() == 0
    await admin_action(staff, "room", "unlock_rooms", [room.pk])
    await say(b, "unlocked")
    assert (await a.expect("message"))["message"]["body"] == "unlocked"
    assert [x[0] for x in await sync_to_async(log_actions)()] == ["lock", "unlock"]


@pytest.mark.both_transports  # bans and deactivations close the event stream too
async def test_admin_deactivate_closes_all_sockets_4401(
    connect, redis_layer, staff, bob, room, private_room, alice
):
    await sync_to_async(services.add_member)(room=private_room, actor=alice, username="bob")
    b1, _, _ = await connect(bob, room.slug)
    b2, _, _ = await connect(bob, private_room.slug, layer_alias="worker2")
    await admin_action(staff, "user", "deactivate", [bob.pk], reason="spammer")
    await b1.expect_closed(4401)
    await b2.expect_closed(4401)
    again, _, _ = await connect(bob, room.slug, expect_hello=False)
    await again.expect_closed(4401)


async def test_admin_user_form_deactivation_closes_sockets_too(connect, staff, bob, room):
    b, _, _ = await connect(bob, room.slug)
    client = await as_user(staff)
    page = await sync_to_async(client.get)(f"/admin/auth/user/{bob.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update(
        {
            "username": "bob",
            "is_active": "",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "last_login_0": "",
            "last_login_1": "",
        }
    )
    data = {k: v for k, v in data.items() if k not in ("groups", "user_permissions")}
    response = await sync_to_async(client.post)(f"/admin/auth/user/{bob.pk}/change/", data)
    assert response.status_code == 302, response.content[:3000]
    await b.expect_closed(4401)
    assert await sync_to_async(log_actions)() == [("deactivate", "mod", "bob", "")]


async def test_reports_queue_and_resolve_in_admin(sockets, staff, alice, bob, room):
    a, b = sockets
    ack = await say(b, "rude words")
    await b.expect("message")
    client = await as_user(alice)
    response = await sync_to_async(client.post)(
        f"/rooms/{room.slug}/messages/{ack['id']}/report/", {"reason": "rude"}
    )
    assert response.status_code == 200 and response.json() == {"ok": True}
    report = await sync_to_async(Report.objects.get)()
    assert report.status == "open" and report.reason == "rude"
    admin = await as_user(staff)
    page = await sync_to_async(admin.get)(f"/admin/chat/report/{report.pk}/change/")
    assert b"rude words" in page.content  # the message, in context
    changelist = await sync_to_async(admin.get)("/admin/chat/report/?status__exact=open")
    assert b"rude words" in changelist.content

    await admin_action(staff, "report", "remove_and_resolve", [report.pk])
    assert (await a.expect("message.deleted"))["id"] == ack["id"]
    await sync_to_async(report.refresh_from_db)()
    assert report.status == "resolved" and report.handled_by_id == staff.pk
    actions = [x[0] for x in await sync_to_async(log_actions)()]
    assert actions == ["remove_message", "resolve_report"]


async def test_dismiss_report(sockets, staff, alice, bob, room):
    _, b = sockets
    ack = await say(b, "fine words")
    message = await sync_to_async(Message.objects.get)(pk=ack["id"])
    report = await sync_to_async(services.report_message)(message=message, reporter=alice)
    await admin_action(staff, "report", "dismiss", [report.pk])
    await sync_to_async(report.refresh_from_db)()
    assert report.status == "dismissed"
    assert await sync_to_async(Message.objects.filter(deleted_at__isnull=True).count)() == 1


async def test_log_is_read_only_in_admin(staff, alice, room):
    await sync_to_async(services.set_room_locked)(room=room, actor=staff, locked=True)
    entry = await sync_to_async(ModerationLog.objects.get)()
    client = await as_user(staff)
    listing = await sync_to_async(client.get)("/admin/chat/moderationlog/")
    assert listing.status_code == 200 and b"mod locked General" in listing.content
    delete = await sync_to_async(client.post)(
        f"/admin/chat/moderationlog/{entry.pk}/delete/", {"post": "yes"}
    )
    assert delete.status_code == 403
    assert await sync_to_async(ModerationLog.objects.count)() == 1


async def test_admin_pages_render(staff, alice, bob, room):
    await sync_to_async(services.store_message)(room=room, author=bob, body="x", client_id=None)
    client = await as_user(staff)
    for path in [
        "/admin/",
        "/admin/chat/room/",
        f"/admin/chat/room/{room.pk}/change/",
        "/admin/chat/message/?removed=no&q=x",
        "/admin/chat/membership/",
        "/admin/chat/report/",
        "/admin/chat/moderationlog/",
        "/admin/auth/user/",
    ]:
        response = await sync_to_async(client.get)(path)
        assert response.status_code == 200, path


# ---------------------------------------------------------------- room page


@pytest.fixture
def room_moderator(make_user, room):
    user = make_user("rita")
    Membership.objects.create(room=room, user=user, role=Membership.Role.MODERATOR)
    return user


async def room_page_post(user, path, **data):
    client = await as_user(user)
    return await sync_to_async(client.post)(path, data)


@pytest.mark.both_transports  # bans and deactivations close the event stream too
async def test_room_moderator_removes_mutes_and_bans_from_the_room_page(
    sockets, room_moderator, alice, bob, room
):
    a, b = sockets
    ack = await say(b, "off topic")
    base = f"/rooms/{room.slug}"
    response = await room_page_post(
        room_moderator, f"{base}/messages/{ack['id']}/remove/", reason="off topic"
    )
    assert response.json() == {"ok": True}
    assert (await a.expect("message.deleted"))["id"] == ack["id"]

    response = await room_page_post(room_moderator, f"{base}/users/bob/mute/", minutes="10")
    assert response.json() == {"ok": True}
    await b.send(type="message.send", body="hey", client_id="h")
    assert (await b.expect("error"))["code"] == "muted"

    response = await room_page_post(room_moderator, f"{base}/users/bob/ban/")
    assert response.json() == {"ok": True}
    await b.expect_closed(4403)
    actions = [x[:3] for x in await sync_to_async(log_actions)()]
    assert actions == [
        ("remove_message", "rita", "bob"),
        ("mute", "rita", "bob"),
        ("ban", "rita", "bob"),
    ]


async def test_owner_moderates_own_room(sockets, alice, bob, room):
    _, b = sockets
    response = await room_page_post(alice, f"/rooms/{room.slug}/users/bob/ban/")
    assert response.json() == {"ok": True}
    await b.expect_closed(4403)


async def test_member_cannot_moderate(sockets, carol, alice, bob, room):
    a, b = sockets
    ack = await say(a, "mine")
    await sync_to_async(Membership.objects.create)(room=room, user=carol)
    base = f"/rooms/{room.slug}"
    for path in [
        f"{base}/messages/{ack['id']}/remove/",
        f"{base}/users/bob/ban/",
        f"{base}/users/bob/mute/",
    ]:
        response = await room_page_post(carol, path)
        assert response.status_code == 403 and response.json()["ok"] is False
    await b.send(type="ping")
    await b.expect("pong")  # bob unaffected
    assert await sync_to_async(Message.objects.filter(deleted_at__isnull=True).count)() == 1
    assert await sync_to_async(ModerationLog.objects.count)() == 0


async def test_room_moderator_cannot_moderate_other_rooms(room_moderator, alice, bob, room):
    other = await sync_to_async(services.create_room)(owner=alice, name="Other")
    await sync_to_async(Membership.objects.create)(room=other, user=bob)
    response = await room_page_post(room_moderator, f"/rooms/{other.slug}/users/bob/ban/")
    assert response.status_code == 403
    assert not await sync_to_async(
        Membership.objects.filter(room=other, user=bob, is_banned=True).exists
    )()


async def test_room_moderator_cannot_ban_the_owner_or_another_moderator(
    room_moderator, make_user, alice, room
):
    other_mod = await sync_to_async(make_user)("otto")
    await sync_to_async(Membership.objects.create)(
        room=room, user=other_mod, role=Membership.Role.MODERATOR
    )
    for target in ("alice", "otto"):
        response = await room_page_post(room_moderator, f"/rooms/{room.slug}/users/{target}/ban/")
        assert response.status_code == 403
    assert not await sync_to_async(Membership.objects.filter(is_banned=True).exists)()


async def test_staff_moderates_any_room(staff, alice, bob):
    other = await sync_to_async(services.create_room)(owner=alice, name="Anywhere")
    await sync_to_async(services.join_room)(room=other, user=bob)
    response = await room_page_post(staff, f"/rooms/{other.slug}/users/bob/mute/")
    assert response.json() == {"ok": True}
    membership = await sync_to_async(Membership.objects.get)(room=other, user=bob)
    assert membership.muted_until > timezone.now() + timedelta(days=365)


async def test_bad_mute_duration_is_refused(room_moderator, bob, room):
    response = await room_page_post(
        room_moderator, f"/rooms/{room.slug}/users/bob/mute/", minutes="7"
    )
    assert response.status_code == 400
    assert await sync_to_async(ModerationLog.objects.count)() == 0


async def test_owner_appoints_moderator_through_admin_membership_action(staff, alice, bob, room):
    membership = await sync_to_async(Membership.objects.create)(room=room, user=bob)
    await admin_action(staff, "membership", "make_moderator", [membership.pk])
    await sync_to_async(membership.refresh_from_db)()
    assert membership.role == "moderator"
    assert await sync_to_async(Room.objects.count)() == 1


# ---------------------------------------------------------------- members dialog


async def room_page_get(user, path, **params):
    client = await as_user(user)
    return await sync_to_async(client.get)(path, params)


async def test_members_with_their_states_for_moderators_only(
    room_moderator, make_user, carol, alice, bob, room
):
    for member in (bob, carol):
        await sync_to_async(services.join_room)(room=room, user=member)
    dave = await sync_to_async(make_user)("dave")
    await sync_to_async(services.join_room)(room=room, user=dave)
    until = timezone.now() + timedelta(minutes=60)
    await sync_to_async(services.mute_user)(room=room, user=carol, actor=alice, until=until)
    await sync_to_async(services.ban_user)(room=room, user=bob, actor=alice)
    path = f"/rooms/{room.slug}/moderation/members/"

    answer = (await room_page_get(room_moderator, path)).json()
    assert answer["more"] is False
    rows = {m["user"]: m for m in answer["members"]}
    # The owner, the moderators, the muted and banned, then everyone else.
    assert [m["user"] for m in answer["members"]] == ["alice", "rita", "bob", "carol", "dave"]
    assert rows["alice"] == {
        "user": "alice",
        "role": "owner",
        "banned": False,
        "muted": False,
        "muted_until": None,
        "can_moderate": False,  # a moderator does not outrank the owner…
        "can_set_role": False,
    }
    assert rows["rita"]["can_moderate"] is False  # …nor themself
    assert rows["bob"]["banned"] is True and rows["bob"]["can_moderate"] is True
    assert rows["carol"]["muted"] is True
    assert rows["carol"]["muted_until"].endswith("Z")
    assert abs(timezone.datetime.fromisoformat(rows["carol"]["muted_until"]) - until) < timedelta(
        seconds=1
    )
    assert not any(m["can_set_role"] for m in answer["members"])  # owners appoint

    owner_view = (await room_page_get(alice, path)).json()["members"]
    assert [m["user"] for m in owner_view if m["can_set_role"]] == ["rita", "bob", "carol", "dave"]
    found = (await room_page_get(alice, path, q="CA")).json()["members"]
    assert [m["user"] for m in found] == ["carol"]

    # A plain member is refused, whoever they ask about.
    refused = await room_page_get(dave, path)
    assert refused.status_code == 403 and refused.json()["ok"] is False


async def test_members_of_a_room_you_cannot_see_are_not_found(room_moderator, make_user, alice):
    hidden = await sync_to_async(services.create_room)(owner=alice, name="Hidden", is_private=True)
    response = await room_page_get(room_moderator, f"/rooms/{hidden.slug}/moderation/members/")
    assert response.status_code == 404


async def test_the_member_list_is_bounded(settings, make_user, alice, room):
    for n in range(55):
        user = await sync_to_async(make_user)(f"user{n:02}")
        await sync_to_async(services.join_room)(room=room, user=user)
    answer = (await room_page_get(alice, f"/rooms/{room.slug}/moderation/members/")).json()
    assert len(answer["members"]) == 50 and answer["more"] is True


async def test_the_owner_appoints_and_dismisses_from_the_room_page(
    room_moderator, alice, bob, room
):
    await sync_to_async(services.join_room)(room=room, user=bob)
    role = f"/rooms/{room.slug}/users/bob/role/"
    # A moderator may not appoint; a bad role is refused; nothing changes.
    assert (await room_page_post(room_moderator, role, role="moderator")).status_code == 403
    bad = await room_page_post(alice, role, role="owner")
    assert bad.status_code == 400 and "moderator or member" in bad.json()["detail"]
    assert (await room_page_post(alice, role, role="moderator")).json() == {"ok": True}
    membership = await sync_to_async(Membership.objects.get)(room=room, user=bob)
    assert membership.role == "moderator"
    assert (await room_page_post(alice, role, role="member")).json() == {"ok": True}
    await sync_to_async(membership.refresh_from_db)()
    assert membership.role == "member"
    summaries = await sync_to_async(
        lambda: list(ModerationLog.objects.order_by("id").values_list("summary", flat=True))
    )()
    assert summaries == [
        "alice made bob a moderator in General",
        "alice made bob a plain member in General",
    ]


async def test_mute_durations_come_from_the_settings(settings, room_moderator, bob, room):
    await sync_to_async(services.join_room)(room=room, user=bob)
    settings.CHAT_MUTE_MINUTES = [15, 45]
    mute = f"/rooms/{room.slug}/users/bob/mute/"
    refused = await room_page_post(room_moderator, mute, minutes="10")
    assert refused.status_code == 400
    assert refused.json()["detail"] == "minutes must be one of 15, 45, or absent (until unmuted)."
    assert (await room_page_post(room_moderator, mute, minutes="45")).json() == {"ok": True}
    membership = await sync_to_async(Membership.objects.get)(room=room, user=bob)
    left = membership.muted_until - timezone.now()
    assert timedelta(minutes=44) < left <= timedelta(minutes=45)
    page = await room_page_get(room_moderator, f"/rooms/{room.slug}/")
    assert b'<option value="15">15 minutes</option><option value="45">45 minutes</option>' in (
        page.content
    )


async def test_the_muted_users_sockets_are_told_and_nobody_else(sockets, alice, bob, room):
    a, b = sockets
    until = timezone.now() + timedelta(minutes=10)
    await sync_to_async(services.mute_user)(room=room, user=bob, actor=alice, until=until)
    told = await b.expect("muted")
    assert told == {"type": "muted", "room": room.slug, "until": told["until"]}
    await sync_to_async(services.unmute_user)(room=room, user=bob, actor=alice)
    assert await b.expect("unmuted") == {"type": "unmuted", "room": room.slug}
    # Unmuting someone who is not muted changes nothing and says nothing.
    assert await sync_to_async(services.unmute_user)(room=room, user=bob, actor=alice) is False
    await a.nothing()
    await b.nothing()
