"""The room page in a real browser, against a live Daphne (and, for the
refusals that a live server will not produce on demand, a scripted socket)."""

from __future__ import annotations

import json
import re
import uuid
from contextlib import contextmanager

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect
from websockets.sync.client import connect as ws_connect

from chat import services
from chat.models import Message, Room
from tests.e2e.pages import bodies, log_in, open_room, send, stored

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class PyClient:
    """A second client, from Python."""

    def __init__(self, conn):
        self.conn = conn

    def expect(self, kind, timeout=10):
        while True:
            frame = json.loads(self.conn.recv(timeout=timeout))
            if frame["type"] == kind:
                return frame

    def send(self, body):
        frame = {"type": "message.send", "body": body, "client_id": str(uuid.uuid4())}
        self.conn.send(json.dumps(frame))


@contextmanager
def python_client(live, context, slug):
    """A socket with the session cookie of a browser context and the page's Origin."""
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "sessionid")
    with ws_connect(
        f"{live.ws}/ws/rooms/{slug}/",
        origin=live.url,
        additional_headers={"Cookie": f"sessionid={cookie}"},
        proxy=None,
        open_timeout=10,
    ) as conn:
        client = PyClient(conn)
        client.expect("hello")
        client.expect("history")
        yield client


# ------------------------------------------------------------------ live server


def test_two_users_chat_live(live, new_page, make_user):
    make_user("alice")
    make_user("bob")
    alice, bob = new_page(), new_page()
    log_in(alice, live, "alice")
    log_in(bob, live, "bob")

    # Alice creates the room through the directory form and lands in it.
    alice.get_by_label("Name").fill("Lobby")
    alice.get_by_role("button", name="Create room").click()
    expect(alice).to_have_url(live.url + "/rooms/lobby/")
    expect(alice.get_by_role("status")).to_have_text("Connected")
    bob.reload()
    bob.get_by_role("link", name="Lobby").click()
    expect(bob.get_by_role("status")).to_have_text("Connected")

    for page in (alice, bob):
        expect(page.get_by_label("Online").get_by_role("listitem")).to_have_text(["alice", "bob"])

    # Typing reaches the other side, never your own.
    alice.get_by_role("textbox", name="Message").press_sequentially("Hel")
    expect(bob.locator("#typing")).to_have_text("alice is typing…")
    expect(alice.locator("#typing")).to_have_text("")

    send(alice, "Hello Bob")  # Enter
    expect(bob.get_by_role("log").get_by_text("Hello Bob", exact=True)).to_be_visible()
    expect(bob.locator("#typing")).to_have_text("")  # her message ends her typing
    markup = '<img src=x onerror="document.title=1"> & <b>bold</b>'
    send(bob, markup, button=True)
    send(bob, "line one\nline two")

    expected = ["Hello Bob", markup, "line one\nline two"]
    for page in (alice, bob):
        expect(bodies(page)).to_have_text(expected)
        expect(page.get_by_role("log").locator(".pending")).to_have_count(0)
        expect(page.get_by_role("log").locator("img, b")).to_have_count(0)  # text, not markup
        first = page.get_by_role("log").locator(".message").first
        expect(first.locator(".author")).to_have_text("alice")
        expect(first.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-"))
        expect(first.locator("time")).to_have_text(re.compile(r"\d"))

    assert stored("lobby") == [("alice", "Hello Bob"), ("bob", markup), ("bob", expected[2])]

    # Bob leaves: Alice's online list follows.
    bob.close()
    expect(alice.get_by_label("Online").get_by_role("listitem")).to_have_text(["alice"])


def test_reconnect_resumes_without_gaps_or_duplicates(live, new_context, make_user):
    alice_user = make_user("alice")
    make_user("bob")
    services.create_room(owner=alice_user, name="Resume")
    alice_context, bob_context = new_context(), new_context()
    alice, bob = alice_context.new_page(), bob_context.new_page()
    sockets = []
    alice.on("websocket", lambda ws: sockets.append(ws.url))
    log_in(alice, live, "alice")
    log_in(bob, live, "bob")
    bob.close()  # Bob talks from Python, with his browser's session
    open_room(alice, live, "resume")

    with python_client(live, bob_context, "resume") as other:
        for n in range(1, 4):
            other.send(f"before {n}")
            other.expect("ack")
    expect(bodies(alice)).to_have_text(["before 1", "before 2", "before 3"])

    live.stop()
    expect(alice.get_by_role("status")).to_have_text("Reconnecting…")
    expect(alice.locator("#reconnect-in")).to_have_text(re.compile(r"^in \d+ s$"))
    send(alice, "typed while offline")
    expect(alice.get_by_role("log").locator(".pending")).to_have_count(1)

    # Alice stays cut off until Bob has said more: she must fetch that by resuming.
    alice_context.set_offline(True)
    live.start()  # the same port: the page keeps its URL
    with python_client(live, bob_context, "resume") as other:
        for n in range(1, 6):
            other.send(f"after {n}")
        for _ in range(5):
            other.expect("ack")
        expect(bodies(alice)).to_have_text(
            ["before 1", "before 2", "before 3", "typed while offline"]
        )
        alice_context.set_offline(False)
        # …and these race her reconnect: live, in her resume, or both.
        for n in range(6, 11):
            other.send(f"after {n}")
        for _ in range(5):
            other.expect("ack")

    expect(alice.get_by_role("status")).to_have_text("Connected")
    # The re-sent message is stored once its ack arrives.
    expect(alice.get_by_role("log").locator(".pending")).to_have_count(0)
    messages = stored("resume")
    assert messages.count(("alice", "typed while offline")) == 1
    assert len(messages) == 14
    # Every message once, in seq order, the offline one confirmed.
    expect(bodies(alice)).to_have_text([body for _, body in messages])
    expect(alice.get_by_role("log").locator(".pending")).to_have_count(0)
    last_seq = Message.objects.filter(room__slug="resume").order_by("-seq").first().seq
    assert alice.evaluate("window.chat.lastSeq") == last_seq
    assert any("?after=3" in url for url in sockets), sockets  # resumed, not reloaded


def test_signup_then_logout_ends_the_other_tabs_socket(live, new_context):
    context = new_context()
    page = context.new_page()
    page.goto(live.url + "/accounts/signup/")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password", exact=True).fill("a-fine-long-passphrase")
    page.get_by_label("Password confirmation").fill("a-fine-long-passphrase")
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(live.url + "/")
    expect(page.get_by_role("heading", name="Rooms", level=1)).to_be_visible()

    page.get_by_label("Name").fill("Carol's corner")
    page.get_by_role("button", name="Create room").click()
    expect(page).to_have_url(live.url + "/rooms/carols-corner/")
    expect(page.get_by_role("status")).to_have_text("Connected")

    other_tab = context.new_page()
    other_tab.goto(live.url + "/")
    other_tab.get_by_role("button", name="Log out").click()
    expect(other_tab).to_have_url(re.compile(r"/accounts/login/"))

    status = page.get_by_role("status")
    expect(status).to_have_text("Your session ended — log in again")
    expect(status.get_by_role("link", name="log in again")).to_have_attribute(
        "href", re.compile(r"^/accounts/login/")
    )
    expect(page.get_by_role("textbox", name="Message")).to_be_disabled()
    with pytest.raises(PlaywrightTimeout):  # 4401 is final: no reconnect
        page.wait_for_event("websocket", timeout=1500)


def test_scrolling_up_loads_older_messages(live, new_page, make_user):
    alice = make_user("alice")
    room = services.create_room(owner=alice, name="Archive")
    Message.objects.bulk_create(
        Message(room=room, seq=n, author=alice, body=f"old {n}") for n in range(1, 121)
    )
    Room.objects.filter(pk=room.pk).update(last_seq=120)
    page = new_page()
    log_in(page, live, "alice")
    open_room(page, live, "archive")

    log = page.get_by_role("log")
    expect(bodies(page)).to_have_count(50)
    expect(bodies(page).last).to_have_text("old 120")
    expect(bodies(page).last).to_be_in_viewport()  # opened at the bottom
    start = page.get_by_text("This is the start of Archive.")
    expect(start).to_be_hidden()  # older messages exist
    for shown in (100, 120):
        log.hover()
        page.mouse.wheel(0, -100_000)
        expect(bodies(page)).to_have_count(shown)
    expect(bodies(page)).to_have_text([f"old {n}" for n in range(1, 121)])
    expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()
    expect(start).to_be_visible()  # scroll-back reached the first message


# ------------------------------------------------------------------ scripted socket


class ScriptedRoom:
    """Stands in for the server's socket (page.route_web_socket): sends hello
    and history, records what the page sends, answers as a test tells it."""

    def __init__(self, page, me="alice"):
        self.me = me
        self.sent = []
        self.urls = []
        self.socket = None
        self.on_send = lambda frame: None
        page.route_web_socket(re.compile(r"/ws/rooms/"), self.connected)

    def connected(self, ws):
        self.socket = ws
        self.urls.append(ws.url)
        ws.on_message(self.received)
        self.push("hello", user=self.me, room={"slug": "lobby", "name": "Lobby"}, online=[self.me])
        self.push("history", messages=[], has_more=False)

    def received(self, text):
        frame = json.loads(text)
        self.sent.append(frame)
        if frame["type"] == "message.send":
            self.on_send(frame)

    def push(self, kind, **fields):
        self.socket.send(json.dumps({"type": kind, **fields}))

    def sends(self):
        return [f for f in self.sent if f["type"] == "message.send"]


def message(seq, body, user="bob", client_id=None):
    return {
        "id": 1000 + seq,
        "seq": seq,
        "room": "lobby",
        "user": user,
        "body": body,
        "created": "2030-01-02T03:04:05.000Z",
        "client_id": client_id,
    }


@pytest.fixture
def scripted(live, new_page, make_user):
    """A logged-in page in room "lobby" whose socket is scripted."""
    alice = make_user("alice")
    services.create_room(owner=alice, name="Lobby")
    page = new_page()
    log_in(page, live, "alice")
    room = ScriptedRoom(page)
    open_room(page, live, "lobby")
    return page, room


def test_each_message_shown_once_in_seq_order(scripted):
    page, room = scripted
    room.push("messages", messages=[message(2, "two"), message(4, "four")])
    room.push("message", message=message(3, "three"))
    room.push("message", message=message(2, "two"))  # a repeat
    expect(bodies(page)).to_have_text(["two", "three", "four"])

    # Our send: pending, then the broadcast comes before the ack.
    room.on_send = lambda f: (
        room.push("message", message=message(5, f["body"], "alice", f["client_id"])),
        room.push("ack", client_id=f["client_id"], id=1005, seq=5),
    )
    send(page, "mine")
    expect(bodies(page)).to_have_text(["two", "three", "four", "mine"])
    expect(page.get_by_role("log").locator(".pending")).to_have_count(0)

    # The ack first, then the broadcast: still once.
    room.on_send = lambda f: (
        room.push("ack", client_id=f["client_id"], id=1006, seq=6),
        room.push("message", message=message(6, f["body"], "alice", f["client_id"])),
    )
    send(page, "mine again", button=True)
    room.push("message", message=message(7, "seven"))
    expect(bodies(page)).to_have_text(["two", "three", "four", "mine", "mine again", "seven"])

    room.push("message.deleted", id=1003, seq=3)
    room.push("typing", user="alice")  # our own other tab: not shown
    room.push("typing", user="bob")
    expect(bodies(page)).to_have_text(["two", "four", "mine", "mine again", "seven"])
    expect(page.locator("#typing")).to_have_text("bob is typing…")
    expect(page.locator("#typing")).to_have_text("", timeout=5000)  # fades after ~3 s
    page.get_by_role("textbox", name="Message").fill("   \n ")
    page.get_by_role("button", name="Send").click()
    assert len(room.sends()) == 2  # whitespace is not sent
    assert page.evaluate("window.chat.lastSeq") == 7


def test_refusals_rate_limit_mute_and_lost_access(scripted):
    page, room = scripted
    box = page.get_by_role("textbox", name="Message")

    def limited_once(frame):
        if len(room.sends()) == 1:
            room.push("error", code="rate_limited", detail="Too many messages.", retry_after=1.0)
        else:
            room.push("ack", client_id=frame["client_id"], id=1001, seq=1)

    room.on_send = limited_once
    send(page, "patience")
    expect(page.locator("#composer-error")).to_have_text("Too many messages.")
    expect(page.get_by_role("log").locator(".pending")).to_have_count(0)  # retried, acked
    expect(page.locator("#composer-error")).to_have_text("")  # and the error went with it
    first, retry = room.sends()
    assert first["client_id"] == retry["client_id"] and retry["body"] == "patience"

    until = "2030-01-02T03:04:05.000Z"
    room.on_send = lambda f: room.push(
        "error", code="muted", detail=f"You are muted in this room until {until}.", until=until
    )
    box.fill("let me speak")
    box.press("Enter")
    # Said in the reader's own time, not as the UTC timestamp of the detail.
    local = page.evaluate(
        "(t) => new Date(t).toLocaleString(undefined, {hour: '2-digit', minute: '2-digit'})",
        until,
    )
    expect(page.locator("#composer-error")).to_have_text(
        re.compile(rf"^Not sent: You are muted in this room until .*{re.escape(local)}\.$")
    )
    expect(page.locator(".mute-banner")).to_contain_text(local)
    expect(bodies(page)).to_have_text(["patience"])  # the refused one is dropped…
    expect(box).to_have_value("let me speak")  # …and its text given back
    assert len(room.sends()) == 3

    room.socket.close(code=4403, reason="")
    expect(page.get_by_role("status")).to_have_text("You no longer have access to this room")
    expect(box).to_be_disabled()
    with pytest.raises(PlaywrightTimeout):  # 4403 is final: no reconnect
        page.wait_for_event("websocket", timeout=1500)


def test_unanswered_sends_go_again_after_a_reconnect(scripted):
    page, room = scripted
    pending = page.get_by_role("log").locator(".pending")
    # Answered by its broadcast alone (no ack): settled all the same.
    room.on_send = lambda f: room.push(
        "message", message=message(1, f["body"], "alice", f["client_id"])
    )
    send(page, "answered")
    expect(pending).to_have_count(0)
    room.on_send = lambda f: None  # lost with the connection
    send(page, "unanswered")
    expect(pending).to_have_count(1)

    room.on_send = lambda f: room.push("ack", client_id=f["client_id"], id=1002, seq=2)
    room.socket.close(code=4000, reason="")
    expect(pending).to_have_count(0)
    expect(bodies(page)).to_have_text(["answered", "unanswered"])
    first, lost, again = room.sends()
    assert [first["body"], lost["body"], again["body"]] == ["answered", "unanswered", "unanswered"]
    assert again["client_id"] == lost["client_id"]
    # (and follows changes: `changes=` with the last change number it saw)
    assert re.search(r"/ws/rooms/lobby/\?after=1&changes=\d*$", room.urls[-1]), room.urls
