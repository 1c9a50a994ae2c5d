"""Messages: store (one short transaction, idempotent per client_id) and
broadcast; typing notices."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .. import events, limits, selectors, wire
from ..models import Membership, Message, Room
from .errors import Forbidden, Locked, Muted, NotFound

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# A mute with no end is stored as a date far enough away.
MUTED_INDEFINITELY = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass
class Posted:
    message: Message
    created: bool  # False: a retry of a client_id that was stored already


def check_rate(user_id: int) -> None:
    """Count a message against the user's CHAT_RATE_LIMIT (blocking code)."""
    limits.spend_sync(kind="message", user_id=user_id)


# One statement takes the room's row lock, allocates the next seq and reads
# what may refuse the send (locked room, muted or banned author).
_NEXT_SEQ_SQL = f"""
UPDATE {Room._meta.db_table} SET last_seq = last_seq + 1 WHERE id = %s
RETURNING last_seq, is_locked,
  (SELECT CASE WHEN is_banned THEN 2 WHEN muted_until > %s THEN 1 ELSE 0 END
   FROM {Membership._meta.db_table} WHERE room_id = %s AND user_id = %s)
"""


def store_message(
    *, room: Room, author: User, body: str, client_id: str | None, reply_to: int | None = None
) -> Posted:
    """Store a message (no rate check: post_message counts it); `reply_to`:
    the id of a shown message of the same room it answers."""
    original = None
    if reply_to is not None:
        original = selectors.reply_target(room=room, message_id=reply_to)
        if original is None:
            raise NotFound("reply_to names no message shown in this room.")
    now = timezone.now()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    _NEXT_SEQ_SQL,
                    [room.pk, connection.ops.adapt_datetimefield_value(now), room.pk, author.pk],
                )
                row = cursor.fetchone()
            if row is None:  # deleted (in the admin) while a socket was open in it
                raise Forbidden("This room no longer exists.")
            seq, locked, standing = row
            if locked:
                raise Locked("This room is locked: it is read-only.")
            if standing == 2:
                raise Forbidden("You are banned from this room.")
            if standing == 1:
                raise muted_error(room=room, user=author)
            message = Message.objects.create(
                room=room,
                seq=seq,
                author=author,
                body=body,
                client_id=client_id,
                reply_to=original,
            )
    except IntegrityError:
        if client_id is None:
            raise
        # The unique (room, author, client_id) caught a retry: answer with the
        # first message's ack, store nothing.
        message = Message.objects.select_related("reply_to__author").get(
            room=room, author=author, client_id=client_id
        )
        message.room, message.author = room, author
        selectors.attach_reactions([message])
        return Posted(message=message, created=False)
    message.room, message.author = room, author
    return Posted(message=message, created=True)


def muted_error(*, room: Room, user: User) -> Muted:
    until = (
        Membership.objects.filter(room=room, user=user)
        .values_list("muted_until", flat=True)
        .first()
    )
    if until is None or until >= MUTED_INDEFINITELY:
        return Muted("You are muted in this room.")
    return Muted(
        f"You are muted in this room until {wire.iso_utc(until)}.", until=wire.iso_utc(until)
    )


async def post_message(
    *, room: Room, author: User, body: str, client_id: str | None, reply_to: int | None = None
) -> Posted:
    """Store a message (idempotent per client_id) and broadcast it to the room.

    A retry of a stored message is broadcast again: its first broadcast may
    have been lost with the connection that sent it (hubs drop what they have
    delivered already). A broadcast that fails is logged, not raised: the
    message is stored, so it is acknowledged, and every worker's seq watch
    delivers it from the database."""
    await limits.spend(kind="message", user_id=author.pk)
    posted = await database_sync_to_async(store_message)(
        room=room, author=author, body=body, client_id=client_id, reply_to=reply_to
    )
    message = posted.message
    if message.deleted_at is None:
        try:
            await events.send(
                events.room_group(room.pk),
                events.room_message(room.pk, message.seq, wire.message_json(message)),
            )
        except Exception:
            logger.exception("broadcast of #%s in room %s failed", message.seq, room.pk)
    return posted


async def notify_typing(*, room: Room, user: User, conn_id: str) -> None:
    """Everyone else in the room sees that `user` is typing (not the socket
    `conn_id`). A notice that cannot be sent is dropped: the next one comes."""
    event = events.room_frame(
        room.pk, wire.frame("typing", user=user.username), skip=conn_id, sheddable=True
    )
    try:
        await events.send(events.room_group(room.pk), event)
    except Exception:
        logger.warning("typing notice in room %s dropped: channel layer unavailable", room.pk)
