"""Edits, deletions and reactions made on one real Daphne worker reach
sockets on the others at once (through each worker's room hub)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

HEART = "\u2764\ufe0f"


def updated(client, message_id: int, test) -> bool:
    return any(
        f["type"] == "message.updated" and f["message"]["id"] == message_id and test(f["message"])
        for f in client.frames
    )


async def test_an_edit_a_reaction_and_a_deletion_reach_every_worker(
    workers, make_member, make_room, open_client
):
    alice, bob, carol = [await make_member(n) for n in ("ealice", "ebob", "ecarol")]
    room = await make_room(alice)
    w0, w1, w2 = workers
    a = await open_client(alice, w0, room.slug)
    b = await open_client(bob, w1, room.slug)
    c = await open_client(carol, w2, room.slug)

    ack = await a.send_message("meet at noon", client_id="m1")
    await a.send(type="message.edit", id=ack["id"], body="meet at one", client_id="e1")
    for client in (a, b, c):
        await client.wait(
            lambda c=client: updated(c, ack["id"], lambda m: m["body"] == "meet at one"),
            "message.updated with the new text",
        )

    await b.send(type="reaction", id=ack["id"], emoji=HEART, on=True, client_id="r1")
    for client in (a, c):
        await client.wait(
            lambda c=client: updated(
                c, ack["id"], lambda m: m.get("reactions") == {HEART: ["ebob"]}
            ),
            "message.updated with bob's reaction",
        )

    await a.send(type="message.delete", id=ack["id"], client_id="d1")
    deleted = {"type": "message.deleted", "id": ack["id"], "seq": ack["seq"], "by": "author"}
    for client in (a, b, c):
        await client.wait(lambda c=client: deleted in c.frames, "message.deleted by the author")

    # A socket opened afterwards, on yet another worker, sees none of it.
    late = await open_client(carol, w1, room.slug)
    assert late.history["messages"] == []
