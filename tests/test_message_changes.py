"""Edit and delete your own messages, replies and reactions, through the
whole ASGI stack, over the WebSocket and the event stream, and across two
workers (two channel layer instances on Redis)."""

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat import events, services, wire
from chat.models import Membership, Message, MessageEdit, Reaction, Room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_transports]

THUMBS = "\U0001f44d"
HEART = "\u2764\ufe0f"


async def post(socket, body, **extra):
    await socket.send(type="message.send", body=body, client_id=f"c-{body}", **extra)
    return await socket.expect("ack", client_id=f"c-{body}")


async def nothing_more(socket):
    """No change arrives (messages and acks seen on the way do not count)."""
    socket.backlog[:] = [
        f for f in socket.backlog if f["type"] not in ("message", "messages", "ack", "join")
    ]
    await socket.nothing()


@pytest.fixture
async def pair(connect, redis_layer, alice, bob, room):
    """alice on worker 1, bob on worker 2, both in the room."""
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug, layer_alias="worker2")
    await a.expect("join", user="bob")
    return a, b


# ---------------------------------------------------------------- edit


async def test_edit_reaches_every_worker_and_history_keeps_the_latest_text(
    pair, connect, alice, room
):
    a, b = pair
    ack = await post(a, "helo")
    await a.send(type="message.edit", id=ack["id"], body="hello", client_id="e1")
    done = await a.expect("ack", of="message.edit")
    assert done == {
        "type": "ack",
        "of": "message.edit",
        "client_id": "e1",
        "id": ack["id"],
        "seq": ack["seq"],
    }
    for socket in (a, b):
        updated = (await socket.expect("message.updated"))["message"]
        assert updated["id"] == ack["id"] and updated["body"] == "hello"
        assert updated["edited"] and updated["rev"] >= 1
    _, _, history = await connect(alice, room.slug)
    assert [m["body"] for m in history["messages"]] == ["hello"]
    assert history["messages"][0]["edited"]
    old = await sync_to_async(list)(MessageEdit.objects.values_list("body", flat=True))
    assert old == ["helo"]


async def test_editing_to_the_same_text_again_changes_nothing(pair):
    a, b = pair
    ack = await post(a, "once")
    await a.send(type="message.edit", id=ack["id"], body="twice")
    await b.expect("message.updated")
    await a.send(type="message.edit", id=ack["id"], body="twice")
    await a.expect("ack", of="message.edit")
    await nothing_more(b)
    assert await sync_to_async(MessageEdit.objects.count)() == 1


@pytest.mark.parametrize(
    "case, code",
    [
        ("not_yours", "not_yours"),
        ("too_late", "too_late"),
        ("too_long", "too_long"),
        ("empty", "bad_request"),
        ("removed", "removed"),
        ("missing", "not_found"),
        ("no_id", "bad_request"),
    ],
)
async def test_edit_refusals_are_error_frames_and_change_nothing(
    connect, alice, bob, room, settings, case, code
):
    settings.CHAT_MAX_MESSAGE_LENGTH = 20
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    mine = await post(b, "bob's")
    ack = await post(a, "alice's")
    frame = {"type": "message.edit", "id": ack["id"], "body": "new text"}
    if case == "not_yours":
        frame["id"] = mine["id"]
    elif case == "too_late":
        await sync_to_async(Message.objects.filter(pk=ack["id"]).update)(
            created=timezone.now() - timedelta(seconds=settings.CHAT_EDIT_WINDOW + 5)
        )
    elif case == "too_long":
        frame["body"] = "x" * 21
    elif case == "empty":
        frame["body"] = " \u200b "
    elif case == "removed":
        await sync_to_async(Message.objects.filter(pk=ack["id"]).update)(deleted_at=timezone.now())
    elif case == "missing":
        frame["id"] = ack["id"] + 100
    elif case == "no_id":
        del frame["id"]
    await a.send(**frame)
    error = await a.expect("error")
    assert error["code"] == code, error
    assert await sync_to_async(MessageEdit.objects.count)() == 0
    bodies = await sync_to_async(list)(
        Message.objects.order_by("seq").values_list("body", flat=True)
    )
    assert bodies == ["bob's", "alice's"]


async def test_a_muted_author_cannot_edit(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    ack = await post(a, "before")
    await sync_to_async(Membership.objects.update_or_create)(
        room=room, user=alice, defaults={"muted_until": timezone.now() + timedelta(hours=1)}
    )
    await a.send(type="message.edit", id=ack["id"], body="after")
    assert (await a.expect("error"))["code"] == "muted"


async def test_edits_count_against_the_message_rate_limit(connect, alice, room, settings):
    settings.CHAT_RATE_LIMIT = (2, 30)
    a, _, _ = await connect(alice, room.slug)
    ack = await post(a, "one")
    await a.send(type="message.edit", id=ack["id"], body="two")
    await a.expect("ack", of="message.edit")
    await a.send(type="message.edit", id=ack["id"], body="three")
    error = await a.expect("error")
    assert error["code"] == "rate_limited" and error["retry_after"] > 0


# ---------------------------------------------------------------- delete


async def test_author_deletes_own_message_everywhere(pair, connect, alice, bob, room):
    a, b = pair
    ack = await post(a, "oops")
    await a.send(type="message.delete", id=ack["id"], client_id="d1")
    await a.expect("ack", of="message.delete", client_id="d1")
    for socket in (a, b):
        deleted = await socket.expect("message.deleted")
        assert deleted == {
            "type": "message.deleted",
            "id": ack["id"],
            "seq": ack["seq"],
            "by": "author",
        }
    message = await sync_to_async(Message.objects.get)(pk=ack["id"])
    assert message.deleted_by_id == alice.pk
    _, _, history = await connect(bob, room.slug, after=0)
    assert history["messages"] == []
    # Again: the same answer, nothing broadcast.
    await a.send(type="message.delete", id=ack["id"])
    await a.expect("ack", of="message.delete")
    await nothing_more(b)


async def test_nobody_deletes_someone_elses_message(connect, alice, bob, room):
    a, _, _ = await connect(alice, room.slug)
    b, _, _ = await connect(bob, room.slug)
    ack = await post(a, "mine")
    await b.send(type="message.delete", id=ack["id"])
    assert (await b.expect("error"))["code"] == "not_yours"
    assert (await sync_to_async(Message.objects.get)(pk=ack["id"])).deleted_at is None


@pytest.mark.parametrize(
    "frame",
    [{}, {"id": "seven"}, {"id": 1.5}, {"id": None}, {"id": True}],
    ids=["no_id", "id_not_a_number", "id_a_fraction", "id_null", "id_a_boolean"],
)
async def test_a_malformed_delete_is_refused_and_changes_nothing(connect, alice, room, frame):
    a, _, _ = await connect(alice, room.slug)
    ack = await post(a, "keep me")
    await a.send(type="message.delete", **frame)
    assert (await a.expect("error"))["code"] == "bad_request"
    assert (await sync_to_async(Message.objects.get)(pk=ack["id"])).deleted_at is None


@pytest.mark.parametrize("kind", ["message.delete", "reaction"])
async def test_deletes_and_reactions_count_against_the_message_rate_limit(
    connect, alice, room, settings, kind
):
    settings.CHAT_RATE_LIMIT = (2, 30)
    a, _, _ = await connect(alice, room.slug)
    first = await post(a, "one")
    frames = {
        "message.delete": {"id": first["id"]},
        "reaction": {"id": first["id"], "emoji": THUMBS, "on": True},
    }
    await a.send(type=kind, **frames[kind])
    await a.expect("ack", of=kind)
    await a.send(type="message.send", body="three", client_id="c-three")
    error = await a.expect("error")
    assert error["code"] == "rate_limited" and error["retry_after"] > 0
    bodies = await sync_to_async(list)(Message.objects.values_list("body", flat=True))
    assert bodies == ["one"]


# ---------------------------------------------------------------- replies


async def test_a_reply_carries_a_quote_of_the_original(pair, connect, bob, room):
    a, b = pair
    original = await post(a, "What time is the meeting?")
    reply = await post(b, "Three o'clock", reply_to=original["id"])
    message = (await a.expect("message", timeout=5))["message"]
    while message["id"] != reply["id"]:
        message = (await a.expect("message"))["message"]
    assert message["reply_to"] == {
        "id": original["id"],
        "seq": original["seq"],
        "user": "alice",
        "excerpt": "What time is the meeting?",
    }
    _, _, history = await connect(bob, room.slug)
    assert history["messages"][-1]["reply_to"]["id"] == original["id"]


async def test_a_reply_to_a_message_of_another_room_is_refused(connect, alice, room):
    other = await sync_to_async(Room.objects.create)(
        name="Elsewhere", slug="elsewhere", owner=alice
    )
    a, _, _ = await connect(alice, other.slug)
    elsewhere = await post(a, "over here")
    here, _, _ = await connect(alice, room.slug)
    await here.send(type="message.send", body="re", reply_to=elsewhere["id"], client_id="r")
    assert (await here.expect("error"))["code"] == "not_found"
    assert await sync_to_async(Message.objects.filter(room=room).count)() == 0


# ---------------------------------------------------------------- reactions


async def test_reactions_are_live_idempotent_and_stored(pair, connect, alice, bob, room):
    a, b = pair
    ack = await post(a, "ship it")
    await b.send(type="reaction", id=ack["id"], emoji=THUMBS, on=True)
    await b.expect("ack", of="reaction")
    for socket in (a, b):
        updated = (await socket.expect("message.updated"))["message"]
        assert updated["reactions"] == {THUMBS: ["bob"]}
    await b.send(type="reaction", id=ack["id"], emoji=THUMBS, on=True)  # again: nothing
    await b.expect("ack", of="reaction")
    await nothing_more(a)
    await a.send(type="reaction", id=ack["id"], emoji=THUMBS)
    assert (await b.expect("message.updated"))["message"]["reactions"] == {THUMBS: ["bob", "alice"]}
    await a.expect("message.updated")  # its own
    await b.send(type="reaction", id=ack["id"], emoji=THUMBS, on=False)
    assert (await a.expect("message.updated"))["message"]["reactions"] == {THUMBS: ["alice"]}
    assert await sync_to_async(Reaction.objects.count)() == 1
    _, _, history = await connect(bob, room.slug)
    assert history["messages"][0]["reactions"] == {THUMBS: ["alice"]}


@pytest.mark.parametrize("emoji", ["\U0001f4a9", "", 5])
async def test_only_the_offered_emoji(connect, alice, room, emoji):
    a, _, _ = await connect(alice, room.slug)
    ack = await post(a, "hm")
    await a.send(type="reaction", id=ack["id"], emoji=emoji)
    assert (await a.expect("error"))["code"] == "bad_request"


# ---------------------------------------------------------------- resume


async def test_a_resume_with_changes_gets_what_changed_while_away(connect, alice, bob, room):
    a, _, _ = await connect(alice, room.slug)
    b, hello, history = await connect(bob, room.slug, changes="")
    start = hello["last_change"]
    first = await post(a, "first")
    second = await post(a, "second")
    third = await post(a, "third")
    await b.expect("message", timeout=5)
    seen = third["seq"]
    await b.close()
    # While bob is away:
    await a.send(type="message.edit", id=first["id"], body="first, edited")
    await a.expect("ack", of="message.edit")
    await a.send(type="message.delete", id=second["id"])
    await a.expect("ack", of="message.delete")
    await a.send(type="reaction", id=third["id"], emoji=HEART)
    await a.expect("ack", of="reaction")
    b, hello, history = await connect(bob, room.slug, after=seen, changes=start)
    assert history["messages"] == []
    changes = await b.recv()
    assert changes["type"] == "changes"
    assert [m["body"] for m in changes["messages"]] == ["first, edited", "third"]
    assert changes["messages"][1]["reactions"] == {HEART: ["alice"]}
    assert changes["deleted"] == [{"id": second["id"], "seq": second["seq"], "by": "author"}]
    assert changes["last_change"] == hello["last_change"] == start + 3
    # Nothing changed since: an empty frame.
    c, _, _ = await connect(bob, room.slug, after=seen, changes=changes["last_change"])
    empty = await c.recv()
    assert empty == {
        "type": "changes",
        "messages": [],
        "deleted": [],
        "last_change": changes["last_change"],
    }


async def test_without_changes_in_the_url_nothing_new_is_sent(connect, alice, room):
    _, hello, _ = await connect(alice, room.slug)
    assert "last_change" not in hello


# ---------------------------------------------------------------- the hub's order


def change_event(room, message, body, rev):
    data = json.loads(wire.message_json(message))
    data.update(body=body, rev=rev, edited="2026-01-01T00:00:00.000Z")
    text = json.dumps(data)
    return events.room_changed(room.pk, seq=message.seq, rev=rev, text=text)


@pytest.mark.websocket_only
async def test_a_late_older_change_loses_to_a_newer_one(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    ack = await post(a, "v0")
    message = await sync_to_async(Message.objects.select_related("room", "author").get)(
        pk=ack["id"]
    )
    group = events.room_group(room.pk)
    await events.send(group, change_event(room, message, "v2", rev=2))
    await events.send(group, change_event(room, message, "v1", rev=1))  # arrives late
    assert (await a.expect("message.updated"))["message"]["body"] == "v2"
    await nothing_more(a)
    _, _, history = await connect(alice, room.slug)  # from the hub's memory
    assert [m["body"] for m in history["messages"]] == ["v2"]


@pytest.mark.websocket_only
async def test_a_change_that_overtakes_its_message_goes_out_with_it(connect, alice, room):
    a, _, _ = await connect(alice, room.slug)
    stored = (
        await sync_to_async(services.store_message)(
            room=room, author=alice, body="first", client_id=None
        )
    ).message  # not broadcast yet
    group = events.room_group(room.pk)
    await events.send(group, change_event(room, stored, "first, edited", rev=1))
    await events.send(group, events.room_message(room.pk, stored.seq, wire.message_json(stored)))
    message = (await a.expect("message"))["message"]
    assert message["body"] == "first, edited" and message["rev"] == 1
    await nothing_more(a)


@pytest.mark.websocket_only
async def test_a_change_whose_broadcast_was_lost_arrives_through_the_watch(
    connect, alice, bob, room, settings
):
    from chat.services import changes

    settings.CHAT_SEQ_WATCH = 0.05
    a, hello, _ = await connect(alice, room.slug, changes="")
    assert hello["last_change"] == 0
    ack = await post(a, "draft")
    # Stored, never broadcast (as if Redis had been away):
    await sync_to_async(changes.store_edit)(
        room=room, user=alice, message_id=ack["id"], body="final"
    )
    await sync_to_async(changes.store_reaction)(
        room=room, user=bob, message_id=ack["id"], emoji=THUMBS, on=True
    )
    updated = await a.expect("message.updated", timeout=5)
    assert updated["message"]["body"] == "final"
    assert updated["message"]["reactions"] == {THUMBS: ["bob"]}
    await nothing_more(a)  # once, not on every look
    # A socket opening now starts from the caught-up change number.
    _, hello, history = await connect(bob, room.slug, changes="")
    assert hello["last_change"] == 2 and history["messages"][0]["body"] == "final"
