"""Accessibility in a real browser: axe-core finds no serious or critical
violation on any page (in the light and the dark scheme), the room can be
used with the keyboard alone, and what a screen reader hears is what
changed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chat import services
from chat.models import Membership, Message, ModerationLog, Report, Room
from tests.e2e.audit import AUDITED_CONTEXT, violations
from tests.e2e.pages import enter_room, log_in, off_loop, open_room, send

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def no_rate_limit_here(settings):
    settings.CHAT_RATE_LIMIT = None


@pytest.fixture
def busy_room(make_user):
    """Alice (staff) owns "Lobby" with 41 messages by her and bob (one
    reported, one removed) and carol, muted; and a private room."""
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
    carol = make_user("carol")
    services.join_room(room=room, user=carol)
    off_loop(services.mute_user, room=room, user=carol, actor=alice, reason="cool down")
    private = services.create_room(owner=alice, name="Private plans", is_private=True)
    off_loop(services.set_topic, room=room, actor=alice, topic="Everything and nothing")
    services.create_invite(room=private, actor=alice)
    services.start_direct(user=alice, username="bob")
    return room


PAGES = [
    "/",
    "/rooms/new/",
    "/rooms/lobby/",
    "/rooms/nothing-here/",
    "/rooms/private-plans/settings/",
    "/rooms/lobby/settings/",  # with members to hand the room over to
    "/rooms/{direct}/",
    "/dm/",
    "/dm/carol/",
    "/invite/no-such-token/",
    "/admin/",
    "/admin/chat/room/",
    "/admin/chat/membership/",
    "/admin/chat/message/",
    "/admin/chat/report/",
    "/admin/chat/report/?status=all",
    "/admin/chat/moderationlog/",
    "/admin/auth/user/",
    # Change and view forms: {room}, {membership}, {entry} and {report} are
    # the busy room's, a membership in it, a log entry and the report.
    "/admin/chat/room/{room}/change/",
    "/admin/chat/membership/{membership}/change/",
    "/admin/chat/moderationlog/{entry}/change/",
    "/admin/chat/report/{report}/change/",
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_on_any_page(live, new_context, busy_room, scheme):
    page = new_context(color_scheme=scheme, **AUDITED_CONTEXT).new_page()
    ids = {
        "room": busy_room.pk,
        "membership": Membership.objects.filter(room=busy_room).first().pk,
        "entry": ModerationLog.objects.first().pk,
        "report": Report.objects.get().pk,
        "direct": Room.objects.get(kind="direct").slug,
    }
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
            page.goto(live.url + path.format(**ids))
            assert page.title() and "Not Found" not in page.title(), path
        found[path] = violations(page)
    for path, lines in found.items():
        print(f"{path}: {len(lines)}")
        for line in lines:
            print("   ", line)
    assert {path: lines for path, lines in found.items() if lines} == {}


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


@pytest.mark.parametrize(
    "look", [{"color_scheme": "light", **DESKTOP}, {"color_scheme": "dark", **PHONE}]
)
def test_axe_finds_no_serious_violation_in_the_room_in_use(live, new_context, busy_room, look):
    """The states a person brings about: a message with the keyboard on it
    (its actions showing), the members dialog, the mute dialog over it, a
    removed message's placeholder, and the muted member's banner."""
    alice = new_context(**look, **AUDITED_CONTEXT).new_page()
    carol = new_context(**look, **AUDITED_CONTEXT).new_page()
    enter_room(carol, live, "carol", "lobby")
    enter_room(alice, live, "alice", "lobby")
    found = {}
    messages = alice.get_by_role("log").locator(".message")
    messages.last.focus()
    alice.keyboard.press("ArrowUp")
    found["a focused message"] = violations(alice)

    messages.last.locator(".body").click()  # selected: on a phone that shows its actions
    messages.last.get_by_role("button", name="Remove message from alice").click()
    alice.locator("#mod-dialog").get_by_role("button", name="Remove", exact=True).click()
    expect(alice.locator(".removed-note")).to_have_count(1)
    found["a removed message"] = violations(alice)

    alice.get_by_role("button", name="Manage members").click()
    dialog = alice.get_by_role("dialog", name="Members of Lobby")
    expect(dialog.locator(".member-name")).to_have_text(["alice", "carol", "bob"])
    found["the members dialog"] = violations(alice)
    dialog.get_by_role("group", name="bob").get_by_role("button", name="Mute").click()
    expect(alice.locator("#mod-dialog")).to_be_visible()
    found["the mute dialog"] = violations(alice)

    expect(carol.locator(".mute-banner")).to_be_visible()
    found["the muted member's page"] = violations(carol)
    assert {state: lines for state, lines in found.items() if lines} == {}


# ------------------------------------------------------------------ keyboard


def focused(page) -> str:
    """What has the keyboard: a message's text, or a control's name."""
    return page.evaluate(
        """() => {
          const node = document.activeElement;
          if (node.matches("li.message")) {
            return "message: " + node.querySelector(".body, .removed-note").textContent;
          }
          const name = node.getAttribute("aria-label") || node.textContent.trim() || node.id;
          return `${node.tagName.toLowerCase()}: ${name}`;
        }"""
    )


def test_the_composer_is_a_few_tab_presses_from_the_top(live, new_page, busy_room):
    page = new_page()
    log_in(page, live, "alice")
    open_room(page, live, "lobby")
    expect(page.get_by_role("log").locator(".message")).to_have_count(40)  # 41, one removed
    composer = page.get_by_role("textbox", name="Message")

    # From the top of the page, as a keyboard user arrives.
    page.locator(".skip-link").first.focus()
    stops = [focused(page)]
    while not composer.evaluate("(node) => node === document.activeElement"):
        assert len(stops) < 30, stops
        page.keyboard.press("Tab")
        stops.append(focused(page))
    # The 40 messages are one stop, plus the actions of the one it is on
    # (Reply, React, and Report or Edit and Delete).
    assert [stop for stop in stops if stop.startswith("message:")] == ["message: message 40"]
    # The header (search, rooms, admin, log out), the room's header, and the
    # focused message's five actions (Reply, React, Edit, Delete, Remove):
    # the skip link below is the short way.
    assert len(stops) <= 18, stops

    # Or at once, through the skip link.
    page.locator(".skip-link").first.focus()
    skip = page.get_by_role("link", name="Skip to the message box")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(composer).to_be_focused()


def test_arrow_keys_move_between_messages_and_tab_reaches_their_actions(live, new_page, busy_room):
    page, bob = new_page(), new_page()
    enter_room(bob, live, "bob", "lobby")
    enter_room(page, live, "alice", "lobby")
    messages = page.get_by_role("log").locator(".message")
    expect(messages).to_have_count(40)
    composer = page.get_by_role("textbox", name="Message")
    composer.press("Shift+Tab")  # from the message box back into the list
    while not focused(page).startswith("message:"):
        page.keyboard.press("Shift+Tab")
    assert focused(page) == "message: message 40"
    page.keyboard.press("ArrowUp")
    assert focused(page) == "message: message 39"
    page.keyboard.press("ArrowUp")
    assert focused(page) == "message: message 38"
    page.keyboard.press("ArrowDown")
    assert focused(page) == "message: message 39"
    page.keyboard.press("Home")
    assert focused(page) == "message: message 0"
    expect(messages.first).to_be_in_viewport()
    page.keyboard.press("PageDown")
    assert focused(page) == "message: message 11"  # ten on: message 6 was removed
    page.keyboard.press("End")
    assert focused(page) == "message: message 40"
    page.keyboard.press("ArrowUp")

    # The focused message's actions are the next stops, and only its own.
    page.keyboard.press("Tab")
    assert focused(page) == "button: Reply to bob"  # message 39 is bob's
    page.keyboard.press("Tab")
    assert focused(page) == "button: React to bob's message"
    page.keyboard.press("Tab")
    assert focused(page) == "button: Report message from bob"
    report = messages.nth(38).get_by_role("button", name="Report message from bob")
    expect(report).to_be_focused()
    expect(report).to_have_css("opacity", "1")
    page.keyboard.press("Tab")
    assert focused(page) == "button: Remove message from bob"
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused(page) == "button: Remove message from bob"
    page.keyboard.press("ArrowUp")  # from an action, too
    assert focused(page) == "message: message 38"

    # A message that comes now leaves the reader where they are…
    send(bob, "news")
    expect(messages.last.locator(".body")).to_have_text("news")
    assert focused(page) == "message: message 38"
    page.keyboard.press("Escape")
    expect(composer).to_be_focused()
    # …and Shift+Tab goes back to the message they were on (its action first).
    back = []
    for _ in range(6):
        page.keyboard.press("Shift+Tab")
        back.append(focused(page))
    assert back == [
        "button: Remove message from alice",
        "button: Delete your message",
        "button: Edit your message",
        "button: React to alice's message",
        "button: Reply to alice",
        "message: message 38",
    ]
    page.keyboard.press("End")
    page.keyboard.press("Escape")
    send(bob, "more news")
    expect(messages.last.locator(".body")).to_have_text("more news")
    # At the newest message, the stop follows the newest.
    composer.press("Shift+Tab")
    assert focused(page) == "button: Remove message from bob"
    for _ in range(4):  # Report, React, Reply
        page.keyboard.press("Shift+Tab")
    assert focused(page) == "message: more news"


# ------------------------------------------------------------------ what is heard

# Records every text added to a live region (what a screen reader would
# read out), and every text the status line shows, from the page's start.
LIVE_RECORDER = """
window.__heard = [];
window.__status = [];
window.__countdown = new Set();
const live = (node) => {
  for (; node && node.nodeType === 1; node = node.parentElement) {
    const politeness = node.getAttribute("aria-live");
    if (politeness) return politeness !== "off";
    if (["status", "alert", "log"].includes(node.getAttribute("role"))) return true;
  }
  return false;
};
new MutationObserver((records) => {
  for (const record of records) {
    const target = record.target.nodeType === 1 ? record.target : record.target.parentElement;
    if (target?.closest("#connection")) {
      const text = document.getElementById("connection").textContent;
      if (window.__status.at(-1) !== text) window.__status.push(text);
    }
    if (target?.closest("#reconnect-in")) window.__countdown.add(target.textContent);
    if (!live(target)) continue;
    const added = record.type === "characterData" ? [record.target] : [...record.addedNodes];
    for (const node of added) if (node.textContent.trim()) window.__heard.push(node.textContent);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def test_history_is_not_read_out_and_new_messages_are(live, new_context, make_user):
    alice_user = make_user("alice")
    bob_user = make_user("bob")
    room = services.create_room(owner=alice_user, name="Lobby")
    services.join_room(room=room, user=bob_user)
    for n in range(60):
        services.store_message(room=room, author=bob_user, body=f"old {n}", client_id=None)
    context = new_context()
    context.add_init_script(LIVE_RECORDER)
    alice, bob = context.new_page(), new_context().new_page()
    enter_room(alice, live, "alice", "lobby")
    enter_room(bob, live, "bob", "lobby")
    messages = alice.get_by_role("log").locator(".message")
    expect(messages).to_have_count(50)
    messages.last.focus()
    alice.keyboard.press("Home")  # to the oldest shown: the page loads the older ones
    expect(messages).to_have_count(60)

    send(bob, "hello **there**")
    send(alice, "hi bob")
    expect(messages.last.locator(".body")).to_have_text("hi bob")
    expect(alice.locator("#announcer")).to_have_text("bob said: hello there")
    heard = alice.evaluate("window.__heard")
    assert [text for text in heard if "old" in text] == []  # no history, ever
    assert "bob said: hello there" in heard
    assert not [text for text in heard if "hi bob" in text]  # nor your own messages


def test_the_status_line_says_changes_of_state_only(live, new_context, make_user):
    services.create_room(owner=make_user("alice"), name="Lobby")
    context = new_context()
    context.add_init_script(LIVE_RECORDER)
    page = context.new_page()
    log_in(page, live, "alice")
    open_room(page, live, "lobby")
    live.stop()
    # A few reconnect attempts, the countdown running beside the status…
    page.wait_for_function("() => window.__countdown.size >= 3", timeout=15_000)
    live.start()
    expect(page.get_by_role("status")).to_have_text("Connected", timeout=20_000)
    expect(page.locator("#reconnect-in")).to_have_text("")
    # …and the status itself said each state once.
    assert page.evaluate("window.__status") == [
        "Connecting…",  # as the page is parsed
        "Connected",
        "Reconnecting…",
        "Connected",
    ]
    assert page.locator("#reconnect-in").get_attribute("aria-hidden") == "true"
