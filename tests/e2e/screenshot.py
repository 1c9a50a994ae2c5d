"""Regenerate the README's screenshots: the room and the directory, seen by
alice, at desktop (1280x800) and phone (390x844) sizes, plus the room in dark
mode.

    .venv/bin/python -m tests.e2e.screenshot [output-directory]

Writes docs/screenshot.png (the room, desktop), docs/screenshot-directory.png,
docs/screenshot-phone.png, docs/screenshot-directory-phone.png and
docs/screenshot-dark.png. Uses a throwaway SQLite database and a live Daphne
on a free port.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-demo-password"
YESTERDAY = [
    ("bob", "Release notes are drafted: https://example.com/releases/2.4"),
    ("bob", "Anything missing? The changelog is long this time."),
    ("alice", "Looks complete. I'll read it again in the morning."),
]
TODAY = [
    ("carol", "Morning! Is the deploy going out today?"),
    ("alice", "Yes, after the migration. Run this first:"),
    ("alice", "```\npython manage.py migrate --noinput\n```"),
    ("bob", "Done on staging, **no errors**. Reconnects resumed cleanly."),
]
UNREAD = [
    ("carol", "@alice the workers restarted: nothing lost, the pages resumed with `?after=`"),
    ("bob", "Then let's call it *done*. Thanks, everyone!"),
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def main(out: Path) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="chat-screenshot-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    os.environ["CHAT_RATE_LIMIT"] = "off"
    # Playwright's sync API runs an event loop on this thread; the ORM calls
    # here are plain sync code all the same.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone
    from playwright.sync_api import expect, sync_playwright

    from chat import services
    from chat.models import Membership, Message
    from tests.e2e.conftest import CHROMIUM_ARGS, chromium_path
    from tests.servers import DaphneServer

    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    users = {
        name: get_user_model().objects.create_user(name, password=PASSWORD)
        for name in ("alice", "bob", "carol")
    }
    room = services.create_room(owner=users["alice"], name="Release day")
    for name in ("bob", "carol"):
        services.join_room(room=room, user=users[name])
    yesterday = timezone.now() - timedelta(days=1)
    for n, (name, body) in enumerate(YESTERDAY):
        message = services.store_message(room=room, author=users[name], body=body, client_id=None)
        Message.objects.filter(pk=message.message.pk).update(
            created=yesterday + timedelta(minutes=n * 2)
        )
    for name, body in TODAY:
        services.store_message(room=room, author=users[name], body=body, client_id=None)
    read_upto = services.store_message(
        room=room, author=users["carol"], body="Great, thanks both.", client_id=None
    ).message.seq
    for name, body in UNREAD:
        services.store_message(room=room, author=users[name], body=body, client_id=None)
    services.advance_read_position(room=room, user=users["alice"], seq=read_upto)
    # The directory: rooms with people, unread messages and a non-Latin name.
    for name, owner, private, chatter in [
        ("Lobby", "bob", False, 3),
        ("Design reviews", "carol", False, 0),
        ("Кафе", "bob", False, 1),
        ("Ops on call", "alice", True, 0),
    ]:
        other = services.create_room(owner=users[owner], name=name, is_private=private)
        services.join_room(room=other, user=users["alice"])
        for n in range(chatter):
            services.store_message(
                room=other, author=users[owner], body=f"note {n}", client_id=None
            )

    server = DaphneServer(database_url=os.environ["DATABASE_URL"], redis_url=None).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS
            )

            def page_for(name, viewport, **options):
                context = browser.new_context(viewport=viewport, locale="en-US", **options)
                page = context.new_page()
                page.goto(server.http + "/accounts/login/")
                page.get_by_label("Username").fill(name)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                expect(page.get_by_role("heading", name="Rooms", level=1)).to_be_visible()
                return page

            def open_room(page):
                page.goto(server.http + "/rooms/release-day/")
                expect(page.get_by_role("status")).to_have_text("Connected")

            bob = page_for("bob", DESKTOP)
            open_room(bob)
            shots = [
                ("screenshot.png", DESKTOP, {}),
                ("screenshot-phone.png", PHONE, {"is_mobile": True, "has_touch": True}),
                ("screenshot-dark.png", DESKTOP, {"color_scheme": "dark"}),
            ]
            for filename, viewport, options in shots:
                # Each look starts with the last two messages unread.
                Membership.objects.filter(room=room, user=users["alice"]).update(
                    last_read_seq=read_upto
                )
                alice = page_for("alice", viewport, **options)
                if filename == "screenshot.png":
                    alice.screenshot(path=str(out / "screenshot-directory.png"))
                if filename == "screenshot-phone.png":
                    alice.screenshot(path=str(out / "screenshot-directory-phone.png"))
                open_room(alice)
                bob.get_by_role("textbox", name="Message").press_sequentially(
                    "Agreed, ship it", delay=100
                )
                expect(alice.locator("#typing")).to_have_text("bob is typing…")
                alice.screenshot(path=str(out / filename))
                bob.get_by_role("textbox", name="Message").fill("")
                alice.context.close()
            browser.close()
    finally:
        server.stop()
    for path in sorted(out.glob("screenshot*.png")):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")
