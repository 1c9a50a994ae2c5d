"""Static files under hashed names: a page names one consistent set of ES
modules, each importing the others by their hashed names too, all served
with a year's immutable cache (chatsite/storage.py)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

IMPORT = re.compile(r"""(?:import|export)\b[^;]*?\bfrom\s*["'](\./[^"']+)["']""")


def _served(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    assert "immutable" in response["Cache-Control"], (url, response["Cache-Control"])
    return b"".join(response.streaming_content).decode()


def test_the_room_page_loads_hashed_modules_that_import_hashed_modules(alice, room):
    client = Client()
    client.force_login(alice)
    page = client.get(f"/rooms/{room.slug}/").content.decode()
    entry = re.search(r'<script type="module" src="(/static/chat/room\.[0-9a-f]{12}\.js)"', page)
    assert entry, "the room page's script is not under a hashed name"

    seen, to_visit = set(), [entry[1]]
    while to_visit:
        url = to_visit.pop()
        if url in seen:
            continue
        seen.add(url)
        folder = url.rsplit("/", 1)[0]
        for name in IMPORT.findall(_served(client, url)):
            assert re.fullmatch(r"\./\w+\.[0-9a-f]{12}\.js", name), f"{url} imports {name}"
            to_visit.append(f"{folder}/{name[2:]}")
    # room.js and everything it imports, directly or not.
    assert len(seen) >= 8, seen


def test_stylesheets_are_hashed_too(alice, room):
    client = Client()
    client.force_login(alice)
    page = client.get("/").content.decode()
    sheet = re.search(r'<link rel="stylesheet" href="(/static/chat/chat\.[0-9a-f]{12}\.css)"', page)
    assert sheet, "the stylesheet is not under a hashed name"
    _served(client, sheet[1])
