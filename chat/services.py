"""Writes, and the broadcasts that follow them: the only module that sends to
channel-layer groups.

Group names: `room.<id>` (everyone in a room), `user.<id>` (every socket of a
user), `session.<key>` (every socket of one login session).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from . import presence, selectors, wire
from .models import Membership, Message, ModerationLog, Report, Room

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- errors


class ServiceError(Exception):
    """A refused write; `code` is the contract's error code, `fields` go into
    the error frame beside it (retry_after, until)."""

    code = "bad_request"

    def __init__(self, detail: str, **fields):
        super().__init__(detail)
        self.detail = detail
        self.fields = fields


class RateLimited(ServiceError):
    code = "rate_limited"


class Muted(ServiceError):
    code = "muted"


class Locked(ServiceError):
    code = "locked"


class Forbidden(ServiceError):
    code = "forbidden"


class InvalidInput(ServiceError):
    code = "bad_request"


# ---------------------------------------------------------------- group names


def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def session_group(session_key: str) -> str:
    return f"session.{session_key}"


def _layer():
    return get_channel_layer()


def _room_frame(text: str, skip: str | None = None) -> dict:
    """A group event that every socket in the room forwards as it is (but the
    one named by `skip`)."""
    return {"type": "room.frame", "text": text, "skip": skip}


def _broadcast_sync(group: str, event: dict) -> None:
    layer = _layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, event)


# ---------------------------------------------------------------- rooms


def slug_for(name: str) -> str:
    slug = slugify(name)[:50].strip("-")
    return slug


@transaction.atomic
def create_room(*, owner, name: str, is_private: bool = False) -> Room:
    name = name.strip()
    if not name:
        raise InvalidInput("A room needs a name.")
    if len(name) > 100:
        raise InvalidInput("A room name has at most 100 characters.")
    slug = slug_for(name)
    if not slug:
        raise InvalidInput("A room name needs at least one letter or digit (a-z, 0-9).")
    if Room.objects.filter(slug=slug).exists():
        raise InvalidInput(f"A room with the address '{slug}' exists already.")
    try:
        with transaction.atomic():
            room = Room.objects.create(name=name, slug=slug, is_private=is_private, owner=owner)
    except IntegrityError:  # created by someone else a moment ago
        raise InvalidInput(f"A room with the address '{slug}' exists already.") from None
    Membership.objects.create(room=room, user=owner, role=Membership.Role.OWNER)
    return room


def add_member(*, room: Room, actor, username: str) -> Membership:
    """The room's owner (or site staff) adds a member by username."""
    from django.contrib.auth import get_user_model

    if not (actor.is_staff or room.owner_id == actor.pk):
        raise Forbidden("Only the room's owner can add members.")
    try:
        user = get_user_model().objects.get(username=username.strip())
    except get_user_model().DoesNotExist:
        raise InvalidInput(f"There is no user called '{username.strip()}'.") from None
    membership, _ = Membership.objects.get_or_create(room=room, user=user)
    return membership


def join_room(*, room: Room, user) -> Membership:
    """Opening a room makes you a member of it (the access check came first)."""
    membership, _ = Membership.objects.get_or_create(room=room, user=user)
    return membership


# ---------------------------------------------------------------- messages


@dataclass
class Posted:
    message: Message
    created: bool  # False: a retry of a client_id that was stored already


def _check_rate(user_id: int) -> None:
    limit = settings.CHAT_RATE_LIMIT
    if limit is None:
        return
    count, seconds = limit
    now = time.time()
    window = int(now // seconds)
    key = f"rate:{user_id}:{window}"
    cache.add(key, 0, timeout=seconds + 1)
    if cache.incr(key) > count:
        retry_after = round((window + 1) * seconds - now, 3)
        raise RateLimited(f"Too many messages: {count} per {seconds} s.", retry_after=retry_after)


# One statement takes the room's row lock, allocates the next seq and reads
# what may refuse the send (locked room, muted or banned author).
_NEXT_SEQ_SQL = f"""
UPDATE {Room._meta.db_table} SET last_seq = last_seq + 1 WHERE id = %s
RETURNING last_seq, is_locked,
  (SELECT CASE WHEN is_banned THEN 2 WHEN muted_until > %s THEN 1 ELSE 0 END
   FROM {Membership._meta.db_table} WHERE room_id = %s AND user_id = %s)
"""


def _store_message(*, room: Room, author, body: str, client_id: str | None) -> Posted:
    _check_rate(author.pk)
    now = timezone.now()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    _NEXT_SEQ_SQL,
                    [room.pk, connection.ops.adapt_datetimefield_value(now), room.pk, author.pk],
                )
                seq, locked, standing = cursor.fetchone()
            if locked:
                raise Locked("This room is locked: it is read-only.")
            if standing == 2:
                raise Forbidden("You are banned from this room.")
            if standing == 1:
                raise _muted_error(room=room, user=author)
            message = Message.objects.create(
                room=room, seq=seq, author=author, body=body, client_id=client_id
            )
    except IntegrityError:
        if client_id is None:
            raise
        # The unique (room, author, client_id) caught a retry: answer with the
        # first message's ack, store nothing.
        message = Message.objects.select_related("room", "author").get(
            room=room, author=author, client_id=client_id
        )
        return Posted(message=message, created=False)
    message.room, message.author = room, author
    return Posted(message=message, created=True)


def _muted_error(*, room: Room, user) -> Muted:
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


async def post_message(*, room: Room, author, body: str, client_id: str | None) -> Posted:
    """Store a message (idempotent per client_id) and broadcast it to the room."""
    posted = await database_sync_to_async(_store_message)(
        room=room, author=author, body=body, client_id=client_id
    )
    if posted.created:
        await _layer().group_send(
            room_group(room.pk),
            {
                "type": "room.message",
                "seq": posted.message.seq,
                "text": wire.message_frame(posted.message),
            },
        )
    return posted


async def notify_typing(*, room: Room, user, sender_channel: str) -> None:
    await _layer().group_send(
        room_group(room.pk), _room_frame(wire.frame("typing", user=user.username), sender_channel)
    )


# ---------------------------------------------------------------- presence


async def _announce(room_id: int, kind: str, usernames, skip: str | None = None) -> None:
    for username in usernames:
        await _layer().group_send(
            room_group(room_id), _room_frame(wire.frame(kind, user=username), skip)
        )


async def open_presence(*, room: Room, user, channel_name: str) -> list[str]:
    """Mark a socket online; announce `join` for the user's first socket.
    Returns who is online."""
    result = await presence.get_store().open(room.pk, user.username, channel_name)
    await _announce(room.pk, "leave", [u for u in result.expired if u not in result.online])
    if result.joined:  # the joining socket has it in its hello already
        await _announce(room.pk, "join", [user.username], skip=channel_name)
    _local_sockets.setdefault(room.pk, {})[channel_name] = user.username
    _ensure_heartbeat()
    return result.online


async def close_presence(*, room: Room, user, channel_name: str) -> None:
    sockets = _local_sockets.get(room.pk, {})
    sockets.pop(channel_name, None)
    if not sockets:
        _local_sockets.pop(room.pk, None)
    if await presence.get_store().close(room.pk, user.username, channel_name):
        await _announce(room.pk, "leave", [user.username])


# This worker's open sockets, {room_id: {channel_name: username}}: refreshed in
# the store on one heartbeat for the whole process, not a timer per socket.
_local_sockets: dict[int, dict[str, str]] = {}
_heartbeats: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def _ensure_heartbeat() -> None:
    loop = asyncio.get_running_loop()
    task = _heartbeats.get(loop)
    if task is None or task.done():
        _heartbeats[loop] = loop.create_task(_heartbeat_forever())


async def _heartbeat_forever() -> None:
    interval = max(settings.CHAT_PRESENCE_TTL / 3, 0.2)
    while True:
        await asyncio.sleep(interval)
        try:
            await heartbeat_once()
        except Exception:  # Redis away for a moment: try again next beat
            logger.exception("presence heartbeat failed")


async def heartbeat_once() -> None:
    """Refresh this worker's sockets and sweep out the expired sockets of dead
    workers, announcing `leave` for users who have none left."""
    store = presence.get_store()
    for room_id, sockets in list(_local_sockets.items()):
        result = await store.heartbeat(room_id, dict(sockets))
        await _announce(room_id, "leave", result.expired)
        await _announce(room_id, "join", result.returned)


# ---------------------------------------------------------------- sessions


def end_session(*, session_key: str) -> None:
    """Close every socket opened with this login session (logout)."""
    _broadcast_sync(session_group(session_key), {"type": "socket.close", "code": 4401})


# ---------------------------------------------------------------- moderation
#
# Every action checks who may do it, writes one ModerationLog row, and
# broadcasts its effect to open sockets once the transaction commits.

# A mute with no end is stored as a date far enough away.
MUTED_INDEFINITELY = datetime(9999, 12, 31, tzinfo=UTC)


def _require_moderator(*, actor, room: Room, target=None) -> None:
    actor_rank = selectors.moderation_rank(user=actor, room=room)
    if actor_rank < selectors.RANK_MODERATOR:
        raise Forbidden(f"You cannot moderate {room.name}.")
    if target is not None and target.pk != actor.pk:
        if selectors.moderation_rank(user=target, room=room) >= actor_rank:
            raise Forbidden(f"You cannot moderate {target.username} in {room.name}.")


def _require_staff(*, actor, target) -> None:
    if not (actor.is_staff and actor.is_active):
        raise Forbidden("Only site staff can do that.")
    if target.pk == actor.pk:
        raise Forbidden("You cannot do that to your own account.")
    if target.is_superuser and not actor.is_superuser:
        raise Forbidden("Only a superuser can do that to a superuser.")


def _log(
    *, actor, action: str, summary: str, reason: str = "", room=None, target_user=None, message=None
) -> ModerationLog:
    return ModerationLog.objects.create(
        actor=actor,
        action=action,
        summary=summary[:300],
        reason=reason[:500],
        room=room,
        target_user=target_user,
        message=message,
    )


def _broadcast_on_commit(group: str, event: dict) -> None:
    transaction.on_commit(lambda: _broadcast_sync(group, event))


@transaction.atomic
def remove_message(*, message: Message, actor, reason: str = "") -> bool:
    """Soft-delete a message: gone from history and resume, and every open
    socket in the room is told to drop it. False if it was removed already."""
    room = message.room
    _require_moderator(actor=actor, room=room, target=message.author)
    removed = Message.objects.filter(pk=message.pk, deleted_at__isnull=True).update(
        deleted_at=timezone.now(), deleted_by=actor
    )
    if not removed:
        return False
    message.refresh_from_db(fields=["deleted_at", "deleted_by"])
    _log(
        actor=actor,
        action=ModerationLog.Action.REMOVE_MESSAGE,
        reason=reason,
        room=room,
        target_user=message.author,
        message=message,
        summary=f"{actor.username} removed #{message.seq} by {message.author.username} "
        f"in {room.slug}",
    )
    _broadcast_on_commit(
        room_group(room.pk),
        _room_frame(wire.frame("message.deleted", id=message.pk, seq=message.seq)),
    )
    return True


@transaction.atomic
def restore_message(*, message: Message, actor, reason: str = "") -> bool:
    """Undo a removal: the message is back in history (open sockets see it on
    their next load; it keeps its place in seq order)."""
    room = message.room
    _require_moderator(actor=actor, room=room, target=message.author)
    if not Message.objects.filter(pk=message.pk, deleted_at__isnull=False).update(
        deleted_at=None, deleted_by=None
    ):
        return False
    _log(
        actor=actor,
        action=ModerationLog.Action.RESTORE_MESSAGE,
        reason=reason,
        room=room,
        target_user=message.author,
        message=message,
        summary=f"{actor.username} restored #{message.seq} by {message.author.username} "
        f"in {room.slug}",
    )
    return True


def _membership_for_update(*, room: Room, user) -> Membership:
    membership, _ = Membership.objects.select_for_update().get_or_create(room=room, user=user)
    return membership


@transaction.atomic
def ban_user(*, room: Room, user, actor, reason: str = "") -> bool:
    """The user's open sockets in the room close with 4403 at once, on every
    worker, and they cannot come back until unbanned."""
    _require_moderator(actor=actor, room=room, target=user)
    if user.pk == actor.pk:
        raise Forbidden("You cannot ban yourself.")
    membership = _membership_for_update(room=room, user=user)
    if membership.is_banned:
        return False
    membership.is_banned = True
    membership.save(update_fields=["is_banned"])
    _log(
        actor=actor,
        action=ModerationLog.Action.BAN,
        reason=reason,
        room=room,
        target_user=user,
        summary=f"{actor.username} banned {user.username} from {room.slug}",
    )
    _broadcast_on_commit(room_group(room.pk), {"type": "room.ban", "user_id": user.pk})
    return True


@transaction.atomic
def unban_user(*, room: Room, user, actor, reason: str = "") -> bool:
    _require_moderator(actor=actor, room=room)
    if not Membership.objects.filter(room=room, user=user, is_banned=True).update(is_banned=False):
        return False
    _log(
        actor=actor,
        action=ModerationLog.Action.UNBAN,
        reason=reason,
        room=room,
        target_user=user,
        summary=f"{actor.username} unbanned {user.username} in {room.slug}",
    )
    return True


@transaction.atomic
def mute_user(
    *, room: Room, user, actor, until: datetime | None = None, reason: str = ""
) -> Membership:
    """Until `until` (None: until unmuted) the user's sends get `error muted`;
    nobody else sees anything."""
    _require_moderator(actor=actor, room=room, target=user)
    if user.pk == actor.pk:
        raise Forbidden("You cannot mute yourself.")
    if until is not None and until <= timezone.now():
        raise InvalidInput("A mute must end in the future.")
    membership = _membership_for_update(room=room, user=user)
    membership.muted_until = until or MUTED_INDEFINITELY
    membership.save(update_fields=["muted_until"])
    how_long = f"until {wire.iso_utc(until)}" if until else "indefinitely"
    _log(
        actor=actor,
        action=ModerationLog.Action.MUTE,
        reason=reason,
        room=room,
        target_user=user,
        summary=f"{actor.username} muted {user.username} in {room.slug} {how_long}",
    )
    return membership


@transaction.atomic
def unmute_user(*, room: Room, user, actor, reason: str = "") -> bool:
    _require_moderator(actor=actor, room=room)
    if not Membership.objects.filter(room=room, user=user, muted_until__gt=timezone.now()).update(
        muted_until=None
    ):
        return False
    _log(
        actor=actor,
        action=ModerationLog.Action.UNMUTE,
        reason=reason,
        room=room,
        target_user=user,
        summary=f"{actor.username} unmuted {user.username} in {room.slug}",
    )
    return True


@transaction.atomic
def set_room_locked(*, room: Room, actor, locked: bool, reason: str = "") -> bool:
    """A locked room is read-only: every send gets `error locked`."""
    _require_moderator(actor=actor, room=room)
    if not Room.objects.filter(pk=room.pk, is_locked=not locked).update(is_locked=locked):
        return False
    room.is_locked = locked
    action = ModerationLog.Action.LOCK if locked else ModerationLog.Action.UNLOCK
    verb = "locked" if locked else "unlocked"
    _log(
        actor=actor,
        action=action,
        reason=reason,
        room=room,
        summary=f"{actor.username} {verb} {room.slug}",
    )
    return True


@transaction.atomic
def set_account_active(*, user, actor, active: bool, reason: str = "") -> bool:
    """Deactivating an account closes all of its sockets with 4401, on every
    worker; it can no longer log in or connect."""
    _require_staff(actor=actor, target=user)
    model = type(user)
    if not model.objects.filter(pk=user.pk, is_active=not active).update(is_active=active):
        return False
    user.is_active = active
    action = ModerationLog.Action.REACTIVATE if active else ModerationLog.Action.DEACTIVATE
    verb = "reactivated" if active else "deactivated"
    _log(
        actor=actor,
        action=action,
        reason=reason,
        target_user=user,
        summary=f"{actor.username} {verb} the account {user.username}",
    )
    if not active:
        _broadcast_on_commit(user_group(user.pk), {"type": "socket.close", "code": 4401})
    return True


@transaction.atomic
def set_role(*, room: Room, user, role: str, actor, reason: str = "") -> Membership:
    """Owners (and staff) appoint and dismiss room moderators."""
    if role not in (Membership.Role.MODERATOR, Membership.Role.MEMBER):
        raise InvalidInput("A role is either moderator or member (a room has one owner).")
    if selectors.moderation_rank(user=actor, room=room) < selectors.RANK_OWNER:
        raise Forbidden("Only the room's owner can change roles.")
    membership = _membership_for_update(room=room, user=user)
    if membership.role == Membership.Role.OWNER:
        raise Forbidden("The owner's role cannot be changed.")
    if membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
        _log(
            actor=actor,
            action=ModerationLog.Action.SET_ROLE,
            reason=reason,
            room=room,
            target_user=user,
            summary=f"{actor.username} made {user.username} {role} of {room.slug}",
        )
    return membership


def report_message(*, message: Message, reporter, reason: str = "") -> Report:
    """Anyone who can see a message can report it (once)."""
    try:
        selectors.get_room_for(user=reporter, slug=message.room.slug)
    except selectors.RoomNotFound:
        raise Forbidden("You cannot report that message.") from None
    if message.deleted_at is not None:
        raise InvalidInput("That message was removed already.")
    report, _ = Report.objects.get_or_create(
        message=message, reporter=reporter, defaults={"reason": reason.strip()[:500]}
    )
    return report


@transaction.atomic
def close_report(*, report: Report, actor, resolved: bool, reason: str = "") -> bool:
    """Resolve (acted on) or dismiss (nothing wrong) an open report."""
    room = report.message.room
    _require_moderator(actor=actor, room=room)
    status = Report.Status.RESOLVED if resolved else Report.Status.DISMISSED
    if not Report.objects.filter(pk=report.pk, status=Report.Status.OPEN).update(
        status=status, handled_by=actor, handled_at=timezone.now()
    ):
        return False
    report.refresh_from_db()
    action = (
        ModerationLog.Action.RESOLVE_REPORT if resolved else ModerationLog.Action.DISMISS_REPORT
    )
    _log(
        actor=actor,
        action=action,
        reason=reason,
        room=room,
        target_user=report.message.author,
        message=report.message,
        summary=f"{actor.username} {status} the report by {report.reporter.username} "
        f"of #{report.message.seq} in {room.slug}",
    )
    return True
