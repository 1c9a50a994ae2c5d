"""A person at a browser, over plain HTTP: cookies, CSRF tokens and forms."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from tests.cluster.clients import Member

TIMEOUT = 30  # seconds for one request (a password hash takes a while under load)


@dataclass
class Page:
    status: int
    url: str
    text: str


class Browser:
    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def request(self, path: str, data: dict | None = None, headers: dict | None = None) -> Page:
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=TIMEOUT) as response:
                return Page(response.status, response.url, response.read().decode())
        except urllib.error.HTTPError as error:
            return Page(error.code, error.url, error.read().decode(errors="replace"))

    def submit(self, path: str, fields: dict) -> Page:
        """Load the form's page, then post `fields` with its CSRF token, the way
        a browser does; redirects are followed."""
        form = self.request(path)
        assert form.status == 200, f"GET {path}: {form.status}\n{form.text[:500]}"
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, f"no CSRF token on {path}"
        return self.request(path, {"csrfmiddlewaretoken": token[1], **fields})


@dataclass
class Person:
    name: str
    password: str
    browser: Browser

    @property
    def member(self) -> Member:
        """The chat clients' view of a logged-in user: a name and a session."""
        return Member(user=None, name=self.name, cookie=self.browser.cookie("sessionid"))

    def create_room(self, name: str) -> str:
        page = self.browser.submit("/rooms/new/", {"name": name})
        match = re.search(r"/rooms/([a-z0-9-]+)/$", page.url)
        assert page.status == 200 and match, f"room not created: {page.status} {page.url}"
        return match[1]


def sign_up(base: str, name: str, password: str) -> Person:
    """Sign up through the form; the account is logged in at once."""
    browser = Browser(base)
    page = browser.submit(
        "/accounts/signup/", {"username": name, "password1": password, "password2": password}
    )
    assert page.status == 200 and page.url.endswith("/"), f"sign-up failed: {page.url}"
    assert browser.cookie("sessionid"), "signed up but not logged in"
    return Person(name, password, browser)


def log_in(base: str, name: str, password: str, path: str = "/accounts/login/") -> Person:
    browser = Browser(base)
    page = browser.submit(path, {"username": name, "password": password})
    assert page.status == 200, f"log-in failed: {page.status}"
    assert browser.cookie("sessionid"), f"log-in as {name} did not start a session"
    return Person(name, password, browser)
