"""Moderation taken through the real admin on one worker (HTTP, CSRF and all)
reaches sockets on every other worker at once."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request

import pytest
from asgiref.sync import sync_to_async

from chat.models import Membership, Message

from .clients import TIMEOUT

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def _admin_action(server, member, model: str, action: str, ids: list[int], **extra) -> str:
    """Post an admin changelist action the way a moderator's browser does:
    load the page (CSRF cookie and token), then submit the action form."""
    app = "auth" if model == "user" else "chat"
    url = f"{server.http}/admin/{app}/{model}/"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    session = http.cookiejar.Cookie(
        0,
        "sessionid",
        member.cookie,
        None,
        False,
        "127.0.0.1",
        False,
        False,
        "/",
        True,
        False,
        None,
        False,
        None,
        None,
        {},
    )
    jar.set_cookie(session)
    page = opener.open(url, timeout=TIMEOUT).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    data = {
        "csrfmiddlewaretoken": token,
        "action": action,
        "index": "0",
        "_selected_action": [str(i) for i in ids],
        **extra,
    }
    body = urllib.parse.urlencode(data, doseq=True).encode()
    with opener.open(urllib.request.Request(url, data=body), timeout=TIMEOUT) as response:
        assert response.status == 200  # the redirect back to the changelist, followed
        return response.read().decode()


admin_action = sync_to_async(_admin_action)


@sync_to_async
def make_staff(member):
    type(member.user).objects.filter(pk=member.user.pk).update(is_staff=True, is_superuser=True)


async def test_admin_actions_on_one_worker_reach_sockets_on_every_worker(
    workers, make_member, make_room, open_client
):
    alice, bob, carol, mod = [await make_member(n) for n in ("malice", "mbob", "mcarol", "mmod")]
    await make_staff(mod)
    room = await make_room(alice)
    w0, w1, w2 = workers
    a = await open_client(alice, w2, room.slug)
    b0 = await open_client(bob, w0, room.slug)
    b1 = await open_client(bob, w1, room.slug)
    c0 = await open_client(carol, w0, room.slug)
    c2 = await open_client(carol, w2, room.slug)

    # Remove a message through worker 2's admin: every socket drops it.
    ack = await b0.send_message("spam", client_id="spam")
    await admin_action(w2, mod, "message", "remove_messages", [ack["id"]], reason="spam")
    for client in (a, b0, b1, c0, c2):
        await client.wait(
            lambda c=client: (
                {"type": "message.deleted", "id": ack["id"], "seq": ack["seq"]} in c.frames
            ),
            "message.deleted",
        )
    assert await sync_to_async(lambda: Message.objects.get(pk=ack["id"]).deleted_at is not None)()

    # Lock through worker 0: a send on worker 2 is refused.
    await admin_action(w0, mod, "room", "lock_rooms", [room.pk])
    await a.send(type="message.send", body="hello?", client_id="locked-1")
    await a.wait(lambda: any(f.get("code") == "locked" for f in a.frames), "error locked")
    await admin_action(w0, mod, "room", "unlock_rooms", [room.pk])

    # Ban bob through worker 1: his sockets on workers 0 and 1 close with 4403,
    # and alice on worker 2 sees him leave.
    membership = await sync_to_async(Membership.objects.get)(room=room, user=bob.user)
    await admin_action(w1, mod, "membership", "ban", [membership.pk])
    for client in (b0, b1):
        await client.wait(lambda c=client: c.closed, "closed by the ban")
        assert client.close_code == 4403, client.label
    await a.wait_presence("leave", "mbob")

    # Deactivate carol through worker 2: her sockets everywhere close with 4401.
    await admin_action(w2, mod, "user", "deactivate", [carol.user.pk])
    for client in (c0, c2):
        await client.wait(lambda c=client: c.closed, "closed by deactivation")
        assert client.close_code == 4401, client.label

    # alice, untouched, still chats.
    await a.send_message("still here", client_id="still")
    assert not a.closed
