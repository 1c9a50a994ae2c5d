"""Throttled logins (the login page and the admin's), sign-ups and password
changes, per username and per client address; the address is the one the
server saw, never a client-sent X-Forwarded-For (checked on real Daphne
processes, served directly and behind a proxy); no password reset route."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from django.test import Client, RequestFactory

from chat import services, throttle
from tests.servers import DaphneServer, database_url_for_tests

PASSWORD = "a-long-test-password"  # tests/conftest.py's make_user default


def login(client, username, password, path="/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


def browser(address="127.0.0.1", **headers) -> Client:
    return Client(HTTP_HOST="localhost", REMOTE_ADDR=address, **headers)


def sign_up(client, username, password="correct-horse-battery"):
    return client.post(
        "/accounts/signup/",
        {"username": username, "password1": password, "password2": password},
    )


@pytest.mark.django_db
def test_many_wrong_passwords_then_the_right_one_is_refused(alice):
    client = browser()
    for _ in range(10):
        assert login(client, "alice", "wrong").status_code == 200  # the form again
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert b"Too many attempts" in response.content
    assert 0 < int(response["Retry-After"]) <= 900
    assert "sessionid" not in response.cookies
    assert client.get("/").status_code == 302  # still not logged in


@pytest.mark.django_db
def test_the_admin_login_is_throttled_and_shares_the_count(make_user):
    make_user("root", is_staff=True, is_superuser=True)
    client = browser()
    for _ in range(5):
        login(client, "root", "wrong", path="/admin/login/")
        login(client, "root", "wrong")
    response = login(client, "root", PASSWORD, path="/admin/login/")
    assert response.status_code == 429
    assert "sessionid" not in response.cookies


@pytest.mark.django_db
def test_per_username_across_addresses(alice, bob):
    for number in range(10):
        login(browser(f"10.0.0.{number}"), "alice", "wrong")
    assert login(browser("10.9.9.9"), "alice", PASSWORD).status_code == 429
    assert login(browser("10.9.9.9"), "bob", PASSWORD).status_code == 302  # others unaffected


@pytest.mark.django_db
def test_look_alike_usernames_share_a_count(alice):
    for name in ["ALICE", "\u0430lice", "Alice", "a1ice", "alice"] * 2:
        login(browser(), name, "wrong")
    assert login(browser(), "alice", PASSWORD).status_code == 429


@pytest.mark.django_db
def test_per_address_across_usernames(settings, alice):
    settings.CHAT_LOGIN_LIMIT_USER = None
    settings.CHAT_LOGIN_LIMIT_IP = (3, 900)
    for name in ["x1", "x2", "x3"]:
        login(browser("192.0.2.7"), name, "wrong")
    assert login(browser("192.0.2.7"), "alice", PASSWORD).status_code == 429
    assert login(browser("192.0.2.8"), "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_client_sent_x_forwarded_for_changes_nothing(settings, alice):
    settings.CHAT_LOGIN_LIMIT_USER = None
    settings.CHAT_LOGIN_LIMIT_IP = (3, 900)
    for number in range(3):
        login(browser(HTTP_X_FORWARDED_FOR=f"6.6.6.{number}"), f"x{number}", "wrong")
    refused = login(browser(HTTP_X_FORWARDED_FOR="7.7.7.7"), "alice", PASSWORD)
    assert refused.status_code == 429


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
    ],
)
def test_client_address_is_remote_addr_and_ipv6_counts_per_64(address, counted_as):
    request = RequestFactory().get("/", REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert throttle.client_address(request) == counted_as


@pytest.mark.django_db
def test_sign_ups_are_throttled_per_address(settings, django_user_model):
    settings.CHAT_SIGNUP_LIMIT_IP = (2, 3600)
    for number in range(2):
        assert sign_up(browser(), f"new{number}").status_code == 302
    assert sign_up(browser(), "new2").status_code == 429
    assert not django_user_model.objects.filter(username="new2").exists()
    assert sign_up(browser("192.0.2.1"), "new2").status_code == 302


@pytest.mark.django_db
def test_sign_ups_are_throttled_per_username(settings):
    settings.CHAT_LOGIN_LIMIT_USER = (2, 900)
    for number in range(2):
        browser(f"192.0.2.{number}").post("/accounts/signup/", {"username": "taken"})
    response = browser("192.0.2.99").post("/accounts/signup/", {"username": "TAKEN"})
    assert response.status_code == 429


@pytest.mark.django_db
def test_wrong_old_passwords_on_password_change_count_against_the_account(alice):
    client = browser()
    client.force_login(alice)
    new = {"new_password1": "another-long-one-77", "new_password2": "another-long-one-77"}
    for _ in range(10):
        response = client.post("/accounts/password_change/", {"old_password": "guess", **new})
        assert response.status_code == 200
    response = client.post("/accounts/password_change/", {"old_password": PASSWORD, **new})
    assert response.status_code == 429
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    assert login(browser("192.0.2.50"), "alice", PASSWORD).status_code == 429


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/password_reset/", "/accounts/reset/MQ/set-password/"])
def test_there_is_no_password_reset_route(path):
    assert browser().get(path).status_code == 404


@pytest.mark.django_db
def test_the_admin_login_offers_no_password_reset():
    page = browser().get("/admin/login/")
    assert page.status_code == 200 and b"Forgotten your password" not in page.content


# ---------------------------------------------------------------- real Daphne


class FormClient:
    """Logs in through the real login form over HTTP (CSRF cookie and token),
    with extra request headers of our choosing."""

    def __init__(self, base: str):
        self.base = base
        jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(jar), NoRedirect
        )

    def login(self, username: str, password: str, **headers) -> int:
        return self.submit(
            "/accounts/login/", {"username": username, "password": password}, **headers
        )

    def submit(self, path: str, fields: dict, **headers) -> int:
        """GET the form at `path` (its CSRF token), POST `fields` to it; the
        answer's status (a redirect is not followed)."""
        with self.opener.open(self.base + path, timeout=10) as page:
            token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.read())[1]
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token.decode()}).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def get(self, path: str) -> int:
        try:
            with self.opener.open(self.base + path, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


def throttled_worker(*daphne_args):
    return DaphneServer(
        database_url=database_url_for_tests(),
        redis_url=None,
        extra_env={"CHAT_LOGIN_LIMIT_USER": "off", "CHAT_LOGIN_LIMIT_IP": "3/900"},
        daphne_args=daphne_args,
    ).start()


@pytest.mark.django_db(transaction=True)
def test_served_directly_a_forged_x_forwarded_for_is_ignored(alice):
    server = throttled_worker()
    try:
        client = FormClient(server.http)
        for number in range(3):
            status = client.login(f"x{number}", "wrong", **{"X-Forwarded-For": f"6.6.6.{number}"})
            assert status == 200
        assert client.login("alice", PASSWORD, **{"X-Forwarded-For": "7.7.7.7"}) == 429
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_behind_the_proxy_each_client_address_counts_for_itself(alice):
    # Daphne with --proxy-headers behind nginx, which sets X-Forwarded-For to
    # the address it saw ($remote_addr): that address is the client's.
    server = throttled_worker("--proxy-headers")
    try:
        client = FormClient(server.http)
        for number in range(3):
            client.login(f"x{number}", "wrong", **{"X-Forwarded-For": "198.51.100.1"})
        assert client.login("alice", PASSWORD, **{"X-Forwarded-For": "198.51.100.1"}) == 429
        assert client.login("alice", PASSWORD, **{"X-Forwarded-For": "198.51.100.2"}) == 302
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_two_workers_count_together_through_redis(redis_url, alice):
    env = {
        "CHAT_LOGIN_LIMIT_USER": "3/900",
        "CHAT_LOGIN_LIMIT_IP": "off",
        "CHAT_REDIS_PREFIX": f"throttle-{uuid.uuid4().hex[:8]}",
    }
    workers = [
        DaphneServer(database_url=database_url_for_tests(), redis_url=redis_url, extra_env=env)
        for _ in range(2)
    ]
    try:
        first, second = (worker.start() for worker in workers)
        for _ in range(3):
            assert FormClient(first.http).login("alice", "wrong") == 200
        assert FormClient(second.http).login("alice", PASSWORD) == 429
    finally:
        for worker in workers:
            worker.stop()


# ---------------------------------------------------------------- Redis away


@pytest.mark.django_db
def test_with_redis_away_logins_fail_open_with_a_warning(redis_away, alice, caplog):
    client = browser()
    for _ in range(5):  # past the limit: nothing counts while Redis is away
        assert login(client, "alice", "wrong").status_code == 200  # the form again
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 302
    assert client.get("/").status_code == 200  # logged in (the session is in the database)
    assert "throttle login" in caplog.text and "Redis unavailable" in caplog.text


@pytest.mark.django_db
def test_with_redis_away_sign_ups_go_through(redis_away, django_user_model):
    for number in range(4):
        assert sign_up(browser(), f"new{number}").status_code == 302
    assert django_user_model.objects.filter(username__startswith="new").count() == 4


@pytest.mark.django_db
def test_with_redis_away_a_password_change_goes_through(redis_away, alice):
    client = browser()
    client.force_login(alice)
    new = {"new_password1": "another-long-one-77", "new_password2": "another-long-one-77"}
    assert (
        client.post("/accounts/password_change/", {"old_password": "guess", **new}).status_code
        == 200
    )
    response = client.post("/accounts/password_change/", {"old_password": PASSWORD, **new})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another-long-one-77")
    assert client.get("/").status_code == 200  # still logged in, on the cycled session


@pytest.mark.django_db
def test_with_redis_away_search_answers(redis_away, alice, room):
    services.store_message(room=room, author=alice, body="findable words", client_id=None)
    client = browser()
    client.force_login(alice)
    for _ in range(5):  # past CHAT_SEARCH_RATE: not counted while Redis is away
        response = client.get("/search/", {"q": "findable"})
        assert response.status_code == 200
        assert b"<mark>findable</mark> words" in response.content
