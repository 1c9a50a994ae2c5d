"""What a person does with rooms in a real browser: set a topic, leave a
room, read the member list, invite someone with a link, message someone
directly."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import alice_and_bob_in_lobby, open_room, send

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_owner_sets_a_topic_and_everyone_sees_it(live, new_page, make_user):
    room, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    open_room(bob, live, room.slug)
    expect(bob.locator("#room-topic")).to_be_hidden()

    open_room(alice, live, room.slug)
    alice.get_by_role("link", name="Room settings").click()
    alice.get_by_role("textbox", name="Topic").fill("Plans for the weekend")
    alice.get_by_role("button", name="Save topic").click()
    expect(alice).to_have_url(f"{live.url}/rooms/{room.slug}/")
    expect(alice.locator("#room-topic")).to_have_text("Plans for the weekend")
    # Bob's open page follows live, and the directory shows it.
    expect(bob.locator("#room-topic")).to_have_text("Plans for the weekend")
    bob.goto(live.url + "/")
    expect(bob.locator(".room-entry .room-topic")).to_have_text("Plans for the weekend")

    # Bad input: a clear error, nothing changed.
    alice.get_by_role("link", name="Room settings").click()
    alice.get_by_role("textbox", name="Topic").fill("sneaky\u202eword")
    alice.get_by_role("button", name="Save topic").click()
    expect(alice.locator(".errorlist")).to_contain_text("invisible")
    open_room(alice, live, room.slug)
    expect(alice.locator("#room-topic")).to_have_text("Plans for the weekend")
    send(alice, "still here")
