"""Search in a real browser against a live Daphne: a person searches from
the header, sees the match highlighted (and a message's markup as text),
follows the result and lands on the message in its room, focused, with the
messages before it loaded, then reads on to the newest."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chat import services
from tests.e2e.audit import AUDITED_CONTEXT, violations
from tests.e2e.pages import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_search_highlights_and_jumps_to_the_message_in_context(live, new_page, make_user):
    alice = make_user("alice")
    room = services.create_room(owner=alice, name="Lobby")
    for n in range(1, 151):
        body = f"filler {n}"
        if n == 20:
            body = "the needle <script>window.pwned = 1</script> is here"
        services.store_message(room=room, author=alice, body=body, client_id=None)
    page = new_page()
    log_in(page, live, "alice")

    search = page.get_by_role("search", name="Messages")
    search.get_by_role("searchbox", name="Search messages").fill("needl")
    search.get_by_role("button", name="Search").click()

    results = page.get_by_role("list").filter(has=page.locator(".hit"))
    expect(results.get_by_role("listitem")).to_have_count(1)
    hit = results.get_by_role("listitem").first
    expect(hit.locator("mark")).to_have_text("needle")
    expect(hit.locator(".hit-excerpt")).to_have_text(
        "the needle <script>window.pwned = 1</script> is here"
    )
    assert page.evaluate("window.pwned") is None

    hit.get_by_role("link", name=re.compile("^Show in Lobby")).click()
    expect(page).to_have_url(re.compile(r"/rooms/lobby/\?at=20$"))
    log = page.get_by_role("log")
    target = log.locator(".message.search-target")
    expect(target).to_contain_text("the needle <script>window.pwned = 1</script> is here")
    expect(target).to_be_focused()
    expect(target).to_be_in_viewport()
    # The messages before it are there, and the page can go further back.
    expect(log.get_by_text("filler 19", exact=True)).to_have_count(1)
    expect(log.get_by_text("filler 1", exact=True)).to_have_count(1)
    # Only the stretch around it: the newest messages come when asked for.
    expect(log.get_by_text("filler 150", exact=True)).to_have_count(0)
    expect(page.get_by_text("You are reading older messages")).to_be_visible()
    expect(page.get_by_role("button", name="Show newer messages")).to_be_visible()
    # Newer pages come with the button (or scrolling to the bottom, which a
    # click may race with: the click and the look are one step in the page).
    for _ in range(10):
        count, done = page.evaluate(
            """() => {
              const items = document.querySelectorAll("#messages .message");
              const last = items[items.length - 1];
              const done = last.querySelector(".body").textContent === "filler 150";
              if (!done) document.getElementById("load-newer").click();
              return [items.length, done];
            }"""
        )
        if done:
            break
        expect(log.locator(".message")).not_to_have_count(count)
    expect(log.get_by_text("filler 150", exact=True)).to_have_count(1)
    expect(page.get_by_text("You are reading older messages")).to_be_hidden()
    seqs = log.locator(".message").evaluate_all("items => items.map(i => Number(i.dataset.seq))")
    assert seqs == list(range(1, 151))
    assert page.evaluate("window.pwned") is None


@pytest.mark.parametrize(
    "viewport", [{"width": 1100, "height": 720}, {"width": 375, "height": 700}]
)
def test_the_results_page_passes_the_audit_and_fits_a_phone(live, new_context, make_user, viewport):
    alice = make_user("alice")
    room = services.create_room(owner=alice, name="Lobby")
    services.store_message(room=room, author=alice, body="audit me " * 40, client_id=None)
    page = new_context(viewport=viewport, **AUDITED_CONTEXT).new_page()
    log_in(page, live, "alice")
    page.goto(f"{live.url}/search/?q=audit")
    expect(page.locator(".hit mark").first).to_have_text("audit")
    assert violations(page) == []
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"]
    page.get_by_label("Words to find").fill("")
    page.get_by_label("Words to find").press("Enter")  # required: the browser keeps it
    expect(page).to_have_url(re.compile(r"\?q=audit$"))
