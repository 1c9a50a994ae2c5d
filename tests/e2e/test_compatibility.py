"""Chat where WebSockets are blocked (issue 12), in real browsers: the page
falls back to Server-Sent Events by itself and says so, two people on two
workers still chat, a stream that ends (or a reload) resumes without a gap,
and a send the server refuses for a stale CSRF token says so."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chat import services, sse
from tests.e2e.pages import bodies, log_in, stored
from tests.servers import DaphneServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A network that blocks the upgrade: every WebSocket the page makes fails.
BLOCK_WEBSOCKETS = """
window.WebSocket = class {
  constructor() { setTimeout(() => this.onclose && this.onclose({ code: 1006, reason: "" }), 20); }
  send() {}
  close() {}
};
"""


@pytest.fixture
def two_workers(live, redis_url):
    servers = [
        DaphneServer(database_url=live.database_url, redis_url=redis_url).start() for _ in range(2)
    ]
    yield servers
    for server in servers:
        server.stop()


def open_blocked(new_context, server, username):
    context = new_context()
    context.add_init_script(BLOCK_WEBSOCKETS)
    page = context.new_page()
    page.goto(server.http + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    page.goto(server.http + "/rooms/blocked/")
    return page


def say(page, body):
    box = page.get_by_role("textbox", name="Message")
    box.fill(body)
    box.press("Enter")


def test_two_people_behind_a_websocket_blocking_proxy_chat_across_workers(
    two_workers, new_context, make_user
):
    services.create_room(owner=make_user("alice"), name="Blocked")
    make_user("bob")
    alice = open_blocked(new_context, two_workers[0], "alice")
    bob = open_blocked(new_context, two_workers[1], "bob")
    for page in (alice, bob):
        expect(page.get_by_role("status")).to_have_text("Connected (compatibility mode)")

    say(alice, "through the stream")
    say(bob, "and back")
    for page in (alice, bob):
        expect(bodies(page)).to_have_text(["through the stream", "and back"])
    expect(alice.get_by_role("list", name="Online").get_by_text("bob")).to_be_visible()

    # Bob's stream ends (his worker restarts it, say): the page reconnects from
    # the last seq it has, and what was said meanwhile arrives once.
    two_workers[1].kill()
    say(alice, "while bob was away")
    two_workers[1].start()
    expect(bodies(bob)).to_have_text(
        ["through the stream", "and back", "while bob was away"], timeout=20_000
    )
    # A reload, too.
    say(alice, "before the reload")
    bob.reload()
    expect(bob.get_by_role("status")).to_have_text("Connected (compatibility mode)")
    say(alice, "after the reload")
    expect(bodies(bob)).to_have_text(
        [
            "through the stream",
            "and back",
            "while bob was away",
            "before the reload",
            "after the reload",
        ]
    )
    assert [body for _, body in stored("blocked")][-1] == "after the reload"


def test_a_send_with_a_stale_csrf_token_is_refused_and_the_page_says_so(
    live, new_context, make_user
):
    services.create_room(owner=make_user("alice"), name="Blocked")
    context = new_context()
    context.add_init_script(BLOCK_WEBSOCKETS)
    page = context.new_page()
    log_in(page, live, "alice")
    page.goto(live.url + "/rooms/blocked/")
    expect(page.get_by_role("status")).to_have_text("Connected (compatibility mode)")

    # Another CSRF cookie (a login in another tab rotates it): the token the
    # page was rendered with no longer matches.
    context.add_cookies([{"name": "csrftoken", "value": "s" * 32, "url": live.url}])
    say(page, "not sent")
    expect(page.locator("#composer-error")).to_have_text(sse.CSRF_REFUSED)
    expect(page.get_by_role("textbox", name="Message")).to_have_value("not sent")
    assert stored("blocked") == []
