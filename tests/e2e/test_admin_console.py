"""The moderation console (the Django admin) in a real browser: fields beside
the action menu follow the chosen action, a mute made there reaches the
member's open page at once, times show in the moderator's own time zone, and
the memberships list fits a 1280 px screen."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from chat import services
from chat.models import Membership, ModerationLog
from tests.e2e.pages import PASSWORD, log_in, off_loop, open_room

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lobby(make_user):
    make_user("root", is_staff=True, is_superuser=True)
    alice = make_user("alice")
    bob = make_user("bob")
    room = services.create_room(owner=alice, name="Lobby")
    services.join_room(room=room, user=bob)
    return room


def admin_page(new_context, live, **options):
    page = new_context(**options).new_page()
    page.goto(live.url + "/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Rooms, people and messages")).to_be_visible()
    return page


def test_action_fields_follow_the_action_and_a_mute_reaches_the_member(
    live, new_context, new_page, lobby
):
    bob = new_page()
    log_in(bob, live, "bob")
    open_room(bob, live, "lobby")
    page = admin_page(new_context, live)
    page.goto(live.url + "/admin/chat/membership/")
    menu = page.get_by_role("combobox", name="Action")
    reason = page.get_by_role("textbox", name="Reason")
    mute_for = page.get_by_role("combobox", name="Mute for")
    expect(reason).to_be_hidden()  # no action chosen: nothing to give a reason for
    expect(mute_for).to_be_hidden()
    menu.select_option("ban")
    expect(reason).to_be_visible()
    expect(mute_for).to_be_hidden()
    menu.select_option("mute")
    expect(reason).to_be_visible()
    expect(mute_for).to_be_visible()
    expect(mute_for).to_have_value("10")  # the first duration offered

    bob_membership = Membership.objects.get(room=lobby, user__username="bob")
    page.locator(f'input.action-select[value="{bob_membership.pk}"]').check()
    reason.fill("calm down")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_text("Muted: 1.")).to_be_visible()
    bob_membership.refresh_from_db()
    assert timedelta(minutes=9) < bob_membership.muted_until - timezone.now()
    expect(bob.locator(".mute-banner")).to_contain_text("You are muted in this room until")
    assert ModerationLog.objects.get().reason == "calm down"

    page.goto(live.url + "/admin/chat/room/")
    expect(page.get_by_role("combobox", name="Mute for")).to_have_count(0)
    page.get_by_role("combobox", name="Action").select_option("lock_rooms")
    expect(page.get_by_role("textbox", name="Reason")).to_be_visible()
    page.get_by_role("combobox", name="Action").select_option("delete_selected")
    expect(page.get_by_role("textbox", name="Reason")).to_be_hidden()


def test_times_show_in_the_moderators_own_time_zone(live, new_context, lobby):
    bob = Membership.objects.get(room=lobby, user__username="bob").user
    until = timezone.now() + timedelta(hours=2)
    off_loop(services.mute_user, room=lobby, user=bob, actor=lobby.owner, until=until)
    page = admin_page(new_context, live, timezone_id="Asia/Tokyo", locale="en-GB")
    page.goto(live.url + "/admin/chat/moderationlog/")
    shown = page.evaluate(
        """(iso) => new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "short"})
            .format(new Date(iso))""",
        until.isoformat(),
    )
    entry = page.locator("td.field-what")
    expect(entry).to_have_text(f"alice muted bob in Lobby until {shown}")
    assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "Asia/Tokyo"
    # Tokyo is 9 hours ahead of UTC: the server's UTC text is only the hover title.
    assert entry.locator("time").get_attribute("title").endswith("UTC")


def test_the_memberships_list_fits_a_1280_screen(live, new_context, make_user, lobby):
    carol = make_user("carol_with_a_rather_long_username")
    for n in range(3):
        room = services.create_room(owner=lobby.owner, name=f"A room with a long name, number {n}")
        services.join_room(room=room, user=carol)
        off_loop(
            services.mute_user,
            room=room,
            user=carol,
            actor=lobby.owner,
            until=timezone.now() + timedelta(days=1),
        )
    page = admin_page(new_context, live, viewport={"width": 1280, "height": 800})
    page.goto(live.url + "/admin/chat/membership/")
    expect(page.locator("#result_list tbody tr")).to_have_count(8)
    overflow = page.evaluate(
        """() => {
          const box = document.querySelector("#changelist .results");
          return [box.scrollWidth, box.clientWidth, document.documentElement.scrollWidth];
        }"""
    )
    assert overflow[0] <= overflow[1] and overflow[2] <= 1280, overflow
