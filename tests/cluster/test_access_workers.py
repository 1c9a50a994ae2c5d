"""Sockets follow what let them in, on real Daphne workers (issue 8,
chat/services/access.py): a change made through one worker, or through the
ORM in this process as the admin or a shell on any worker would make it,
closes the sockets it ends on every other worker with the documented code;
and a socket past its maximum age is asked to reconnect (4000) and is checked
again on the way back in. (The password change is in test_abuse.py.)"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session
from django.db import connection

from chat.events import Close
from chat.models import Membership, Room

from .clients import (
    ChatClient,
    Member,
    Refused,
    ResumingClient,
    log_in_again,
    post_from_room_page,
)
from .conftest import start_workers, worker_environment

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

MAX_SOCKET_AGE = 2  # seconds: the short-lived workers' CHAT_MAX_SOCKET_AGE


async def still_answers(client: ChatClient) -> None:
    """The socket is open and served: a ping gets its pong."""
    pongs = sum(f["type"] == "pong" for f in client.frames)
    await client.send(type="ping")
    await client.wait(lambda: sum(f["type"] == "pong" for f in client.frames) > pongs, "a pong")


async def refused_with(member: Member, server, slug: str) -> int | None:
    """The close code a new socket of `member`'s session gets before its hello."""
    with pytest.raises(Refused) as refused:
        client = await ChatClient.open(member, server.ws, slug)
        await client.close()
    return refused.value.code


# ---------------------------------------------------------------- a session ends


async def _log_out_on(server, member: Member, slug: str) -> None:
    assert await post_from_room_page(server, member, slug, "/accounts/logout/") == 200


@sync_to_async
def _delete_session_row(member: Member) -> None:
    Session.objects.filter(session_key=member.cookie).delete()


@pytest.mark.parametrize(
    "end_session",
    [
        pytest.param(_log_out_on, id="logged-out-on-another-worker"),
        pytest.param(lambda server, member, slug: _delete_session_row(member), id="row-deleted"),
    ],
)
async def test_an_ended_session_closes_its_sockets_on_every_worker_4401(
    end_session, as_a_worker, workers, make_member, make_room, open_client
):
    phone = await make_member("sessions")
    laptop = await log_in_again(phone)  # the same user, another session
    room = await make_room(phone)
    w0, w1, w2 = workers
    ended = [await open_client(phone, w, room.slug) for w in (w1, w2)]
    kept = await open_client(laptop, w1, room.slug)

    await end_session(w0, phone, room.slug)
    for client in ended:
        await client.wait(lambda c=client: c.closed, "the ended session's socket to close")
        assert client.close_code == Close.SESSION_ENDED, client.label
    await still_answers(kept)  # the user's other session is not touched
    assert await refused_with(phone, w2, room.slug) == Close.SESSION_ENDED


# ---------------------------------------------------------------- a private room's member removed


@sync_to_async
def _remove_member(room: Room, member: Member) -> None:
    Membership.objects.filter(room=room, user=member.user).delete()


async def test_a_member_removed_from_a_private_room_is_closed_on_every_worker_4403(
    as_a_worker, workers, make_member, make_room, open_client
):
    owner, member = await make_member("powner"), await make_member("pmember")
    room = await make_room(owner, is_private=True, members=(member,))
    elsewhere = await make_room(owner)
    w0, w1, w2 = workers
    owners = await open_client(owner, w0, room.slug)
    removed = [await open_client(member, w, room.slug) for w in (w1, w2)]
    in_another_room = await open_client(member, w1, elsewhere.slug)

    await _remove_member(room, member)
    for client in removed:
        await client.wait(lambda c=client: c.closed, "the removed member's socket to close")
        assert client.close_code == Close.NO_ACCESS, client.label
    await still_answers(owners)
    await still_answers(in_another_room)  # only the room they were removed from
    assert await refused_with(member, w0, room.slug) == Close.NO_ACCESS


# ---------------------------------------------------------------- a room turned private


@sync_to_async
def _make_private(room: Room) -> None:
    room.is_private = True
    room.save()


async def test_a_room_turned_private_sends_sockets_back_and_keeps_only_members(
    as_a_worker, workers, make_member, make_room
):
    owner, member, outsider = [await make_member(n) for n in ("towner", "tmember", "toutsider")]
    room = await make_room(owner, members=(member,))
    w0, w1, w2 = workers
    # Clients that behave as the page does: back at once after 4000, with
    # `after` (each on another worker than before); not after 4403.
    members_page = await ResumingClient(member, [w1.ws, w0.ws], room.slug).start()
    outsiders_page = await ResumingClient(outsider, [w2.ws, w1.ws], room.slug).start()
    # The outsider read the room while it was public; that made them no member.
    await _remove_member(room, outsider)
    try:
        await _make_private(room)
        await outsiders_page.wait(
            lambda: len(outsiders_page.close_codes) == 2, "the outsider to be turned away"
        )
        assert outsiders_page.close_codes == [Close.RECONNECT, Close.NO_ACCESS]
        await members_page.wait(
            lambda: members_page.connections == 2 and not members_page.client.closed,
            "the member to be back in",
        )
        assert members_page.close_codes == [Close.RECONNECT]
        await still_answers(members_page.client)
    finally:
        await members_page.stop()
        await outsiders_page.stop()


# ---------------------------------------------------------------- the maximum age of a socket


@pytest.fixture
def short_lived_workers(django_db_setup, redis_url):
    """Two workers whose sockets are asked to reconnect every MAX_SOCKET_AGE s."""
    env = {**worker_environment(), "CHAT_MAX_SOCKET_AGE": str(MAX_SOCKET_AGE)}
    servers = start_workers(2, redis_url=redis_url, extra_env=env)
    yield servers
    for server in servers:
        server.stop()


@sync_to_async
def _remove_member_without_telling_anyone(room: Room, member: Member) -> None:
    """A change no signal sees (raw SQL, another program on the database):
    only the check on the way back in can catch it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {Membership._meta.db_table} WHERE room_id = %s AND user_id = %s",
            [room.pk, member.user.pk],
        )


async def test_a_socket_past_its_maximum_age_reconnects_and_is_checked_again(
    short_lived_workers, make_member, make_room
):
    owner, member = await make_member("aowner"), await make_member("amember")
    room = await make_room(owner, is_private=True, members=(member,))
    wa, wb = short_lived_workers
    owners_page = await ResumingClient(owner, [wa.ws, wb.ws], room.slug).start()
    members_page = await ResumingClient(member, [wb.ws, wa.ws], room.slug).start()
    try:
        await _remove_member_without_telling_anyone(room, member)
        timeout = MAX_SOCKET_AGE + 8
        await members_page.wait(
            lambda: Close.NO_ACCESS in members_page.close_codes,
            "the member to be turned away",
            timeout,
        )
        # Asked back once or more (a slow machine may expire the first socket
        # before the removal), then refused on the way back in.
        *asked_back, refused = members_page.close_codes
        assert asked_back and set(asked_back) == {Close.RECONNECT} and refused == Close.NO_ACCESS
        await owners_page.wait(
            lambda: owners_page.connections >= 2 and not owners_page.client.closed,
            "the owner to be back in",
            timeout,
        )
        assert owners_page.close_codes[0] == Close.RECONNECT
    finally:
        await owners_page.stop()
        await members_page.stop()
