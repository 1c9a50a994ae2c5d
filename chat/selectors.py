"""Reads, with the access checks that guard them.

A room that does not exist and a room the user may not see raise the same
RoomNotFound, so that nobody can probe which private rooms exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from .models import Membership, Message, Room


class RoomNotFound(Exception):
    """No such room, or not for this user: the same answer for both."""


@dataclass
class HistoryPage:
    messages: list[Message]
    has_more: bool  # older messages exist before the first one here


def get_room_for(*, user, slug: str) -> Room:
    if not user.is_authenticated:
        raise RoomNotFound(slug)
    try:
        return Room.objects.visible_to(user).get(slug=slug)
    except Room.DoesNotExist:
        raise RoomNotFound(slug) from None


def room_directory(*, user) -> list[Room]:
    return list(Room.objects.visible_to(user).select_related("owner").order_by("name"))


def room_last_seq(*, room: Room) -> int:
    """The room's highest seq now, read fresh (messages may have come since)."""
    return Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)


def membership_of(*, room: Room, user) -> Membership | None:
    return Membership.objects.filter(room=room, user=user).first()


def room_members(*, room: Room) -> list[Membership]:
    return list(
        Membership.objects.filter(room=room, is_banned=False)
        .select_related("user")
        .order_by("user__username")
    )


def _with_authors(queryset):
    return queryset.select_related("author", "room")


def latest_messages(*, room: Room, limit: int | None = None) -> HistoryPage:
    limit = limit or settings.CHAT_HISTORY_PAGE
    return messages_before(room=room, before=None, limit=limit)


def messages_before(*, room: Room, before: int | None, limit: int) -> HistoryPage:
    """Up to `limit` visible messages older than seq `before` (all if None), oldest first."""
    queryset = Message.objects.visible().filter(room=room)
    if before is not None:
        queryset = queryset.filter(seq__lt=before)
    page = list(_with_authors(queryset).order_by("-seq")[: limit + 1])
    has_more = len(page) > limit
    return HistoryPage(messages=page[:limit][::-1], has_more=has_more)


def messages_after(*, room: Room, after: int, upto: int | None = None) -> HistoryPage:
    """Every visible message with seq after `after` (up to `upto`), oldest first."""
    queryset = Message.objects.visible().filter(room=room, seq__gt=after)
    if upto is not None:
        queryset = queryset.filter(seq__lte=upto)
    messages = list(_with_authors(queryset).order_by("seq"))
    has_more = Message.objects.visible().filter(room=room, seq__lte=after).exists()
    return HistoryPage(messages=messages, has_more=has_more)


# Who may moderate whom: an actor acts only on someone of lower rank. Site
# staff rank above everyone in every room only with the admin permission
# for the same action (a staff account without it can do nothing in the
# admin either, so it has no rank here beyond its room role).
RANK_STAFF, RANK_OWNER, RANK_MODERATOR, RANK_MEMBER = 3, 2, 1, 0
_ROLE_RANK = {
    Membership.Role.MODERATOR: RANK_MODERATOR,
    Membership.Role.MEMBER: RANK_MEMBER,
}
# The admin permission that stands for each kind of moderation.
MODERATE_MEMBERS = "chat.change_membership"
MODERATE_MESSAGES = "chat.change_message"
MODERATE_ROOMS = "chat.change_room"
MODERATE_REPORTS = "chat.change_report"
ADD_MEMBERS = "chat.add_membership"
REMOVE_MEMBERS = "chat.delete_membership"
MANAGE_ACCOUNTS = "auth.change_user"


def is_site_moderator(*, user, perm: str) -> bool:
    """Active staff holding the admin permission `perm` (superusers hold all)."""
    return bool(user.is_active and user.is_staff and user.has_perm(perm))


def _rank(*, user, room: Room, perm: str, banned_lose_rank: bool) -> int:
    if is_site_moderator(user=user, perm=perm):
        return RANK_STAFF
    membership = membership_of(room=room, user=user)
    if banned_lose_rank and membership is not None and membership.is_banned:
        return RANK_MEMBER
    if room.owner_id == user.pk:
        return RANK_OWNER
    if membership is None:
        return RANK_MEMBER
    return _ROLE_RANK[membership.role]


def moderation_rank(*, user, room: Room, perm: str = MODERATE_MEMBERS) -> int:
    """What `user` may do in `room` now: a banned or inactive user nothing."""
    if not user.is_active:
        return RANK_MEMBER
    return _rank(user=user, room=room, perm=perm, banned_lose_rank=True)


def standing_rank(*, user, room: Room, perm: str = MODERATE_MEMBERS) -> int:
    """How senior `user` is as the target of an action in `room`. A ban does
    not lower it: a moderator the owner banned stays out of a fellow
    moderator's reach, unban included."""
    return _rank(user=user, room=room, perm=perm, banned_lose_rank=False)


def can_moderate(*, user, room: Room) -> bool:
    return moderation_rank(user=user, room=room) >= RANK_MODERATOR


def can_add_members(*, user, room: Room) -> bool:
    """The room's owner (unless banned from it) and staff with the admin's
    add-membership permission."""
    if is_site_moderator(user=user, perm=ADD_MEMBERS):
        return True
    if room.owner_id != user.pk or not user.is_active:
        return False
    membership = membership_of(room=room, user=user)
    return membership is None or not membership.is_banned


def member_named(*, room: Room, username: str) -> Membership | None:
    """The membership of the user called `username` in `room` (banned ones
    included); None for no such user and for someone who is not a member
    alike."""
    return (
        Membership.objects.select_related("user").filter(room=room, user__username=username).first()
    )


def message_in_context(*, message: Message, around: int = 3) -> list[Message]:
    """The message with a few of its neighbours (removed ones included), for
    moderators reading a report."""
    return list(
        _with_authors(
            Message.objects.filter(
                room_id=message.room_id,
                seq__gte=message.seq - around,
                seq__lte=message.seq + around,
            )
        ).order_by("seq")
    )
