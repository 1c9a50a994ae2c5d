"""Changes to stored messages by the people in the room: edit and delete your
own, react to any. Each takes the room's next change number (Room.last_change,
stored as the message's `rev`) under the room's row lock, so changes of a
room are ordered, and a client that resumes asks for those after the last
one it saw (chat.selectors.changes_since). Each is idempotent: doing it again
changes nothing and broadcasts nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .. import events, limits, selectors
from ..models import Membership, Message, MessageEdit, Reaction, Room
from .errors import Forbidden, InvalidInput, Locked, NotFound, ServiceError
from .messages import muted_error

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


class NotYours(ServiceError):
    """Only the author may do this to a message (the socket stays open)."""

    code = "not_yours"
    http_status = 403


class TooLate(ServiceError):
    code = "too_late"
    http_status = 403


class Removed(ServiceError):
    code = "removed"
    http_status = 404


_NEXT_CHANGE_SQL = f"""
UPDATE {Room._meta.db_table} SET last_change = last_change + 1 WHERE id = %s
RETURNING last_change, is_locked,
  (SELECT CASE WHEN is_banned THEN 2 WHEN muted_until > %s THEN 1 ELSE 0 END
   FROM {Membership._meta.db_table} WHERE room_id = %s AND user_id = %s)
"""


def next_change(*, room: Room, user: User | None, writing: bool = True) -> int:
    """Take the room's next change number (inside a transaction: the room's
    row stays locked until it ends). With a `user`, refuse one who is banned
    and, when `writing` (anything but deleting their own), one who is muted
    or in a locked room."""
    now = timezone.now()
    user_id = user.pk if user is not None else None
    with connection.cursor() as cursor:
        cursor.execute(
            _NEXT_CHANGE_SQL,
            [room.pk, connection.ops.adapt_datetimefield_value(now), room.pk, user_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Forbidden("This room no longer exists.")
    rev, locked, standing = row
    if user is not None:
        if standing == 2:
            raise Forbidden("You are banned from this room.")
        if writing and locked:
            raise Locked("This room is locked: it is read-only.")
        if writing and standing == 1:
            raise muted_error(room=room, user=user)
    return rev


def _message_in(room: Room, message_id: int) -> Message:
    message = Message.objects.filter(room=room, pk=message_id).select_related("author").first()
    if message is None:
        raise NotFound("There is no such message in this room.")
    if message.deleted_at is not None:
        raise Removed("That message was removed.")
    return message


def _own_message(room: Room, user: User, message_id: int) -> Message:
    message = _message_in(room, message_id)
    if message.author_id != user.pk:
        raise NotYours("You can only change your own messages.")
    return message


def _current(room: Room, message_id: int) -> tuple[int, str]:
    return selectors.message_text(room=room, message_id=message_id)


# ---------------------------------------------------------------- edit


def store_edit(*, room: Room, user: User, message_id: int, body: str) -> tuple[Message, str | None]:
    """Replace the text of the user's own message, keeping the old text as a
    MessageEdit. Returns the message and its new JSON (None: nothing changed,
    the text was that already)."""
    message = _own_message(room, user, message_id)
    window = settings.CHAT_EDIT_WINDOW
    if window and timezone.now() - message.created > timedelta(seconds=window):
        minutes = window // 60 if window % 60 == 0 else None
        limit = f"{minutes} minutes" if minutes else f"{window} seconds"
        raise TooLate(f"Messages can be edited for {limit} after sending.")
    with transaction.atomic():
        rev = next_change(room=room, user=user)
        old = Message.objects.filter(pk=message.pk).values_list("body", "deleted_at").get()
        if old[1] is not None:
            raise Removed("That message was removed.")
        if old[0] == body:
            transaction.set_rollback(True)  # the change number is not spent
            return message, None
        MessageEdit.objects.create(message=message, body=old[0], editor=user)
        Message.objects.filter(pk=message.pk).update(body=body, edited_at=timezone.now(), rev=rev)
        message.rev = rev
        _, text = _current(room, message.pk)
    return message, text


async def edit_message(*, room: Room, user: User, message_id: int, body: str) -> Message:
    """Edit the user's own message (within CHAT_EDIT_WINDOW), counted against
    the message rate limit; every socket in the room gets `message.updated`."""
    await limits.spend(kind="message", user_id=user.pk)
    message, text = await database_sync_to_async(store_edit)(
        room=room, user=user, message_id=message_id, body=body
    )
    if text is not None:
        await _broadcast_change(room, message.seq, message.rev, text)
    return message


async def _broadcast_change(room: Room, seq: int, rev: int, text: str) -> None:
    try:
        await events.send(
            events.room_group(room.pk), events.room_changed(room.pk, seq=seq, rev=rev, text=text)
        )
    except Exception:  # stored: a resume with `changes` has it
        logger.exception("broadcast of a change of #%s in room %s failed", seq, room.pk)


# ---------------------------------------------------------------- delete


def store_deletion(*, room: Room, user: User, message_id: int) -> tuple[Message, int | None]:
    """Remove the user's own message (soft, as a moderator's removal, with
    deleted_by the author). Returns the message and the change number (None:
    it was removed already)."""
    message = Message.objects.filter(room=room, pk=message_id).select_related("author").first()
    if message is None:
        raise NotFound("There is no such message in this room.")
    if message.author_id != user.pk:
        raise NotYours("You can only delete your own messages.")
    if message.deleted_at is not None:
        return message, None
    with transaction.atomic():
        rev = next_change(room=room, user=user, writing=False)
        done = Message.objects.filter(pk=message.pk, deleted_at__isnull=True).update(
            deleted_at=timezone.now(), deleted_by=user, rev=rev
        )
        if not done:
            transaction.set_rollback(True)
            return message, None
    return message, rev


async def delete_message(*, room: Room, user: User, message_id: int) -> Message:
    """Delete the user's own message: every socket in the room gets
    `message.deleted` with `by: "author"`; it leaves history and resumes."""
    await limits.spend(kind="message", user_id=user.pk)
    message, rev = await database_sync_to_async(store_deletion)(
        room=room, user=user, message_id=message_id
    )
    if rev is not None:
        try:
            await events.send(
                events.room_group(room.pk),
                events.room_deleted(
                    room.pk, message_id=message.pk, seq=message.seq, rev=rev, by="author"
                ),
            )
        except Exception:
            logger.exception("broadcast of the deletion of #%s failed", message.seq)
    return message


# ---------------------------------------------------------------- reactions


def store_reaction(
    *, room: Room, user: User, message_id: int, emoji: str, on: bool
) -> tuple[Message, str | None]:
    """Add (`on`) or take back the user's `emoji` on a message. Returns the
    message and its new JSON (None: it was so already)."""
    if emoji not in settings.CHAT_REACTIONS:
        raise InvalidInput(f"emoji must be one of {' '.join(settings.CHAT_REACTIONS)}")
    message = _message_in(room, message_id)
    mine = Reaction.objects.filter(message=message, user=user, emoji=emoji)
    if mine.exists() == on:
        return message, None
    with transaction.atomic():
        rev = next_change(room=room, user=user)
        if on:
            _, created = Reaction.objects.get_or_create(message=message, user=user, emoji=emoji)
            changed = created
        else:
            changed = mine.delete()[0] > 0
        if not changed:
            transaction.set_rollback(True)
            return message, None
        if not Message.objects.filter(pk=message.pk, deleted_at__isnull=True).update(rev=rev):
            raise Removed("That message was removed.")
        message.rev = rev
        _, text = _current(room, message.pk)
    return message, text


async def react(*, room: Room, user: User, message_id: int, emoji: str, on: bool) -> Message:
    """Add or take back a reaction (rate limited like messages); every socket
    in the room gets `message.updated` with the new counts."""
    await limits.spend(kind="message", user_id=user.pk)
    message, text = await database_sync_to_async(store_reaction)(
        room=room, user=user, message_id=message_id, emoji=emoji, on=on
    )
    if text is not None:
        await _broadcast_change(room, message.seq, message.rev, text)
    return message
