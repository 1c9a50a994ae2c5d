"""What people do to messages on the room page, in real browsers against a
live Daphne: edit and delete their own, reply (the quote jumps to the
original, loading older history), react (counts live for the other)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chat import services
from chat.models import Message, MessageEdit
from tests.e2e.pages import alice_and_bob_in_lobby, bodies, log_in, open_room, send

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

THUMBS = "\U0001f44d"


def line(page, text):
    """The message whose own text (not a quote of it) has `text`."""
    body = page.locator(":scope > .bubble > .body", has_text=text)
    return page.get_by_role("log").locator("li.message").filter(has=body)


def test_edit_own_message_everyone_sees_the_new_text(live, new_page, make_user):
    _, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    for page in (alice, bob):
        open_room(page, live, "lobby")
    send(alice, "See you at 3")
    expect(line(bob, "See you at 3")).to_be_visible()
    # Only the author has Edit.
    expect(line(bob, "See you at 3").get_by_role("button", name="Edit your message")).to_have_count(
        0
    )

    line(alice, "See you at 3").get_by_role("button", name="Edit your message").click()
    box = alice.get_by_role("textbox", name="Edit message")
    expect(box).to_be_focused()
    box.fill("See you at 4")
    box.press("Enter")

    for page in (alice, bob):
        expect(bodies(page)).to_have_text(["See you at 4"])
        expect(line(page, "See you at 4").locator(".edited")).to_have_text("(edited)")
    assert list(MessageEdit.objects.values_list("body", flat=True)) == ["See you at 3"]
    # Escape leaves the text as it was.
    line(alice, "See you at 4").get_by_role("button", name="Edit your message").click()
    alice.get_by_role("textbox", name="Edit message").fill("never sent")
    alice.get_by_role("textbox", name="Edit message").press("Escape")
    expect(alice.get_by_role("textbox", name="Edit message")).to_have_count(0)
    expect(bodies(alice)).to_have_text(["See you at 4"])


def test_delete_own_message_leaves_a_placeholder_for_the_other(live, new_page, make_user):
    _, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    for page in (alice, bob):
        open_room(page, live, "lobby")
    send(alice, "wrong room, sorry")
    send(alice, "second thought")
    expect(line(bob, "wrong room, sorry")).to_be_visible()

    line(alice, "wrong room, sorry").get_by_role("button", name="Delete your message").click()
    dialog = alice.get_by_role("dialog", name="Delete your message")
    dialog.get_by_role("button", name="Delete").click()

    for page in (alice, bob):
        expect(page.get_by_role("log").locator(".removed-note")).to_have_text(["Message deleted"])
        expect(bodies(page)).to_have_text(["second thought"])
    message = Message.objects.get(body="wrong room, sorry")
    assert message.deleted_at is not None and message.deleted_by == message.author


def test_reply_shows_a_quote_that_jumps_to_the_original(live, new_page, make_user):
    _, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    for page in (alice, bob):
        open_room(page, live, "lobby")
    send(alice, "Who brings the cake?")
    line(bob, "Who brings the cake?").get_by_role("button", name="Reply to alice").click()
    expect(bob.locator("#reply-bar")).to_contain_text("Replying to alice")
    send(bob, "I do")

    for page in (alice, bob):
        quote = line(page, "I do").locator(".quote")
        expect(quote).to_contain_text("alice")
        expect(quote).to_contain_text("Who brings the cake?")
    expect(bob.locator("#reply-bar")).to_be_hidden()
    reply = Message.objects.get(body="I do")
    assert reply.reply_to.body == "Who brings the cake?"

    line(alice, "I do").get_by_role("link", name=re.compile("Reply to alice")).click()
    expect(line(alice, "Who brings the cake?")).to_be_focused()


def test_a_quote_of_an_old_message_loads_history_until_it_is_there(live, new_page, make_user):
    room, alice, _ = alice_and_bob_in_lobby(live, new_page, make_user)
    author = room.owner
    original = services.store_message(
        room=room, author=author, body="The very first question", client_id=None
    ).message
    for n in range(70):
        services.store_message(room=room, author=author, body=f"filler {n}", client_id=None)
    services.store_message(
        room=room, author=author, body="Answering that now", client_id=None, reply_to=original.pk
    )
    open_room(alice, live, "lobby")
    expect(line(alice, "The very first question")).to_have_count(0)  # older than the page

    line(alice, "Answering that now").locator(".quote").click()
    expect(line(alice, "The very first question")).to_be_focused()
    expect(line(alice, "The very first question")).to_be_in_viewport()


def test_reactions_count_live_for_the_other(live, new_page, make_user):
    _, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    for page in (alice, bob):
        open_room(page, live, "lobby")
    send(alice, "Ship it?")

    line(bob, "Ship it?").get_by_role("button", name="React to alice's message").click()
    bob.get_by_role("button", name=f"React with {THUMBS}").click()

    on_alice = line(alice, "Ship it?").locator(".reaction")
    expect(on_alice).to_have_text([f"{THUMBS} 1"])
    expect(on_alice).to_have_attribute("title", "bob")
    expect(on_alice).to_have_attribute("aria-pressed", "false")

    on_alice.click()  # alice adds hers
    on_bob = line(bob, "Ship it?").locator(".reaction")
    expect(on_bob).to_have_text([f"{THUMBS} 2"])
    expect(on_bob).to_have_attribute("title", "bob, alice")
    expect(on_bob).to_have_attribute("aria-pressed", "true")

    on_bob.click()  # bob takes his back
    expect(on_alice).to_have_text([f"{THUMBS} 1"])
    expect(on_alice).to_have_attribute("title", "alice")


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def test_on_a_phone_a_messages_actions_show_when_it_is_tapped(live, new_context, make_user):
    """A touch screen has no pointer to hover with: a message's buttons show
    once it is tapped, and only that message's, so the narrow column shows
    the conversation rather than a row of buttons under every line."""
    room = services.create_room(owner=make_user("alice"), name="Lobby")
    make_user("bob")
    for body in ("First things first", "Then the rest"):
        services.store_message(room=room, author=room.owner, body=body, client_id=body)
    bob = new_context(**PHONE).new_page()
    log_in(bob, live, "bob")
    open_room(bob, live, "lobby")
    first, second = line(bob, "First things first"), line(bob, "Then the rest")
    for message in (first, second):
        expect(message.get_by_role("button", name="Reply to alice")).to_be_hidden()

    first.locator(".body").tap()
    expect(first.get_by_role("button", name="Reply to alice")).to_be_visible()
    expect(second.get_by_role("button", name="Reply to alice")).to_be_hidden()
    first.get_by_role("button", name="Reply to alice").tap()
    expect(bob.get_by_role("textbox", name=re.compile("message", re.I))).to_be_focused()
    expect(first.get_by_role("button", name="Reply to alice")).to_be_hidden()
