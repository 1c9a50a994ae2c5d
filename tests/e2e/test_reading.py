"""Reading and noticing (issue 9) in real browsers against a live Daphne:
unread counts and the New divider across two users, the New messages button
and the tab title, mentions and notifications, grouping and day separators,
rendered links and code (and that they stay injection-proof), the empty room
and its start, the composer's helpers, and the directory."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from chat import services
from chat.models import Membership, Message
from tests.e2e.pages import (
    alice_and_bob_in_lobby,
    bodies,
    log_in,
    look_away,
    look_back,
    open_room,
    send,
    stored,
)
from tests.servers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Records every desktop notification the page shows (the real one is shown
# too: the context grants the permission).
NOTIFICATION_SPY = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.__notifications = [];
  window.Notification = class extends Real {
    constructor(title, options = {}) {
      window.__notifications.push({ title, body: options.body });
      super(title, options);
    }
  };
})();
"""


@pytest.fixture(autouse=True)
def no_rate_limit_here(settings):
    """Messages stored from the test itself (the live server has none)."""
    settings.CHAT_RATE_LIMIT = None


def messages(page):
    return page.get_by_role("log").locator(".message")


def message_item(page, body):
    return messages(page).filter(has=page.get_by_text(body, exact=True))


def read_position(room, username):
    return Membership.objects.get(room=room, user__username=username).last_read_seq


def post(room, author, body, *, created=None):
    message = services.store_message(room=room, author=author, body=body, client_id=None).message
    if created is not None:
        Message.objects.filter(pk=message.pk).update(created=created)
    return message


@pytest.fixture
def lobby(live, new_page, make_user):
    return alice_and_bob_in_lobby(live, new_page, make_user)


# ------------------------------------------------------------------ noticing


def test_unread_count_and_divider_across_two_users(live, lobby):
    room, alice, bob = lobby
    open_room(alice, live, "lobby")
    open_room(bob, live, "lobby")
    send(alice, "first, read by both")
    expect(bodies(bob)).to_have_text(["first, read by both"])
    expect(bob).to_have_title("Lobby · Chat")
    # Bob saw it: his position is stored on the server.
    bob.wait_for_function("() => window.chat.readSeq === 1")
    bob.goto(live.url + "/")

    send(alice, "second, while Bob is away")
    send(alice, "third, while Bob is away")
    expect(alice.get_by_role("log").locator(".pending")).to_have_count(0)
    bob.reload()
    lobby_entry = bob.locator(".room-entry").filter(has=bob.get_by_role("link", name="Lobby"))
    expect(lobby_entry.locator(".unread-count")).to_have_text("2 unread")

    # In the room: the divider sits above the first message he has not seen.
    lobby_entry.get_by_role("link", name="Lobby").click()
    expect(bob.get_by_role("status")).to_have_text("Connected")
    divider = bob.locator(".unread-divider:visible")
    expect(divider).to_have_count(1)
    expect(divider).to_have_text("New")
    first_unread = message_item(bob, "second, while Bob is away")
    expect(first_unread.locator(".unread-divider")).to_be_visible()
    # Seen now: stored, and the directory agrees.
    bob.wait_for_function("() => window.chat.readSeq === 3")
    expect(divider).to_have_count(1)  # stays for this visit
    wait_until(lambda: read_position(room, "bob") == 3, 5, "Bob's read position stored")
    bob.goto(live.url + "/")
    expect(bob.locator(".unread-count")).to_have_count(0)
    assert read_position(room, "bob") == 3
    assert read_position(room, "alice") == 3  # her own messages, seen on her screen


def test_tab_title_divider_and_other_devices_follow_the_read_position(live, lobby):
    room, alice, bob = lobby
    open_room(alice, live, "lobby")
    open_room(bob, live, "lobby")
    # Bob's second device, the same account.
    bob_phone = bob.context.new_page()
    open_room(bob_phone, live, "lobby")

    look_away(bob)
    look_away(bob_phone)
    send(alice, "are you there?")
    send(alice, "hello?")
    for page in (bob, bob_phone):
        expect(page).to_have_title("(2) Lobby · Chat")
        expect(message_item(page, "are you there?").locator(".unread-divider")).to_be_visible()

    # Bob comes back on his laptop: read there, cleared on the phone too.
    look_back(bob)
    expect(bob).to_have_title("Lobby · Chat")
    expect(bob_phone).to_have_title("Lobby · Chat")
    assert bob_phone.evaluate("window.chat.readSeq") == 2
    assert read_position(room, "bob") == 2


def test_new_messages_button_when_scrolled_up(live, lobby):
    room, alice, bob = lobby
    alice_user = room.owner
    for n in range(1, 41):
        post(room, alice_user, f"backlog {n}")
    open_room(bob, live, "lobby")
    expect(bodies(bob)).to_have_count(40)
    button = bob.get_by_role("button", name=re.compile(r"new messages?", re.I))
    expect(button).to_be_hidden()

    bob.get_by_role("log").hover()
    bob.mouse.wheel(0, -100_000)
    bob.wait_for_function("() => document.getElementById('timeline').scrollTop < 50")
    open_room(alice, live, "lobby")
    send(alice, "something new")
    expect(button).to_be_visible()
    expect(button).to_have_text("1 new message ↓")
    expect(bob).to_have_title("(1) Lobby · Chat")
    expect(bodies(bob).last).not_to_be_in_viewport()

    button.click()
    expect(bodies(bob).last).to_be_in_viewport()
    expect(button).to_be_hidden()
    expect(bob).to_have_title("Lobby · Chat")
    expect(bob.get_by_role("textbox", name="Message")).to_be_focused()


def test_mentions_are_completed_highlighted_and_notified(live, new_context, make_user):
    alice_user = make_user("alice")
    make_user("bob")
    make_user("albert")  # never opened the room: not offered
    room = services.create_room(owner=alice_user, name="Lobby")
    alice_context = new_context(permissions=["notifications"])
    alice_context.add_init_script(NOTIFICATION_SPY)
    alice, bob = alice_context.new_page(), new_context().new_page()
    log_in(alice, live, "alice")
    log_in(bob, live, "bob")
    open_room(alice, live, "lobby")
    open_room(bob, live, "lobby")

    # Permission granted already (by the context): no button, the choice.
    expect(alice.get_by_role("button", name="Enable notifications")).to_be_hidden()
    level = alice.get_by_label("Notify me of")
    expect(level).to_have_value("mentions")
    # Bob has not granted it: a button, and nothing was asked on load.
    expect(bob.get_by_role("button", name="Enable notifications")).to_be_visible()

    # Bob completes "@al" to "@alice" from the room's members.
    box = bob.get_by_role("textbox", name="Message")
    box.press_sequentially("thanks @al")
    options = bob.get_by_role("listbox", name="People to mention").get_by_role("option")
    expect(options).to_have_text(["@alice"])
    box.press("Enter")  # takes the option, does not send
    expect(box).to_have_value("thanks @alice ")
    assert stored("lobby") == []

    look_away(alice)
    box.press_sequentially("for the review")
    box.press("Enter")
    expect(box).to_have_value("")
    item = message_item(alice, "thanks @alice for the review")
    expect(item).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(item.locator(".mention-me")).to_have_text("@alice")
    expect(item.get_by_text("mentions you")).to_be_visible()
    alice.wait_for_function("() => window.__notifications.length === 1")
    assert alice.evaluate("window.__notifications") == [
        {"title": "bob mentioned you in Lobby", "body": "thanks @alice for the review"}
    ]

    # Not a mention: nothing at the default level; everything at "all".
    send(bob, "a plain message")
    expect(message_item(alice, "a plain message")).to_be_visible()
    look_back(alice)
    level.select_option("all")
    look_away(alice)
    send(bob, "another plain one")
    alice.wait_for_function("() => window.__notifications.length === 2")
    assert alice.evaluate("window.__notifications[1].title") == "bob in Lobby"
    # Looking at the room: no notification, whatever the level.
    look_back(alice)
    send(bob, "@alice while you look")
    expect(message_item(alice, "@alice while you look")).to_be_visible()
    assert alice.evaluate("window.__notifications.length") == 2
    # Bob's own view: a mention of someone else is highlighted, not his.
    expect(message_item(bob, "@alice while you look").locator(".mention")).to_have_count(1)
    expect(messages(bob).and_(bob.locator(".mentions-me"))).to_have_count(0)
    assert room.pk


# ------------------------------------------------------------------ reading


def day_label(date, today):
    days = (today - date).days
    if days == 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    label = f"{date:%A}, {date:%B} {date.day}"
    return label if date.year == today.year else f"{label}, {date.year}"


def test_grouping_and_day_separators(live, new_context, make_user):
    alice_user = make_user("alice")
    bob_user = make_user("bob")
    room = services.create_room(owner=alice_user, name="History")
    now = timezone.now()
    earlier = (now - timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    yesterday = (now - timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    post(room, alice_user, "a1", created=earlier)
    post(room, alice_user, "a2", created=earlier + timedelta(minutes=1))
    post(room, bob_user, "b1", created=earlier + timedelta(minutes=2))
    post(room, bob_user, "b2", created=yesterday)
    post(room, bob_user, "b3", created=yesterday + timedelta(minutes=10))
    post(room, bob_user, "b4", created=yesterday + timedelta(minutes=11))
    post(room, alice_user, "t1")

    page = new_context(locale="en-US", timezone_id="UTC").new_page()
    log_in(page, live, "alice")
    open_room(page, live, "history")
    expect(bodies(page)).to_have_text(["a1", "a2", "b1", "b2", "b3", "b4", "t1"])
    today = now.date()
    expect(page.locator(".day-separator:visible")).to_have_text(
        [day_label(earlier.date(), today), "Yesterday", "Today"]
    )
    continued = [
        "continued" in (messages(page).nth(n).get_attribute("class") or "") for n in range(7)
    ]
    assert continued == [False, True, False, False, False, True, False]
    # One name per group on screen.
    headers = page.locator(".message:not(.continued) .author")
    expect(headers).to_have_text(["alice", "bob", "bob", "bob", "alice"])
    # Times in the reader's locale, the full date on hover.
    first_time = messages(page).first.locator("time")
    expect(first_time).to_have_text("10:00 AM")
    expect(first_time).to_have_attribute("title", re.compile(rf"{earlier.year}.*10:00:00"))
    # The whole room fits: its start is shown.
    expect(page.get_by_text("This is the start of History.")).to_be_visible()


RENDERED = [
    ("see https://example.com/a_(b)?q=1, ok", "a", "https://example.com/a_(b)?q=1"),
    ("run `make test` now", "code.code-inline", "make test"),
    ("```\nfor x in y:\n    print(x)\n```", "pre.code-block > code", "for x in y:\n    print(x)"),
    ("this is *important*", "em", "important"),
    ("this is **very** important", "strong", "very"),
]

INJECTIONS = [
    # one per syntax: markup inside each stays text
    "**<img src=x onerror=window.__pwned=1>**",
    "*<script>window.__pwned=1</script>*",
    "`<img src=x onerror=window.__pwned=1>`",
    "```\n<img src=x onerror=window.__pwned=1>\n```",
    'https://example.com/"><img src=x onerror=window.__pwned=1>',
    "@<img src=x onerror=window.__pwned=1>",
    # only http(s) becomes a link
    "javascript:window.__pwned=1",
    "[x](javascript:window.__pwned=1) data:text/html,<b>x</b>",
]


def test_links_code_and_emphasis_render_and_stay_injection_proof(live, lobby):
    room, alice, bob = lobby
    open_room(alice, live, "lobby")
    open_room(bob, live, "lobby")
    for body, _, _ in RENDERED:
        send(bob, body)
    for body in INJECTIONS:
        send(bob, body)
    expect(alice.get_by_role("log").locator(".message")).to_have_count(
        len(RENDERED) + len(INJECTIONS)
    )
    log = alice.get_by_role("log")
    for n, (_, selector, text) in enumerate(RENDERED):
        expect(log.locator(".message").nth(n).locator(f".body {selector}")).to_have_text(text)
    link = log.locator(".body a")
    expect(link).to_have_count(2)  # the first message's, and the one before the `"`
    expect(link.first).to_have_attribute("href", "https://example.com/a_(b)?q=1")
    expect(link.first).to_have_attribute("rel", "noopener noreferrer")
    expect(link.first).to_have_attribute("target", "_blank")
    expect(link.nth(1)).to_have_attribute("href", "https://example.com/")

    # Injections: shown as the text that was sent, nothing executed or built.
    injected = log.locator(".message").filter(has_text=re.compile("pwned"))
    expect(injected).to_have_count(len(INJECTIONS))
    expect(log.locator("img, script, iframe, b")).to_have_count(0)
    assert alice.evaluate("window.__pwned") is None
    expect(log.locator(".message").nth(len(RENDERED)).locator("strong")).to_have_text(
        "<img src=x onerror=window.__pwned=1>"
    )
    expect(log.locator(".message").nth(len(RENDERED) + 3).locator("pre code")).to_have_text(
        "<img src=x onerror=window.__pwned=1>"
    )
    assert [body for _, body in stored("lobby")][len(RENDERED) :] == INJECTIONS


# ------------------------------------------------------------------ the room around


def test_empty_room_says_hello_and_composer_helpers(live, new_page, make_user):
    owner = make_user("alice")
    services.create_room(owner=owner, name="Fresh", is_private=True)
    page = new_page()
    log_in(page, live, "alice")
    open_room(page, live, "fresh")
    empty = page.get_by_role("heading", name="Say hello")
    expect(empty).to_be_visible()
    expect(page.get_by_text("This room is private")).to_be_visible()
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()  # entering the room puts you in the composer

    # It grows with its text.
    height = box.bounding_box()["height"]
    box.fill("one\ntwo\nthree\nfour")
    assert box.bounding_box()["height"] > height + 20

    # A draft survives a reload.
    box.fill("a draft, half written")
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Connected")
    expect(box).to_have_value("a draft, half written")

    # Near the limit a counter; over it, a clear refusal and nothing cut or sent.
    counter = page.locator("#char-count")
    expect(counter).to_be_hidden()
    box.fill("x" * 3900)
    expect(counter).to_have_text("100 characters left")
    box.fill("y" * 4010)
    expect(counter).to_have_text("10 characters over the limit of 4000")
    box.press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("10 characters over the limit")
    expect(box).to_have_value("y" * 4010)
    assert stored("fresh") == []

    send(page, "hello, me")
    expect(empty).to_be_hidden()
    expect(page.get_by_text("This is the start of Fresh.")).to_be_visible()
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Connected")
    expect(box).to_have_value("")  # the sent message's draft is gone


def test_loading_placeholder_until_the_history_arrives(live, new_page, make_user):
    services.create_room(owner=make_user("alice"), name="Slow")
    page = new_page()
    log_in(page, live, "alice")
    held = []
    page.route_web_socket(re.compile(r"/ws/rooms/"), lambda ws: held.append(ws))
    page.goto(live.url + "/rooms/slow/")
    expect(page.get_by_text("Loading messages…")).to_be_visible()
    expect(page.get_by_role("heading", name="Say hello")).to_be_hidden()
    page.wait_for_function("() => true")  # let the route see the socket
    assert held
    held[0].send(
        '{"type": "hello", "user": "alice", "room": {"slug": "slow", "name": "Slow"}, '
        '"online": ["alice"], "last_seq": null}'
    )
    held[0].send('{"type": "history", "messages": [], "has_more": false}')
    expect(page.get_by_text("Loading messages…")).to_be_hidden()
    expect(page.get_by_role("heading", name="Say hello")).to_be_visible()


def test_directory_counts_and_ways_back(live, new_page, make_user):
    alice_user = make_user("alice")
    bob_user = make_user("bob")
    lobby = services.create_room(owner=alice_user, name="Lobby")
    services.join_room(room=lobby, user=bob_user)
    services.create_room(owner=alice_user, name="Кафе")
    services.create_room(owner=bob_user, name="日本語の部屋")
    alice = new_page()
    log_in(alice, live, "alice")
    open_room(alice, live, "lobby")

    bob = new_page()
    log_in(bob, live, "bob")
    entry = bob.locator(".room-entry").filter(has=bob.get_by_role("link", name="Lobby"))
    expect(entry).to_contain_text("2 members")
    expect(entry).to_contain_text("1 online")

    # Non-Latin names: an ASCII address, the name as typed.
    bob.get_by_role("link", name="Кафе").click()
    expect(bob).to_have_url(live.url + "/rooms/kafe/")
    expect(bob.get_by_role("heading", level=1)).to_have_text("Кафе")
    # …and back to the rooms from the room.
    bob.get_by_role("link", name="← Rooms").click()
    expect(bob).to_have_url(live.url + "/")
    bob.get_by_role("link", name="日本語の部屋").click()
    expect(bob).to_have_url(re.compile(r"/rooms/room-[0-9a-f]{8}/$"))
    expect(bob.get_by_role("heading", level=1)).to_have_text("日本語の部屋")
    bob.goto(live.url + "/rooms/new/")
    bob.get_by_label("Name").fill("Zürich Süd")
    bob.get_by_role("button", name="Create room").click()
    expect(bob).to_have_url(live.url + "/rooms/zurich-sud/")
    expect(bob.get_by_role("heading", level=1)).to_have_text("Zürich Süd")

    # A styled 404 with the site's header and a way back.
    response = bob.goto(live.url + "/rooms/no-such-room/")
    assert response.status == 404
    expect(bob.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(bob.get_by_role("link", name="Rooms", exact=True)).to_be_visible()
    bob.get_by_role("link", name="Back to the rooms").click()
    expect(bob).to_have_url(live.url + "/")
    icon = bob.evaluate("document.querySelector('link[rel=icon]').href")
    assert re.search(r"/static/chat/favicon\.[0-9a-f]{12}\.svg$", icon), icon


def test_directory_pages(live, new_page, make_user):
    owner = make_user("alice")
    for n in range(55):  # the page holds 50
        services.create_room(owner=owner, name=f"Room {n:02}")
    page = new_page()
    log_in(page, live, "alice")
    expect(page.locator(".room-entry")).to_have_count(50)
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    page.get_by_role("link", name="Next").click()
    expect(page.locator(".room-entry")).to_have_count(5)
    expect(page.locator(".room-entry").first).to_contain_text("Room 50")
    page.get_by_role("link", name="Previous").click()
    expect(page.locator(".room-entry").first).to_contain_text("Room 00")


# Text colour against the nearest opaque background behind it, as WCAG
# reckons contrast; every visible element with text of its own is checked.
CONTRAST_REPORT = """
() => {
  const rgb = (value) => value.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const value = rgb(getComputedStyle(node).backgroundColor);
      if (value.length < 4 || value[3] === 1) return value.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const node of document.querySelectorAll("body *")) {
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    const style = getComputedStyle(node);
    if (!own || !node.checkVisibility() || Number(style.opacity) < 1) continue;
    if (node.closest(".skip-link, button:disabled")) continue;
    const [a, b] = [lum(rgb(style.color).slice(0, 3)), lum(background(node))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) failures.push(`${node.tagName}.${node.className}: ${ratio.toFixed(2)}`);
  }
  return failures;
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_contrast_in_both_colour_schemes(live, new_context, make_user, scheme):
    alice_user = make_user("alice")
    bob_user = make_user("bob")
    room = services.create_room(owner=alice_user, name="Colours")
    services.join_room(room=room, user=bob_user)
    post(room, bob_user, "yesterday's", created=timezone.now() - timedelta(days=1))
    post(room, alice_user, "mine, with `code` and https://example.com")
    post(room, bob_user, "@alice **look** at *this*:\n```\nprint(1)\n```")
    services.create_room(owner=bob_user, name="Private one", is_private=True)
    page = new_context(color_scheme=scheme).new_page()
    log_in(page, live, "alice")
    Membership.objects.filter(room=room, user=alice_user).update(last_read_seq=1)
    page.reload()
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (scheme == "dark")
    assert page.evaluate(CONTRAST_REPORT) == []  # the directory, with an unread count
    open_room(page, live, "colours")
    expect(page.locator(".unread-divider:visible")).to_have_count(1)
    expect(page.locator(".mention-me")).to_have_count(1)
    # The messages' Report and Remove buttons, as they look when shown (on
    # hover, or on the message that has the keyboard).
    expect(page.get_by_role("button", name=re.compile("^(Report|Remove) message"))).to_have_count(5)
    page.evaluate(
        "document.querySelectorAll('.mod-actions, .msg-actions')"
        ".forEach((n) => n.style.opacity = 1)"
    )
    assert page.evaluate(CONTRAST_REPORT) == []
    page.goto(live.url + "/rooms/nothing-here/")
    assert page.evaluate(CONTRAST_REPORT) == []
