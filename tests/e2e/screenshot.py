"""Regenerate docs/screenshot.png: two people chatting, seen by one of them.

    .venv/bin/python -m tests.e2e.screenshot [output.png]

Uses a throwaway SQLite database and a live Daphne on a free port.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONVERSATION = [
    ("alice", "Morning! Did the deploy go out?"),
    ("bob", "Yes, 09:12. Reconnects resumed cleanly on every worker."),
    ("alice", "Nice. Any messages lost while the workers restarted?"),
    ("bob", "None: the page resumed with ?after=<last seq> and the server filled the gap."),
    ("alice", "Then let's call it done. Thanks!"),
]


def main(output: Path) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="chat-screenshot-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from playwright.sync_api import expect, sync_playwright

    from chat import services
    from tests.e2e.conftest import CHROMIUM_ARGS, chromium_path
    from tests.servers import DaphneServer

    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    users = get_user_model().objects
    alice = users.create_user("alice", password="a-long-demo-password")
    users.create_user("bob", password="a-long-demo-password")
    services.create_room(owner=alice, name="Release day")
    server = DaphneServer(database_url=os.environ["DATABASE_URL"], redis_url=None).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS
            )
            pages = {}
            for name in ("alice", "bob"):
                context = browser.new_context(viewport={"width": 1000, "height": 620})
                page = context.new_page()
                page.goto(server.http + "/accounts/login/")
                page.get_by_label("Username").fill(name)
                page.get_by_label("Password").fill("a-long-demo-password")
                page.get_by_role("button", name="Log in").click()
                page.goto(server.http + "/rooms/release-day/")
                expect(page.get_by_role("status")).to_have_text("Connected")
                pages[name] = page
            for count, (name, text) in enumerate(CONVERSATION, start=1):
                box = pages[name].get_by_role("textbox", name="Message")
                box.fill(text)
                box.press("Enter")
                expect(pages["alice"].get_by_role("log").locator(".body")).to_have_count(count)
            pages["bob"].get_by_role("textbox", name="Message").press_sequentially(
                "Agreed, ship it", delay=150
            )
            expect(pages["alice"].locator("#typing")).to_have_text("bob is typing…")
            pages["alice"].screenshot(path=str(output))
            browser.close()
    finally:
        server.stop()
    print(f"wrote {output} ({output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshot.png")
