"""Real-browser tests: Playwright drives Debian's chromium against a live
Daphne that serves the pytest-django test database (so the tests need
`django_db(transaction=True)`: what they create is committed and visible to
the server process).

The browser and the server live for this package only: Playwright's sync API
keeps an event loop running on this thread, which must be gone before any
asyncio test elsewhere in the suite runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.servers import DaphneServer, database_url_for_tests

SKIP_REASON = "Chromium not installed: browser tests skipped (CI installs it)"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000  # for any one expected change on a page


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="package")
def chromium():
    path = chromium_path()
    if path is None:
        if os.environ.get("CHAT_REQUIRE_BROWSER") == "1":
            pytest.fail(
                "CHAT_REQUIRE_BROWSER=1 but Chromium is not installed "
                "(no /usr/bin/chromium, no `chromium` on PATH): install it, "
                "e.g. `apt-get install chromium`.",
                pytrace=False,
            )
        pytest.skip(SKIP_REASON)
    return path


class LiveServer:
    """The Daphne the browsers talk to; a test may stop it and start it again
    on the same port (the pages keep their URLs and reconnect)."""

    def __init__(self):
        self.database_url = database_url_for_tests()
        self.daphne: DaphneServer | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return bool(self.daphne and self.daphne.proc and self.daphne.proc.poll() is None)

    def start(self) -> None:
        self.daphne = DaphneServer(database_url=self.database_url, redis_url=None, port=self.port)
        self.daphne.start()
        self.port = self.daphne.port

    def stop(self) -> None:
        if self.daphne:
            self.daphne.stop()


@pytest.fixture(scope="package")
def daphne_server(chromium, django_db_setup):
    # The server runs with DEBUG off: WhiteNoise serves STATIC_ROOT only.
    call_command("collectstatic", interactive=False, verbosity=0)
    server = LiveServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live(daphne_server):
    """The live server, running (an earlier test may have left it stopped)."""
    if not daphne_server.running:
        daphne_server.start()
    return daphne_server


@pytest.fixture(scope="package")
def browser(chromium, daphne_server):
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API runs an event loop on this thread; Django would
    # take every ORM call in a test (and pytest-django's flush) for async code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def csp_violation(message) -> str | None:
    """The text of a console message that reports a Content-Security-Policy
    violation (Chromium logs each as an error), else None."""
    if message.type == "error" and "Content Security Policy" in message.text:
        return message.text
    return None


def watch(page, errors: list, violations: list) -> None:
    page.on("pageerror", lambda error: errors.append(error))
    page.on("console", lambda message: violations.append(csp_violation(message)))


@pytest.fixture
def new_context(browser):
    """new_context(**options) -> a fresh browser context (its own cookies: one
    user); options go to Playwright's browser.new_context. Every page in it
    must run without uncaught errors and without a single
    Content-Security-Policy violation."""
    contexts, errors, violations = [], [], []

    def make(**options):
        options.setdefault("viewport", {"width": 1100, "height": 720})
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.on("page", lambda page: watch(page, errors, violations))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    violations = [v for v in violations if v]
    assert not violations, f"Content-Security-Policy violations: {violations}"


@pytest.fixture
def new_page(new_context):
    """new_page() -> a page in a fresh context."""
    return lambda: new_context().new_page()
