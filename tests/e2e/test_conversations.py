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


def test_leaving_a_room_takes_every_tab_back_to_the_directory(live, new_context, make_user):
    from chat import services
    from tests.e2e.pages import log_in

    alice_user = make_user("alice")
    make_user("bob")
    room = services.create_room(owner=alice_user, name="Hideout", is_private=True)
    services.add_member(room=room, actor=alice_user, username="bob")
    context = new_context()
    bob, bob_other_tab = context.new_page(), context.new_page()
    log_in(bob, live, "bob")
    open_room(bob, live, room.slug)
    open_room(bob_other_tab, live, room.slug)

    bob.get_by_role("button", name="Leave room").click()
    expect(bob).to_have_url(live.url + "/")
    expect(bob.get_by_role("heading", name="Rooms")).to_be_visible()
    expect(bob.get_by_role("link", name="Hideout")).to_have_count(0)
    expect(bob_other_tab).to_have_url(live.url + "/")  # its socket closed with 4410
    expect(bob_other_tab.get_by_role("heading", name="Rooms")).to_be_visible()
    # The notice shows once, on the directory that loaded after the form's
    # answer (the leaving tab's, unless the other one was slower).
    assert any(p.get_by_text("You left Hideout.").count() for p in (bob, bob_other_tab))

    # The owner has no Leave button, and is told why if she tries anyway.
    alice = new_context().new_page()
    log_in(alice, live, "alice")
    open_room(alice, live, room.slug)
    expect(alice.get_by_role("button", name="Leave room")).to_have_count(0)


def test_owner_hands_the_room_over_then_leaves(live, new_page, make_user):
    from django.contrib.auth import get_user_model

    from chat import services

    room, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    services.join_room(room=room, user=get_user_model().objects.get(username="bob"))
    services.join_room(room=room, user=make_user("carol"))
    open_room(bob, live, room.slug)
    expect(bob.get_by_role("link", name="Room settings")).to_have_count(0)
    open_room(alice, live, room.slug)
    expect(alice.get_by_role("button", name="Leave room")).to_have_count(0)

    # With the keyboard, past the select: the box to tick, then the button.
    alice.get_by_role("link", name="Room settings").click()
    handover = alice.get_by_role("region", name="Hand over the room")
    new_owner = handover.get_by_role("combobox", name="New owner")
    expect(new_owner.locator("option")).to_have_text(["Choose a member", "bob", "carol"])
    new_owner.select_option("bob")
    new_owner.focus()
    alice.keyboard.press("Tab")
    confirm = handover.get_by_role("checkbox", name="I understand")
    expect(confirm).to_be_focused()
    alice.keyboard.press("Space")
    alice.keyboard.press("Tab")
    expect(handover.get_by_role("button", name="Hand over the room")).to_be_focused()
    alice.keyboard.press("Enter")

    expect(alice).to_have_url(f"{live.url}/rooms/{room.slug}/")
    expect(alice.locator(".flash")).to_contain_text(
        "bob owns Lobby now. You stay on as one of its moderators."
    )
    expect(alice.get_by_role("link", name="Room settings")).to_have_count(0)
    # Bob's open page follows: the roles, and the owner's settings link.
    roles = bob.locator("#members li")
    expect(roles.filter(has_text="bob").locator(".member-role")).to_have_text("owner")
    expect(roles.filter(has_text="alice").locator(".member-role")).to_have_text("moderator")
    expect(bob.locator("#moderation-status")).to_contain_text("you own it now")
    expect(bob.get_by_role("link", name="Room settings")).to_be_visible()

    alice.get_by_role("button", name="Leave room").click()
    expect(alice).to_have_url(live.url + "/")
    expect(alice.get_by_text("You left Lobby.")).to_be_visible()

    # On his next load Bob has every owner's control, and no way to leave.
    open_room(bob, live, room.slug)
    expect(bob.get_by_role("button", name="Manage members")).to_be_visible()
    expect(bob.get_by_role("button", name="Leave room")).to_have_count(0)
    expect(bob.locator("#members li[data-user=alice]")).to_have_count(0)
    bob.get_by_role("link", name="Room settings").click()
    expect(bob.get_by_role("heading", name="Settings of Lobby")).to_be_visible()
    expect(bob.get_by_role("combobox", name="New owner").locator("option")).to_have_text(
        ["Choose a member", "carol"]
    )


def test_member_list_shows_everyone_online_first_with_roles(live, new_page, make_user):
    from chat import services

    room, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    for name in ("aaron", "zoe"):
        services.join_room(room=room, user=make_user(name))
    services.join_room(room=room, user=make_user("carol"))
    open_room(bob, live, room.slug)
    members = bob.get_by_role("list", name="Members (5)").get_by_role("listitem")
    names, roles = members.locator(".member-name"), members.locator(".member-role")
    online = bob.get_by_role("list", name="Members (5)").locator("li[data-online]")
    # Bob is online (his page is open); the rest by name.
    expect(names).to_have_text(["bob", "aaron", "alice", "carol", "zoe"])
    expect(roles).to_have_text(["member", "member", "owner", "member", "member"])
    expect(online.locator(".member-name")).to_have_text(["bob"])
    expect(online.locator(".member-presence")).to_have_text(["online"])
    expect(members.get_by_role("link")).to_have_count(4)  # "Message <name>", not himself
    open_room(alice, live, room.slug)  # alice comes online: she moves up, live
    expect(names).to_have_text(["alice", "bob", "aaron", "carol", "zoe"])
    expect(online.locator(".member-name")).to_have_text(["alice", "bob"])
    alice.close()
    expect(names).to_have_text(["bob", "aaron", "alice", "carol", "zoe"])


def test_invite_link_lets_another_user_in_until_revoked(live, new_page, make_user):
    from chat import services
    from tests.e2e.pages import log_in

    alice_user = make_user("alice")
    make_user("bob")
    make_user("carol")
    room = services.create_room(owner=alice_user, name="Hideout", is_private=True)
    alice, bob, carol = new_page(), new_page(), new_page()
    log_in(alice, live, "alice")
    open_room(alice, live, room.slug)
    alice.get_by_role("link", name="Room settings").click()
    alice.get_by_label("Link works for").select_option(label="1 day")
    alice.get_by_role("button", name="Make an invite link").click()
    links = alice.get_by_role("list", name="Invite links that work").get_by_role("textbox")
    expect(links).to_have_count(1)
    url = links.first.input_value()
    assert url.startswith(f"{live.url}/invite/")

    log_in(bob, live, "bob")
    bob.goto(url)
    bob.get_by_role("button", name="Join Hideout").click()
    expect(bob).to_have_url(f"{live.url}/rooms/{room.slug}/")
    expect(bob.get_by_role("status")).to_have_text("Connected")
    send(bob, "thanks for the invite")
    open_room(alice, live, room.slug)
    expect(alice.get_by_role("log").get_by_text("thanks for the invite")).to_be_visible()

    alice.get_by_role("link", name="Room settings").click()
    alice.get_by_role("button", name="Revoke link 1").click()
    expect(alice.get_by_text("No invite links work now.")).to_be_visible()
    log_in(carol, live, "carol")
    carol.goto(url)
    expect(carol.get_by_role("heading", name="This invite link does not work")).to_be_visible()
    expect(carol.get_by_role("alert")).to_contain_text("revoked")
    carol.goto(f"{live.url}/rooms/{room.slug}/")
    expect(carol.get_by_role("heading", name="Hideout")).to_have_count(0)


def test_direct_message_started_from_a_name(live, new_page, make_user):
    from chat.models import Room

    room, alice, bob = alice_and_bob_in_lobby(live, new_page, make_user)
    open_room(bob, live, room.slug)
    bob.get_by_role("link", name="Message alice").click()
    expect(bob.get_by_role("heading", name="Message alice")).to_be_visible()
    bob.get_by_role("button", name="Start the conversation").click()
    expect(bob.get_by_role("heading", name="alice")).to_be_visible()
    expect(bob.get_by_role("status")).to_have_text("Connected")
    dm_url = bob.url
    assert Room.objects.get(kind="direct").slug in dm_url
    send(bob, "just between us")

    # Alice finds it apart from the rooms, under Bob's name, unread.
    alice.goto(live.url + "/")
    directs = alice.get_by_role("region", name="Direct messages")
    expect(directs.get_by_role("link", name="bob")).to_be_visible()
    expect(directs.locator(".unread-count")).to_have_text("1 unread")
    expect(alice.get_by_role("region", name="Rooms").get_by_role("link")).to_have_text(["Lobby"])
    directs.get_by_role("link", name="bob").click()
    expect(alice).to_have_url(dm_url)
    expect(alice.get_by_role("status")).to_have_text("Connected")
    expect(alice.get_by_role("log").get_by_text("just between us")).to_be_visible()
    send(alice, "sure")
    expect(bob.get_by_role("log").get_by_text("sure", exact=True)).to_be_visible()

    # Starting it again, from the directory's form, opens the same one.
    bob.goto(live.url + "/")
    bob.get_by_label("Message someone").fill("alice")
    bob.get_by_role("button", name="Message", exact=True).click()
    expect(bob).to_have_url(dm_url)
    assert Room.objects.filter(kind="direct").count() == 1
