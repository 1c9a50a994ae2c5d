"""Accessibility in a real browser: axe-core finds no serious or critical
violation on any page (in the light and the dark scheme), the room can be
used with the keyboard alone, and what a screen reader hears is what
changed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chat import services
from chat.models import Message
from tests.e2e.audit import violations
from tests.e2e.pages import log_in, off_loop, open_room

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def no_rate_limit_here(settings):
    settings.CHAT_RATE_LIMIT = None


@pytest.fixture
def busy_room(make_user):
    """Alice owns "Lobby" with 41 messages by her and bob (one reported, one
    removed), and a private room."""
    alice = make_user("alice", is_staff=True, is_superuser=True)
    bob = make_user("bob")
    room = services.create_room(owner=alice, name="Lobby")
    services.join_room(room=room, user=bob)
    for n in range(41):
        author = (alice, bob)[n % 3 == 0]
        services.store_message(room=room, author=author, body=f"message {n}", client_id=None)
    reported = Message.objects.get(room=room, body="message 3")
    services.report_message(message=reported, reporter=alice, reason="rude")
    off_loop(
        services.remove_message,
        message=Message.objects.get(room=room, body="message 6"),
        actor=alice,
        reason="spam",
    )
    services.mute_user(room=room, user=bob, actor=alice, reason="cool down")
    services.create_room(owner=alice, name="Private plans", is_private=True)
    return room


PAGES = [
    "/",
    "/rooms/new/",
    "/rooms/lobby/",
    "/rooms/nothing-here/",
    "/admin/",
    "/admin/chat/room/",
    "/admin/chat/membership/",
    "/admin/chat/message/",
    "/admin/chat/report/",
    "/admin/chat/moderationlog/",
    "/admin/auth/user/",
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_on_any_page(live, new_context, busy_room, scheme):
    page = new_context(color_scheme=scheme).new_page()
    found = {}
    for path in ["/accounts/login/", "/accounts/signup/"]:
        page.goto(live.url + path)
        found[path] = violations(page)
    log_in(page, live, "alice")
    for path in PAGES:
        if path == "/rooms/lobby/":
            open_room(page, live, "lobby")
            expect(page.get_by_role("log").locator(".message")).not_to_have_count(0)
        else:
            page.goto(live.url + path)
        found[path] = violations(page)
    for path, lines in found.items():
        print(f"{path}: {len(lines)}")
        for line in lines:
            print("   ", line)
    assert {path: lines for path, lines in found.items() if lines} == {}
