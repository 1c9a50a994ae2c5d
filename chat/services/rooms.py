"""Rooms and membership."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from .. import events, selectors, text, throttle, wire
from ..models import TOPIC_MAX_LENGTH, Membership, Room
from .errors import Forbidden, InvalidInput, NotFound, RateLimited

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits

# Letters that NFKD does not take apart into ASCII: Cyrillic (a common
# simplified romanization) and a few Latin ones.
_TO_LATIN = str.maketrans(
    dict(zip("абвгдезийклмнопрстуфыэіґ", "abvgdeziyklmnoprstufyeig", strict=True))
    | {"ё": "e", "ж": "zh", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch"}
    | {"ъ": "", "ь": "", "ю": "yu", "я": "ya", "ї": "yi", "є": "ye"}
    | {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "þ": "th", "ð": "d"}
)


def slug_for(name: str) -> str:
    """The contract's ASCII slug ([a-z0-9-]) for a room name: accents dropped,
    Cyrillic romanized; a name in another script (CJK, …) gets
    `room-<random>`. Empty only for a name with no letter or digit at all."""
    slug = slugify(name.lower().translate(_TO_LATIN))[:50].strip("-")
    if slug or not any(c.isalnum() for c in name):
        return slug
    return f"room-{secrets.token_hex(4)}"


def _plain_name(name: str) -> str:
    name = name.strip()
    if text.is_blank(name):
        raise InvalidInput("A room needs a name.")
    if len(name) > 100:
        raise InvalidInput("A room name has at most 100 characters.")
    if text.has_hidden(name):
        raise InvalidInput("A room name cannot contain invisible or direction-changing characters.")
    return name


def _refuse_look_alike(*, name: str, among: QuerySet[Room], room_pk: int | None = None) -> None:
    look_alikes = among.filter(name_skeleton=text.skeleton(name)[:300])
    if room_pk is not None:
        look_alikes = look_alikes.exclude(pk=room_pk)
    look_alike = look_alikes.first()
    if look_alike is not None:
        raise InvalidInput(
            f"That name looks too much like the room '{look_alike.name}'; choose another."
        )


def check_room_name(*, name: str, among: QuerySet[Room], room_pk: int | None = None) -> str:
    """The name, stripped, if a room may have it: not blank, not too long, no
    hidden characters, and not looking like the name of a room in `among`
    (other than room `room_pk`): see chat.text.skeleton."""
    name = _plain_name(name)
    _refuse_look_alike(name=name, among=among, room_pk=room_pk)
    return name


def _check_rooms_per_hour(owner: User) -> None:
    """At most CHAT_ROOMS_PER_HOUR rooms created by one user in an hour
    (staff who may add rooms in the admin are not counted)."""
    cap = settings.CHAT_ROOMS_PER_HOUR
    if not cap or selectors.is_site_moderator(user=owner, perm="chat.add_room"):
        return
    # One creation at a time per user, so that parallel requests cannot
    # both squeeze under the cap.
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    since = timezone.now() - timedelta(hours=1)
    recent = list(
        Room.objects.filter(owner=owner, created__gte=since)
        .order_by("-created")
        .values_list("created", flat=True)[:cap]
    )
    if len(recent) >= cap:
        wait = (recent[-1] + timedelta(hours=1) - timezone.now()).total_seconds()
        raise RateLimited(
            f"You can create {cap} rooms an hour; try again {throttle.wait_text(wait)}.",
            retry_after=round(max(wait, 1.0), 1),
        )


def _slugs_to_try(base: str) -> Iterator[str]:
    """The name's own slug, then a few with a random suffix."""
    yield base
    for _ in range(5):
        suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(6))
        yield f"{base[:43].strip('-')}-{suffix}"


@transaction.atomic
def create_room(*, owner: User, name: str, is_private: bool = False) -> Room:
    """A room whose address (slug) comes from its name.

    The name may not look like the name of a room the owner can see (the
    public ones and their own private ones): see chat.text.skeleton. A slug
    taken by a room the owner can see is a clear error; a slug taken by a
    private room they cannot see is passed over for one with a random
    suffix, so that creating rooms does not tell anyone which private rooms
    exist."""
    name = _plain_name(name)
    base = slug_for(name)
    if not base:
        raise InvalidInput("A room name needs at least one letter or digit.")
    known = Room.objects.filter(Q(is_private=False) | Q(pk__in=Room.objects.visible_to(owner)))
    if known.filter(slug=base).exists():
        raise InvalidInput(f"A room with the address '{base}' exists already.")
    _refuse_look_alike(name=name, among=known)
    _check_rooms_per_hour(owner)
    for slug in _slugs_to_try(base):
        try:
            with transaction.atomic():
                room = Room.objects.create(
                    name=name,
                    name_skeleton=text.skeleton(name)[:300],
                    slug=slug,
                    is_private=is_private,
                    owner=owner,
                )
        except IntegrityError:  # a room the owner cannot see, or one made a moment ago
            continue
        Membership.objects.create(room=room, user=owner)
        return room
    raise InvalidInput("No free address for that name; choose another name.")


def add_member(*, room: Room, actor: User, username: str) -> Membership | None:
    """The room's owner (or staff) adds a member by username. None when no
    account has that name: callers answer the same either way, so that the
    form cannot be used to find out who has an account. Names that match
    nobody are counted per actor (CHAT_ADD_MEMBER_MISS_LIMIT), and past the
    limit the form waits."""
    if room.is_direct:
        raise InvalidInput("A direct conversation has exactly two people.")
    if not selectors.can_add_members(user=actor, room=room):
        raise Forbidden("Only the room's owner can add members.")
    limit = settings.CHAT_ADD_MEMBER_MISS_LIMIT
    wait = throttle.retry_after("add-member-miss", str(actor.pk), limit)
    if wait is not None:
        raise RateLimited(
            f"Too many names that matched no account; try again {throttle.wait_text(wait)}.",
            retry_after=round(wait, 1),
        )
    user = get_user_model().objects.filter(username=username.strip()).first()
    if user is None:
        throttle.record("add-member-miss", str(actor.pk), limit)
        return None
    membership, _ = Membership.objects.get_or_create(room=room, user=user)
    return membership


def join_room(*, room: Room, user: User) -> Membership:
    """Opening a room makes you a member of it (the access check came first)."""
    membership, _ = Membership.objects.get_or_create(room=room, user=user)
    return membership


def check_topic(*, topic: str) -> str:
    """The topic, stripped, if a room may have it (else InvalidInput)."""
    if not isinstance(topic, str):
        raise InvalidInput("A topic is text.")
    if "\n" in topic.strip() or "\r" in topic.strip():
        raise InvalidInput("A topic is one line.")
    topic = topic.strip()
    if len(topic) > TOPIC_MAX_LENGTH:
        raise InvalidInput(f"A topic has at most {TOPIC_MAX_LENGTH} characters.")
    if text.has_hidden(topic):
        raise InvalidInput("A topic cannot contain invisible or direction-changing characters.")
    return topic


def set_topic(*, room: Room, actor: User, topic: str) -> bool:
    """The room's owner (or staff who may change rooms) sets its one-line
    topic ("" clears it). Open room pages are told with a `topic` frame.
    False if it was that already."""
    if room.is_direct:
        raise InvalidInput("A direct conversation has no topic.")
    if not selectors.can_manage_room(user=actor, room=room):
        raise Forbidden("Only the room's owner can set its topic.")
    topic = check_topic(topic=topic)
    with transaction.atomic():
        if not Room.objects.filter(pk=room.pk).exclude(topic=topic).update(topic=topic):
            return False
        room.topic = topic
        events.send_on_commit(
            events.room_group(room.pk),
            events.room_frame(room.pk, wire.frame("topic", room=room.slug, topic=topic)),
        )
    return True


@transaction.atomic
def leave_room(*, room: Room, user: User) -> bool:
    """The user stops being a member: their sockets in the room close with
    4410 on every worker (the page goes back to the directory), and a private
    room is closed to them until someone adds or invites them again. False if
    they were not a member. An owner hands the room over first
    (hand_over_room); a banned or
    muted member cannot leave (that would lift the ban or the mute)."""
    if room.is_direct:
        raise InvalidInput("A direct conversation cannot be left.")
    if room.owner_id == user.pk:
        raise Forbidden(
            f"You own {room.name}: hand it over to another member first, under "
            "Hand over the room in the room's settings, then you can leave it."
        )
    membership = Membership.objects.select_for_update().filter(room=room, user=user).first()
    if membership is None:
        return False
    if membership.is_banned:
        raise Forbidden(f"You are banned from {room.name}.")
    if membership.muted_until is not None and membership.muted_until > timezone.now():
        raise Forbidden(f"You are muted in {room.name}: you can leave once the mute ends.")
    membership._left = True  # type: ignore[attr-defined]  # chat.signals: LEFT, not NO_ACCESS
    membership.delete()
    events.send_on_commit(
        events.room_group(room.pk),
        events.room_close(room.pk, code=events.Close.LEFT, user_id=user.pk),
    )
    return True


# ---------------------------------------------------------------- direct conversations


def _check_direct_per_hour(user: User) -> None:
    cap = settings.CHAT_DIRECT_PER_HOUR
    if not cap:
        return
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    since = timezone.now() - timedelta(hours=1)
    recent = list(
        Room.objects.filter(owner=user, kind=Room.Kind.DIRECT, created__gte=since)
        .order_by("-created")
        .values_list("created", flat=True)[:cap]
    )
    if len(recent) >= cap:
        wait = (recent[-1] + timedelta(hours=1) - timezone.now()).total_seconds()
        raise RateLimited(
            f"You can start {cap} conversations an hour; try again {throttle.wait_text(wait)}.",
            retry_after=round(max(wait, 1.0), 1),
        )


def direct_partner(*, user: User, username: str) -> User:
    """The active account called `username`, to talk to; a name that matches
    nobody counts against the actor (CHAT_ADD_MEMBER_MISS_LIMIT), as adding
    members does, so that the form cannot list who has an account."""
    limit = settings.CHAT_ADD_MEMBER_MISS_LIMIT
    wait = throttle.retry_after("direct-miss", str(user.pk), limit)
    if wait is not None:
        raise RateLimited(
            f"Too many names that matched no account; try again {throttle.wait_text(wait)}.",
            retry_after=round(wait, 1),
        )
    username = username.strip() if isinstance(username, str) else ""
    other = get_user_model().objects.filter(username=username, is_active=True).first()
    if other is None:
        throttle.record("direct-miss", str(user.pk), limit)
        raise NotFound(f"There is nobody called {username[:150]} to talk to.")
    if other.pk == user.pk:
        raise InvalidInput("A direct conversation is with someone else.")
    return other


def start_direct(*, user: User, username: str) -> Room:
    """The direct conversation between `user` and the account `username`: a
    private room of kind "direct" with the two of them as members, one per
    pair (starting it again, from either side, gives the same room). At most
    CHAT_DIRECT_PER_HOUR new ones per user an hour."""
    other = direct_partner(user=user, username=username)
    existing = selectors.direct_between(user=user, other=other)
    if existing is not None:
        # Both stay in it (someone staff removed comes back; a ban holds).
        for person in (user, other):
            Membership.objects.get_or_create(room=existing, user=person)
        return existing
    try:
        with transaction.atomic():
            _check_direct_per_hour(user)
            names = sorted([user.username, other.username])
            room = Room.objects.create(
                name=" & ".join(names)[:100],
                slug=f"dm-{secrets.token_hex(8)}",
                is_private=True,
                owner=user,
                kind=Room.Kind.DIRECT,
                direct_key=selectors.direct_key(user, other),
            )
            Membership.objects.bulk_create(
                [Membership(room=room, user=user), Membership(room=room, user=other)]
            )
    except IntegrityError:  # the other side started it at the same moment
        existing = selectors.direct_between(user=user, other=other)
        if existing is None:
            raise
        return existing
    return room
