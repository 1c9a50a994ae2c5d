"""Read positions: how far each member has read in each room. Kept on the
server (Membership.last_read_seq), so it follows the user across devices and
workers; the directory's unread counts are reckoned from it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.db import connection

from .. import events, wire
from ..models import Membership, Room

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# One statement: move the position forward to `seq`, never past the room's
# last message (a client cannot mark messages read before they exist), and
# never backwards (a late frame from another device changes nothing).
_TARGET = (
    "(SELECT CASE WHEN last_seq < %s THEN last_seq ELSE %s END"
    f" FROM {Room._meta.db_table} WHERE id = %s)"
)
_ADVANCE_SQL = f"""
UPDATE {Membership._meta.db_table} SET last_read_seq = {_TARGET}
WHERE room_id = %s AND user_id = %s AND last_read_seq < {_TARGET}
RETURNING last_read_seq
"""


def advance_read_position(*, room: Room, user: User, seq: int) -> int | None:
    """Store that `user` has read `room` up to `seq`. Returns the new
    position, or None when it did not move (not further, or not a member)."""
    target = [seq, seq, room.pk]
    with connection.cursor() as cursor:
        cursor.execute(_ADVANCE_SQL, [*target, room.pk, user.pk, *target])
        row = cursor.fetchone()
    return row[0] if row else None


async def mark_read(*, room: Room, user: User, seq: int, conn_id: str | None = None) -> int | None:
    """Advance the user's read position and tell their other sockets in the
    room (another tab or device clears its unread state) with a `read` frame;
    not the socket `conn_id` whose frame moved it."""
    position = await database_sync_to_async(advance_read_position)(room=room, user=user, seq=seq)
    if position is not None:
        await events.send(
            events.room_group(room.pk),
            events.room_frame(
                room.pk,
                wire.frame("read", room=room.slug, seq=position),
                skip=conn_id,
                user_id=user.pk,
            ),
        )
    return position
