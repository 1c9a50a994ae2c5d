"""Reads, with the access checks that guard them.

A room that does not exist and a room the user may not see raise the same
RoomNotFound, so that nobody can probe which private rooms exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce

from . import presence
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


def _count_of(queryset) -> Coalesce:
    """A correlated COUNT(*) subquery (0 when nothing matches)."""
    counted = queryset.order_by().values("room_id").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def room_directory(*, user, page: int | str | None = 1) -> Page:
    """One page of the rooms `user` can see, by name, each with `member_count`,
    `unread` (messages by others after the user's read position; 0 in rooms
    they never opened) and `online`. One query for the page's rows and their
    counts, one for the total, one presence read for all of them."""
    my_position = Membership.objects.filter(room=OuterRef("pk"), user=user).values("last_read_seq")[
        :1
    ]
    rooms = (
        Room.objects.visible_to(user)
        .annotate(read_upto=Subquery(my_position))
        .annotate(
            member_count=_count_of(Membership.objects.filter(room=OuterRef("pk"), is_banned=False)),
            unread=_count_of(
                Message.objects.visible()
                .filter(room=OuterRef("pk"), seq__gt=OuterRef("read_upto"))
                .exclude(author=user)
            ),
        )
        .order_by("name", "pk")
    )
    directory = Paginator(rooms, settings.CHAT_DIRECTORY_PAGE).get_page(page)
    counts = async_to_sync(presence.get_store().online_counts)([r.pk for r in directory])
    for room in directory:
        room.online = counts.get(room.pk, 0)
    return directory


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


def member_names(*, room: Room, prefix: str = "", limit: int = 10) -> list[str]:
    """Usernames of the room's members (not banned) starting with `prefix`,
    case-insensitively, for @mention completion."""
    return list(
        Membership.objects.filter(
            room=room, is_banned=False, user__username__istartswith=prefix, user__is_active=True
        )
        .order_by("user__username")
        .values_list("user__username", flat=True)[:limit]
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


# Who may moderate whom: an actor acts only on someone of lower rank.
RANK_STAFF, RANK_OWNER, RANK_MODERATOR, RANK_MEMBER = 3, 2, 1, 0
_ROLE_RANK = {
    Membership.Role.OWNER: RANK_OWNER,
    Membership.Role.MODERATOR: RANK_MODERATOR,
    Membership.Role.MEMBER: RANK_MEMBER,
}


def moderation_rank(*, user, room: Room) -> int:
    if user.is_staff and user.is_active:
        return RANK_STAFF
    membership = membership_of(room=room, user=user)
    if membership is None or membership.is_banned:
        return RANK_MEMBER
    return _ROLE_RANK[membership.role]


def can_moderate(*, user, room: Room) -> bool:
    return moderation_rank(user=user, room=room) >= RANK_MODERATOR


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
