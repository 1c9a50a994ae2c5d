"""Reads, with the access checks that guard them.

A room that does not exist and a room the user may not see raise the same
RoomNotFound, so that nobody can probe which private rooms exist.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Case, Count, IntegerField, OuterRef, Q, Subquery, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from . import presence, search, wire
from .models import Invite, Membership, Message, Reaction, Room
from .redis import unless_redis_is_away

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User
    from django.contrib.sessions.backends.base import SessionBase
    from django.db.models import QuerySet


class RoomNotFound(Exception):
    """No such room, or not for this user: the same answer for both."""


@dataclass
class HistoryPage:
    messages: list[Message]
    has_more: bool  # older messages exist before the first one here


def get_room_for(*, user: User | AnonymousUser, slug: str) -> Room:
    if not user.is_authenticated:
        raise RoomNotFound(slug)
    try:
        return Room.objects.visible_to(user).get(slug=slug)
    except Room.DoesNotExist:
        raise RoomNotFound(slug) from None


def _count_of(queryset: QuerySet[Any]) -> Coalesce:
    """A correlated COUNT(*) subquery (0 when nothing matches)."""
    counted = queryset.order_by().values("room_id").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def room_directory(*, user: User, page: int | str | None = 1) -> Page:
    """One page of the rooms `user` can see, by name, each with `member_count`,
    `unread` (messages by others after the user's read position; 0 in rooms
    they never opened) and `online`. One query for the page's rows and their
    counts, one for the total, one presence read for all of them."""
    my_position = Membership.objects.filter(room=OuterRef("pk"), user=user).values("last_read_seq")[
        :1
    ]
    rooms = (
        Room.objects.visible_to(user)
        .filter(kind=Room.Kind.ROOM)
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
    counts: dict[int, int] = {}  # while Redis is away: the page, without who is online
    with unless_redis_is_away("directory shown without online counts"):
        counts = async_to_sync(presence.get_store().online_counts)([r.pk for r in directory])
    for room in directory:
        room.online = counts.get(room.pk, 0)
    return directory


def direct_conversations(*, user: User, limit: int = 100) -> list[Room]:
    """The user's direct conversations (not those they are banned from), each
    with `partner` (the other person's username) and `unread`, those with the
    latest messages first."""
    my_position = Membership.objects.filter(room=OuterRef("pk"), user=user).values("last_read_seq")[
        :1
    ]
    partner = (
        Membership.objects.filter(room=OuterRef("pk"))
        .exclude(user=user)
        .values("user__username")[:1]
    )
    return list(
        Room.objects.visible_to(user)
        .filter(kind=Room.Kind.DIRECT)
        .annotate(read_upto=Subquery(my_position), partner=Subquery(partner))
        .annotate(
            unread=_count_of(
                Message.objects.visible()
                .filter(room=OuterRef("pk"), seq__gt=OuterRef("read_upto"))
                .exclude(author=user)
            )
        )
        .order_by("-last_seq", "-pk")[:limit]
    )


def direct_key(one: User, other: User) -> str:
    """Room.direct_key of the two users' conversation."""
    low, high = sorted([one.pk, other.pk])
    return f"{low}-{high}"


def direct_between(*, user: User, other: User) -> Room | None:
    """The direct conversation of the two users, if there is one."""
    return Room.objects.filter(direct_key=direct_key(user, other)).first()


def room_invites(*, room: Room) -> QuerySet[Invite]:
    """The room's invite links that still work (not revoked, not expired),
    newest first: for its settings page, whose view checks who may see it."""
    return Invite.objects.filter(
        room=room, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).select_related("created_by")


def direct_partner_name(*, room: Room, user: User) -> str:
    """The other person in a direct conversation (for its title)."""
    return (
        Membership.objects.filter(room=room)
        .exclude(user=user)
        .values_list("user__username", flat=True)
        .first()
        or room.name
    )


@dataclass
class SocketAccess:
    user: object  # the session's user
    room: Room  # id, name, slug, is_private, is_locked, owner_id loaded; others on access
    is_member: bool  # False: a public room's visitor, to be made a member


_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@functools.cache
def _socket_access_sql() -> tuple[str, list[str]]:
    """One statement for the session's user, the room by slug and the user's
    membership in it, with the user's columns taken from the user model."""
    qn = connection.ops.quote_name
    user_model = get_user_model()
    user_fields = [f.attname for f in user_model._meta.concrete_fields]
    columns = [f"u.{qn(f.column)}" for f in user_model._meta.concrete_fields]  # type: ignore[arg-type]
    room_columns = ", ".join(f"r.{qn(name)}" for name in _ROOM_FIELDS)
    user_pk = f"u.{qn(user_model._meta.pk.column)}"  # type: ignore[arg-type]
    sql = (
        f"SELECT {', '.join(columns)}, {room_columns}, m.{qn('id')}, m.{qn('is_banned')} "
        f"FROM {qn(user_model._meta.db_table)} u "
        f"LEFT JOIN {qn(Room._meta.db_table)} r ON r.{qn('slug')} = %s "
        f"LEFT JOIN {qn(Membership._meta.db_table)} m "
        f"ON m.{qn('room_id')} = r.{qn('id')} AND m.{qn('user_id')} = {user_pk} "
        f"WHERE {user_pk} = %s"
    )
    return sql, user_fields


_ROOM_FIELDS = ["id", "name", "slug", "is_private", "is_locked", "owner_id", "kind"]


def socket_access(*, session: SessionBase, slug: str) -> SocketAccess | None:
    """Who a socket's session belongs to and whether they may open the room,
    in one query: None when not logged in (no or an ended session, a
    deactivated account, a changed password); RoomNotFound when the room is
    missing, private and not theirs, or they are banned from it.

    The user checks are Django's `auth.get_user` for the ModelBackend (any
    other backend takes that function, and the room another query)."""
    user_id = session.get(SESSION_KEY)
    backend = session.get(BACKEND_SESSION_KEY)
    if user_id is None or backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    if backend != _MODEL_BACKEND:
        # get_user reads nothing of a request but its session.
        user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
        if not user.is_authenticated:
            return None
        room = Room.objects.filter(slug=slug).first()
        membership = room and Membership.objects.filter(room=room, user=user).first()
        found = (membership.pk, membership.is_banned) if membership else None
        return _access(user, room, found, slug)
    sql, user_fields = _socket_access_sql()
    user_model = get_user_model()
    with connection.cursor() as cursor:
        cursor.execute(sql, [slug, user_model._meta.pk.to_python(user_id)])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(user_fields)
    user = user_model.from_db(connection.alias, user_fields, row[:split])
    if not (user.is_active and _session_hash_verified(session, user)):
        return None
    room_values, membership = row[split : split + len(_ROOM_FIELDS)], row[-2:]
    room = Room.from_db(connection.alias, _ROOM_FIELDS, room_values) if room_values[0] else None
    return _access(user, room, membership if membership[0] else None, slug)


def _access(
    user: User, room: Room | None, membership: tuple[int, bool] | None, slug: str
) -> SocketAccess:
    """membership: (id, is_banned) or None. As Room.objects.visible_to: the
    owner of a private room may open it, a ban closes it to anyone."""
    if room is None or (membership and membership[1]):
        raise RoomNotFound(slug)
    if room.is_private and not membership and room.owner_id != user.pk:
        raise RoomNotFound(slug)
    return SocketAccess(user=user, room=room, is_member=membership is not None)


def _session_hash_verified(session: SessionBase, user: User) -> bool:
    """As auth.get_user: the session's hash of the password matches (with the
    current secret key or a fallback one)."""
    session_hash = session.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    return any(
        constant_time_compare(session_hash, fallback)
        for fallback in user.get_session_auth_fallback_hash()
    )


def room_last_seq(*, room: Room) -> int:
    """The room's highest seq now, read fresh (messages may have come since)."""
    return Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)


def last_seqs(*, room_ids: list[int]) -> dict[int, int]:
    """{room id: last seq} for several rooms in one query."""
    return dict(Room.objects.filter(pk__in=room_ids).values_list("pk", "last_seq"))


def room_counters(*, room_ids: list[int]) -> dict[int, tuple[int, int]]:
    """{room id: (last seq, last change)} for several rooms in one query."""
    rows = Room.objects.filter(pk__in=room_ids).values_list("pk", "last_seq", "last_change")
    return {pk: (seq, change) for pk, seq, change in rows}


def membership_of(*, room: Room, user: User) -> Membership | None:
    return Membership.objects.filter(room=room, user=user).first()


def room_members(*, room: Room) -> list[Membership]:
    return list(
        Membership.objects.filter(room=room, is_banned=False)
        .select_related("user")
        .order_by("user__username")
    )


@dataclass
class MemberEntry:
    username: str
    role: str  # owner, moderator or member
    online: bool


def member_list(*, room: Room, limit: int = 200) -> tuple[list[MemberEntry], int]:
    """The room's members (not banned) for anyone who may open the room:
    those online first, then the rest, by name within each; at most `limit`,
    and how many members there are in all."""
    # While Redis is away the page comes without who is online; its socket's
    # hello fills that in once the store answers.
    online: set[str] = set()
    with unless_redis_is_away("member list shown without who is online"):
        online = set(async_to_sync(presence.get_store().online_users)(room.pk))
    rows = Membership.objects.filter(room=room, is_banned=False)
    total = rows.count()
    names_online = list(
        rows.filter(user__username__in=online)
        .order_by("user__username")
        .values_list("user__username", "user_id", "role")[:limit]
    )
    names_offline = list(
        rows.exclude(user__username__in=online)
        .order_by("user__username")
        .values_list("user__username", "user_id", "role")[: max(limit - len(names_online), 0)]
    )
    entries = [
        MemberEntry(
            username=name,
            role="owner" if user_id == room.owner_id and not room.is_direct else role,
            online=name in online,
        )
        for name, user_id, role in names_online + names_offline
    ]
    return entries, total


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


def _with_authors(queryset: QuerySet[Message]) -> QuerySet[Message]:
    return queryset.select_related("author", "room", "reply_to__author")


def attach_reactions(messages: Iterable[Message]) -> None:
    """Set each message's `reaction_map` ({emoji: [usernames]}, in the order
    of settings.CHAT_REACTIONS, people in the order they reacted), one query
    for all. Only a message with a `rev` can have reactions."""
    changed = {message.pk: message for message in messages if message.rev}
    if not changed:
        return
    found: dict[int, dict[str, list[str]]] = {pk: {} for pk in changed}
    rows = (
        Reaction.objects.filter(message_id__in=list(changed))
        .order_by("id")
        .values_list("message_id", "emoji", "user__username")
    )
    for message_id, emoji, username in rows:
        found[message_id].setdefault(emoji, []).append(username)
    order = {emoji: index for index, emoji in enumerate(settings.CHAT_REACTIONS)}
    for pk, message in changed.items():
        reactions = found[pk]
        message.reaction_map = {  # type: ignore[attr-defined]
            emoji: reactions[emoji] for emoji in sorted(reactions, key=lambda e: order.get(e, 99))
        }


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


def is_site_moderator(*, user: User, perm: str) -> bool:
    """Active staff holding the admin permission `perm` (superusers hold all)."""
    return bool(user.is_active and user.is_staff and user.has_perm(perm))


_UNKNOWN = object()


def _rank(
    *, user: User, room: Room, perm: str, banned_lose_rank: bool, membership: Any = _UNKNOWN
) -> int:
    """membership: the user's in `room` when the caller has it (None: none)."""
    if is_site_moderator(user=user, perm=perm):
        return RANK_STAFF
    if membership is _UNKNOWN:
        membership = membership_of(room=room, user=user)
    if banned_lose_rank and membership is not None and membership.is_banned:
        return RANK_MEMBER
    if room.owner_id == user.pk and not room.is_direct:
        return RANK_OWNER  # (who started a direct conversation owns nothing in it)
    if membership is None:
        return RANK_MEMBER
    return _ROLE_RANK[membership.role]


def moderation_rank(*, user: User, room: Room, perm: str = MODERATE_MEMBERS) -> int:
    """What `user` may do in `room` now: a banned or inactive user nothing."""
    if not user.is_active:
        return RANK_MEMBER
    return _rank(user=user, room=room, perm=perm, banned_lose_rank=True)


def standing_rank(*, user: User, room: Room, perm: str = MODERATE_MEMBERS) -> int:
    """How senior `user` is as the target of an action in `room`. A ban does
    not lower it: a moderator the owner banned stays out of a fellow
    moderator's reach, unban included."""
    return _rank(user=user, room=room, perm=perm, banned_lose_rank=False)


def can_moderate(*, user: User, room: Room) -> bool:
    return moderation_rank(user=user, room=room) >= RANK_MODERATOR


def can_add_members(*, user: User, room: Room) -> bool:
    """The room's owner (unless banned from it) and staff with the admin's
    add-membership permission."""
    if is_site_moderator(user=user, perm=ADD_MEMBERS):
        return True
    if room.is_direct or room.owner_id != user.pk or not user.is_active:
        return False
    membership = membership_of(room=room, user=user)
    return membership is None or not membership.is_banned


def can_manage_room(*, user: User, room: Room) -> bool:
    """The room's owner (unless banned) and staff who may change rooms: its
    settings (topic, invites)."""
    return moderation_rank(user=user, room=room, perm=MODERATE_ROOMS) >= RANK_OWNER


HANDOVER_CHOICES_LIMIT = 1000


def handover_choices(*, room: Room, viewer: User) -> list[str]:
    """Usernames of the members `viewer` could hand the room over to, by
    name: everyone in it but the owner and the viewer, the banned and the
    deactivated left out (services.hand_over_room refuses those). Empty for
    a viewer who may not hand it over, and for a direct conversation."""
    if room.is_direct or not can_manage_room(user=viewer, room=room):
        return []
    return list(
        Membership.objects.filter(room=room, is_banned=False, user__is_active=True)
        .exclude(user_id__in=[room.owner_id, viewer.pk])
        .order_by("user__username")
        .values_list("user__username", flat=True)[:HANDOVER_CHOICES_LIMIT]
    )


def member_named(*, room: Room, username: str) -> Membership | None:
    """The membership of the user called `username` in `room` (banned ones
    included); None for no such user and for someone who is not a member
    alike."""
    return (
        Membership.objects.select_related("user").filter(room=room, user__username=username).first()
    )


@dataclass
class MemberState:
    """A member as the room's moderators see them, and what the viewer may
    do to them."""

    username: str
    role: str  # owner, moderator or member
    banned: bool
    muted_until: datetime | None  # None: not muted, or muted until unmuted (see muted)
    muted: bool
    can_moderate: bool  # mute, unmute, ban, unban
    can_set_role: bool  # appoint or dismiss as moderator

    def as_json(self) -> dict:
        return {
            "user": self.username,
            "role": self.role,
            "banned": self.banned,
            "muted": self.muted,
            "muted_until": wire.iso_utc(self.muted_until) if self.muted_until else None,
            "can_moderate": self.can_moderate,
            "can_set_role": self.can_set_role,
        }


def member_states(
    *, room: Room, viewer: User, prefix: str = "", limit: int = 50
) -> tuple[list[MemberState], bool]:
    """The room's members (banned ones too) whose name starts with `prefix`,
    for its moderators: the owner, then moderators, then the muted and the
    banned, then everyone else, by name within each; at most `limit`, and
    whether more match. Ranks are worked out from the rows read, one query
    in all (plus permission lookups for staff members)."""
    from .services.messages import MUTED_INDEFINITELY  # services import selectors

    now = timezone.now()
    rows = list(
        Membership.objects.filter(room=room, user__username__istartswith=prefix)
        .select_related("user")
        .annotate(
            standing=Case(
                When(user_id=room.owner_id, then=0),
                When(role=Membership.Role.MODERATOR, then=1),
                When(Q(is_banned=True) | Q(muted_until__gt=now), then=2),
                default=3,
            )
        )
        .order_by("standing", "user__username")[: limit + 1]
    )
    viewer_rank = moderation_rank(user=viewer, room=room)
    states = []
    for membership in rows[:limit]:
        user = membership.user
        rank = _rank(
            user=user,
            room=room,
            perm=MODERATE_MEMBERS,
            banned_lose_rank=False,
            membership=membership,
        )
        outranked = user.pk != viewer.pk and rank < viewer_rank
        muted = membership.muted_until is not None and membership.muted_until > now
        states.append(
            MemberState(
                username=user.username,
                role="owner"
                if user.pk == room.owner_id and not room.is_direct
                else membership.role,
                banned=membership.is_banned,
                muted=muted,
                muted_until=membership.muted_until
                if muted
                and membership.muted_until is not None
                and membership.muted_until < MUTED_INDEFINITELY
                else None,
                can_moderate=outranked and viewer_rank >= RANK_MODERATOR,
                can_set_role=outranked and viewer_rank >= RANK_OWNER and user.pk != room.owner_id,
            )
        )
    return states, len(rows) > limit


def _texts(room: Room, messages: Iterable[Message]) -> list[tuple[int, str]]:
    out = []
    messages = list(messages)
    attach_reactions(messages)
    for message in messages:
        message.room = room  # known already: no join, no query per message
        out.append((message.seq, wire.message_json(message)))
    return out


@dataclass
class RecentMessages:
    last_seq: int  # the room's highest seq when read
    last_change: int  # the room's change counter, read before the messages
    texts: list[tuple[int, str]]  # (seq, message JSON) of the latest visible messages, oldest first
    older_exist: bool  # visible messages older than these exist


def recent_messages(*, room: Room, limit: int) -> RecentMessages:
    """What a room hub starts from. last_seq is read first, and messages up to
    it only: a message committed between the two reads is not half-included."""
    last_seq, last_change = Room.objects.values_list("last_seq", "last_change").get(pk=room.pk)
    queryset = Message.objects.visible().filter(room=room, seq__lte=last_seq)
    page = list(queryset.select_related("author", "reply_to__author").order_by("-seq")[: limit + 1])
    texts = _texts(room, reversed(page[:limit]))
    return RecentMessages(last_seq, last_change, texts, len(page) > limit)


def message_texts_between(*, room: Room, after: int, upto: int) -> list[tuple[int, str]]:
    """(seq, message JSON) of the visible messages with after < seq <= upto."""
    queryset = Message.objects.visible().filter(room=room, seq__gt=after, seq__lte=upto)
    return _texts(room, queryset.select_related("author", "reply_to__author").order_by("seq"))


def message_text(*, room: Room, message_id: int) -> tuple[int, str]:
    """(seq, message JSON) of one message of the room, as it is now."""
    message = _with_authors(Message.objects.filter(room=room, pk=message_id)).get()
    return _texts(room, [message])[0]


@dataclass
class Changes:
    texts: list[str]  # the current JSON of changed messages still shown, by seq
    deleted: list[dict]  # {"id", "seq"} of messages removed since
    last_change: int  # every change up to this one is in here


def changes_since(*, room: Room, since: int, upto_seq: int) -> Changes:
    """What changed (edits, deletions, reactions) after change `since` in
    the room's messages up to seq `upto_seq`: the latest state of each."""
    last_change = Room.objects.values_list("last_change", flat=True).get(pk=room.pk)
    changed = list(
        _with_authors(
            Message.objects.filter(
                room=room, rev__gt=since, rev__lte=last_change, seq__lte=upto_seq
            )
        ).order_by("seq")
    )
    deleted = [
        {"id": m.pk, "seq": m.seq, **({"by": "author"} if m.deleted_by_id == m.author_id else {})}
        for m in changed
        if m.deleted_at is not None
    ]
    shown = [m for m in changed if m.deleted_at is None]
    return Changes([text for _, text in _texts(room, shown)], deleted, last_change)


def reply_target(*, room: Room, message_id: int) -> Message | None:
    """The message a reply in `room` may quote: shown, and in that room."""
    return (
        Message.objects.visible().select_related("author").filter(room=room, pk=message_id).first()
    )


def message_texts_before(*, room: Room, before: int | None, limit: int) -> tuple[list[str], bool]:
    """The JSON of up to `limit` visible messages older than seq `before` (the
    latest if None), oldest first, and whether older ones exist."""
    page = messages_before(room=room, before=before, limit=limit)
    return [text for _, text in _texts(room, page.messages)], page.has_more


def message_texts_around(
    *, room: Room, around: int | None = None, after: int | None = None, limit: int
) -> tuple[list[str], bool, bool]:
    """The JSON of up to `limit` visible messages, oldest first: around seq
    `around` (up to half of them older than it, the rest from it on), or
    the first ones after seq `after`. With whether older ones exist before
    the first, and newer ones after the last."""
    visible = Message.objects.visible().filter(room=room)
    if around is not None:
        older = list(
            _with_authors(visible.filter(seq__lt=around)).order_by("-seq")[: limit // 2 + 1]
        )
        has_more = len(older) > limit // 2
        older = older[: limit // 2][::-1]
        start = around
    else:
        older, has_more, start = [], None, (after or 0) + 1
    newer = list(
        _with_authors(visible.filter(seq__gte=start)).order_by("seq")[: limit - len(older) + 1]
    )
    has_newer = len(newer) > limit - len(older)
    page = older + newer[: limit - len(older)]
    if has_more is None:
        has_more = visible.filter(seq__lt=page[0].seq if page else start).exists()
    return [text for _, text in _texts(room, page)], has_more, has_newer


def older_messages_exist(*, room: Room, seq: int) -> bool:
    return Message.objects.visible().filter(room=room, seq__lte=seq).exists()


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


# ---------------------------------------------------------------- search


@dataclass
class SearchHit:
    message: Message  # room and author loaded
    excerpt: str  # safe HTML: the escaped body around the match, matches in <mark>


@dataclass
class SearchResults:
    query: search.Query
    hits: list[SearchHit]
    next_before: int | None  # pass as `before` for the next (older) page; None: no more


def search_messages(
    *,
    user: User | AnonymousUser,
    query: str | None,
    before: int | None = None,
    limit: int | None = None,
    room: Room | None = None,
) -> SearchResults:
    """Messages matching `query` (chat.search's language) in the rooms `user`
    may read now, newest first, `limit` at a time; `before` (a message id
    from the previous page's next_before) continues a search. Removed
    messages never match, nor do rooms the user left the readers of (private
    and not a member, banned). search.InvalidQuery for a query that cannot
    be searched, with the reason for a person. `room`: only there (the
    access check still applies)."""
    parsed = search.parse_query(query)
    limit = limit or settings.CHAT_SEARCH_PAGE
    if not user.is_authenticated:
        return SearchResults(parsed, [], None)
    messages = Message.objects.visible().filter(room__in=Room.objects.visible_to(user).values("pk"))
    if room is not None:
        messages = messages.filter(room=room)
    if before is not None:
        messages = messages.filter(pk__lt=before)
    found = list(_with_authors(_matching(messages, parsed)).order_by("-pk")[: limit + 1])
    hits = [SearchHit(m, search.highlight(m.body, parsed)) for m in found[:limit]]
    return SearchResults(parsed, hits, hits[-1].message.pk if len(found) > limit else None)


def _matching(messages: QuerySet[Message], query: search.Query) -> QuerySet[Message]:
    """Narrow `messages` to those whose body matches, through the database's
    full-text index (chat.search describes both)."""
    vendor = connection.vendor
    if vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        config = search.POSTGRES_CONFIG
        return messages.alias(document=SearchVector("body", config=config)).filter(
            document=SearchQuery(query.tsquery(), config=config, search_type="raw")
        )
    if vendor == "sqlite":
        table = search.SQLITE_FTS_TABLE
        return messages.filter(
            pk__in=RawSQL(f"SELECT rowid FROM {table} WHERE {table} MATCH %s", [query.fts5()])
        )
    # Any other database: no index, a scan (words anywhere, not only at a start).
    for term in query.terms:
        messages = messages.filter(body__icontains=term)
    return messages
