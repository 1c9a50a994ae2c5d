"""Every response carries the Content-Security-Policy and Permissions-Policy
(the browser tests check that the pages work under them), and Django reads
no request body beyond DATA_UPLOAD_MAX_MEMORY_SIZE."""

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(make_user):
    client = Client(HTTP_HOST="localhost")
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/login/",
        "/accounts/signup/",
        "/",
        "/rooms/new/",
        "/rooms/general/",
        "/rooms/no-such-room/",
        "/admin/",
        "/admin/chat/room/",
        "/healthz",
        "/livez",
    ],
)
def test_every_page_has_the_policies(staff_client, room, path):
    response = staff_client.get(path)
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "camera=()" in response["Permissions-Policy"]
    assert "microphone=()" in response["Permissions-Policy"]


def test_no_page_has_an_inline_script(staff_client, room):
    for path in ["/accounts/signup/", "/", "/rooms/new/", "/rooms/general/"]:
        page = staff_client.get(path).content.decode()
        for tag in page.split("<script")[1:]:
            opening = tag.split(">", 1)[0]
            assert "src=" in opening or 'type="application/json"' in opening, (path, opening)


def test_an_oversized_form_post_is_refused_unread(alice):
    client = Client(HTTP_HOST="localhost")
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 256 * 1024  # Django's default is 2.5 MiB
    big = "x" * 300_000
    response = client.post("/accounts/login/", {"username": "alice", "password": big})
    assert response.status_code == 400
    assert "sessionid" not in response.cookies
