"""Moderation from the room page (and from the admin) in real browsers,
against the live Daphne: what each person sees, and what the database keeps."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from chat.models import Membership, Message, ModerationLog, Report
from tests.e2e.pages import alice_and_bob_in_lobby, bodies, log_in, open_room, send, stored

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MODERATION_BUTTONS = re.compile(r"^(Remove message from|Mute|Ban) ")


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
    """Answer the open moderation dialog with its button named `button`."""
    dialog = page.get_by_role("dialog")
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

    # A plain member has no controls on his own messages (not even Report).
    expect(message_item(bob, "keep this").get_by_role("button")).to_have_count(0)
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


def test_mute_then_ban_from_the_online_list(lobby):
    room, alice, bob = lobby
    # Nobody is offered to act on themselves.
    expect(alice.get_by_role("button", name="Mute alice")).to_have_count(0)
    expect(online_names(alice)).to_have_text(["alice", "bob"])  # the names stay bare

    alice.get_by_role("button", name="Mute bob").click()
    confirm(alice, "Mute", minutes="10")
    expect(notice(alice)).to_have_text("Muted bob for 10 minutes")
    until = Membership.objects.get(room=room, user__username="bob").muted_until
    assert timedelta(minutes=9) < until - timezone.now() <= timedelta(minutes=10)

    box = bob.get_by_role("textbox", name="Message")
    box.fill("can you hear me?")
    box.press("Enter")
    expect(bob.get_by_role("alert")).to_have_text(
        re.compile(r"^You are muted in this room until \d{4}-\d\d-\d\dT")
    )
    expect(box).to_have_value("can you hear me?")  # given back, not lost
    expect(bob.get_by_role("log").get_by_role("listitem")).to_have_count(0)
    assert stored("lobby") == []

    # Ban asks first: cancelling changes nothing.
    alice.get_by_role("button", name="Ban bob").click()
    confirm(alice, "Cancel")
    expect(notice(alice)).to_have_text("Muted bob for 10 minutes")
    assert not Membership.objects.get(room=room, user__username="bob").is_banned

    alice.get_by_role("button", name="Ban bob").click()
    confirm(alice, "Ban", reason="enough")
    expect(notice(alice)).to_have_text("Banned bob")
    expect(bob.locator("#connection")).to_have_text("You no longer have access to this room")
    expect(box).to_be_disabled()
    expect(online_names(alice)).to_have_text(["alice"])
    assert Membership.objects.get(room=room, user__username="bob").is_banned
    assert list(
        ModerationLog.objects.order_by("created", "id").values_list("action", "reason")
    ) == [("mute", ""), ("ban", "enough")]
    with pytest.raises(PlaywrightTimeout):  # 4403 is final: no reconnect
        bob.wait_for_event("websocket", timeout=1500)


def test_member_sees_no_moderation_controls_but_can_report(lobby):
    room, alice, bob = lobby
    send(alice, "my opinion")
    send(bob, "my reply")
    for page in (alice, bob):
        expect(bodies(page)).to_have_text(["my opinion", "my reply"])
        expect(page.get_by_role("log").locator(".pending")).to_have_count(0)

    # The owner has the controls (so their absence below means something)…
    expect(alice.get_by_role("button", name=MODERATION_BUTTONS)).to_have_count(4)
    # …Bob, with the same messages and people on screen, has none.
    expect(bob.get_by_role("button", name=MODERATION_BUTTONS)).to_have_count(0)
    expect(message_item(bob, "my reply").get_by_role("button")).to_have_count(0)

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
