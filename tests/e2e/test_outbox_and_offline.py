"""The two bugs of issue 9, in real browsers: the outbox keeps the order
messages were written in through rate limiting (against a live Daphne with a
tight limit), and the page says it is offline within 5 s of losing the
network, and reconnects as soon as it is back."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from chat import services
from tests.e2e.pages import bodies, log_in, open_room, stored
from tests.servers import DaphneServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def limited_server(live):
    """A second live Daphne on the same database, with a rate limit of 4
    messages per 2 seconds."""
    server = DaphneServer(
        database_url=live.database_url, redis_url=None, extra_env={"CHAT_RATE_LIMIT": "4/2"}
    ).start()
    yield server
    server.stop()


def test_order_survives_the_rate_limit(limited_server, new_page, make_user):
    services.create_room(owner=make_user("alice"), name="Burst")
    page = new_page()
    page.goto(limited_server.http + "/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    page.goto(limited_server.http + "/rooms/burst/")
    expect(page.get_by_role("status")).to_have_text("Connected")

    box = page.get_by_role("textbox", name="Message")
    written = [f"burst {n}" for n in range(1, 11)]
    for body in written:  # as fast as a person pasting and pressing Enter
        box.fill(body)
        box.press("Enter")
    error = page.locator("#composer-error")
    expect(error).to_have_text(re.compile(r"^Too many messages"))
    # Everything goes, in the order written, each once.
    expect(page.get_by_role("log").locator(".pending")).to_have_count(0, timeout=20_000)
    assert [body for _, body in stored("burst")] == written
    expect(bodies(page)).to_have_text(written)
    # …and the error is gone with the limit.
    expect(error).to_have_text("")


def test_offline_within_5_seconds_and_back_at_once(live, new_context, make_user):
    services.create_room(owner=make_user("alice"), name="Flaky")
    context = new_context()
    page = context.new_page()
    log_in(page, live, "alice")
    open_room(page, live, "flaky")
    status = page.get_by_role("status")

    context.set_offline(True)
    expect(status).to_have_text(re.compile(r"^Offline"), timeout=5000)
    box = page.get_by_role("textbox", name="Message")
    box.fill("written offline")
    box.press("Enter")
    expect(page.get_by_role("log").locator(".pending")).to_have_count(1)

    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws))
    context.set_offline(False)
    # No backoff wait: the page reconnects when the network returns.
    expect(status).to_have_text("Connected", timeout=5000)
    expect(page.get_by_role("log").locator(".pending")).to_have_count(0)
    assert stored("flaky") == [("alice", "written offline")]
    assert len(sockets) == 1


def test_a_silent_connection_is_noticed_within_5_seconds(live, new_page, make_user):
    """A server that stops answering (no close, no offline event): the
    heartbeat finds out."""
    services.create_room(owner=make_user("alice"), name="Quiet")
    page = new_page()
    log_in(page, live, "alice")
    pings = []
    answering = {"on": True}

    sockets = []

    def scripted(ws):
        sockets.append(ws)

        def received(text):
            frame = json.loads(text)
            if frame["type"] == "ping":
                pings.append(frame)
                if answering["on"]:
                    ws.send('{"type": "pong"}')

        ws.on_message(received)
        ws.send(
            '{"type": "hello", "user": "alice", "room": {"slug": "quiet", "name": "Quiet"}, '
            '"online": ["alice"], "last_seq": null}'
        )
        ws.send('{"type": "history", "messages": [], "has_more": false}')

    page.route_web_socket(re.compile(r"/ws/rooms/"), scripted)
    open_room(page, live, "quiet")
    status = page.get_by_role("status")
    # Quiet but alive: pings are answered, and the page stays connected.
    wait_in_page(page, lambda: len(pings) >= 2, 10)
    expect(status).to_have_text("Connected")
    assert len(sockets) == 1
    # It stops answering: the page gives that socket up and opens another.
    answering["on"] = False
    stopped = time.monotonic()
    wait_in_page(page, lambda: len(sockets) == 2, 8)
    # Dead within 5 s of the last pong (3 s of silence, 2 s for the answer),
    # then the first reconnect waits 0.25-0.5 s.
    assert time.monotonic() - stopped < 6


def wait_in_page(page, predicate, timeout):
    """Poll a condition on what Playwright's callbacks record; they run only
    while Playwright has control, so the wait goes through the page."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)
