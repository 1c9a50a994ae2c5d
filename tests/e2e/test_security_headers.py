"""Every page works in Chromium under the Content-Security-Policy, and the
browser reports no violation (new_context fails a test on any, in every
browser test; here each page is visited on purpose, the admin's included)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chat import services
from chat.models import Membership, Room
from tests.e2e.pages import PASSWORD, log_in, open_room, send, stored

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def violations_in(page) -> list[str]:
    """Violations the page itself saw (securitypolicyviolation events), on
    top of the console messages new_context watches."""
    return page.evaluate("window.__violations || []")


RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective}: ${event.blockedURI}`);
});
"""


@pytest.fixture
def watched_page(new_context):
    def make():
        context = new_context()
        context.add_init_script(RECORD_VIOLATIONS)
        return context.new_page()

    return make


def test_account_pages_and_the_chat_work_under_the_policy(live, watched_page, make_user):
    make_user("alice")
    page = watched_page()
    response = page.goto(live.url + "/accounts/signup/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "camera=()" in response.headers["permissions-policy"]
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password", exact=True).fill("correct-horse-battery-9")
    page.get_by_label("Password confirmation").fill("correct-horse-battery-9")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(live.url + "/")
    assert violations_in(page) == []

    page.goto(live.url + "/rooms/new/")
    page.get_by_label("Name").fill("Policies")
    page.get_by_label("Private").check()
    page.get_by_role("button", name="Create room").click()
    expect(page).to_have_url(live.url + "/rooms/policies/")
    expect(page.get_by_role("status")).to_have_text("Connected")
    send(page, "hello under a strict policy")
    expect(page.get_by_role("log").locator(".body")).to_have_text(["hello under a strict policy"])
    expect(page.get_by_role("log").locator(".pending")).to_have_count(0)  # acknowledged
    assert stored("policies") == [("newcomer", "hello under a strict policy")]
    assert violations_in(page) == []

    other = watched_page()
    log_in(other, live, "alice", PASSWORD)
    expect(other.get_by_role("heading", name="Rooms")).to_be_visible()
    assert violations_in(other) == []


def test_admin_pages_work_under_the_policy(live, watched_page, make_user):
    staff = make_user("root", is_staff=True, is_superuser=True)
    alice = make_user("alice")
    room = services.create_room(owner=alice, name="Lobby")
    membership = Membership.objects.get(room=room, user=alice)
    page = watched_page()
    page.goto(live.url + "/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(live.url + "/admin/")
    for path in [
        "/admin/chat/room/",
        f"/admin/chat/room/{room.pk}/change/",
        "/admin/chat/membership/",
        "/admin/chat/membership/add/",
        f"/admin/chat/membership/{membership.pk}/change/",
        "/admin/chat/message/",
        "/admin/chat/moderationlog/",
        f"/admin/auth/user/{staff.pk}/change/",
        "/admin/auth/user/add/",
    ]:
        response = page.goto(live.url + path)
        assert response.status == 200, path
        expect(page.locator("#content")).to_be_visible()
    # The admin's scripts run: the action bar's "select all" checkbox works.
    page.goto(live.url + "/admin/chat/room/")
    page.locator("#action-toggle").check()
    expect(page.locator("input.action-select").first).to_be_checked()
    # And a form with the admin's widgets saves.
    page.goto(f"{live.url}/admin/chat/room/{room.pk}/change/")
    page.get_by_label("Name").fill("Lounge")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert Room.objects.get(pk=room.pk).name == "Lounge"
    assert violations_in(page) == []


def test_the_room_page_of_a_moderator_works_under_the_policy(live, watched_page, make_user):
    bob = make_user("bob")
    services.create_room(owner=bob, name="Den")
    page = watched_page()
    log_in(page, live, "bob")
    open_room(page, live, "den")
    send(page, "moderator controls present")
    expect(page.get_by_role("log").locator(".body")).to_have_text(["moderator controls present"])
    page.get_by_role("button", name="Remove message from bob").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert violations_in(page) == []


def test_the_room_page_quotes_names_in_moderation_urls(live, watched_page, make_user):
    # "+" and "@" may be in usernames ("." and ".." may not: the URL would
    # collapse); the page builds /users/<name>/mute/ with the name quoted.
    room = services.create_room(owner=make_user("bob"), name="Den")
    make_user("a+b@c")
    pages = {}
    for name in ("bob", "a+b@c"):
        pages[name] = watched_page()
        log_in(pages[name], live, name)
        open_room(pages[name], live, "den")
    bob = pages["bob"]
    bob.get_by_role("button", name="Manage members").click()
    bob.get_by_role("group", name="a+b@c").get_by_role("button", name="Mute").click()
    dialog = bob.locator("#mod-dialog")
    dialog.get_by_label("How long").select_option("10")
    dialog.get_by_role("button", name="Mute", exact=True).click()
    expect(bob.locator("#members-outcome")).to_have_text("Muted a+b@c for 10 minutes")
    assert Membership.objects.get(room=room, user__username="a+b@c").muted_until is not None
