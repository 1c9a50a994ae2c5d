"""Abuse on real Daphne workers (issue 8): clients that stop reading, frame
floods, too many sockets, and sockets whose password changed elsewhere."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest

from tests.servers import DaphneServer, database_url_for_tests

from .clients import ChatClient
from .conftest import worker_environment

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

QUEUE_CAP = 256 * 1024


@pytest.fixture(scope="module")
def worker_env():
    return {
        **worker_environment(),
        "CHAT_MAX_QUEUED_BYTES": str(QUEUE_CAP),
        "CHAT_MAX_SOCKETS_PER_USER": "3",
        "CHAT_FRAME_RATE": "20/60",
    }


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1])


class RawSocket:
    """A WebSocket client that reads only when, and as fast as, the test
    says, with a small receive buffer: what it does not read piles up on the
    server's side."""

    def __init__(self, server: DaphneServer, slug: str, cookie: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/rooms/{slug}/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {server.http}\r\nCookie: sessionid={cookie}\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101"), response

    def send(self, frame: dict) -> None:
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x81, 0x80 | length)
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        self.sock.sendall(header + mask + masked)

    def read_to_the_end(self, *, pause: float = 0.0, timeout: float = 30) -> int | None:
        """Read until the server hangs up, `pause` seconds between reads of
        at most 4 KiB (a slow client); the code of the server's close frame,
        or None if it dropped the connection without one reaching us."""
        self.sock.settimeout(timeout)
        data = b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if pause:
                time.sleep(pause)  # the client's own pace, not synchronisation
        return _last_close_code(data)


def _last_close_code(data: bytes) -> int | None:
    code, at = None, 0
    while at + 2 <= len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if size == 126:
            size, at = struct.unpack("!H", data[at : at + 2])[0], at + 2
        elif size == 127:
            size, at = struct.unpack("!Q", data[at : at + 8])[0], at + 8
        if opcode == 8 and size >= 2:
            code = struct.unpack("!H", data[at : at + 2])[0]
        at += size
    return code


@pytest.fixture
def own_worker(redis_url, worker_env):
    """A worker of this test's own, whose memory the test measures."""
    server = DaphneServer(
        database_url=database_url_for_tests(), redis_url=redis_url, extra_env=worker_env
    ).start()
    yield server
    server.stop()


async def test_clients_that_fall_behind_are_closed_and_their_memory_comes_back(
    own_worker, workers, make_member, make_room
):
    reader, writer = await make_member("quiet"), await make_member("loud")
    room = await make_room(writer)
    sender = await ChatClient.open(writer, workers[0].ws, room.slug)
    # Warm the worker up (its room hub, pools, code paths) before the baseline.
    warm = await ChatClient.open(reader, own_worker.ws, room.slug)
    await sender.send_message("warm", client_id="warm")
    await warm.wait_messages(1)
    await warm.close()
    baseline = rss_kib(own_worker.proc.pid)

    # Two clients read at about 200 KB/s, slower than the flood; two never read.
    others = [await make_member(f"quiet{i}") for i in range(3)]
    slow = [RawSocket(own_worker, room.slug, m.cookie) for m in (reader, others[0])]
    stalled = [RawSocket(own_worker, room.slug, m.cookie) for m in others[1:]]
    slow_done = asyncio.gather(*(asyncio.to_thread(s.read_to_the_end, pause=0.02) for s in slow))
    body = "x" * 3000
    sent, peak = 0, baseline
    while not slow_done.done() and sent < 5000:
        sent += 1
        await sender.send(type="message.send", body=f"{body} {sent}", client_id=f"f{sent}")
        if sent % 50 == 0:
            await sender.wait(lambda n=sent: _acked(sender, f"f{n}"), f"ack {sent}")
            peak = max(peak, rss_kib(own_worker.proc.pid))
    assert await asyncio.wait_for(slow_done, 60) == [4008, 4008]
    # The stalled ones were closed too (the close frame, or the connection
    # dropped after the grace for reading up to it).
    for client in stalled:
        assert await asyncio.to_thread(client.read_to_the_end) in (4008, None)
    grown = (peak - baseline) / 1024
    after = (rss_kib(own_worker.proc.pid) - baseline) / 1024
    print(f"\nsent {sent} messages; worker RSS +{grown:.1f} MiB at most, +{after:.1f} MiB after")
    # Each client that fell behind held at most QUEUE_CAP (plus a frame) here.
    assert grown < 30, f"the worker grew by {grown:.1f} MiB"
    assert after < 15, f"the worker kept {after:.1f} MiB"
    await sender.close()


def _acked(client: ChatClient, client_id: str) -> bool:
    return any(f["type"] == "ack" and f.get("client_id") == client_id for f in client.frames)


async def test_a_history_flood_on_a_socket_that_never_reads_is_cut_off(
    own_worker, workers, make_member, make_room
):
    reader, writer = await make_member("hoarder"), await make_member("filler")
    room = await make_room(writer)
    sender = await ChatClient.open(writer, workers[0].ws, room.slug)
    for i in range(100):
        await sender.send(type="message.send", body="y" * 3000, client_id=f"h{i}")
    await sender.wait(lambda: _acked(sender, "h99"), "the last ack")
    baseline = rss_kib(own_worker.proc.pid)
    hoarder = RawSocket(own_worker, room.slug, reader.cookie)
    for _ in range(1000):  # 1000 requests of 100 messages of 3 KB: 300 MB if all answered
        hoarder.send({"type": "history", "limit": 100})
    code = await asyncio.to_thread(hoarder.read_to_the_end)
    grown = (rss_kib(own_worker.proc.pid) - baseline) / 1024
    assert code in (4008, None)  # closed, whether or not its close frame got through
    assert grown < 20, f"the worker kept {grown:.1f} MiB"
    await sender.close()


async def test_sockets_per_user_are_capped_across_real_workers(workers, make_member, make_room):
    member = await make_member("many")
    room = await make_room(member)
    opened = [await ChatClient.open(member, workers[i].ws, room.slug) for i in (0, 1, 0)]
    extra = await _open_raw(member, workers[2].ws, room.slug)
    await extra.wait(lambda: extra.closed, "the fourth socket to close")
    assert extra.close_code == 4429
    await opened[0].close()
    # The closed socket stops counting (its worker's cleanup runs at once).
    deadline = time.monotonic() + 10
    while True:
        again = await _open_raw(member, workers[2].ws, room.slug)
        await again.wait(lambda a=again: a.closed or len(a.frames) >= 2, "hello or a close")
        if not again.closed:
            assert again.frames[0]["type"] == "hello"
            break
        assert time.monotonic() < deadline, "the closed socket kept counting"
    for client in (*opened[1:], again):
        await client.close()


async def _open_raw(member, base: str, slug: str) -> ChatClient:
    """A client that may be refused after the handshake (no hello expected)."""
    from websockets.asyncio.client import connect

    ws = await connect(
        f"{base}/ws/rooms/{slug}/",
        additional_headers={"Cookie": f"sessionid={member.cookie}"},
        origin=base.replace("ws://", "http://", 1),
    )
    return ChatClient(member, ws, f"{member.name}@raw")


async def test_the_frame_budget_is_shared_by_a_users_sockets_on_every_worker(
    workers, make_member, make_room
):
    member = await make_member("chatty")
    room = await make_room(member)
    here = await ChatClient.open(member, workers[0].ws, room.slug)
    there = await ChatClient.open(member, workers[1].ws, room.slug)
    for _ in range(20):
        await here.send(type="ping")
    await here.wait(lambda: sum(f["type"] == "pong" for f in here.frames) == 20, "20 pongs")
    await there.send(type="ping")
    refused = await there.wait(
        lambda: next((f for f in there.frames if f["type"] == "error"), None), "the refusal"
    )
    assert refused["code"] == "rate_limited" and refused["retry_after"] > 0
    await here.close()
    await there.close()


async def test_a_password_changed_on_one_worker_sends_sockets_on_others_back_through_the_check(
    workers, make_member, make_room
):
    member = await make_member("changer")
    room = await make_room(member)
    # Two logins (the first one also upgrades the test hasher's password hash).
    browser, cookie = _log_in(workers[0].http, "changer", "a-long-password")
    _, other_cookie = _log_in(workers[2].http, "changer", "a-long-password")
    kept = await ChatClient.open(_with_cookie(member, cookie), workers[1].ws, room.slug)
    other = await ChatClient.open(_with_cookie(member, other_cookie), workers[2].ws, room.slug)

    page = browser.open(workers[0].http + "/accounts/password_change/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    form = {
        "old_password": "a-long-password",
        "new_password1": "another-long-password-9",
        "new_password2": "another-long-password-9",
        "csrfmiddlewaretoken": token,
    }
    request = urllib.request.Request(
        workers[0].http + "/accounts/password_change/",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Referer": workers[0].http + "/accounts/password_change/"},
    )
    browser.open(request).read()
    for client in (kept, other):
        await client.wait(lambda c=client: c.closed, "the socket to be sent back")
        assert client.close_code == 4000
    new_cookie = _session_cookie(browser)  # the session the change was made in lives on
    back = await ChatClient.open(_with_cookie(member, new_cookie), workers[1].ws, room.slug)
    assert back.hello["user"] == "changer"
    refused = await _open_raw(_with_cookie(member, other_cookie), workers[2].ws, room.slug)
    await refused.wait(lambda: refused.closed, "the other session to be refused")
    assert refused.close_code == 4401
    await back.close()


def _log_in(base: str, username: str, password: str):
    jar = CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    browser.jar = jar
    page = browser.open(base + "/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token}
    request = urllib.request.Request(
        base + "/accounts/login/",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Referer": base + "/accounts/login/"},
    )
    browser.open(request).read()
    return browser, _session_cookie(browser)


def _session_cookie(browser) -> str:
    return next(c.value for c in browser.jar if c.name == "sessionid")


def _with_cookie(member, cookie: str):
    from dataclasses import replace

    return replace(member, cookie=cookie)
