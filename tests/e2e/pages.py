"""What the browser tests do on the pages, as a person would: shared by the
e2e test modules."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.db import connections
from playwright.sync_api import expect

from chat import services
from chat.models import Message

PASSWORD = "a-long-test-password"  # tests/conftest.py's make_user default


def off_loop(service, **arguments):
    """Call a service that broadcasts from a test: Playwright's event loop on
    this thread rules out the sync-to-async bridge, so it runs on another."""

    def call():
        try:
            return service(**arguments)
        finally:
            # The thread ends with the call: its connection goes back to
            # PostgreSQL's pool rather than being lost with the thread.
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def log_in(page, live, username, password=PASSWORD):
    """Through the login form, like a person; lands on the directory."""
    page.goto(live.url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(live.url + "/")


def alice_and_bob_in_lobby(live, new_page, make_user):
    """Alice owns "Lobby"; she and Bob are logged in, each in a browser.
    Returns (room, alice's page, bob's page)."""
    alice_user = make_user("alice")
    make_user("bob")
    room = services.create_room(owner=alice_user, name="Lobby")
    alice, bob = new_page(), new_page()
    log_in(alice, live, "alice")
    log_in(bob, live, "bob")
    return room, alice, bob


def open_room(page, live, slug):
    page.goto(f"{live.url}/rooms/{slug}/")
    expect(page.get_by_role("status")).to_have_text("Connected")


def enter_room(page, live, username, slug):
    """Log in through the form, then open the room."""
    log_in(page, live, username)
    open_room(page, live, slug)


def bodies(page):
    return page.get_by_role("log").locator(".body")


def send(page, text, *, button=False):
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    if button:
        page.get_by_role("button", name="Send").click()
    else:
        box.press("Enter")
    expect(box).to_have_value("")


def stored(slug):
    return list(
        Message.objects.filter(room__slug=slug)
        .order_by("seq")
        .values_list("author__username", "body")
    )


def look_away(page):
    """The reader switches to another tab or window: this page is hidden and
    unfocused. (Headless Chromium keeps every page visible and focused, so
    the test says it the way the browser would: visibilitychange and blur.)"""
    page.evaluate(
        """() => {
          for (const [name, value] of [["visibilityState", "hidden"], ["hidden", true]]) {
            Object.defineProperty(document, name, { configurable: true, get: () => value });
          }
          document.dispatchEvent(new Event("visibilitychange"));
          window.dispatchEvent(new Event("blur"));
        }"""
    )


def look_back(page):
    page.evaluate(
        """() => {
          delete document.visibilityState;
          delete document.hidden;
          document.dispatchEvent(new Event("visibilitychange"));
          window.dispatchEvent(new Event("focus"));
        }"""
    )
