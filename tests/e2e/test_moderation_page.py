"""Moderation from the room page (and from the admin) in real browsers,
against the live Daphne: what each person sees, and what the database keeps."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from chat import services
from chat.models import Membership, Message, ModerationLog, Report
from tests.e2e.pages import alice_and_bob_in_lobby, bodies, log_in, open_room, send, stored

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MODERATION_BUTTONS = re.compile(r"^(Remove message from |Manage members)")


def message_item(page, body):
    """The message's line in the log."""
    return (
        page.get_by_role("log")
        .get_by_role("listitem")
        .filter(has=page.get_by_text(body, exact=True))
    )


def online_names(page):
    return page.get_by_label("Online").get_by_role("listitem")


def notice(page):
    """The outcome of the last moderation request."""
    return page.locator("#moderation-status")


def confirm(page, button, *, reason=None, minutes=None):
    """Answer the open moderation dialog (the one that asks, in front of the
    members dialog when that is open) with its button named `button`."""
    dialog = page.locator("#mod-dialog")
    expect(dialog).to_be_visible()
    if minutes is not None:
        dialog.get_by_label("How long").select_option(minutes)
    if reason is not None:
        dialog.get_by_label("Reason (optional)").fill(reason)
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_be_hidden()


@pytest.fixture
def lobby(live, new_page, make_user):
    """Alice owns "Lobby"; she and Bob (a plain member) have it open."""
    room, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    open_room(alice, live, "lobby")
    open_room(bob, live, "lobby")
    for page in (alice, bob):
        expect(online_names(page)).to_have_text(["alice", "bob"])
    return room, alice, bob


def test_owner_removes_a_message_for_everyone(lobby):
    room, alice, bob = lobby
    send(bob, "keep this")
    send(bob, "buy cheap watches")
    for page in (alice, bob):
        expect(bodies(page)).to_have_text(["keep this", "buy cheap watches"])
        expect(page.get_by_role("log").locator(".pending")).to_have_count(0)
    spam = Message.objects.get(room=room, body="buy cheap watches")

    # A plain member has no moderation controls on his own messages (not even
    # Report; his own Reply, React, Edit and Delete are no moderation).
    expect(message_item(bob, "keep this").locator(".mod-actions button")).to_have_count(0)
    remove = message_item(alice, "buy cheap watches").get_by_role(
        "button", name="Remove message from bob"
    )
    remove.click()
    confirm(alice, "Remove", reason="spam")

    expect(notice(alice)).to_have_text("Message removed")
    for page in (alice, bob):
        # The line stays, as a placeholder saying what happened.
        expect(bodies(page)).to_have_text(["keep this"])
        removed = page.get_by_role("log").locator(".message.removed")
        expect(removed).to_have_text(re.compile(r"bob.*Message removed by a moderator$"))
        expect(removed.get_by_role("button")).to_have_count(0)
    spam.refresh_from_db()
    assert spam.deleted_at is not None
    assert spam.deleted_by.username == "alice"
    log = ModerationLog.objects.get(action="remove_message")
    assert (log.actor.username, log.message_id, log.reason) == ("alice", spam.pk, "spam")
    # Gone from a fresh load too.
    bob.reload()
    expect(bodies(bob)).to_have_text(["keep this"])


def members_dialog(page):
    """Open the members dialog (owners, moderators, staff)."""
    page.get_by_role("button", name="Manage members").click()
    dialog = page.get_by_role("dialog", name=re.compile("^Members of "))
    expect(dialog).to_be_visible()
    return dialog


def member_row(dialog, username):
    return dialog.get_by_role("listitem").filter(
        has=dialog.page.locator(".member-name", has_text=re.compile(f"^{re.escape(username)}$"))
    )


def member_action(dialog, username, action):
    """A row's buttons say the verb; their group is named by the member."""
    return dialog.get_by_role("group", name=username, exact=True).get_by_role(
        "button", name=action, exact=True
    )


def local_time(page, iso):
    """How the page shows a time: the reader's own clock, hours and minutes."""
    return page.evaluate(
        "(t) => new Date(t).toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit'})",
        iso,
    )


def test_mute_shows_a_badge_and_the_muted_users_banner_then_unmute(lobby, settings):
    room, alice, bob = lobby
    # Nobody acts on themselves from the Online list or anywhere else.
    expect(online_names(alice)).to_have_text(["alice", "bob"])
    expect(online_names(alice).get_by_role("button")).to_have_count(0)
    expect(bob.get_by_role("button", name="Manage members")).to_have_count(0)
    banner = bob.locator(".mute-banner")
    expect(banner).to_have_count(0)

    dialog = members_dialog(alice)
    expect(member_row(dialog, "alice")).to_contain_text("owner")
    expect(member_row(dialog, "alice").get_by_role("button")).to_have_count(0)
    member_action(dialog, "bob", "Mute").click()
    # The durations offered are the server's (one setting), then "until unmuted".
    choices = alice.get_by_role("dialog", name="Mute bob").get_by_label("How long")
    expect(choices.locator("option")).to_have_count(len(settings.CHAT_MUTE_MINUTES) + 1)
    confirm(alice, "Mute", minutes="10", reason="cool down")
    expect(dialog.locator("#members-outcome")).to_have_text("Muted bob for 10 minutes")
    until = Membership.objects.get(room=room, user__username="bob").muted_until
    assert timedelta(minutes=9) < until - timezone.now() <= timedelta(minutes=10)
    ends = local_time(alice, until.isoformat())
    expect(member_row(dialog, "bob").locator(".badge")).to_have_text([f"muted until {ends}"])
    expect(member_action(dialog, "bob", "Unmute")).to_be_focused()  # focus stays in the row

    # Bob is told at once, in his own time, without having to send first.
    expect(banner).to_have_text(
        f"You are muted in this room until {ends}. You can still read along."
    )
    box = bob.get_by_role("textbox", name="Message")
    box.fill("can you hear me?")
    box.press("Enter")
    expect(bob.locator("#composer-error")).to_have_text(
        f"Not sent: You are muted in this room until {ends}."
    )
    expect(box).to_have_value("can you hear me?")  # given back, not lost
    assert stored("lobby") == []
    bob.reload()  # still muted after a reload: the page says so from the start
    expect(banner).to_contain_text(ends)

    member_action(dialog, "bob", "Unmute").click()
    expect(dialog.locator("#members-outcome")).to_have_text("Unmuted bob")
    expect(member_row(dialog, "bob").locator(".badge")).to_have_count(0)
    expect(banner).to_have_count(0)  # the unmuted frame clears it
    send(bob, "thanks")
    assert stored("lobby") == [("bob", "thanks")]
    assert list(
        ModerationLog.objects.order_by("created", "id").values_list("action", "reason")
    ) == [("mute", "cool down"), ("unmute", "")]


def test_the_banner_goes_when_the_mute_ends(live, lobby):
    room, alice, bob = lobby
    until = timezone.now() + timedelta(seconds=3)
    Membership.objects.filter(room=room, user__username="bob").update(muted_until=until)
    bob.reload()
    banner = bob.locator(".mute-banner")
    expect(banner).to_contain_text(local_time(bob, until.isoformat()))
    expect(banner).to_have_count(0, timeout=8000)
    send(bob, "back")
    assert stored("lobby") == [("bob", "back")]


def test_ban_and_unban_from_the_members_list(lobby, live, new_page, make_user):
    room, alice, bob = lobby
    carol_user = make_user("carol")
    services.join_room(room=room, user=carol_user)  # a member, not online now
    dialog = members_dialog(alice)
    expect(dialog.locator(".member-name")).to_have_text(["alice", "bob", "carol"])

    # Ban asks first: cancelling changes nothing.
    member_action(dialog, "bob", "Ban").click()
    confirm(alice, "Cancel")
    assert not Membership.objects.get(room=room, user__username="bob").is_banned

    member_action(dialog, "bob", "Ban").click()
    confirm(alice, "Ban", reason="enough")
    expect(dialog.locator("#members-outcome")).to_have_text("Banned bob")
    expect(member_row(dialog, "bob").locator(".badge")).to_have_text(["banned"])
    expect(bob.get_by_role("status")).to_have_text("You no longer have access to this room")
    expect(bob.get_by_role("textbox", name="Message")).to_be_disabled()
    with pytest.raises(PlaywrightTimeout):  # 4403 is final: no reconnect
        bob.wait_for_event("websocket", timeout=1500)

    # Someone who is not online can be banned too.
    member_action(dialog, "carol", "Ban").click()
    confirm(alice, "Ban")
    expect(member_row(dialog, "carol").locator(".badge")).to_have_text(["banned"])

    # The owner (not staff) undoes her own ban from the same list.
    member_action(dialog, "bob", "Unban").click()
    expect(dialog.locator("#members-outcome")).to_have_text("Unbanned bob: they can come back")
    expect(member_row(dialog, "bob").locator(".badge")).to_have_count(0)
    assert not Membership.objects.get(room=room, user__username="bob").is_banned
    open_room(bob, live, "lobby")
    send(bob, "I am back")
    assert stored("lobby") == [("bob", "I am back")]
    assert list(
        ModerationLog.objects.order_by("created", "id").values_list(
            "action", "target_user__username"
        )
    ) == [("ban", "bob"), ("ban", "carol"), ("unban", "bob")]

    # Finding someone by name.
    dialog.get_by_label("Find a member").fill("ca")
    expect(dialog.locator(".member-name")).to_have_text(["carol"])
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_the_owner_appoints_and_dismisses_a_moderator(lobby, live, make_user):
    room, alice, bob = lobby
    carol_user = make_user("carol")
    services.join_room(room=room, user=carol_user)
    dialog = members_dialog(alice)
    member_action(dialog, "bob", "Make moderator").click()
    expect(dialog.locator("#members-outcome")).to_have_text("bob is now a moderator")
    expect(member_row(dialog, "bob").locator(".badge")).to_have_text(["moderator"])
    assert Membership.objects.get(room=room, user__username="bob").role == "moderator"

    # Bob, now a moderator, moderates plain members but not the owner, and
    # appoints nobody.
    bob.reload()
    bob_dialog = members_dialog(bob)
    expect(member_row(bob_dialog, "carol").get_by_role("button")).to_have_text(["Mute", "Ban"])
    expect(member_row(bob_dialog, "alice").get_by_role("button")).to_have_count(0)
    member_action(bob_dialog, "carol", "Mute").click()
    confirm(bob, "Mute")  # the first choice offered
    expect(member_row(bob_dialog, "carol").locator(".badge")).to_have_count(1)

    member_action(dialog, "bob", "Remove moderator").click()
    expect(dialog.locator("#members-outcome")).to_have_text("bob is no longer a moderator")
    expect(member_row(dialog, "bob").locator(".badge")).to_have_count(0)
    assert Membership.objects.get(room=room, user__username="bob").role == "member"
    bob.reload()
    expect(bob.get_by_role("button", name="Manage members")).to_have_count(0)
    actions = ModerationLog.objects.order_by("created", "id").values_list("action", flat=True)
    assert list(actions) == ["set_role", "mute", "set_role"]


def test_member_sees_no_moderation_controls_but_can_report(lobby):
    room, alice, bob = lobby
    send(alice, "my opinion")
    send(bob, "my reply")
    for page in (alice, bob):
        expect(bodies(page)).to_have_text(["my opinion", "my reply"])
        expect(page.get_by_role("log").locator(".pending")).to_have_count(0)

    # The owner has the controls (so their absence below means something)…
    expect(alice.get_by_role("button", name=MODERATION_BUTTONS)).to_have_count(3)
    # …Bob, with the same messages and people on screen, has none.
    expect(bob.get_by_role("button", name=MODERATION_BUTTONS)).to_have_count(0)
    expect(message_item(bob, "my reply").locator(".mod-actions button")).to_have_count(0)

    report = message_item(bob, "my opinion").get_by_role("button", name="Report message from alice")
    report.click()
    confirm(bob, "Send report", reason="rude to newcomers")
    expect(notice(bob)).to_have_text("Reported — thanks")
    expect(report).to_be_disabled()

    opinion = Message.objects.get(room=room, body="my opinion")
    assert list(
        Report.objects.values_list("message", "reporter__username", "reason", "status")
    ) == [(opinion.pk, "bob", "rude to newcomers", "open")]
    assert ModerationLog.objects.count() == 0  # a report is not a moderation action


def test_removal_in_the_admin_reaches_open_pages(lobby, live, new_page, make_user):
    room, alice, bob = lobby
    make_user("root", is_staff=True, is_superuser=True)
    send(bob, "hello all")
    send(bob, "something awful")
    for page in (alice, bob):
        expect(bodies(page)).to_have_text(["hello all", "something awful"])
        expect(page.get_by_role("log").locator(".pending")).to_have_count(0)
    awful = Message.objects.get(room=room, body="something awful")

    admin = new_page()
    log_in(admin, live, "root")
    admin.goto(f"{live.url}/admin/chat/message/")
    admin.locator(f'input.action-select[value="{awful.pk}"]').check()
    admin.locator('select[name="action"]').select_option("remove_messages")
    admin.locator('input[name="reason"]').fill("abuse")
    admin.get_by_role("button", name="Go").click()
    expect(admin.get_by_text("Removed: 1.")).to_be_visible()

    for page in (alice, bob):
        expect(bodies(page)).to_have_text(["hello all"])
        expect(page.locator(".removed-note")).to_have_text(["Message removed by a moderator"])
    awful.refresh_from_db()
    assert awful.deleted_at is not None and awful.deleted_by.username == "root"
    log = ModerationLog.objects.get()
    assert (log.action, log.actor.username, log.message_id, log.reason) == (
        "remove_message",
        "root",
        awful.pk,
        "abuse",
    )
