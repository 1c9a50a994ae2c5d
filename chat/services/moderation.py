"""Moderation: every action checks who may do it, writes one ModerationLog
row, and broadcasts its effect to open sockets once the transaction commits."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import events, selectors, wire
from ..models import Membership, Message, ModerationLog, Report, Room
from .errors import Forbidden, InvalidInput, NotFound
from .messages import MUTED_INDEFINITELY

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# ---------------------------------------------------------------- mute durations
# One source for the durations offered (settings.CHAT_MUTE_MINUTES): the room
# page's dialog, the admin's action form and the mute endpoint all read them
# from here.

_UNITS = [(7 * 24 * 60, "week"), (24 * 60, "day"), (60, "hour"), (1, "minute")]


def duration_label(minutes: int) -> str:
    """10 -> "10 minutes", 60 -> "1 hour", 1440 -> "1 day", 90 -> "90 minutes"."""
    for size, unit in _UNITS:
        if minutes % size == 0:
            count = minutes // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    raise AssertionError("unreachable: every whole number is minutes")


def mute_choices() -> list[tuple[int, str]]:
    """(minutes, label) for each duration a moderator may choose."""
    return [(minutes, duration_label(minutes)) for minutes in settings.CHAT_MUTE_MINUTES]


def mute_until(minutes: int | str | None) -> datetime | None:
    """The end of a mute of `minutes` from now (None or "": until unmuted).
    Any other number than the offered ones is refused."""
    if minutes in (None, ""):
        return None
    offered = settings.CHAT_MUTE_MINUTES
    if str(minutes) not in {str(m) for m in offered}:
        listed = ", ".join(str(m) for m in offered)
        raise InvalidInput(f"minutes must be one of {listed}, or absent (until unmuted).")
    return timezone.now() + timedelta(minutes=int(minutes))


def _tell_user(room: Room, user: User, text: str) -> None:
    """After commit, a frame to the user's own open sockets in the room."""
    events.send_on_commit(
        events.room_group(room.pk), events.room_frame(room.pk, text, user_id=user.pk)
    )


_ROLE_WORDS: dict[str, str] = {
    Membership.Role.MODERATOR: "a moderator",
    Membership.Role.MEMBER: "a plain member",
}


# ---------------------------------------------------------------- who may


def _require_moderator(
    *, actor: User, room: Room, perm: str = selectors.MODERATE_MEMBERS, target: User | None = None
) -> None:
    """The actor moderates `room` (for the kind of action `perm` stands for)
    and outranks `target`, banned or not."""
    actor_rank = selectors.moderation_rank(user=actor, room=room, perm=perm)
    if actor_rank < selectors.RANK_MODERATOR:
        raise Forbidden(f"You cannot moderate {room.name}.")
    if target is not None and target.pk != actor.pk:
        if selectors.standing_rank(user=target, room=room, perm=perm) >= actor_rank:
            raise Forbidden(f"You cannot moderate {target.username} in {room.name}.")


def _require_power_over(
    *, actor: User, room: Room, user: User, verb: str, perm: str = selectors.MODERATE_MEMBERS
) -> None:
    """For actions on a person: never on oneself (a muted moderator does not
    unmute themself), and only on someone of lower rank."""
    if user.pk == actor.pk:
        raise Forbidden(f"You cannot {verb} yourself.")
    _require_moderator(actor=actor, room=room, perm=perm, target=user)


def _require_staff(*, actor: User, target: User) -> None:
    if not selectors.is_site_moderator(user=actor, perm=selectors.MANAGE_ACCOUNTS):
        raise Forbidden("Only site staff can do that.")
    if target.pk == actor.pk:
        raise Forbidden("You cannot do that to your own account.")
    if target.is_superuser and not actor.is_superuser:
        raise Forbidden("Only a superuser can do that to a superuser.")


def _log(
    *,
    actor: User,
    action: str,
    summary: str,
    reason: str = "",
    room: Room | None = None,
    target_user: User | None = None,
    message: Message | None = None,
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


@transaction.atomic
def remove_message(*, message: Message, actor: User, reason: str = "") -> bool:
    """Soft-delete a message: gone from history and resume, and every open
    socket in the room is told to drop it. False if it was removed already."""
    room = message.room
    _require_moderator(
        actor=actor, room=room, perm=selectors.MODERATE_MESSAGES, target=message.author
    )
    from .changes import next_change  # changes imports messages, as this module does

    rev = next_change(room=room, user=None)
    removed = Message.objects.filter(pk=message.pk, deleted_at__isnull=True).update(
        deleted_at=timezone.now(), deleted_by=actor, rev=rev
    )
    if not removed:
        transaction.set_rollback(True)
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
        f"in {room.name}",
    )
    events.send_on_commit(
        events.room_group(room.pk),
        events.room_deleted(room.pk, message_id=message.pk, seq=message.seq, rev=rev),
    )
    return True


@transaction.atomic
def restore_message(*, message: Message, actor: User, reason: str = "") -> bool:
    """Undo a removal: the message is back in history (open sockets see it on
    their next load; it keeps its place in seq order)."""
    room = message.room
    _require_moderator(
        actor=actor, room=room, perm=selectors.MODERATE_MESSAGES, target=message.author
    )
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
        f"in {room.name}",
    )
    return True


def _membership_for_update(*, room: Room, user: User) -> Membership:
    """The user's membership, locked. Moderation acts on members only: it
    never creates a membership, which in a private room would let a
    stranger in (a mute, or a ban and then an unban)."""
    membership = Membership.objects.select_for_update().filter(room=room, user=user).first()
    if membership is None:
        raise NotFound(f"{user.username} is not a member of {room.name}.")
    return membership


@transaction.atomic
def ban_user(*, room: Room, user: User, actor: User, reason: str = "") -> bool:
    """The user's open sockets in the room close with 4403 at once, on every
    worker, and they cannot come back until unbanned."""
    _require_power_over(actor=actor, room=room, user=user, verb="ban")
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
        summary=f"{actor.username} banned {user.username} from {room.name}",
    )
    events.send_on_commit(
        events.room_group(room.pk),
        events.room_close(room.pk, code=events.Close.NO_ACCESS, user_id=user.pk),
    )
    return True


@transaction.atomic
def unban_user(*, room: Room, user: User, actor: User, reason: str = "") -> bool:
    _require_power_over(actor=actor, room=room, user=user, verb="unban")
    if not Membership.objects.filter(room=room, user=user, is_banned=True).update(is_banned=False):
        return False
    _log(
        actor=actor,
        action=ModerationLog.Action.UNBAN,
        reason=reason,
        room=room,
        target_user=user,
        summary=f"{actor.username} unbanned {user.username} in {room.name}",
    )
    return True


@transaction.atomic
def mute_user(
    *, room: Room, user: User, actor: User, until: datetime | None = None, reason: str = ""
) -> Membership:
    """Until `until` (None: until unmuted) the user's sends get `error muted`;
    nobody else sees anything."""
    _require_power_over(actor=actor, room=room, user=user, verb="mute")
    if until is not None and until <= timezone.now():
        raise InvalidInput("A mute must end in the future.")
    membership = _membership_for_update(room=room, user=user)
    membership.muted_until = until or MUTED_INDEFINITELY
    membership.save(update_fields=["muted_until"])
    how_long = f"until {wire.iso_utc(until)}" if until else "until unmuted"
    _log(
        actor=actor,
        action=ModerationLog.Action.MUTE,
        reason=reason,
        room=room,
        target_user=user,
        summary=f"{actor.username} muted {user.username} in {room.name} {how_long}",
    )
    # The muted user hears of it at once (the page shows when it ends).
    ends = {"until": wire.iso_utc(until)} if until else {}
    _tell_user(room, user, wire.frame("muted", room=room.slug, **ends))
    return membership


@transaction.atomic
def unmute_user(*, room: Room, user: User, actor: User, reason: str = "") -> bool:
    _require_power_over(actor=actor, room=room, user=user, verb="unmute")
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
        summary=f"{actor.username} unmuted {user.username} in {room.name}",
    )
    _tell_user(room, user, wire.frame("unmuted", room=room.slug))
    return True


@transaction.atomic
def set_room_locked(*, room: Room, actor: User, locked: bool, reason: str = "") -> bool:
    """A locked room is read-only: every send gets `error locked`."""
    _require_moderator(actor=actor, room=room, perm=selectors.MODERATE_ROOMS)
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
        summary=f"{actor.username} {verb} {room.name}",
    )
    return True


@transaction.atomic
def set_account_active(*, user: User, actor: User, active: bool, reason: str = "") -> bool:
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
        events.send_on_commit(
            events.CONTROL_GROUP,
            events.close_sockets(code=events.Close.SESSION_ENDED, user_id=user.pk),
        )
    return True


@transaction.atomic
def set_role(*, room: Room, user: User, role: str, actor: User, reason: str = "") -> Membership:
    """Owners (and staff) appoint and dismiss room moderators."""
    if role not in (Membership.Role.MODERATOR, Membership.Role.MEMBER):
        raise InvalidInput("A role is either moderator or member (a room has one owner).")
    if selectors.moderation_rank(user=actor, room=room) < selectors.RANK_OWNER:
        raise Forbidden("Only the room's owner can change roles.")
    if user.pk == room.owner_id:
        raise Forbidden("The owner's role cannot be changed.")
    membership = _membership_for_update(room=room, user=user)
    if membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
        _log(
            actor=actor,
            action=ModerationLog.Action.SET_ROLE,
            reason=reason,
            room=room,
            target_user=user,
            summary=f"{actor.username} made {user.username} {_ROLE_WORDS[role]} in {room.name}",
        )
    return membership


@transaction.atomic
def set_room_owner(*, room: Room, user: User, actor: User, reason: str = "") -> bool:
    """Staff give a room to someone else (Room.owner is the one record of
    ownership). The new owner becomes a member if they were not; the old one
    stays a member with the role they had. False if nothing changed."""
    if not selectors.is_site_moderator(user=actor, perm=selectors.MODERATE_ROOMS):
        raise Forbidden("Only site staff can give a room to someone else.")
    if not user.is_active:
        raise InvalidInput(f"{user.username}'s account is deactivated.")
    membership, _ = Membership.objects.select_for_update().get_or_create(room=room, user=user)
    return _give_room(room=room, user=user, membership=membership, actor=actor, reason=reason)


@transaction.atomic
def hand_over_room(*, room: Room, by: User, to: User, reason: str = "") -> bool:
    """The room's owner (or staff who may change rooms) makes another member
    its owner, from the room's settings page; then the former owner may
    leave. The former owner stays on as a moderator, as a workspace's owner
    who hands over stays an admin on Slack: the new owner outranks them and
    can dismiss them. Every open page in the room is told (`owner` frame).
    Refused, with nothing changed, for a direct conversation, for anyone
    below the owner, and for someone who is not a member, is banned, is
    deactivated or owns the room already."""
    if room.is_direct:
        raise InvalidInput("A direct conversation has no owner to hand it over.")
    # The room's row first: of two hand-overs at once, the second sees the
    # owner the first made (and its `by` is no longer the owner).
    room.owner_id = (
        Room.objects.select_for_update().values_list("owner_id", flat=True).get(pk=room.pk)
    )
    if not selectors.can_manage_room(user=by, room=room):
        raise Forbidden(f"Only the owner of {room.name} can hand it over.")
    if to.pk == room.owner_id:
        raise InvalidInput(f"{to.username} owns {room.name} already: choose another member.")
    if to.pk == by.pk:
        raise InvalidInput("Hand the room over to someone else.")
    membership = _membership_for_update(room=room, user=to)  # never a stranger
    if not to.is_active:
        raise InvalidInput(f"{to.username}'s account is deactivated.")
    former = room.owner
    if not _give_room(room=room, user=to, membership=membership, actor=by, reason=reason):
        return False
    Membership.objects.filter(room=room, user=former).update(role=Membership.Role.MODERATOR)
    events.send_on_commit(
        events.room_group(room.pk),
        events.room_frame(
            room.pk,
            wire.frame("owner", room=room.slug, user=to.username, previous=former.username),
        ),
    )
    return True


def _give_room(*, room: Room, user: User, membership: Membership, actor: User, reason: str) -> bool:
    """Make `user`, whose `membership` the caller holds locked, the room's
    owner, logged. False if they own it already. Runs in the caller's
    transaction."""
    if membership.is_banned:
        raise InvalidInput(f"{user.username} is banned from {room.name}: unban them first.")
    previous = (
        Room.objects.select_for_update().values_list("owner__username", flat=True).get(pk=room.pk)
    )
    if not Room.objects.filter(pk=room.pk).exclude(owner=user).update(owner=user):
        return False
    room.owner = user
    _log(
        actor=actor,
        action=ModerationLog.Action.SET_OWNER,
        reason=reason,
        room=room,
        target_user=user,
        summary=f"{actor.username} gave {room.name} from {previous} to {user.username}",
    )
    return True


@transaction.atomic
def remove_member(*, room: Room, user: User, actor: User, reason: str = "") -> None:
    """Remove someone of lower rank from a room (in a private room they lose
    access), written to the log. A ban is not lifted this way: deleting a
    banned membership would be an unban without the log, so it is refused
    (unban first). The owner's membership stays while they own the room."""
    _require_power_over(
        actor=actor, room=room, user=user, verb="remove", perm=selectors.REMOVE_MEMBERS
    )
    membership = _membership_for_update(room=room, user=user)
    if membership.is_banned:
        raise Forbidden(f"{user.username} is banned from {room.name}: unban them first.")
    if user.pk == room.owner_id:
        raise Forbidden(f"{user.username} owns {room.name}: give the room to someone else first.")
    membership.delete()
    _log(
        actor=actor,
        action=ModerationLog.Action.REMOVE_MEMBER,
        reason=reason,
        room=room,
        target_user=user,
        summary=f"{actor.username} removed {user.username} from {room.name}",
    )


def report_message(*, message: Message, reporter: User, reason: str = "") -> Report:
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
def close_report(*, report: Report, actor: User, resolved: bool, reason: str = "") -> bool:
    """Resolve (acted on) or dismiss (nothing wrong) an open report."""
    room = report.message.room
    _require_moderator(actor=actor, room=room, perm=selectors.MODERATE_REPORTS)
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
        f"of #{report.message.seq} in {room.name}",
    )
    return True
